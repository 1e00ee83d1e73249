// The temporal loss of one earlier frame and its gradient on the image x (3 x H x W, framed CHW: src/frame.rs;
// docs/MATHS.md, "Video"):
//   L_t = loss_scale · Σ_{ch, p} c(p) · (x[ch, p] − ω[ch, p])²          loss_scale = w_t / (3·H·W)
//   dL_t/dx[ch, p] = grad_scale · c(p) · (x[ch, p] − ω[ch, p])         grad_scale = 2·w_t / (3·H·W)
// with ω the warped earlier painting (`warped`, framed like x) and c its reliability (`weights`, one framed
// channel; zero on a canvas's margin). H·W are the image's, given by the host. grad (+)= dL_t/dx; partials[g] =
// the workgroup's share of L_t, finished by reduce_sum.wgsl. One invocation per data element.

const GROUP_SIZE: u32 = 256u;

fn workgroup_main(group: u32, li: u32, z: u32) {
    let idx = group * GROUP_SIZE + li;
    let h = params.height;
    let w = params.width;
    let pixels = h * w;
    var loss = 0.0;
    if (idx < 3u * pixels) {
        // idx numbers the data elements densely; `at` is the element's place in the frame, `pixel` its pixel's
        // in the one-channel frame of the weights.
        let r = idx % pixels;
        let pixel = HEAD + (r / w + 1u) * params.stride + r % w;
        let at = pixel + (idx / pixels) * params.plane;
        let c = weights[pixel];
        let d = x[at] - warped[at];
        let g = params.grad_scale * c * d;
        grad[at] = select(g, grad[at] + g, params.accumulate != 0u);
        loss = params.loss_scale * c * d * d;
    }
    let total = workgroup_sum(li, loss);
    // The grid may hold more workgroups than partials (src/kernels/grid.rs spreads them over x and y).
    if (li == 0u && group < arrayLength(&partials)) {
        partials[group] = total;
    }
}

// Total-variation loss and its gradient on the image x (3 x H x W, framed CHW: src/frame.rs):
//   L_tv = (w/2) * sum_{c, i<H-1, j<W-1} [ (x[c,i,j] - x[c,i,j+1])^2 + (x[c,i,j] - x[c,i+1,j])^2 ]
// One thread per pixel gathers every term it appears in (as the anchor (i,j), as the right neighbour of
// (i,j-1), as the lower neighbour of (i-1,j)): no atomics. grad (+)= dL/dx; partials[g] = the workgroup's
// share of L_tv (the terms anchored at its pixels), finished by reduce_sum.wgsl.

const GROUP_SIZE: u32 = 256u;

fn workgroup_main(group: u32, li: u32, z: u32) {
    let idx = group * GROUP_SIZE + li;
    let h = params.height;
    let w = params.width;
    let plane = h * w;
    let s = params.stride;
    var loss = 0.0;
    if (idx < 3u * plane) {
        // idx numbers the data pixels densely; at is the pixel's place in the frame.
        let r = idx % plane;
        let i = r / w;
        let j = r % w;
        let at = HEAD + (idx / plane) * params.plane + (i + 1u) * s + j;
        let v = x[at];
        var g = 0.0;
        if (i + 1u < h && j + 1u < w) {
            let dr = v - x[at + 1u];
            let dd = v - x[at + s];
            g += dr + dd;
            loss = 0.5 * params.weight * (dr * dr + dd * dd);
        }
        if (j >= 1u && i + 1u < h) {
            g -= x[at - 1u] - v; // right neighbour of anchor (i, j-1)
        }
        if (i >= 1u && j + 1u < w) {
            g -= x[at - s] - v; // lower neighbour of anchor (i-1, j)
        }
        g *= params.weight;
        grad[at] = select(g, grad[at] + g, params.accumulate != 0u);
    }
    let total = workgroup_sum(li, loss);
    // The grid may hold more workgroups than partials (src/kernels/grid.rs spreads them over x and y).
    if (li == 0u && group < arrayLength(&partials)) {
        partials[group] = total;
    }
}

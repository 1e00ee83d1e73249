// An image warped by a flow (docs/MATHS.md, "Video", Warping): out[ch, p] = image[ch] sampled at p + flow(p),
// bilinearly, the position first clamped into [0, W−1] x [0, H−1] (edge pixels repeat). Dense planar buffers:
// image and out are `channels` planes of H x W, flow is the x plane then the y plane. One invocation per output
// element.

fn element_count() -> u32 {
    return params.channels * params.height * params.width;
}

// Plane `base`'s value at real position (px, py), clamped and bilinear.
fn sample(base: u32, px: f32, py: f32) -> f32 {
    let w = params.width;
    let h = params.height;
    let fx = clamp(px, 0.0, f32(w - 1u));
    let fy = clamp(py, 0.0, f32(h - 1u));
    let x0 = min(u32(floor(fx)), w - 1u);
    let y0 = min(u32(floor(fy)), h - 1u);
    let x1 = min(x0 + 1u, w - 1u);
    let y1 = min(y0 + 1u, h - 1u);
    let ax = fx - f32(x0);
    let ay = fy - f32(y0);
    let top = image[base + y0 * w + x0] * (1.0 - ax) + image[base + y0 * w + x1] * ax;
    let bottom = image[base + y1 * w + x0] * (1.0 - ax) + image[base + y1 * w + x1] * ax;
    return top * (1.0 - ay) + bottom * ay;
}

fn element(idx: u32) {
    let pixels = params.height * params.width;
    let p = idx % pixels;
    let ch = idx / pixels;
    let px = f32(p % params.width) + flow[p];
    let py = f32(p / params.width) + flow[pixels + p];
    out[idx] = sample(ch * pixels, px, py);
}

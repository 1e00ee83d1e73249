// An image warped by a flow (docs/MATHS.md, "Video", Warping): out[ch, p] = image[ch] sampled at p + flow(p),
// bilinearly, the position first clamped into [0, W−1] x [0, H−1] (edge pixels repeat). Dense planar buffers:
// image and out are `channels` planes of H x W, flow is the x plane then the y plane. One invocation per output
// element.

fn element_count() -> u32 {
    return params.channels * params.height * params.width;
}

// Plane `base`'s value at real position (px, py), clamped and bilinear (shared/flow_bilinear.wgsl).
fn sample(base: u32, px: f32, py: f32) -> f32 {
    let b = bilinear_at(px, py, params.width, params.height);
    return bilinear_mix(b, image[base + b.i00], image[base + b.i10], image[base + b.i01], image[base + b.i11]);
}

fn element(idx: u32) {
    let pixels = params.height * params.width;
    let p = idx % pixels;
    let ch = idx / pixels;
    let px = f32(p % params.width) + flow[p];
    let py = f32(p / params.width) + flow[pixels + p];
    out[idx] = sample(ch * pixels, px, py);
}

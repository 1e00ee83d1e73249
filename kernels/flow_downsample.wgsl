// Optical flow's pyramid: level s + 1 is level s averaged over 2x2 windows, sizes halved and rounded down (an odd
// last row or column dropped), dense row-major planes (docs/MATHS.md, "Video: optical flow, warping, the temporal
// loss", **Flow**). One invocation per output pixel.

fn element_count() -> u32 {
    return params.out_width * params.out_height;
}

fn element(idx: u32) {
    let x = 2u * (idx % params.out_width);
    let y = 2u * (idx / params.out_width);
    let top = y * params.width + x;
    let bottom = top + params.width;
    dst[idx] = 0.25 * ((src[top] + src[top + 1u]) + (src[bottom] + src[bottom + 1u]));
}

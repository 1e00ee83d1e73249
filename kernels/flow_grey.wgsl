// Optical flow's grey image: Y = 0.299·R + 0.587·G + 0.114·B of a dense planar RGB frame (3 x H x W, 0–255) into a
// dense H x W plane (docs/MATHS.md, "Video: optical flow, warping, the temporal loss", **Flow**). One invocation
// per pixel.

fn element_count() -> u32 {
    return params.pixels;
}

fn element(idx: u32) {
    let p = params.pixels;
    grey[idx] = 0.299 * rgb[idx] + 0.587 * rgb[p + idx] + 0.114 * rgb[2u * p + idx];
}

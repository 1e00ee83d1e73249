// Optical flow to the next finer pyramid level: U_{s−1}(x) = 2 · U_s sampled bilinearly at ((x + ½)/2 − ½), the
// position clamped into the coarse level (its sizes are the finer level's halved and rounded down, so the finer
// level's last row or column samples past it). Flows are dense: the u plane then the v plane (docs/MATHS.md,
// "Video: optical flow, warping, the temporal loss", **Flow**). One invocation per fine pixel, both planes.

fn element_count() -> u32 {
    return params.width * params.height;
}

fn element(idx: u32) {
    let x = f32(idx % params.width);
    let y = f32(idx / params.width);
    let b = bilinear_at((x + 0.5) * 0.5 - 0.5, (y + 0.5) * 0.5 - 0.5, params.coarse_width, params.coarse_height);
    let cv = params.coarse_width * params.coarse_height;
    let u = bilinear_mix(b, coarse[b.i00], coarse[b.i10], coarse[b.i01], coarse[b.i11]);
    let v = bilinear_mix(b, coarse[cv + b.i00], coarse[cv + b.i10], coarse[cv + b.i01], coarse[cv + b.i11]);
    fine[idx] = 2.0 * u;
    fine[params.width * params.height + idx] = 2.0 * v;
}

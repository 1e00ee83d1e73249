// DIS densification: the dense flow of one pyramid level from its patches' flows,
// U(x) = Σ_j ω_j·u_j / Σ_j ω_j over the 8 x 8 patches j containing x, ω_j = 1 / max(1, |I1(x + u_j) − I0(x)|)
// (docs/MATHS.md, "Video: optical flow, warping, the temporal loss", **Flow**). Patches hold (u, v) pairs, row by
// row of the patch grid; the flow is dense, the u plane then the v plane. One invocation per pixel.

fn element_count() -> u32 {
    return params.width * params.height;
}

// The first patch along an axis that can contain coordinate c: every patch before it ends before c (patch k
// starts at 4k up to the last, and the last starts at side − 8 ≥ c − 7).
fn first_patch(c: u32) -> u32 {
    if (c < 8u) {
        return 0u;
    }
    return (c - 7u + 3u) / 4u;
}

fn sample_i1(x: f32, y: f32) -> f32 {
    let b = bilinear_at(x, y, params.width, params.height);
    return bilinear_mix(b, i1[b.i00], i1[b.i10], i1[b.i01], i1[b.i11]);
}

fn element(idx: u32) {
    let x = idx % params.width;
    let y = idx / params.width;
    let here = i0[idx];
    var sum_u = 0.0;
    var sum_v = 0.0;
    var sum_w = 0.0;
    // From the first patch that can contain the pixel while patches still start at or before it (positions only
    // grow): every patch visited contains it.
    for (var ky = first_patch(y); ky < params.patches_y && patch_pos(ky, params.height) <= y; ky++) {
        for (var kx = first_patch(x); kx < params.patches_x && patch_pos(kx, params.width) <= x; kx++) {
            let j = ky * params.patches_x + kx;
            let u = patches[2u * j];
            let v = patches[2u * j + 1u];
            let w = 1.0 / max(1.0, abs(sample_i1(f32(x) + u, f32(y) + v) - here));
            sum_u += w * u;
            sum_v += w * v;
            sum_w += w;
        }
    }
    flow[idx] = sum_u / sum_w;
    flow[params.width * params.height + idx] = sum_v / sum_w;
}

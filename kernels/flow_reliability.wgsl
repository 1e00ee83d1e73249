// Where a backward flow b (frame t → an earlier frame) can be trusted, before smoothing (docs/MATHS.md, "Video",
// Reliability; artistic-videos' consistencyChecker): with f̃ = the forward flow f (earlier frame → t) sampled at
// p + b(p) (bilinear, clamped), reliable[p] = 0 where p + b(p) lies outside [0, W−1] x [0, H−1], where
// |f̃ + b|² > 0.01·(|f̃|² + |b|²) + 0.5 (occluded), or where |∇b_x|² + |∇b_y|² > 0.01·|b|² + 0.002 (a motion
// boundary; central differences, indices clamped); else 1. Flows are dense: the x plane, then the y plane.
// One invocation per pixel.

fn element_count() -> u32 {
    return params.height * params.width;
}

// Plane `base` of the forward flow at the sample `s` (clamped and bilinear: shared/flow_bilinear.wgsl).
fn forward_at(s: Bilinear, base: u32) -> f32 {
    return bilinear_mix(s, forward[base + s.i00], forward[base + s.i10], forward[base + s.i01], forward[base + s.i11]);
}

fn element(p: u32) {
    let w = params.width;
    let h = params.height;
    let pixels = w * h;
    let x = p % w;
    let y = p / w;
    let b = vec2<f32>(backward[p], backward[pixels + p]);
    let px = f32(x) + b.x;
    let py = f32(y) + b.y;
    let outside = px < 0.0 || py < 0.0 || px > f32(w - 1u) || py > f32(h - 1u);
    let at = bilinear_at(px, py, w, h);
    let f = vec2<f32>(forward_at(at, 0u), forward_at(at, pixels));
    let s = f + b;
    let occluded = dot(s, s) > 0.01 * (dot(f, f) + dot(b, b)) + 0.5;
    // Central differences of both components of b (halved), neighbours clamped into the image.
    let left = y * w + select(x - 1u, 0u, x == 0u);
    let right = y * w + min(x + 1u, w - 1u);
    let up = select(y - 1u, 0u, y == 0u) * w + x;
    let down = min(y + 1u, h - 1u) * w + x;
    let bx_dx = 0.5 * (backward[right] - backward[left]);
    let bx_dy = 0.5 * (backward[down] - backward[up]);
    let by_dx = 0.5 * (backward[pixels + right] - backward[pixels + left]);
    let by_dy = 0.5 * (backward[pixels + down] - backward[pixels + up]);
    let gradient = bx_dx * bx_dx + bx_dy * bx_dy + by_dx * by_dx + by_dy * by_dy;
    let boundary = gradient > 0.01 * dot(b, b) + 0.002;
    reliable[p] = select(1.0, 0.0, outside || occluded || boundary);
}

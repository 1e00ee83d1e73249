// Shared by the optical-flow kernels: bilinear sampling of a dense row-major w x h plane at a real position, the
// position first clamped into [0, w − 1] x [0, h − 1] so edge pixels repeat (docs/MATHS.md, "Video: optical flow,
// warping, the temporal loss", **Flow**). WGSL cannot hand a storage buffer to a function, so a kernel takes the
// four indices and weights from `bilinear_at` and mixes its own buffer's values with `bilinear_mix`.

struct Bilinear {
    i00: u32, // (x0, y0)
    i10: u32, // (x0 + 1, y0), clamped
    i01: u32, // (x0, y0 + 1), clamped
    i11: u32, // (x0 + 1, y0 + 1), clamped
    fx: f32,
    fy: f32,
}

fn bilinear_at(x: f32, y: f32, w: u32, h: u32) -> Bilinear {
    let cx = clamp(x, 0.0, f32(w - 1u));
    let cy = clamp(y, 0.0, f32(h - 1u));
    let x0 = min(u32(floor(cx)), w - 1u);
    let y0 = min(u32(floor(cy)), h - 1u);
    let x1 = min(x0 + 1u, w - 1u);
    let y1 = min(y0 + 1u, h - 1u);
    return Bilinear(y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1, cx - f32(x0), cy - f32(y0));
}

fn bilinear_mix(b: Bilinear, v00: f32, v10: f32, v01: f32, v11: f32) -> f32 {
    let top = (1.0 - b.fx) * v00 + b.fx * v10;
    let bottom = (1.0 - b.fx) * v01 + b.fx * v11;
    return (1.0 - b.fy) * top + b.fy * bottom;
}

// The DIS patch grid along an axis of `side` px: 8 x 8 patches at 0, 4, 8, … and a last one at side − 8
// (src/kernels/flow.rs, `patch_positions`, says the same on the host).
fn patch_pos(k: u32, side: u32) -> u32 {
    return min(4u * k, side - 8u);
}

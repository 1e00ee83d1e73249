// Adds a per-channel value to a feature map's gradient where the ReLU passes it (docs/MATHS.md, "Style loss:
// Wasserstein-2"): grad[c, p] += bias[c] where F[c, p] > 0. Over the whole framed buffer: the frame's F is zero,
// so the frame's gradient stays zero.

fn element_count() -> u32 {
    return params.count;
}

fn element(idx: u32) {
    if (idx < HEAD) {
        return;
    }
    let c = (idx - HEAD) / params.plane;
    if (c < params.channels && features[idx] > 0.0) {
        grad[idx] = grad[idx] + bias[c];
    }
}

// Start of the coupled Newton–Schulz iteration for M^½ and M^−½ (docs/MATHS.md, "Style loss: Wasserstein-2"),
// C x C: Y₀ = M / ‖M‖_F, Z₀ = I, where slots[norm_slot] holds ‖M‖_F² (a dot_sum of M with itself).

fn element_count() -> u32 {
    return params.size * params.size;
}

fn element(idx: u32) {
    y[idx] = m[idx] * inverseSqrt(slots[params.norm_slot]);
    z[idx] = select(0.0, 1.0, idx / params.size == idx % params.size);
}

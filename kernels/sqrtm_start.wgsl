// Start of the coupled Newton–Schulz iteration for M^½ and M^−½ (docs/MATHS.md, "Style loss: Wasserstein-2"),
// C x C: Y₀ = M / ‖M‖_F, Z₀ = I, where slots[norm_slot] holds ‖M‖_F² (a dot_sum of M with itself).

@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read> slots: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> z: array<f32>;

fn element_count() -> u32 {
    return params.size * params.size;
}

fn element(idx: u32) {
    y[idx] = m[idx] * inverseSqrt(slots[params.norm_slot]);
    z[idx] = select(0.0, 1.0, idx / params.size == idx % params.size);
}

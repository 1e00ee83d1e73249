// Partial sums of a dot product, one per workgroup: partials[g] = Σ a·b over the workgroup's 4096 elements
// (`abs_a` = 1: Σ |a|, the L1 norm, b unread). L-BFGS's two-loop recursion and line search use it;
// reduce_sum.wgsl finishes the sum into a slot. The loop and the fixed-order tree are shared/partial_sums.wgsl.

fn term_count() -> u32 {
    return params.count;
}

fn term(idx: u32) -> f32 {
    if (params.abs_a == 1u) {
        return abs(a[idx]);
    }
    return a[idx] * b[idx];
}

// Partial sums of squared differences, one per workgroup: partials[g] = sum over the workgroup's 4096 elements
// of (a - b)^2. The content loss (F vs P) and the style loss (G vs A) use it; reduce_sum.wgsl finishes the sum.
// The loop and the fixed-order tree are shared/partial_sums.wgsl.

fn term_count() -> u32 {
    return params.count;
}

fn term(idx: u32) -> f32 {
    let d = a[idx] - b[idx];
    return d * d;
}

// Zeroes the first `count` words of a buffer: the operand ranges of shared/gemm_coop.wgsl, at the start of
// every iteration (max_abs.wgsl only ever raises them).

fn element_count() -> u32 {
    return params.count;
}

fn element(idx: u32) {
    words[idx] = 0u;
}

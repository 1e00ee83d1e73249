// 2x2 max pooling, stride 2, FLOOR mode (an odd last row/column is dropped). CHW, one thread per output
// (shared/pool2x2_forward.wgsl). Ties keep the first element in row-major window order (strict >), the rule
// maxpool2x2_backward.wgsl repeats.

fn pooled(base: u32) -> f32 {
    var best = input[base];
    best = select(best, input[base + 1u], input[base + 1u] > best);
    best = select(best, input[base + params.stride], input[base + params.stride] > best);
    best = select(best, input[base + params.stride + 1u], input[base + params.stride + 1u] > best);
    return best;
}

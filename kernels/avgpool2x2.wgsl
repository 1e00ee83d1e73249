// 2x2 average pooling, stride 2, FLOOR mode (for --pooling avg). CHW, one thread per output
// (shared/pool2x2_forward.wgsl).

fn pooled(base: u32) -> f32 {
    let s = (input[base] + input[base + 1u]) + (input[base + params.stride] + input[base + params.stride + 1u]);
    return 0.25 * s;
}

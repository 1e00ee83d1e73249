// 2x2 max pooling, stride 2, FLOOR mode (an odd last row/column is dropped). CHW, one thread per output.
// Ties keep the first element in row-major window order (strict >), the rule maxpool2x2_backward.wgsl repeats.

@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

fn element_count() -> u32 {
    return params.channels * params.out_height * params.out_width;
}

fn element(idx: u32) {
    let at = output_position(idx);
    let base = window_base(at.x, at.y, at.z);
    var best = input[base];
    best = select(best, input[base + 1u], input[base + 1u] > best);
    best = select(best, input[base + params.stride], input[base + params.stride] > best);
    best = select(best, input[base + params.stride + 1u], input[base + params.stride + 1u] > best);
    output[output_index(at.x, at.y, at.z)] = best;
}

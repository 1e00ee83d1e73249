// 2x2 average pooling, stride 2, FLOOR mode (for --pooling avg). CHW, one thread per output.

@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

fn element_count() -> u32 {
    return params.channels * params.out_height * params.out_width;
}

fn element(idx: u32) {
    let at = output_position(idx);
    let base = window_base(at.x, at.y, at.z);
    let s = (input[base] + input[base + 1u]) + (input[base + params.stride] + input[base + params.stride + 1u]);
    output[output_index(at.x, at.y, at.z)] = 0.25 * s;
}

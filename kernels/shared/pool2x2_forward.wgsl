// The forward pass shared by the 2x2/2 pooling kernels: one invocation per output element, whose window's value
// the kernel file computes with `fn pooled(base: u32) -> f32` (base: the window's top-left input index).

@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

fn element_count() -> u32 {
    return params.channels * params.out_height * params.out_width;
}

fn element(idx: u32) {
    let at = output_position(idx);
    output[output_index(at.x, at.y, at.z)] = pooled(window_base(at.x, at.y, at.z));
}

// Backward of 2x2/2 FLOOR average pooling: each input element inside a window gets 1/4 of its output gradient;
// elements of a dropped odd row/column get 0. One thread per input element. The input is a ReLU output, so the
// ReLU's backward is fused here: the gradient passes only where input > 0.

@group(0) @binding(1) var<storage, read> input: array<f32>; // forward input (the ReLU mask)
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_in: array<f32>;

fn element_count() -> u32 {
    return params.channels * params.height * params.width;
}

fn element(idx: u32) {
    let at = input_position(idx);
    let i = input_index(at.x, at.y, at.z);
    let oy = at.y / 2u;
    let ox = at.z / 2u;
    var g = 0.0;
    if (window_exists(oy, ox) && input[i] > 0.0) {
        g = 0.25 * grad_out[output_index(at.x, oy, ox)];
    }
    grad_in[i] = g;
}

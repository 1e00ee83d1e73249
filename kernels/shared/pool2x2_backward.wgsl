// The backward pass shared by the 2x2/2 pooling kernels: one invocation per INPUT element (a gather: no atomics,
// a fixed result). An element of a dropped odd row/column gets 0; one inside window (oy, ox) of channel c gets
// what the kernel file's `fn window_gradient(here: u32, c: u32, oy: u32, ox: u32) -> f32` says (`here`: its own
// index). The input is a ReLU output, so the ReLU's backward is fused there: nothing passes where input <= 0.

@group(0) @binding(1) var<storage, read> input: array<f32>; // the forward input
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_in: array<f32>;

fn element_count() -> u32 {
    return params.channels * params.height * params.width;
}

fn element(idx: u32) {
    let at = input_position(idx);
    let here = input_index(at.x, at.y, at.z);
    let oy = at.y / 2u;
    let ox = at.z / 2u;
    var g = 0.0;
    if (window_exists(oy, ox)) {
        g = window_gradient(here, at.x, oy, ox);
    }
    grad_in[here] = g;
}

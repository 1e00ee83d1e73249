// Backward of 2x2/2 FLOOR average pooling: each input element inside a window gets 1/4 of its output gradient;
// elements of a dropped odd row/column get 0. One thread per input element. The input is a ReLU output, so the
// ReLU's backward is fused here: the gradient passes only where input > 0.

struct Params {
    channels: u32,
    height: u32,
    width: u32,
    out_height: u32,
    out_width: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>; // forward input (the ReLU mask)
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_in: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = (wg.x + wg.y * nwg.x) * 256u + li;
    let plane = params.height * params.width;
    if (idx >= params.channels * plane) {
        return;
    }
    let c = idx / plane;
    let r = idx % plane;
    let oy = (r / params.width) / 2u;
    let ox = (r % params.width) / 2u;
    var g = 0.0;
    if (oy < params.out_height && ox < params.out_width && input[idx] > 0.0) {
        g = 0.25 * grad_out[c * params.out_height * params.out_width + oy * params.out_width + ox];
    }
    grad_in[idx] = g;
}

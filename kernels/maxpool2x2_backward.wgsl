// Backward of 2x2/2 FLOOR max pooling: each input element receives its window's output gradient if it is the
// window's arg-max (first in row-major order on ties, as in maxpool2x2.wgsl), else 0. One thread per INPUT
// element (a gather, so no atomics and a fixed result); elements of a dropped odd row/column get 0.
// The input is a ReLU output, so the ReLU's backward is fused here: the gradient passes only where input > 0.

struct Params {
    channels: u32,
    height: u32, // input
    width: u32,
    out_height: u32,
    out_width: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;      // forward input
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
    let y = r / params.width;
    let x = r % params.width;
    let oy = y / 2u;
    let ox = x / 2u;
    var g = 0.0;
    if (oy < params.out_height && ox < params.out_width) {
        let base = c * plane + (2u * oy) * params.width + 2u * ox;
        var best_i = base;
        var best = input[base];
        var cand = array<u32, 3>(base + 1u, base + params.width, base + params.width + 1u);
        for (var i = 0u; i < 3u; i++) {
            if (input[cand[i]] > best) {
                best = input[cand[i]];
                best_i = cand[i];
            }
        }
        if (best_i == idx && best > 0.0) {
            g = grad_out[c * params.out_height * params.out_width + oy * params.out_width + ox];
        }
    }
    grad_in[idx] = g;
}

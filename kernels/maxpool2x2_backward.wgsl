// Backward of 2x2/2 FLOOR max pooling: each input element receives its window's output gradient if it is the
// window's arg-max (first in row-major order on ties, as in maxpool2x2.wgsl), else 0. One thread per INPUT
// element (a gather, so no atomics and a fixed result); elements of a dropped odd row/column get 0.
// The input is a ReLU output, so the ReLU's backward is fused here: the gradient passes only where input > 0.

@group(0) @binding(1) var<storage, read> input: array<f32>;      // forward input
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
        let base = window_base(at.x, oy, ox);
        var best_i = base;
        var best = input[base];
        var cand = array<u32, 3>(base + 1u, base + params.stride, base + params.stride + 1u);
        for (var i = 0u; i < 3u; i++) {
            if (input[cand[i]] > best) {
                best = input[cand[i]];
                best_i = cand[i];
            }
        }
        if (best_i == here && best > 0.0) {
            g = grad_out[output_index(at.x, oy, ox)];
        }
    }
    grad_in[here] = g;
}

// Backward of 2x2/2 FLOOR max pooling (shared/pool2x2_backward.wgsl): an input element receives its window's
// output gradient if it is the window's arg-max (first in row-major order on ties, as in maxpool2x2.wgsl) and
// positive (the fused ReLU), else 0.

fn window_gradient(here: u32, c: u32, oy: u32, ox: u32) -> f32 {
    let base = window_base(c, oy, ox);
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
        return grad_out[output_index(c, oy, ox)];
    }
    return 0.0;
}

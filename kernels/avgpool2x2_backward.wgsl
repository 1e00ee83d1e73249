// Backward of 2x2/2 FLOOR average pooling (shared/pool2x2_backward.wgsl): each input element inside a window
// gets 1/4 of its output gradient where it is positive (the fused ReLU), else 0.

fn window_gradient(here: u32, c: u32, oy: u32, ox: u32) -> f32 {
    if (input[here] > 0.0) {
        return 0.25 * grad_out[output_index(c, oy, ox)];
    }
    return 0.0;
}

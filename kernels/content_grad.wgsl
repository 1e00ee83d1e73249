// Gradient of the content loss L_c = w_c * mean((F - P)^2) w.r.t. F:  grad (+)= scale * (F - P),
// scale = 2 * w_c / (C*H*W). With accumulate = 1 it adds to what other taps already wrote. F is a ReLU output
// and the ReLU's backward is fused: nothing passes where F = 0 (the gradient buffer holds dL/d(pre-ReLU)).

fn element_count() -> u32 {
    return params.count;
}

fn element(idx: u32) {
    let f = features[idx];
    let g = select(0.0, params.scale * (f - target_features[idx]), f > 0.0);
    grad[idx] = select(g, grad[idx] + g, params.accumulate != 0u);
}

// Gradient of the content loss L_c = w_c * mean((F - P)^2) w.r.t. F:  grad (+)= scale * (F - P),
// scale = 2 * w_c / (C*H*W). With accumulate = 1 it adds to what other taps already wrote. F is a ReLU output
// and the ReLU's backward is fused: nothing passes where F = 0 (the gradient buffer holds dL/d(pre-ReLU)).

struct Params {
    count: u32,
    accumulate: u32,
    scale: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> features: array<f32>;
@group(0) @binding(2) var<storage, read> target_features: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = (wg.x + wg.y * nwg.x) * 256u + li;
    if (idx >= params.count) {
        return;
    }
    let f = features[idx];
    let g = select(0.0, params.scale * (f - target_features[idx]), f > 0.0);
    grad[idx] = select(g, grad[idx] + g, params.accumulate != 0u);
}

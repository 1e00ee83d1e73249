// Per-channel affine map out[c, p] = in[c, p] * scale[c] + offset[c] on a 3-channel CHW image. Forward it turns
// the optimised x (pixels - Caffe mean) into the input convention of torchvision-style weights; backward (offset
// 0) it scales the gradient back. Not dispatched at all for Caffe-convention weights (the identity).

struct Params {
    plane: u32, // H*W
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    scale: vec4<f32>,
    offset: vec4<f32>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = (wg.x + wg.y * nwg.x) * 256u + li;
    if (idx >= 3u * params.plane) {
        return;
    }
    let c = idx / params.plane;
    output[idx] = input[idx] * params.scale[c] + params.offset[c];
}

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

fn element_count() -> u32 {
    return 3u * params.plane;
}

fn element(idx: u32) {
    let c = idx / params.plane;
    output[idx] = input[idx] * params.scale[c] + params.offset[c];
}

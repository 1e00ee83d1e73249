// Per-channel affine map out[c, p] = in[c, p] * scale[c] + offset[c] on a 3-channel image (framed CHW,
// src/frame.rs; only data pixels are written, the frame stays zero). Forward it turns the optimised x (pixels -
// Caffe mean) into the input convention of torchvision-style weights; backward (offset 0) it scales the gradient
// back. Not dispatched at all for Caffe-convention weights (the identity).

fn element_count() -> u32 {
    return 3u * params.height * params.width;
}

fn element(idx: u32) {
    let pixels = params.height * params.width;
    let c = idx / pixels;
    let r = idx % pixels;
    let at = HEAD + c * params.plane + (r / params.width + 1u) * params.stride + r % params.width;
    output[at] = input[at] * params.scale[c] + params.offset[c];
}

// Channel means of a feature map F (C x N, framed CHW, src/frame.rs): mean[c] = (1/N) · Σ over c's data pixels.
// One workgroup per channel adds the channel's data rows as they lie in the frame (its zero columns add
// nothing), each invocation a strided subset in order, then a fixed tree: reruns are bit-identical. For the
// Wasserstein-2 style loss (docs/MATHS.md).

struct Params {
    channels: u32,
    pixels: u32,    // height * stride: the data rows
    plane: u32,
    stride: u32,
    inv_count: f32, // 1 / (height * width)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const HEAD: u32 = 4u; // src/frame.rs, Frame::HEAD

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> features: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = wg.x + wg.y * nwg.x;
    // Uniform per workgroup, so every invocation of a running workgroup reaches the barriers.
    if (c >= params.channels) {
        return;
    }
    let base = HEAD + c * params.plane + params.stride;
    var s = 0.0;
    for (var k = li; k < params.pixels; k += 256u) {
        s += features[base + k];
    }
    let total = workgroup_sum(li, s);
    if (li == 0u) {
        mean[c] = total * params.inv_count;
    }
}

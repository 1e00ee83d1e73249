// 2x2 average pooling, stride 2, FLOOR mode (for --pooling avg). CHW, one thread per output.

struct Params {
    channels: u32,
    height: u32,
    width: u32,
    out_height: u32,
    out_width: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
    let out_plane = params.out_height * params.out_width;
    if (idx >= params.channels * out_plane) {
        return;
    }
    let c = idx / out_plane;
    let r = idx % out_plane;
    let oy = r / params.out_width;
    let ox = r % params.out_width;
    let base = c * params.height * params.width + (2u * oy) * params.width + 2u * ox;
    let s = (input[base] + input[base + 1u]) + (input[base + params.width] + input[base + params.width + 1u]);
    output[idx] = 0.25 * s;
}

// Bandwidth probe: dst = src, one vec4 (16 bytes) per thread, fully coalesced. Bytes moved = 32 per vec4
// (read + write). Buffers should be far larger than the last-level cache (the host uses 256 MiB where the
// adapter's binding limit allows).

struct Params {
    count: u32, // vec4 elements
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

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
    dst[idx] = src[idx];
}

// Partial sums of squared differences, one per workgroup: partials[g] = sum over the workgroup's 4096 elements
// of (a - b)^2. The content loss (F vs P) and the style loss (G vs A) use it; reduce_sum.wgsl finishes the sum.
// Each thread adds 16 strided elements, then a fixed-shape tree in workgroup memory: deterministic.

struct Params {
    count: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

const ITEMS: u32 = 16u;
@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let group = wg.x + wg.y * nwg.x;
    let base = group * 256u * ITEMS;
    var s = 0.0;
    for (var r = 0u; r < ITEMS; r++) {
        let idx = base + r * 256u + li;
        if (idx < params.count) {
            let d = a[idx] - b[idx];
            s = fma(d, d, s);
        }
    }
    let total = workgroup_sum(li, s);
    if (li == 0u) {
        partials[group] = total;
    }
}

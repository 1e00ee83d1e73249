// Partial sums of a dot product, one per workgroup: partials[g] = Σ a·b over the workgroup's 4096 elements
// (`abs_a` = 1: Σ |a|, the L1 norm, b unread). L-BFGS's two-loop recursion and line search use it;
// reduce_sum.wgsl finishes the sum into a slot. Each thread adds 16 strided elements in order, then a
// fixed-shape tree in workgroup memory: the result does not depend on scheduling, so reruns are bit-identical.

struct Params {
    count: u32,
    abs_a: u32,
    _pad0: u32,
    _pad1: u32,
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
            if (params.abs_a == 1u) {
                s += abs(a[idx]);
            } else {
                s = fma(a[idx], b[idx], s);
            }
        }
    }
    let total = workgroup_sum(li, s);
    if (li == 0u) {
        partials[group] = total;
    }
}

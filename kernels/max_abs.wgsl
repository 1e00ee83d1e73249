// The largest magnitude of a buffer's values, into one entry of `ranges` (as the bits of a non-negative f32,
// whose integer order is their order): the tensor cores' kernels scale each operand by a power of two from it
// (shared/gemm_coop.wgsl). Each workgroup reduces 4096 values in a fixed tree, then one atomicMax: the result
// does not depend on the order (max is exact). The entry must be zero before (zero_u32.wgsl runs first in an
// iteration).

const ITEMS: u32 = 16u;
// Not zeroed by the pipeline: each of the 256 invocations writes its own slot before the first barrier.
var<workgroup> largest: array<f32, 256>;

const GROUP_SIZE: u32 = 256u;

fn workgroup_main(group: u32, li: u32, z: u32) {
    var m = 0.0;
    for (var r = 0u; r < ITEMS; r++) {
        let idx = (group * ITEMS + r) * 256u + li;
        if (idx < params.count) {
            m = max(m, abs(values[idx]));
        }
    }
    largest[li] = m;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            largest[li] = max(largest[li], largest[li + stride]);
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        atomicMax(&ranges[params.slot], bitcast<u32>(largest[0]));
    }
}

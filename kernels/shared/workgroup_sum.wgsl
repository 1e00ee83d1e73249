// Sum of one value per invocation over a 256-invocation workgroup, in a fixed tree order (so reruns are
// bit-identical). Every invocation must call it (it has barriers); the result is valid in invocation 0.

// Not zeroed by the pipeline: each of the 256 invocations writes its own slot before the first barrier.
var<workgroup> sum_scratch: array<f32, 256>;

fn workgroup_sum(li: u32, value: f32) -> f32 {
    sum_scratch[li] = value;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            sum_scratch[li] += sum_scratch[li + stride];
        }
        workgroupBarrier();
    }
    return sum_scratch[0];
}

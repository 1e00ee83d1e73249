// Channel means of a feature map F (C x N, framed CHW, src/frame.rs): mean[c] = (1/N) · Σ over c's data pixels.
// One workgroup per channel adds the channel's data rows as they lie in the frame (its zero columns add
// nothing), each invocation a strided subset in order, then a fixed tree: reruns are bit-identical. For the
// Wasserstein-2 style loss (docs/MATHS.md).

const GROUP_SIZE: u32 = 256u;

fn workgroup_main(c: u32, li: u32, z: u32) {
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

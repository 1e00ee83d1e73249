// Shared body of the two-pass sums (the entry point is shared/grid_entry.wgsl): one partial sum per workgroup, partials[g] = Σ term(idx) over the
// workgroup's 4096 indices (each invocation adds 16 strided terms in order, then a fixed tree in workgroup
// memory: reruns are bit-identical); reduce_sum.wgsl adds the partials. The kernel file defines
//   fn term_count() -> u32          how many terms there are
//   fn term(idx: u32) -> f32        term idx (idx < term_count())
//   var<storage, read_write> partials: array<f32>
// and gets workgroup_sum from shared/workgroup_sum.wgsl.

const TERMS_PER_INVOCATION: u32 = 16u;

const GROUP_SIZE: u32 = 256u;

fn workgroup_main(group: u32, li: u32, z: u32) {
    let base = group * 256u * TERMS_PER_INVOCATION;
    var s = 0.0;
    for (var r = 0u; r < TERMS_PER_INVOCATION; r++) {
        let idx = base + r * 256u + li;
        if (idx < term_count()) {
            s += term(idx);
        }
    }
    let total = workgroup_sum(li, s);
    if (li == 0u) {
        partials[group] = total;
    }
}

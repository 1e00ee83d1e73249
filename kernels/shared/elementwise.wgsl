// Shared body of the elementwise kernels: one invocation per element, 256 per workgroup (the entry point is
// shared/grid_entry.wgsl; the host's grid covers every element). The kernel file defines
//   fn element_count() -> u32      how many elements there are
//   fn element(idx: u32)           the work of element idx (idx < element_count())

const GROUP_SIZE: u32 = 256u;

fn workgroup_main(group: u32, li: u32, z: u32) {
    let idx = group * GROUP_SIZE + li;
    if (idx < element_count()) {
        element(idx);
    }
}

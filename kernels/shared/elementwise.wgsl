// Shared entry point of the elementwise kernels: one invocation per element, 256 per workgroup, the workgroups
// spread over x and y (≤ 65,535 per dimension; the host's grid covers every element). The kernel file defines
//   fn element_count() -> u32      how many elements there are
//   fn element(idx: u32)           the work of element idx (idx < element_count())

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = (wg.x + wg.y * nwg.x) * 256u + li;
    if (idx < element_count()) {
        element(idx);
    }
}

// Shared entry point of the kernels whose workgroups are numbered along one line but laid out over x and y (a
// dispatch has at most 65,535 workgroups per dimension; src/kernels/grid.rs spreads them). The kernel file
// defines
//   const GROUP_SIZE: u32                             invocations per workgroup
//   fn workgroup_main(group: u32, li: u32, z: u32)    the work of invocation li of workgroup `group`; z is the
//                                                     grid's third coordinate (a batch index where a kernel has one)

@compute @workgroup_size(GROUP_SIZE, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    workgroup_main(wg.x + wg.y * nwg.x, li, wg.z);
}

//! Thin host wrappers, one per WGSL kernel in `kernels/`. Each builds a [`Dispatch`]: the cached pipeline, a
//! uniform with the shapes, a bind group over the caller's buffers and the workgroup grid. Dispatches are built
//! once per plan and recorded every iteration.
//!
//! Binding convention in every kernel: binding 0 is the uniform `params`, bindings 1.. are the storage buffers in
//! the order the wrapper's arguments list them.

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::{GpuContext, PipelineKey};

pub mod adam;
pub mod affine;
pub mod conv;
pub mod gram;
pub mod loss;
pub mod peak;
pub mod pool;

/// WGSL source of each kernel, compiled in so the binary needs no files at run time.
const SOURCES: &[(&str, &str)] = &[
    ("adam", include_str!("../../kernels/adam.wgsl")),
    ("avgpool2x2", include_str!("../../kernels/avgpool2x2.wgsl")),
    ("avgpool2x2_backward", include_str!("../../kernels/avgpool2x2_backward.wgsl")),
    ("channel_affine", include_str!("../../kernels/channel_affine.wgsl")),
    ("content_grad", include_str!("../../kernels/content_grad.wgsl")),
    ("conv3x3", include_str!("../../kernels/conv3x3.wgsl")),
    ("conv3x3_backward_data", include_str!("../../kernels/conv3x3_backward_data.wgsl")),
    ("conv3x3_backward_data_narrow", include_str!("../../kernels/conv3x3_backward_data_narrow.wgsl")),
    ("gram", include_str!("../../kernels/gram.wgsl")),
    ("gram_reduce", include_str!("../../kernels/gram_reduce.wgsl")),
    ("maxpool2x2", include_str!("../../kernels/maxpool2x2.wgsl")),
    ("maxpool2x2_backward", include_str!("../../kernels/maxpool2x2_backward.wgsl")),
    ("peak_copy", include_str!("../../kernels/peak_copy.wgsl")),
    ("peak_fma", include_str!("../../kernels/peak_fma.wgsl")),
    ("reduce_sum", include_str!("../../kernels/reduce_sum.wgsl")),
    ("sq_diff_sum", include_str!("../../kernels/sq_diff_sum.wgsl")),
    ("style_grad", include_str!("../../kernels/style_grad.wgsl")),
    ("tv_loss_grad", include_str!("../../kernels/tv_loss_grad.wgsl")),
];

/// The WGSL source of kernel `name` (the file stem in `kernels/`).
pub fn source(name: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Names of all kernels.
pub fn names() -> impl Iterator<Item = &'static str> {
    SOURCES.iter().map(|(n, _)| *n)
}

/// One recorded-ready kernel launch.
pub struct Dispatch {
    pub kernel: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
    /// The uniform lives as long as the dispatch; kept so Adam can rewrite its step-dependent constants.
    pub params: wgpu::Buffer,
}

impl Dispatch {
    /// Builds a dispatch of `kernel` with `params` at binding 0 and `buffers` at bindings 1...
    pub fn new<P: bytemuck::Pod>(
        ctx: &GpuContext,
        kernel: &'static str,
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<Self> {
        let pipeline = ctx.pipeline(&PipelineKey { kernel, constants: Vec::new() })?;
        let params_buf = ctx.uniform(kernel, params);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params_buf.as_entire_binding() }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
        }
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(crate::Error::Validation(format!("binding {kernel}: {e}")));
        }
        Ok(Self { kernel, pipeline, bind_group, groups, params: params_buf })
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.groups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Max workgroups per grid dimension on this device (never above WebGPU's 65,535).
pub(crate) fn max_dim(ctx: &GpuContext) -> u32 {
    ctx.limits.max_compute_workgroups_per_dimension.min(crate::dispatch::MAX_GROUPS_PER_DIM)
}

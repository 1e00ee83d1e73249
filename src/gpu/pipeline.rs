//! Compute pipelines from WGSL source, and the launch record every kernel wrapper builds.
//!
//! The context knows nothing of kernels: a wrapper hands it a [`Shader`] (a name that identifies the source,
//! the WGSL text itself, and whether the module may skip the runtime checks) and gets back a cached pipeline.
//! A [`Dispatch`] is one recorded-ready launch: pipeline, bind group, grid, and the uniform it binds.

use std::borrow::Cow;
use std::sync::Arc;

use crate::error::{Error, Result};

/// WGSL source of one compute pipeline (entry point `main`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shader {
    /// Unique name of this exact source, e.g. `conv3x3/tiled64`: the pipeline cache's key and the name
    /// benchmarks and errors report. Two different sources must never share a name.
    pub name: Cow<'static, str>,
    pub wgsl: Cow<'static, str>,
    /// Compile without naga's bounds checks and loop counters (`ShaderRuntimeChecks::unchecked`). Only for
    /// kernels whose every index is proven in range (by tests of their index arithmetic), and only honoured on
    /// adapters whose driver enforces robust buffer access itself (see [`crate::gpu::GpuContext::trusts_modules`]).
    pub trusted: bool,
}

impl Shader {
    pub fn new(name: impl Into<Cow<'static, str>>, wgsl: impl Into<Cow<'static, str>>) -> Self {
        Self { name: name.into(), wgsl: wgsl.into(), trusted: false }
    }

    pub fn trusted(mut self, trusted: bool) -> Self {
        self.trusted = trusted;
        self
    }
}

/// Key of a cached pipeline: the shader's name plus its `override` constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    pub name: Cow<'static, str>,
    pub trusted: bool,
    pub constants: Vec<(&'static str, u32)>,
}

/// One recorded-ready kernel launch.
pub struct Dispatch {
    /// The shader's name (benchmarks group their per-kernel profile by it).
    pub kernel: Cow<'static, str>,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
    /// The uniform lives as long as the dispatch; kept so optimisers can rewrite step-dependent constants.
    pub params: wgpu::Buffer,
}

impl Dispatch {
    /// Builds a launch of `shader` with `params` at binding 0 and `buffers` at bindings 1.. (the binding
    /// convention of every kernel), over `groups` workgroups.
    pub fn new<P: bytemuck::Pod>(
        ctx: &super::GpuContext,
        shader: &Shader,
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<Self> {
        Self::with_constants(ctx, shader, &[], params, buffers, groups)
    }

    /// As [`Dispatch::new`], with WGSL `override` constants set at pipeline creation.
    pub fn with_constants<P: bytemuck::Pod>(
        ctx: &super::GpuContext,
        shader: &Shader,
        constants: &[(&'static str, u32)],
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<Self> {
        let pipeline = ctx.pipeline(shader, constants)?;
        let params_buf = ctx.uniform(&shader.name, params);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params_buf.as_entire_binding() }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
        }
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&shader.name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Validation(format!("binding {}: {e}", shader.name)));
        }
        Ok(Self { kernel: shader.name.clone(), pipeline, bind_group, groups, params: params_buf })
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.groups;
        pass.dispatch_workgroups(x, y, z);
    }
}

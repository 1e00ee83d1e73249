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

/// One recorded-ready kernel launch, or a GEMM's launches in pieces along its pixel tiles ([`Pieces`]).
pub struct Dispatch {
    /// The shader's name (benchmarks group their per-kernel profile by it).
    pub kernel: Cow<'static, str>,
    pipeline: Arc<wgpu::ComputePipeline>,
    /// Of a dispatch in pieces: piece 0's, and its grid the first launch of the unlimited recording.
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
    /// The uniform lives as long as the dispatch; kept so optimisers can rewrite step-dependent constants (of a
    /// dispatch in pieces, piece 0's only: such dispatches are the convs, whose constants never change).
    pub params: wgpu::Buffer,
    pieces: Option<Pieced>,
}

/// How a GEMM dispatch is cut along its pixel tiles so that no single launch runs long on a slow adapter (a
/// display's watchdog stops a GPU that is busy too long without a break between launches): `count` pieces of
/// `tiles_each` tiles (the last may hold fewer), `tiles` in all, each with its own uniform whose first tile is
/// `index × tiles_each`. Consecutive pieces are launched together as far as the work limit of the recording
/// allows ([`Pieces::launches`]): the kernel's tile is `first tile + workgroup x`, bounded by `tiles`, so a
/// launch from piece i of k pieces' tiles covers exactly pieces i..i+k.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pieces {
    pub tiles: u32,
    pub tiles_each: u32,
    pub count: usize,
    /// The work of one whole piece (GFLOP).
    pub gflop_each: f64,
    /// The grid's z extent (row tiles), the same for every launch.
    pub rows: u32,
}

impl Pieces {
    /// The launches that record the pieces when one launch may hold at most `gflop_limit` GFLOP (`None`: no
    /// limit) and `max_per_dim` workgroups along x: (first piece, tiles) each, in order, every tile once. A
    /// launch holds at least one piece whatever the limit (the pieces are built small enough for the slowest
    /// adapter we plan for).
    pub fn launches(&self, gflop_limit: Option<f64>, max_per_dim: u32) -> Vec<(usize, u32)> {
        let by_work = gflop_limit.map_or(usize::MAX, |limit| (limit / self.gflop_each).floor() as usize);
        let by_grid = (max_per_dim / self.tiles_each.max(1)) as usize;
        let per_launch = by_work.min(by_grid).max(1);
        (0..self.count)
            .step_by(per_launch)
            .map(|first| {
                let begin = first as u32 * self.tiles_each;
                (first, (per_launch as u32 * self.tiles_each).min(self.tiles - begin))
            })
            .collect()
    }
}

struct Pieced {
    plan: Pieces,
    /// The bind group of piece i (piece 0's is the dispatch's own), and the uniforms they bind.
    bind_groups: Vec<wgpu::BindGroup>,
    _uniforms: Vec<wgpu::Buffer>,
    max_per_dim: u32,
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
        let (bind_group, params) = bind(ctx, shader, &pipeline, params, buffers)?;
        Ok(Self { kernel: shader.name.clone(), pipeline, bind_group, groups, params, pieces: None })
    }

    /// A GEMM's launch in `pieces` along its pixel tiles, `params_from(first tile)` the uniform of each piece
    /// (see [`Pieces`]).
    pub fn in_pieces<P: bytemuck::Pod>(
        ctx: &super::GpuContext,
        shader: &Shader,
        params_from: impl Fn(u32) -> P,
        buffers: &[&wgpu::Buffer],
        pieces: Pieces,
        max_per_dim: u32,
    ) -> Result<Self> {
        assert!(pieces.tiles_each <= max_per_dim && pieces.count >= 1, "{pieces:?}");
        let pipeline = ctx.pipeline(shader, &[])?;
        let mut bind_groups = Vec::with_capacity(pieces.count);
        let mut uniforms = Vec::with_capacity(pieces.count);
        for i in 0..pieces.count {
            let (group, uniform) = bind(ctx, shader, &pipeline, &params_from(i as u32 * pieces.tiles_each), buffers)?;
            bind_groups.push(group);
            uniforms.push(uniform);
        }
        let (bind_group, params) = (bind_groups[0].clone(), uniforms[0].clone());
        Ok(Self {
            kernel: shader.name.clone(),
            pipeline,
            bind_group,
            groups: [pieces.tiles.min(max_per_dim), 1, pieces.rows],
            params,
            pieces: Some(Pieced { plan: pieces, bind_groups, _uniforms: uniforms, max_per_dim }),
        })
    }

    /// The pieces this dispatch is launched in, if it is a GEMM built in pieces.
    pub fn pieces(&self) -> Option<Pieces> {
        self.pieces.as_ref().map(|p| p.plan)
    }

    /// The launches [`Dispatch::record_within`] makes under `gflop_limit`: `None` the whole dispatch (one not in
    /// pieces), else (first piece, tiles) ([`Pieces::launches`]).
    pub fn launches(&self, gflop_limit: Option<f64>) -> Vec<Option<(usize, u32)>> {
        match &self.pieces {
            None => vec![None],
            Some(p) => p.plan.launches(gflop_limit, p.max_per_dim).into_iter().map(Some).collect(),
        }
    }

    /// How many launches [`Dispatch::record_within`] makes under `gflop_limit`.
    pub fn launch_count(&self, gflop_limit: Option<f64>) -> usize {
        self.pieces.as_ref().map_or(1, |p| p.plan.launches(gflop_limit, p.max_per_dim).len())
    }

    /// Records one of [`Dispatch::launches`].
    pub fn record_launch(&self, pass: &mut wgpu::ComputePass<'_>, launch: Option<(usize, u32)>) {
        pass.set_pipeline(&self.pipeline);
        match (launch, &self.pieces) {
            (Some((first, tiles)), Some(p)) => {
                pass.set_bind_group(0, &p.bind_groups[first], &[]);
                pass.dispatch_workgroups(tiles, 1, p.plan.rows);
            }
            _ => {
                pass.set_bind_group(0, &self.bind_group, &[]);
                let [x, y, z] = self.groups;
                pass.dispatch_workgroups(x, y, z);
            }
        }
    }

    /// Records the launch (every piece, as few launches as [`Pieces::launches`] allows under `gflop_limit`).
    pub fn record_within(&self, pass: &mut wgpu::ComputePass<'_>, gflop_limit: Option<f64>) {
        match &self.pieces {
            None => self.record_launch(pass, None), // every dispatch, every iteration: nothing allocated
            Some(p) => {
                for launch in p.plan.launches(gflop_limit, p.max_per_dim) {
                    self.record_launch(pass, Some(launch));
                }
            }
        }
    }

    /// Records the launch with no limit on the work of one launch.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.record_within(pass, None);
    }
}

/// A uniform holding `params` and the bind group of `pipeline` with it at binding 0 and `buffers` at 1...
fn bind<P: bytemuck::Pod>(
    ctx: &super::GpuContext,
    shader: &Shader,
    pipeline: &wgpu::ComputePipeline,
    params: &P,
    buffers: &[&wgpu::Buffer],
) -> Result<(wgpu::BindGroup, wgpu::Buffer)> {
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
    Ok((bind_group, params_buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(p: &Pieces, launches: &[(usize, u32)]) -> Vec<u32> {
        launches.iter().flat_map(|&(first, tiles)| (0..tiles).map(move |t| first as u32 * p.tiles_each + t)).collect()
    }

    #[test]
    fn launches_cover_every_tile_once_in_order_within_the_limits() {
        let p = Pieces { tiles: 1000, tiles_each: 96, count: 11, gflop_each: 4.0, rows: 2 };
        for (limit, max_dim, per_launch) in [
            (None, 65_535, 11),
            (Some(100.0), 65_535, 11),
            (Some(9.0), 65_535, 2),
            (Some(1.0), 65_535, 1),
            (None, 200, 2),
        ] {
            let launches = p.launches(limit, max_dim);
            assert_eq!(covered(&p, &launches), (0..1000).collect::<Vec<_>>(), "{limit:?} {max_dim}");
            assert_eq!(launches.len(), 11usize.div_ceil(per_launch), "{limit:?} {max_dim}");
            for &(_, tiles) in &launches {
                assert!(tiles <= max_dim && tiles as usize <= per_launch * 96, "{limit:?}: {tiles}");
            }
        }
        // The last piece is short: 1000 = 10 × 96 + 40.
        assert_eq!(p.launches(Some(4.0), 65_535).last(), Some(&(10, 40)));
    }
}

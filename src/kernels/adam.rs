//! Host wrapper of `adam.wgsl`: the fused Adam update of x, m and v. The step-dependent constants live in the
//! dispatch's uniform and are rewritten before each submit with [`set_step`].

use super::shared::ELEMENTWISE;
use super::uniform::uniform;
use super::{kernel, Kernel};

use super::grid::elementwise_grid;
use super::uniform::u32_of;
use super::{max_dim, shader, Dispatch};
use crate::error::Result;
use crate::gpu::GpuContext;
use wgpu::Buffer;

pub const BETA1: f64 = 0.9;
pub const BETA2: f64 = 0.999;
pub const EPS: f64 = 1e-8;

uniform! {
    struct AdamParams {
        count: u32,
        step_size: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        bc2_sqrt: f32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[kernel!("adam", &[ELEMENTWISE], AdamParams, "mut x; mut m; mut v; grad")];

fn params(count: usize, lr: f64, t: u64) -> AdamParams {
    let t = t.max(1) as i32;
    AdamParams {
        count: u32_of(count),
        step_size: (lr / (1.0 - BETA1.powi(t))) as f32,
        beta1: BETA1 as f32,
        beta2: BETA2 as f32,
        eps: EPS as f32,
        bc2_sqrt: (1.0 - BETA2.powi(t)).sqrt() as f32,
        ..Default::default()
    }
}

/// The Adam dispatch over `count` elements, set for step t = 1.
pub fn adam(
    ctx: &GpuContext,
    count: usize,
    lr: f64,
    x: &Buffer,
    m: &Buffer,
    v: &Buffer,
    grad: &Buffer,
) -> Result<Dispatch> {
    Dispatch::new(ctx, &shader("adam")?, &params(count, lr, 1), &[x, m, v, grad], elementwise_grid(count, max_dim(ctx)))
}

/// Rewrites the constants of `dispatch` (built by [`adam`]) for step `t` (1-based). Queue writes land before
/// the next submit, so this is ordered with the iteration that follows.
pub fn set_step(ctx: &GpuContext, dispatch: &Dispatch, count: usize, lr: f64, t: u64) {
    ctx.queue.write_buffer(&dispatch.params, 0, bytemuck::bytes_of(&params(count, lr, t)));
}

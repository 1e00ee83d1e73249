//! Host wrappers of the loss kernels: `sq_diff_sum` + `reduce_sum` (loss scalars), `content_grad`,
//! `style_grad`, `tv_loss_grad`.

use bytemuck::{Pod, Zeroable};

use super::grid::{elementwise_grid, gemm_grid, grid_2d, ELEMENTWISE_GROUP};
use super::{max_dim, shader, Dispatch};
use crate::error::Result;
use crate::gpu::GpuContext;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CountParams {
    count: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ReduceParams {
    count: u32,
    slot: u32,
    scale: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ContentParams {
    count: u32,
    accumulate: u32,
    scale: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct StyleParams {
    channels: u32,
    pixels: u32,
    pixel_tiles: u32,
    accumulate: u32,
    scale: f32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct TvParams {
    height: u32,
    width: u32,
    accumulate: u32,
    weight: f32,
}

/// Elements one `sq_diff_sum` workgroup reduces (256 threads x 16).
pub const SQ_DIFF_GROUP_ELEMS: usize = 256 * 16;

/// Partials [`sq_diff_sum`] writes for `count` elements (one per workgroup).
pub fn sq_diff_partials(count: usize) -> usize {
    count.div_ceil(SQ_DIFF_GROUP_ELEMS).max(1)
}

/// `partials[g] = Σ (a − b)²` over group g's elements.
pub fn sq_diff_sum(
    ctx: &GpuContext,
    count: usize,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    partials: &wgpu::Buffer,
) -> Result<Dispatch> {
    let (x, y) = grid_2d(sq_diff_partials(count), max_dim(ctx));
    Dispatch::new(
        ctx,
        &shader("sq_diff_sum"),
        &CountParams { count: count as u32, _pad: [0; 3] },
        &[a, b, partials],
        [x, y, 1],
    )
}

/// `losses[slot] = scale * Σ partials[0..count]`.
pub fn reduce_sum(
    ctx: &GpuContext,
    count: usize,
    slot: usize,
    scale: f64,
    partials: &wgpu::Buffer,
    losses: &wgpu::Buffer,
) -> Result<Dispatch> {
    let p = ReduceParams { count: count as u32, slot: slot as u32, scale: scale as f32, _pad: 0 };
    Dispatch::new(ctx, &shader("reduce_sum"), &p, &[partials, losses], [1, 1, 1])
}

/// `grad (+)= scale * (features − target)`.
pub fn content_grad(
    ctx: &GpuContext,
    count: usize,
    scale: f64,
    accumulate: bool,
    features: &wgpu::Buffer,
    target: &wgpu::Buffer,
    grad: &wgpu::Buffer,
) -> Result<Dispatch> {
    let p = ContentParams { count: count as u32, accumulate: accumulate as u32, scale: scale as f32, _pad: 0 };
    Dispatch::new(ctx, &shader("content_grad"), &p, &[features, target, grad], elementwise_grid(count, max_dim(ctx)))
}

/// `grad (+)= scale * (gram − target) · features` (C x C times C x pixels).
#[allow(clippy::too_many_arguments)]
pub fn style_grad(
    ctx: &GpuContext,
    channels: usize,
    pixels: usize,
    scale: f64,
    accumulate: bool,
    gram: &wgpu::Buffer,
    target: &wgpu::Buffer,
    features: &wgpu::Buffer,
    grad: &wgpu::Buffer,
) -> Result<Dispatch> {
    let (groups, pixel_tiles) = gemm_grid(channels, pixels, max_dim(ctx));
    let p = StyleParams {
        channels: channels as u32,
        pixels: pixels as u32,
        pixel_tiles,
        accumulate: accumulate as u32,
        scale: scale as f32,
        _pad: [0; 3],
    };
    Dispatch::new(ctx, &shader("style_grad"), &p, &[gram, target, features, grad], groups)
}

/// Partials `tv_loss_grad` writes for a `height` x `width` image.
pub fn tv_partials(height: usize, width: usize) -> usize {
    (3 * height * width).div_ceil(ELEMENTWISE_GROUP)
}

/// TV loss partials and `grad (+)= dL_tv/dx` for the 3-channel image `x`.
#[allow(clippy::too_many_arguments)]
pub fn tv_loss_grad(
    ctx: &GpuContext,
    height: usize,
    width: usize,
    weight: f64,
    accumulate: bool,
    x: &wgpu::Buffer,
    grad: &wgpu::Buffer,
    partials: &wgpu::Buffer,
) -> Result<Dispatch> {
    let p =
        TvParams { height: height as u32, width: width as u32, accumulate: accumulate as u32, weight: weight as f32 };
    Dispatch::new(
        ctx,
        &shader("tv_loss_grad"),
        &p,
        &[x, grad, partials],
        elementwise_grid(3 * height * width, max_dim(ctx)),
    )
}

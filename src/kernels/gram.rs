//! Host wrappers of `gram.wgsl` (split-K partial Gram) and `gram_reduce.wgsl` (fixed-order sum and scale).

use bytemuck::{Pod, Zeroable};

use super::{max_dim, Dispatch};
use crate::dispatch::{elementwise_grid, gram_splits, GEMM_TILE};
use crate::error::Result;
use crate::gpu::GpuContext;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GramParams {
    channels: u32,
    pixels: u32,
    chunk: u32,
    splits: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ReduceParams {
    channels: u32,
    splits: u32,
    scale: f32,
    _pad: u32,
}

/// Floats of scratch the partial Gram of a C x N feature map needs.
pub fn partial_len(channels: usize, pixels: usize) -> usize {
    gram_splits(channels, pixels).0 * channels * channels
}

/// The two dispatches computing `gram = F Fᵀ / (C * pixels)` for `features` (C x pixels), using `partial`
/// (at least [`partial_len`] floats) as scratch.
pub fn gram(
    ctx: &GpuContext,
    channels: usize,
    pixels: usize,
    features: &wgpu::Buffer,
    partial: &wgpu::Buffer,
    gram: &wgpu::Buffer,
) -> Result<[Dispatch; 2]> {
    let (splits, chunk) = gram_splits(channels, pixels);
    let t = channels.div_ceil(GEMM_TILE) as u32;
    let p = GramParams { channels: channels as u32, pixels: pixels as u32, chunk: chunk as u32, splits: splits as u32 };
    let partial_d = Dispatch::new(ctx, "gram", &p, &[features, partial], [t, t, splits as u32])?;
    let r = ReduceParams {
        channels: channels as u32,
        splits: splits as u32,
        scale: (1.0 / (channels as f64 * pixels as f64)) as f32,
        _pad: 0,
    };
    let reduce_d =
        Dispatch::new(ctx, "gram_reduce", &r, &[partial, gram], elementwise_grid(channels * channels, max_dim(ctx)))?;
    Ok([partial_d, reduce_d])
}

//! Host wrappers of `gram.wgsl` (split-K partial Gram) and `gram_reduce.wgsl` (fixed-order sum and scale).

use bytemuck::{Pod, Zeroable};

use super::grid::{elementwise_grid, GEMM_TILE, MAX_GROUPS_PER_DIM};
use super::{max_dim, shader, Dispatch};
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

/// How `gram.wgsl` splits the pixel dimension: (splits, pixels per split).
///
/// Enough splits to give the GPU ~1024 workgroups (counting only the upper-triangle tiles that run), but each
/// split keeps ≥ 256 pixels so the fixed per-group cost stays small, and the partial buffer
/// (splits x C x C floats) stays ≤ 64 MiB. The chunk is a multiple of the kernel's K step (16).
pub fn gram_splits(channels: usize, pixels: usize) -> (usize, usize) {
    let t = channels.div_ceil(GEMM_TILE);
    let tiles = t * (t + 1) / 2;
    let wanted = 1024usize.div_ceil(tiles);
    let by_work = pixels.div_ceil(256).max(1);
    let by_memory = ((64usize << 20) / (4 * channels * channels).max(1)).max(1);
    let splits = wanted.min(by_work).min(by_memory).clamp(1, MAX_GROUPS_PER_DIM as usize);
    let chunk = pixels.div_ceil(splits).next_multiple_of(16).max(16);
    // Recompute so no split is empty.
    (pixels.div_ceil(chunk).max(1), chunk)
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
    let partial_d = Dispatch::new(ctx, &shader("gram"), &p, &[features, partial], [t, t, splits as u32])?;
    let r = ReduceParams {
        channels: channels as u32,
        splits: splits as u32,
        scale: (1.0 / (channels as f64 * pixels as f64)) as f32,
        _pad: 0,
    };
    let reduce_d = Dispatch::new(
        ctx,
        &shader("gram_reduce"),
        &r,
        &[partial, gram],
        elementwise_grid(channels * channels, max_dim(ctx)),
    )?;
    Ok([partial_d, reduce_d])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_splits_cover_the_pixels_without_empty_splits() {
        for &(c, n) in &[(64usize, 512 * 512), (512, 32 * 32), (512, 1), (3, 7 * 13), (128, 4096 * 4096), (64, 17)] {
            let (s, chunk) = gram_splits(c, n);
            assert!(s >= 1 && chunk % 16 == 0, "{c} {n}");
            assert!(s * chunk >= n, "{c} {n}: {s} x {chunk}");
            assert!((s - 1) * chunk < n.max(1), "{c} {n}: empty split");
            assert!(s * c * c * 4 <= (64 << 20) || s == 1);
        }
        // Small layers get many splits, big ones few.
        assert!(gram_splits(64, 512 * 512).0 >= 512);
        assert!(gram_splits(512, 32 * 32).0 <= 4);
    }
}

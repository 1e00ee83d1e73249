//! Dispatch geometry and tiling choices: pure functions of shapes and adapter limits, unit-tested without a GPU.
//!
//! Every kernel linearises its workgroup id as `wg.x + wg.y * num_workgroups.x`, so any number of groups can be
//! spread over two dimensions while each stays ≤ `max_compute_workgroups_per_dimension` (65,535): conv1 of a
//! 2048x2048 image has 65,536 pixel tiles.

/// Threads per workgroup of the elementwise kernels.
pub const ELEMENTWISE_GROUP: usize = 256;
/// Output tile (rows and columns) of the GEMM-shaped kernels (conv, Gram, style gradient).
pub const GEMM_TILE: usize = 64;
/// Elements one `sq_diff_sum` workgroup reduces (256 threads x 16).
pub const SQ_DIFF_GROUP_ELEMS: usize = 256 * 16;
/// The per-dimension limit WebGPU guarantees; adapters may allow more but we never rely on it.
pub const MAX_GROUPS_PER_DIM: u32 = 65_535;

/// Spreads `groups` workgroups over (x, y) with x, y ≤ `max_per_dim`. Kernels skip ids ≥ `groups`.
pub fn grid_2d(groups: usize, max_per_dim: u32) -> (u32, u32) {
    let groups = groups.max(1) as u64;
    let max = u64::from(max_per_dim.max(1));
    let x = groups.min(max);
    let y = groups.div_ceil(x);
    assert!(y <= max, "{groups} workgroups do not fit a {max}x{max} grid");
    (x as u32, y as u32)
}

/// Grid of an elementwise kernel over `count` elements (256 per group).
pub fn elementwise_grid(count: usize, max_per_dim: u32) -> [u32; 3] {
    let (x, y) = grid_2d(count.div_ceil(ELEMENTWISE_GROUP), max_per_dim);
    [x, y, 1]
}

/// Grid of a GEMM-shaped kernel with `rows` (z: row tiles) x `pixels` (x, y: pixel tiles). Returns the grid and
/// the number of pixel tiles the kernel must bound-check against.
pub fn gemm_grid(rows: usize, pixels: usize, max_per_dim: u32) -> ([u32; 3], u32) {
    let pixel_tiles = pixels.div_ceil(GEMM_TILE);
    let (x, y) = grid_2d(pixel_tiles, max_per_dim);
    let z = rows.div_ceil(GEMM_TILE) as u32;
    assert!(z <= max_per_dim);
    ([x, y, z], pixel_tiles as u32)
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

/// Which kernel computes a conv's backward-data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvBackwardVariant {
    /// `conv3x3_backward_data.wgsl`: 64x64 register-tiled implicit GEMM.
    Tiled,
    /// `conv3x3_backward_data_narrow.wgsl`: one thread per pixel, all (≤ 4) result channels in a vec4.
    Narrow,
}

/// Most result channels the narrow backward-data kernel handles (one vec4).
pub const NARROW_MAX_CHANNELS: usize = 4;

/// The backward-data kernel for a result of `channels` channels: the tiled GEMM pads rows to 64, so for conv1_1's
/// 3-channel image gradient it would do 21x the useful work; the narrow kernel does none of that.
pub fn conv_backward_variant(channels: usize) -> ConvBackwardVariant {
    if channels <= NARROW_MAX_CHANNELS {
        ConvBackwardVariant::Narrow
    } else {
        ConvBackwardVariant::Tiled
    }
}

/// Number of `sq_diff_sum` partials for `count` elements.
pub fn sq_diff_groups(count: usize) -> usize {
    count.div_ceil(SQ_DIFF_GROUP_ELEMS).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_2d_respects_the_limit_and_covers_all_groups() {
        for &(n, max) in &[(1usize, 65535u32), (65535, 65535), (65536, 65535), (1 << 26, 65535), (7, 3), (0, 8)] {
            let (x, y) = grid_2d(n, max);
            assert!(x <= max && y <= max, "{n}: {x}x{y}");
            assert!((x as usize) * (y as usize) >= n.max(1), "{n}: {x}x{y}");
            // Not wasteful: at most one partial row.
            assert!(((x as usize) * (y as usize)) < n.max(1) + x as usize);
        }
    }

    #[test]
    fn conv1_of_2048_squared_fits() {
        // 2048*2048 pixels / 64 = 65,536 pixel tiles: one more than a dimension allows.
        let (g, tiles) = gemm_grid(64, 2048 * 2048, MAX_GROUPS_PER_DIM);
        assert_eq!(tiles, 65536);
        assert!(g[0] <= 65535 && g[1] == 2 && g[2] == 1);
        let g = elementwise_grid(64 * 2048 * 2048, MAX_GROUPS_PER_DIM);
        assert!(g[0] <= 65535 && g[1] <= 65535);
        assert!(g[0] as usize * g[1] as usize * 256 >= 64 * 2048 * 2048);
    }

    #[test]
    fn narrow_backward_only_for_at_most_four_channels() {
        assert_eq!(conv_backward_variant(3), ConvBackwardVariant::Narrow);
        assert_eq!(conv_backward_variant(1), ConvBackwardVariant::Narrow);
        assert_eq!(conv_backward_variant(4), ConvBackwardVariant::Narrow);
        assert_eq!(conv_backward_variant(5), ConvBackwardVariant::Tiled);
        assert_eq!(conv_backward_variant(64), ConvBackwardVariant::Tiled);
    }

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

//! Workgroup grids: pure functions of element counts and the per-dimension limit, unit-tested without a GPU.
//!
//! Every kernel linearises its workgroup id as `wg.x + wg.y * num_workgroups.x`, so any number of groups can be
//! spread over two dimensions while each stays ≤ `max_compute_workgroups_per_dimension` (65,535): conv1 of a
//! 2048x2048 image has 65,536 pixel tiles.

use super::uniform::u32_of;

/// Threads per workgroup of the elementwise kernels.
pub const ELEMENTWISE_GROUP: usize = 256;
/// Output tile (rows and columns) of the kernels on `shared/gemm_tiled.wgsl` (conv, Gram, style gradient).
pub const GEMM_TILE: usize = 64;
/// The per-dimension limit WebGPU guarantees; adapters may allow more but we never rely on it.
pub const MAX_GROUPS_PER_DIM: u32 = 65_535;

/// Spreads `groups` workgroups over (x, y) with x, y ≤ `max_per_dim`. Kernels skip ids ≥ `groups`.
pub fn grid_2d(groups: usize, max_per_dim: u32) -> (u32, u32) {
    let groups = groups.max(1) as u64;
    let max = u64::from(max_per_dim.max(1));
    let x = groups.min(max);
    let y = groups.div_ceil(x);
    assert!(y <= max, "{groups} workgroups do not fit a {max}x{max} grid");
    (x as u32, y as u32) // both ≤ max_per_dim, a u32
}

/// Grid of an elementwise kernel over `count` elements (256 per group).
pub fn elementwise_grid(count: usize, max_per_dim: u32) -> [u32; 3] {
    let (x, y) = grid_2d(count.div_ceil(ELEMENTWISE_GROUP), max_per_dim);
    [x, y, 1]
}

/// Grid of a GEMM-shaped kernel with `rows` (z: row tiles) x `pixels` (x, y: pixel tiles) on the tiled core.
/// Returns the grid and the number of pixel tiles the kernel must bound-check against.
pub fn gemm_grid(rows: usize, pixels: usize, max_per_dim: u32) -> ([u32; 3], u32) {
    gemm_grid_with(GEMM_TILE, rows, pixels, max_per_dim)
}

/// [`gemm_grid`] for a core whose output tiles are `tile` x `tile`.
pub fn gemm_grid_with(tile: usize, rows: usize, pixels: usize, max_per_dim: u32) -> ([u32; 3], u32) {
    let pixel_tiles = pixels.div_ceil(tile);
    let (x, y) = grid_2d(pixel_tiles, max_per_dim);
    let z = u32_of(rows.div_ceil(tile));
    assert!(z <= max_per_dim);
    ([x, y, z], u32_of(pixel_tiles))
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
}

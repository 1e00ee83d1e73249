//! Workgroup grids: pure functions of element counts and the per-dimension limit, unit-tested without a GPU.
//!
//! Every kernel linearises its workgroup id as `wg.x + wg.y * num_workgroups.x`, so any number of groups can be
//! spread over two dimensions while each stays ≤ `max_compute_workgroups_per_dimension` (65,535): conv1 of a
//! 2048x2048 image has 65,536 pixel tiles.

use super::uniform::u32_of;
use crate::gpu::Pieces;

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

/// A GEMM dispatch over more work than this (GFLOP) is built in pieces of at most this much along its pixel tiles,
/// so that a slow adapter can launch them apart ([`crate::submission::launch_gflop_limit`]): 5 GFLOP is 50 ms at
/// 100 GFLOP/s, a slow integrated GPU's f32 rate. A conv of 2048² is ~300 GFLOP: 62 pieces.
pub const PIECE_GFLOP: f64 = 5.0;

/// The pieces of a GEMM on `tile`-sized output tiles with `rows` rows and `pixels` columns doing `gflop` of
/// work, each at most `piece_gflop` (or one tile, if a tile is more) and at most `max_per_dim` tiles (a launch of
/// pieces is one grid row), the last piece the remainder; `None` where one piece would hold it all (one launch,
/// its tiles spread over x and y by [`gemm_grid_with`]).
pub fn gemm_pieces(
    tile: usize,
    (rows, pixels): (usize, usize),
    gflop: f64,
    piece_gflop: f64,
    max_per_dim: u32,
) -> Option<Pieces> {
    let tiles = pixels.div_ceil(tile);
    // The most tiles whose work stays within piece_gflop (at least one), and within a grid row; then as many
    // pieces as that needs, evened out (each no larger than that most).
    let most = ((tiles as f64 * piece_gflop / gflop).floor() as usize).clamp(1, max_per_dim as usize);
    let tiles_each = tiles.div_ceil(tiles.div_ceil(most).max(1)).max(1);
    let count = tiles.div_ceil(tiles_each);
    (count > 1).then(|| Pieces {
        tiles: u32_of(tiles),
        tiles_each: u32_of(tiles_each),
        count,
        gflop_each: gflop * tiles_each as f64 / tiles as f64,
        rows: u32_of(rows.div_ceil(tile)),
    })
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
    fn large_gemms_come_in_pieces_small_ones_whole() {
        // conv1_2 forward of 2048²: 2·64·576·2048² ≈ 309 GFLOP over 65,536 pixel tiles.
        let gflop = 2.0 * 64.0 * 576.0 * (2048.0 * 2048.0) / 1e9;
        let p = gemm_pieces(64, (64, 2048 * 2048), gflop, PIECE_GFLOP, MAX_GROUPS_PER_DIM).unwrap();
        assert_eq!((p.count, p.rows), (62, 1));
        assert!(p.gflop_each <= PIECE_GFLOP && (p.count - 1) * (p.tiles_each as usize) < 65_536);
        assert!(p.count * p.tiles_each as usize >= 65_536);
        // Odd counts: every piece within the work limit, the last the remainder.
        for (tiles, gflop) in [(17usize, 1.0), (1000, 7.3), (3, 100.0), (65_536 * 3, 2.0)] {
            let p = gemm_pieces(64, (70, tiles * 64), gflop, 0.2, MAX_GROUPS_PER_DIM).unwrap();
            assert!(p.gflop_each <= 0.2 || p.tiles_each == 1, "{tiles} {gflop}: {p:?}");
            assert!(p.tiles_each <= MAX_GROUPS_PER_DIM && (p.count - 1) * (p.tiles_each as usize) < tiles);
            assert!(p.count * p.tiles_each as usize >= tiles);
        }
        // 256²: 4.8 GFLOP, one launch as before.
        assert_eq!(gemm_pieces(64, (64, 256 * 256), gflop / 64.0, PIECE_GFLOP, MAX_GROUPS_PER_DIM), None);
        // Little work but more tiles than one grid row holds: pieces of at most a row each.
        let p = gemm_pieces(64, (64, 2048 * 2048), 1.0, PIECE_GFLOP, MAX_GROUPS_PER_DIM).unwrap();
        assert_eq!((p.count, p.tiles_each), (2, 32_768));
        let p = gemm_pieces(128, (512, 1000), 2.0, 1.0, 4).unwrap();
        assert_eq!((p.count, p.tiles_each, p.tiles, p.rows), (2, 4, 8, 4));
    }
}

//! Host wrappers of the optical-flow kernels (DIS, docs/MATHS.md, "Video: optical flow, warping, the temporal
//! loss", **Flow**): `flow_grey`, `flow_downsample`, `dis_patch_search`, `dis_densify`, `flow_upsample`, and the
//! geometry they share with the host, the pyramid's level sizes and the patch grid (pure, unit-tested without a
//! GPU).
//!
//! Flow buffers are dense row-major, not framed ([`crate::frame`]): a grey image is H·W floats, a flow the u plane
//! then the v plane (2·H·W), a level's patch flows one (u, v) pair per patch, row by row of the patch grid.

use super::grid::{elementwise_grid, grid_2d};
use super::shared::{BILINEAR as FLOW_BILINEAR, ELEMENTWISE, GRID_ENTRY};
use super::uniform::{u32_of, uniform};
use super::{check_floats, kernel, max_dim, shader, Dispatch, Kernel};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// Side of a DIS patch (px).
pub const PATCH: usize = 8;
/// Distance between consecutive patches along an axis (px), but for the last one.
pub const PATCH_STRIDE: usize = 4;
/// The shortest side a pyramid level may have (px): the coarsest level is the deepest that keeps it.
pub const MIN_LEVEL_SIDE: usize = 16;
/// The deepest pyramid level.
pub const MAX_LEVEL: usize = 5;
/// Patches per workgroup of `dis_patch_search`.
const SEARCH_GROUP: usize = 64;

uniform! {
    struct GreyParams {
        pixels: u32,
    }
}

uniform! {
    struct DownsampleParams {
        width: u32,
        height: u32,
        out_width: u32,
        out_height: u32,
    }
}

uniform! {
    /// A level's size and its patch grid (`patches_x` x `patches_y` patches).
    struct PatchParams {
        width: u32,
        height: u32,
        patches_x: u32,
        patches_y: u32,
    }
}

uniform! {
    struct UpsampleParams {
        coarse_width: u32,
        coarse_height: u32,
        width: u32,
        height: u32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[
    kernel!("flow_grey", &[ELEMENTWISE], GreyParams, "rgb; mut grey"),
    kernel!("flow_downsample", &[ELEMENTWISE], DownsampleParams, "src; mut dst"),
    kernel!("dis_patch_search", &[GRID_ENTRY, FLOW_BILINEAR], PatchParams, "i0; i1; init; mut patches"),
    kernel!("dis_densify", &[ELEMENTWISE, FLOW_BILINEAR], PatchParams, "i0; i1; patches; mut flow"),
    kernel!("flow_upsample", &[ELEMENTWISE, FLOW_BILINEAR], UpsampleParams, "coarse; mut fine"),
];

/// The top-left corners of the patches along an axis of `side` px (≥ [`PATCH`]): 0, 4, 8, … and a last one at
/// `side − 8`, so every pixel is in some patch. Patch k starts at min(4k, side − 8) (the kernels' `patch_pos`).
pub fn patch_positions(side: usize) -> Vec<usize> {
    (0..patch_count(side)).map(|k| (PATCH_STRIDE * k).min(side - PATCH)).collect()
}

/// How many patches lie along an axis of `side` px (≥ [`PATCH`]): ⌈(side − 8)/4⌉ + 1.
pub fn patch_count(side: usize) -> usize {
    assert!(side >= PATCH, "a side of {side} px holds no {PATCH} px patch");
    (side - PATCH).div_ceil(PATCH_STRIDE) + 1
}

/// The (width, height) of every pyramid level the flow of a `width` x `height` image uses, level 0 (the image)
/// first: each level the previous halved and rounded down, down to the deepest level s ≤ [`MAX_LEVEL`] whose
/// shorter side is still ≥ [`MIN_LEVEL_SIDE`]. Empty when the image itself is smaller than that.
pub fn pyramid_levels(width: usize, height: usize) -> Vec<(usize, usize)> {
    let mut levels = Vec::new();
    let (mut w, mut h) = (width, height);
    while levels.len() <= MAX_LEVEL && w.min(h) >= MIN_LEVEL_SIDE {
        levels.push((w, h));
        (w, h) = (w / 2, h / 2);
    }
    levels
}

/// A level's size as the patch kernels' uniform; an error for a level smaller than a patch.
fn patch_params(kernel: &str, (width, height): (usize, usize)) -> Result<PatchParams> {
    if width.min(height) < PATCH {
        return Err(Error::Validation(format!("{kernel}: a {width}x{height} level is smaller than one patch")));
    }
    Ok(PatchParams {
        width: u32_of(width),
        height: u32_of(height),
        patches_x: u32_of(patch_count(width)),
        patches_y: u32_of(patch_count(height)),
        ..Default::default()
    })
}

/// `grey` (H·W) = Y of planar RGB `rgb` (3·H·W, 0–255).
pub fn grey(
    ctx: &GpuContext,
    (width, height): (usize, usize),
    rgb: &wgpu::Buffer,
    grey: &wgpu::Buffer,
) -> Result<Dispatch> {
    let pixels = width * height;
    check_floats("flow_grey", "rgb", rgb, 3 * pixels)?;
    check_floats("flow_grey", "grey", grey, pixels)?;
    let p = GreyParams { pixels: u32_of(pixels), ..Default::default() };
    Dispatch::new(ctx, &shader("flow_grey")?, &p, &[rgb, grey], elementwise_grid(pixels, max_dim(ctx)))
}

/// `dst` ((W/2)·(H/2)) = the 2x2 means of `src` (W·H), sizes rounded down.
pub fn downsample(
    ctx: &GpuContext,
    (width, height): (usize, usize),
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Dispatch> {
    let (out_width, out_height) = (width / 2, height / 2);
    check_floats("flow_downsample", "src", src, width * height)?;
    check_floats("flow_downsample", "dst", dst, out_width * out_height)?;
    let p = DownsampleParams {
        width: u32_of(width),
        height: u32_of(height),
        out_width: u32_of(out_width),
        out_height: u32_of(out_height),
        ..Default::default()
    };
    let groups = elementwise_grid(out_width * out_height, max_dim(ctx));
    Dispatch::new(ctx, &shader("flow_downsample")?, &p, &[src, dst], groups)
}

/// `patches` (2 per patch) = the inverse search of every patch of `i0` in `i1` (one level, `size`), starting
/// from the dense flow `init` (2·W·H) at each patch centre.
pub fn patch_search(
    ctx: &GpuContext,
    size: (usize, usize),
    (i0, i1): (&wgpu::Buffer, &wgpu::Buffer),
    init: &wgpu::Buffer,
    patches: &wgpu::Buffer,
) -> Result<Dispatch> {
    let p = patch_params("dis_patch_search", size)?;
    let (pixels, count) = (size.0 * size.1, (p.patches_x * p.patches_y) as usize);
    check_floats("dis_patch_search", "i0", i0, pixels)?;
    check_floats("dis_patch_search", "i1", i1, pixels)?;
    check_floats("dis_patch_search", "init", init, 2 * pixels)?;
    check_floats("dis_patch_search", "patches", patches, 2 * count)?;
    let (x, y) = grid_2d(count.div_ceil(SEARCH_GROUP), max_dim(ctx));
    Dispatch::new(ctx, &shader("dis_patch_search")?, &p, &[i0, i1, init, patches], [x, y, 1])
}

/// `flow` (2·W·H) = the densification of one level's `patches` (2 per patch) with images `i0`, `i1`.
pub fn densify(
    ctx: &GpuContext,
    size: (usize, usize),
    (i0, i1): (&wgpu::Buffer, &wgpu::Buffer),
    patches: &wgpu::Buffer,
    flow: &wgpu::Buffer,
) -> Result<Dispatch> {
    let p = patch_params("dis_densify", size)?;
    let (pixels, count) = (size.0 * size.1, (p.patches_x * p.patches_y) as usize);
    check_floats("dis_densify", "i0", i0, pixels)?;
    check_floats("dis_densify", "i1", i1, pixels)?;
    check_floats("dis_densify", "patches", patches, 2 * count)?;
    check_floats("dis_densify", "flow", flow, 2 * pixels)?;
    let groups = elementwise_grid(pixels, max_dim(ctx));
    Dispatch::new(ctx, &shader("dis_densify")?, &p, &[i0, i1, patches, flow], groups)
}

/// `fine` (2·W·H at `size`) = 2 x `coarse` (2·Wc·Hc at `coarse_size`) sampled at ((x + ½)/2 − ½).
pub fn upsample(
    ctx: &GpuContext,
    coarse_size: (usize, usize),
    size: (usize, usize),
    coarse: &wgpu::Buffer,
    fine: &wgpu::Buffer,
) -> Result<Dispatch> {
    if coarse_size.0.min(coarse_size.1) == 0 {
        return Err(Error::Validation(format!("flow_upsample: an empty coarse level {coarse_size:?}")));
    }
    check_floats("flow_upsample", "coarse", coarse, 2 * coarse_size.0 * coarse_size.1)?;
    check_floats("flow_upsample", "fine", fine, 2 * size.0 * size.1)?;
    let p = UpsampleParams {
        coarse_width: u32_of(coarse_size.0),
        coarse_height: u32_of(coarse_size.1),
        width: u32_of(size.0),
        height: u32_of(size.1),
        ..Default::default()
    };
    let groups = elementwise_grid(size.0 * size.1, max_dim(ctx));
    Dispatch::new(ctx, &shader("flow_upsample")?, &p, &[coarse, fine], groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_cover_every_pixel_with_a_last_one_at_the_end() {
        assert_eq!(patch_positions(8), vec![0]);
        assert_eq!(patch_positions(16), vec![0, 4, 8]);
        assert_eq!(patch_positions(17), vec![0, 4, 8, 9]);
        assert_eq!(patch_positions(19), vec![0, 4, 8, 11]);
        assert_eq!(patch_positions(20), vec![0, 4, 8, 12]);
        for side in 8..200 {
            let p = patch_positions(side);
            assert_eq!(p.len(), patch_count(side));
            assert_eq!(*p.last().unwrap(), side - PATCH, "{side}");
            assert!(p.windows(2).all(|w| w[0] < w[1] && w[1] - w[0] <= PATCH_STRIDE), "{side}: {p:?}");
            // The densify kernel's walk: from ⌈(c − 7)/4⌉ while patches start at or before c, each containing c.
            for c in 0..side {
                let first = if c < 8 { 0 } else { (c - 7).div_ceil(4) };
                let walked: Vec<usize> = (first..p.len()).take_while(|&k| p[k] <= c).collect();
                let containing: Vec<usize> = (0..p.len()).filter(|&k| p[k] <= c && c < p[k] + PATCH).collect();
                assert_eq!(walked, containing, "side {side}, pixel {c}");
                assert!(!containing.is_empty());
            }
        }
    }

    #[test]
    fn the_pyramid_stops_at_the_deepest_level_of_16_px_or_level_5() {
        // docs/MATHS.md's example: a 256 px frame goes to level 4, 16 px.
        assert_eq!(pyramid_levels(256, 256).len(), 5);
        assert_eq!(pyramid_levels(256, 256)[4], (16, 16));
        assert_eq!(pyramid_levels(128, 96), vec![(128, 96), (64, 48), (32, 24)]);
        assert_eq!(pyramid_levels(37, 29), vec![(37, 29)]);
        assert_eq!(pyramid_levels(33, 65), vec![(33, 65), (16, 32)]);
        assert_eq!(pyramid_levels(1920, 1080).len(), 6, "level 5 at most");
        assert_eq!(pyramid_levels(1920, 1080)[5], (60, 33));
        assert_eq!(pyramid_levels(16, 16), vec![(16, 16)]);
        assert!(pyramid_levels(15, 400).is_empty());
    }
}

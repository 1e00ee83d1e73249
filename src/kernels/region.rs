//! Host wrappers of `region_copy.wgsl` and `region_keep.wgsl`: a rectangle of a framed tensor copied into another
//! tensor of another frame, and everything outside a rectangle zeroed. Tiled evaluation's cut, paste and owned
//! positions (docs/MATHS.md, "Tiled evaluation").

use super::shared::ELEMENTWISE;
use super::uniform::uniform;
use super::{kernel, Kernel};

use super::grid::elementwise_grid;
use super::uniform::u32_of;
use super::{max_dim, shader, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::tensor::Tensor;
use crate::tiling::Rect;

uniform! {
    struct CopyParams {
        channels: u32,
        height: u32,
        width: u32,
        src_stride: u32,
        src_plane: u32,
        src_x: u32,
        src_y: u32,
        dst_stride: u32,
        dst_plane: u32,
        dst_x: u32,
        dst_y: u32,
    }
}

uniform! {
    struct KeepParams {
        channels: u32,
        height: u32,
        width: u32,
        stride: u32,
        plane: u32,
        x0: u32,
        y0: u32,
        x1: u32,
        y1: u32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[
    kernel!("region_copy", &[ELEMENTWISE], CopyParams, "src; mut dst"),
    kernel!("region_keep", &[ELEMENTWISE], KeepParams, "mut tensor"),
];

/// Copies `from` (a rectangle of `src`'s data pixels) to `dst`, its top-left corner at `to` (column, row). Both
/// tensors have the same channels; the rectangle must lie inside both.
pub fn copy(ctx: &GpuContext, src: Tensor<'_>, from: Rect, dst: Tensor<'_>, to: (usize, usize)) -> Result<Dispatch> {
    let inside = |r: Rect, t: &Tensor<'_>| r.x + r.width <= t.frame.width && r.y + r.height <= t.frame.height;
    let target = Rect { x: to.0, y: to.1, ..from };
    if src.channels != dst.channels || !inside(from, &src) || !inside(target, &dst) {
        return Err(Error::Validation(format!(
            "region_copy: {from:?} of {}x{:?} to {to:?} of {}x{:?}",
            src.channels, src.frame, dst.channels, dst.frame
        )));
    }
    let p = CopyParams {
        channels: u32_of(src.channels),
        height: u32_of(from.height),
        width: u32_of(from.width),
        src_stride: u32_of(src.frame.stride),
        src_plane: u32_of(src.frame.plane()),
        src_x: u32_of(from.x),
        src_y: u32_of(from.y),
        dst_stride: u32_of(dst.frame.stride),
        dst_plane: u32_of(dst.frame.plane()),
        dst_x: u32_of(to.0),
        dst_y: u32_of(to.1),
        ..Default::default()
    };
    let groups = elementwise_grid(src.channels * from.pixels(), max_dim(ctx));
    Dispatch::new(ctx, &shader("region_copy")?, &p, &[src.buffer, dst.buffer], groups)
}

/// Zeroes the data pixels of `tensor` outside `keep` (in place).
pub fn keep(ctx: &GpuContext, tensor: Tensor<'_>, keep: Rect) -> Result<Dispatch> {
    let f = tensor.frame;
    let p = KeepParams {
        channels: u32_of(tensor.channels),
        height: u32_of(f.height),
        width: u32_of(f.width),
        stride: u32_of(f.stride),
        plane: u32_of(f.plane()),
        x0: u32_of(keep.x),
        y0: u32_of(keep.y),
        x1: u32_of(keep.x + keep.width),
        y1: u32_of(keep.y + keep.height),
        ..Default::default()
    };
    let groups = elementwise_grid(tensor.channels * f.height * f.width, max_dim(ctx));
    Dispatch::new(ctx, &shader("region_keep")?, &p, &[tensor.buffer], groups)
}

//! Host wrapper of `mask_weight.wgsl`: a framed tensor weighted per position by a one-channel mask, written or
//! added. Spatial control's masked statistics and gradients (docs/MATHS.md, "Spatial control").

use super::grid::elementwise_grid;
use super::shared::ELEMENTWISE;
use super::uniform::{u32_of, uniform};
use super::{kernel, max_dim, shader, Dispatch, Kernel};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::tensor::Tensor;

uniform! {
    struct MaskParams {
        channels: u32,
        height: u32,
        width: u32,
        stride: u32,
        plane: u32,
        accumulate: u32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[kernel!("mask_weight", &[ELEMENTWISE], MaskParams, "mask; src; mut dst")];

/// `dst = mask ⊙ src` (or `dst += mask ⊙ src` when `accumulate`) on the data pixels, and zeros on `dst`'s whole
/// frame (so a scratch shared between frames reads as framed); `mask` is one channel of `src`'s frame, `dst` has
/// `src`'s channels and frame.
pub fn weight(
    ctx: &GpuContext,
    mask: &wgpu::Buffer,
    src: Tensor<'_>,
    dst: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Dispatch> {
    let f = src.frame;
    let floats = |b: &wgpu::Buffer| b.size() as usize / 4;
    if floats(mask) < f.buffer_floats(1) || floats(dst) < f.buffer_floats(src.channels) {
        return Err(Error::Validation(format!(
            "mask_weight: a mask of {} floats or a destination of {} for {} channels of {:?}",
            floats(mask),
            floats(dst),
            src.channels,
            f
        )));
    }
    let p = MaskParams {
        channels: u32_of(src.channels),
        height: u32_of(f.height),
        width: u32_of(f.width),
        stride: u32_of(f.stride),
        plane: u32_of(f.plane()),
        accumulate: u32::from(accumulate),
        ..Default::default()
    };
    let groups = elementwise_grid(f.buffer_floats(src.channels), max_dim(ctx));
    Dispatch::new(ctx, &shader("mask_weight")?, &p, &[mask, src.buffer, dst], groups)
}

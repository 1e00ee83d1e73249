//! Host wrapper of `channel_affine.wgsl`: `out[c] = in[c] * scale[c] + offset[c]` on a 3-channel framed image
//! (only its data pixels: the frame stays zero).

use super::shared::ELEMENTWISE;
use super::uniform::uniform;
use super::{kernel, Kernel};

use super::grid::elementwise_grid;
use super::uniform::u32_of;
use super::{max_dim, shader, Dispatch};
use crate::error::Result;
use crate::frame::Frame;
use crate::gpu::GpuContext;
use wgpu::Buffer;

uniform! {
    struct AffineParams {
        height: u32,
        width: u32,
        stride: u32,
        plane: u32,
        scale: [f32; 4],
        offset: [f32; 4],
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[kernel!("channel_affine", &[ELEMENTWISE], AffineParams, "input; mut output")];

pub fn channel_affine(
    ctx: &GpuContext,
    frame: Frame,
    scale: [f32; 3],
    offset: [f32; 3],
    input: &Buffer,
    output: &Buffer,
) -> Result<Dispatch> {
    let p = AffineParams {
        height: u32_of(frame.height),
        width: u32_of(frame.width),
        stride: u32_of(frame.stride),
        plane: u32_of(frame.plane()),
        scale: [scale[0], scale[1], scale[2], 0.0],
        offset: [offset[0], offset[1], offset[2], 0.0],
        ..Default::default()
    };
    let groups = elementwise_grid(3 * frame.height * frame.width, max_dim(ctx));
    Dispatch::new(ctx, &shader("channel_affine")?, &p, &[input, output], groups)
}

//! Host wrapper of `channel_affine.wgsl`: `out[c] = in[c] * scale[c] + offset[c]` on a 3-channel image.

use bytemuck::{Pod, Zeroable};

use super::grid::elementwise_grid;
use super::{max_dim, shader, Dispatch};
use crate::error::Result;
use crate::gpu::GpuContext;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AffineParams {
    plane: u32,
    _pad: [u32; 3],
    scale: [f32; 4],
    offset: [f32; 4],
}

pub fn channel_affine(
    ctx: &GpuContext,
    plane: usize,
    scale: [f32; 3],
    offset: [f32; 3],
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> Result<Dispatch> {
    let p = AffineParams {
        plane: plane as u32,
        _pad: [0; 3],
        scale: [scale[0], scale[1], scale[2], 0.0],
        offset: [offset[0], offset[1], offset[2], 0.0],
    };
    Dispatch::new(ctx, &shader("channel_affine"), &p, &[input, output], elementwise_grid(3 * plane, max_dim(ctx)))
}

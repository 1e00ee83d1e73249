//! Host wrappers of the 2x2/2 FLOOR pooling kernels: `maxpool2x2`, `maxpool2x2_backward`, `avgpool2x2`,
//! `avgpool2x2_backward`, on framed tensors ([`crate::frame`]). One variant serves every adapter: they move
//! little data next to the convolutions.

use super::shared::{ELEMENTWISE, POOL2X2, POOL2X2_BACKWARD, POOL2X2_FORWARD};
use super::uniform::uniform;
use super::{kernel, Kernel};

use super::grid::elementwise_grid;
use super::uniform::u32_of;
use super::{max_dim, shader, Dispatch};
use crate::error::Result;
use crate::frame::Frame;
use crate::gpu::GpuContext;
use crate::vgg::Pooling;
use wgpu::Buffer;

uniform! {
    struct PoolParams {
        channels: u32,
        height: u32,
        width: u32,
        out_height: u32,
        out_width: u32,
        stride: u32,
        plane: u32,
        out_stride: u32,
        out_plane: u32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[
    kernel!("maxpool2x2", FORWARD, PoolParams, ""),
    kernel!("avgpool2x2", FORWARD, PoolParams, ""),
    kernel!("maxpool2x2_backward", BACKWARD, PoolParams, ""),
    kernel!("avgpool2x2_backward", BACKWARD, PoolParams, ""),
];

/// The pieces each pooling kernel is composed with: the indexing, its pass, the elementwise entry point.
const FORWARD: &[&str] = &[POOL2X2, POOL2X2_FORWARD, ELEMENTWISE];
const BACKWARD: &[&str] = &[POOL2X2, POOL2X2_BACKWARD, ELEMENTWISE];

/// Input shape (C, H, W) of a pooling layer; the output is (C, H/2, W/2) rounded down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl PoolShape {
    pub fn out_height(&self) -> usize {
        self.height / 2
    }
    pub fn out_width(&self) -> usize {
        self.width / 2
    }
    fn params(&self) -> PoolParams {
        let (input, output) = (Frame::new(self.height, self.width), Frame::new(self.out_height(), self.out_width()));
        PoolParams {
            channels: u32_of(self.channels),
            height: u32_of(self.height),
            width: u32_of(self.width),
            out_height: u32_of(self.out_height()),
            out_width: u32_of(self.out_width()),
            stride: u32_of(input.stride),
            plane: u32_of(input.plane()),
            out_stride: u32_of(output.stride),
            out_plane: u32_of(output.plane()),
            ..Default::default()
        }
    }
}

/// 2x2/2 pooling of `input` into `output`, by `pooling`'s kernel.
pub fn pool2x2(ctx: &GpuContext, pooling: Pooling, s: PoolShape, input: &Buffer, output: &Buffer) -> Result<Dispatch> {
    let kernel = match pooling {
        Pooling::Max => "maxpool2x2",
        Pooling::Avg => "avgpool2x2",
    };
    let groups = elementwise_grid(s.channels * s.out_height() * s.out_width(), max_dim(ctx));
    Dispatch::new(ctx, &shader(kernel)?, &s.params(), &[input, output], groups)
}

/// The gradient w.r.t. the pooling's input. `input` is the forward input, a ReLU output: max pooling recomputes
/// its arg-max from it (the forward stores nothing), and the gradient passes only where it is > 0 (the ReLU's
/// backward, fused).
pub fn pool2x2_backward(
    ctx: &GpuContext,
    pooling: Pooling,
    s: PoolShape,
    input: &Buffer,
    (grad_out, grad_in): (&Buffer, &Buffer),
) -> Result<Dispatch> {
    let kernel = match pooling {
        Pooling::Max => "maxpool2x2_backward",
        Pooling::Avg => "avgpool2x2_backward",
    };
    let groups = elementwise_grid(s.channels * s.height * s.width, max_dim(ctx));
    Dispatch::new(ctx, &shader(kernel)?, &s.params(), &[input, grad_out, grad_in], groups)
}

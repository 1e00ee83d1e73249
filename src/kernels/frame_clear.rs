//! Host wrapper of `frame_clear.wgsl`: zero the frame ([`crate::frame`]) of a tensor, leaving its data pixels.

use super::shared::ELEMENTWISE;
use super::uniform::uniform;
use super::{kernel, Kernel};

use super::grid::elementwise_grid;
use super::uniform::u32_of;
use super::{max_dim, shader, Dispatch};
use crate::error::Result;
use crate::frame::Frame;
use crate::gpu::GpuContext;
use crate::tensor::Tensor;

uniform! {
    struct ClearParams {
        channels: u32,
        height: u32,
        width: u32,
        stride: u32,
        rows: u32,
        per_channel: u32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[kernel!("frame_clear", &[ELEMENTWISE], ClearParams, "mut tensor")];

/// Frame elements per channel (everything of a plane but its data pixels).
pub fn frame_elements(frame: Frame) -> usize {
    frame.plane() - frame.height * frame.width
}

/// Zeroes the frame of the `channels` planes of `tensor` at `frame`.
pub fn clear_frame(ctx: &GpuContext, tensor: Tensor<'_>) -> Result<Dispatch> {
    let (channels, frame) = (tensor.channels, tensor.frame);
    let per_channel = frame_elements(frame);
    let p = ClearParams {
        channels: u32_of(channels),
        height: u32_of(frame.height),
        width: u32_of(frame.width),
        stride: u32_of(frame.stride),
        rows: u32_of(frame.rows),
        per_channel: u32_of(per_channel),
        ..Default::default()
    };
    Dispatch::new(
        ctx,
        &shader("frame_clear")?,
        &p,
        &[tensor.buffer],
        elementwise_grid(channels * per_channel, max_dim(ctx)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's index arithmetic, in Rust: every frame element exactly once, never a data pixel.
    #[test]
    fn enumeration_covers_the_frame_exactly() {
        for (h, w) in [(1, 1), (5, 7), (16, 16), (13, 9), (3, 40)] {
            let f = Frame::new(h, w);
            let (s, pad) = (f.stride, f.stride - w);
            let mut seen = vec![0u8; f.plane()];
            for e in 0..frame_elements(f) {
                let (row, col) = if e < h * pad {
                    (1 + e / pad, w + e % pad)
                } else {
                    let r = (e - h * pad) / s;
                    (if r == 0 { 0 } else { h + r }, (e - h * pad) % s)
                };
                assert!(row < f.rows && col < s, "{h}x{w}: {row},{col}");
                seen[row * s + col] += 1;
            }
            for (i, &n) in seen.iter().enumerate() {
                assert_eq!(n == 1, !f.is_data(Frame::HEAD + i), "{h}x{w}: element {i} seen {n} times");
            }
        }
    }
}

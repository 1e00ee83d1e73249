//! Host wrappers of `conv3x3.wgsl` (forward + bias + ReLU) and `conv3x3_backward_data.wgsl`, and the one-time
//! weight transforms they expect.

use bytemuck::{Pod, Zeroable};

use super::grid::{gemm_grid, grid_2d, ELEMENTWISE_GROUP};
use super::{max_dim, shader, AdapterFacts, Dispatch};
use crate::error::Result;
use crate::gpu::GpuContext;

/// Which kernel computes a conv's backward-data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackwardVariant {
    /// `conv3x3_backward_data.wgsl`: the 64x64 tiled implicit GEMM.
    Tiled,
    /// `conv3x3_backward_data_narrow.wgsl`: one thread per pixel, all (≤ 4) result channels in a vec4.
    Narrow,
}

/// Most result channels the narrow backward-data kernel handles (one vec4).
pub const NARROW_MAX_CHANNELS: usize = 4;

/// The backward-data kernel for a conv of `shape` (its result has `shape.cin` channels) on this adapter. The
/// tiled GEMM pads rows to 64, so for conv1_1's 3-channel image gradient it would do 21x the useful work; the
/// narrow kernel does none of that.
pub fn backward_variant(shape: ConvShape, _adapter: &AdapterFacts) -> BackwardVariant {
    if shape.cin <= NARROW_MAX_CHANNELS {
        BackwardVariant::Narrow
    } else {
        BackwardVariant::Tiled
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ConvParams {
    cin: u32,
    cout: u32,
    height: u32,
    width: u32,
    pixel_tiles: u32,
    relu: u32,
    _pad: [u32; 2],
}

/// Shape of one 3x3 convolution on a CHW image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub cin: usize,
    pub cout: usize,
    pub height: usize,
    pub width: usize,
}

impl ConvShape {
    /// Multiply-adds of the forward (and of the backward-data) pass.
    pub fn macs(&self) -> usize {
        self.cin * self.cout * 9 * self.height * self.width
    }
}

/// OIHW `[cout][cin][3][3]` → the forward kernel's `[cin*9][cout]`.
pub fn forward_weights(w_oihw: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    assert_eq!(w_oihw.len(), cout * cin * 9);
    let mut out = vec![0.0; w_oihw.len()];
    for co in 0..cout {
        for k in 0..cin * 9 {
            out[k * cout + co] = w_oihw[co * cin * 9 + k];
        }
    }
    out
}

/// OIHW → the backward-data kernel's `[cout*9][cin]` with taps flipped (tap → 8 − tap): the transposed
/// convolution as a plain 3x3 convolution from Cout to Cin channels.
pub fn backward_weights(w_oihw: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    assert_eq!(w_oihw.len(), cout * cin * 9);
    let mut out = vec![0.0; w_oihw.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for tap in 0..9 {
                out[(co * 9 + (8 - tap)) * cin + ci] = w_oihw[(co * cin + ci) * 9 + tap];
            }
        }
    }
    out
}

/// OIHW → the narrow backward-data kernel's `[cout*9]` of 4 floats (result channels, zero padded), taps
/// flipped as in [`backward_weights`]. Only for `cin` ≤ 4.
pub fn backward_weights_narrow(w_oihw: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    assert!(cin <= NARROW_MAX_CHANNELS);
    let mut out = vec![0.0; cout * 9 * 4];
    for co in 0..cout {
        for ci in 0..cin {
            for tap in 0..9 {
                out[(co * 9 + (8 - tap)) * 4 + ci] = w_oihw[(co * cin + ci) * 9 + tap];
            }
        }
    }
    out
}

/// The backward-data weights in the layout of `variant`.
pub fn backward_weights_for(variant: BackwardVariant, w_oihw: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    match variant {
        BackwardVariant::Tiled => backward_weights(w_oihw, cin, cout),
        BackwardVariant::Narrow => backward_weights_narrow(w_oihw, cin, cout),
    }
}

/// `output = relu?(conv3x3(input, weights) + bias)`. `weights` in [`forward_weights`] layout.
pub fn conv3x3(
    ctx: &GpuContext,
    shape: ConvShape,
    relu: bool,
    input: &wgpu::Buffer,
    weights: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> Result<Dispatch> {
    let (groups, pixel_tiles) = gemm_grid(shape.cout, shape.height * shape.width, max_dim(ctx));
    let params = ConvParams {
        cin: shape.cin as u32,
        cout: shape.cout as u32,
        height: shape.height as u32,
        width: shape.width as u32,
        pixel_tiles,
        relu: relu as u32,
        _pad: [0; 2],
    };
    Dispatch::new(ctx, &shader("conv3x3"), &params, &[input, weights, bias, output], groups)
}

/// `grad_in = conv3x3ᵀ(grad_out)`, times `(mask_src > 0)` when `mask_src` is given: the gradient w.r.t. the
/// input of a conv of `shape` from the gradient w.r.t. its pre-ReLU output. Give `mask_src` = the input's forward
/// values when the input is a ReLU output, so the result is already the next layer's pre-ReLU gradient.
/// `variant` is [`backward_variant`]'s choice (tests force each); `weights` in its layout
/// ([`backward_weights_for`]).
pub fn conv3x3_backward_data(
    ctx: &GpuContext,
    variant: BackwardVariant,
    shape: ConvShape,
    grad_out: &wgpu::Buffer,
    weights: &wgpu::Buffer,
    mask_src: Option<&wgpu::Buffer>,
    grad_in: &wgpu::Buffer,
) -> Result<Dispatch> {
    // Without a mask the kernel never reads binding 3; bind the weights there (any read-only buffer).
    let mask = mask_src.unwrap_or(weights);
    if variant == BackwardVariant::Narrow {
        assert!(shape.cin <= NARROW_MAX_CHANNELS, "narrow backward-data needs ≤ 4 channels");
        let pixel_groups = (shape.height * shape.width).div_ceil(ELEMENTWISE_GROUP);
        let (x, y) = grid_2d(pixel_groups, max_dim(ctx));
        let params = ConvParams {
            cin: shape.cout as u32,
            cout: shape.cin as u32,
            height: shape.height as u32,
            width: shape.width as u32,
            pixel_tiles: pixel_groups as u32,
            relu: mask_src.is_some() as u32,
            _pad: [0; 2],
        };
        let bufs = [grad_out, weights, mask, grad_in];
        return Dispatch::new(ctx, &shader("conv3x3_backward_data_narrow"), &params, &bufs, [x, y, 1]);
    }
    let (groups, pixel_tiles) = gemm_grid(shape.cin, shape.height * shape.width, max_dim(ctx));
    let params = ConvParams {
        cin: shape.cout as u32,
        cout: shape.cin as u32,
        height: shape.height as u32,
        width: shape.width as u32,
        pixel_tiles,
        relu: mask_src.is_some() as u32,
        _pad: [0; 2],
    };
    Dispatch::new(ctx, &shader("conv3x3_backward_data"), &params, &[grad_out, weights, mask, grad_in], groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_backward_only_for_at_most_four_result_channels() {
        let shape = |cin| ConvShape { cin, cout: 64, height: 32, width: 32 };
        for facts in [AdapterFacts::example_gpu(), AdapterFacts::example_lavapipe()] {
            assert_eq!(backward_variant(shape(3), &facts), BackwardVariant::Narrow);
            assert_eq!(backward_variant(shape(1), &facts), BackwardVariant::Narrow);
            assert_eq!(backward_variant(shape(4), &facts), BackwardVariant::Narrow);
            assert_eq!(backward_variant(shape(5), &facts), BackwardVariant::Tiled);
            assert_eq!(backward_variant(shape(64), &facts), BackwardVariant::Tiled);
        }
    }

    #[test]
    fn weight_layouts() {
        // cout=2, cin=3: w[co][ci][tap] = 100*co + 10*ci + tap.
        let w: Vec<f32> = (0..2 * 3 * 9).map(|i| (100 * (i / 27) + 10 * ((i / 9) % 3) + i % 9) as f32).collect();
        let f = forward_weights(&w, 3, 2);
        assert_eq!(f[(2 * 9 + 4) * 2 + 1], 124.0); // k = ci*9+tap = 22, co = 1
        let b = backward_weights(&w, 3, 2);
        // row (co*9 + (8-tap)), column ci: co=1, tap=0 → row 17, ci=2 → 120.
        assert_eq!(b[17 * 3 + 2], 120.0);
        assert_eq!(b[(9 + 8 - 5) * 3], 105.0);
    }
}

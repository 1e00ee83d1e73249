//! Host wrappers of the Wasserstein-2 style loss's kernels (docs/MATHS.md, "Style loss: Wasserstein-2"):
//! `channel_mean` and `w2_covariance` (the Gaussian fit of a layer's features, with the Gram from
//! [`super::gram`]), `matmul` and `sqrtm_start` (the coupled Newton–Schulz iteration for M^½ and M^−½),
//! `w2_loss` (the loss scalar), `w2_mean_grad` and `channel_bias_grad` (the per-channel part of the gradient;
//! the K·F part is [`super::loss::style_grad`] with K in place of G − A). All matrices are dense row-major
//! C x C; feature maps are framed ([`crate::frame`]).

use super::shared::{ELEMENTWISE, GEMM_TILED, GRID_ENTRY, MATMUL_SCALE, WORKGROUP_SUM};
use super::uniform::uniform;
use super::{kernel, Kernel};

use super::grid::{elementwise_grid, grid_2d, GEMM_TILE};
use super::{max_dim, shader, AdapterFacts, Dispatch};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::tensor::Tensor;
use wgpu::Buffer;

use super::uniform::u32_of;
/// A slot of a scalars array, or none (the same marker as L-BFGS's axpys).
pub use super::vector::NONE;

uniform! {
    struct MeanParams {
        channels: u32,
        pixels: u32,
        plane: u32,
        stride: u32,
        inv_count: f32,
    }
}

/// `mean[c]` = the mean of channel c's data pixels of `features` (framed at `frame`).
pub fn channel_mean(ctx: &GpuContext, features: Tensor<'_>, mean: &Buffer) -> Result<Dispatch> {
    let (channels, frame) = (features.channels, features.frame);
    let features = features.buffer;
    let p = MeanParams {
        channels: u32_of(channels),
        pixels: u32_of(frame.height * frame.stride),
        plane: u32_of(frame.plane()),
        stride: u32_of(frame.stride),
        inv_count: (1.0 / (frame.height * frame.width) as f64) as f32,
        ..Default::default()
    };
    let (x, y) = grid_2d(channels, max_dim(ctx));
    Dispatch::new(ctx, &shader("channel_mean")?, &p, &[features, mean], [x, y, 1])
}

uniform! {
    struct CovarianceParams {
        channels: u32,
        gram_scale: f32,
        ridge: f32,
    }
}

/// `cov = C·G − mean·meanᵀ + ridge·I` from the Gram G = F·Fᵀ / (C·N) and the channel means.
pub fn covariance(
    ctx: &GpuContext,
    channels: usize,
    ridge: f64,
    gram: &Buffer,
    mean: &Buffer,
    cov: &Buffer,
) -> Result<Dispatch> {
    let p = CovarianceParams {
        channels: u32_of(channels),
        gram_scale: channels as f32,
        ridge: ridge as f32,
        ..Default::default()
    };
    let grid = elementwise_grid(channels * channels, max_dim(ctx));
    Dispatch::new(ctx, &shader("w2_covariance")?, &p, &[gram, mean, cov], grid)
}

/// The scale of a [`matmul`]: `scale · slots[slot]^power`, or `scale` alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Alpha {
    pub scale: f32,
    pub slot: u32,
    pub power: f32,
}

impl Alpha {
    pub fn constant(scale: f32) -> Self {
        Self { scale, slot: NONE, power: 0.0 }
    }
}

uniform! {
    struct MatmulParams {
        size: u32,
        alpha_slot: u32,
        scale: f32,
        alpha_power: f32,
        beta: f32,
    }
}

/// Which `matmul` kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    /// `matmul.wgsl` on the shared tiled GEMM core (GPUs; any size).
    Tiled,
    /// `matmul_cpu.wgsl`: 8 x 8 register blocks, no workgroup memory (CPU adapters; sizes a multiple of 8).
    Cpu,
}

/// The matmul kernel for C x C matrices on this adapter (a pure function of plain facts).
pub fn matmul_variant(adapter: &AdapterFacts, size: usize) -> MatmulVariant {
    if adapter.is_cpu() && size.is_multiple_of(8) {
        MatmulVariant::Cpu
    } else {
        MatmulVariant::Tiled
    }
}

/// Threads per workgroup of `matmul_cpu.wgsl`.
const CPU_WORKGROUP: usize = 64;

/// `out = alpha · A·B + beta · I` for C x C matrices (`out` must be neither A nor B).
pub fn matmul(
    ctx: &GpuContext,
    variant: MatmulVariant,
    size: usize,
    (alpha, beta): (Alpha, f32),
    (a, b): (&Buffer, &Buffer),
    out: &Buffer,
    slots: &Buffer,
) -> Result<Dispatch> {
    let p = MatmulParams {
        size: u32_of(size),
        alpha_slot: alpha.slot,
        scale: alpha.scale,
        alpha_power: alpha.power,
        beta,
        ..Default::default()
    };
    match variant {
        MatmulVariant::Tiled => {
            let tiles = u32_of(size.div_ceil(GEMM_TILE));
            Dispatch::new(ctx, &shader("matmul")?, &p, &[a, b, out, slots], [tiles, tiles, 1])
        }
        MatmulVariant::Cpu => {
            assert!(size.is_multiple_of(8), "matmul_cpu needs a size that is a multiple of 8, got {size}");
            let (x, y) = grid_2d((size / 8 * size / 8).div_ceil(CPU_WORKGROUP), max_dim(ctx));
            // Every index is in range: the blocks tile the C x C matrices exactly, and ids past them return.
            let shader = shader("matmul_cpu")?.trusted(true);
            Dispatch::new(ctx, &shader, &p, &[a, b, out, slots], [x, y, 1])
        }
    }
}

uniform! {
    struct StartParams {
        size: u32,
        norm_slot: u32,
    }
}

/// `Y = M / sqrt(slots[norm_slot])`, `Z = I` (slots[norm_slot] = ‖M‖_F²).
pub fn sqrtm_start(
    ctx: &GpuContext,
    size: usize,
    m: &Buffer,
    (slots, norm_slot): (&Buffer, u32),
    (y, z): (&Buffer, &Buffer),
) -> Result<Dispatch> {
    let p = StartParams { size: u32_of(size), norm_slot, ..Default::default() };
    Dispatch::new(ctx, &shader("sqrtm_start")?, &p, &[m, slots, y, z], elementwise_grid(size * size, max_dim(ctx)))
}

uniform! {
    struct LossParams {
        channels: u32,
        norm_slot: u32,
        loss_slot: u32,
        weight_over_c: f32,
        target_trace: f32,
    }
}

/// The buffers [`w2_loss`] reads: the image's means and covariance (with the ridge), the target's means, the
/// Newton–Schulz iterate Y and the scalars array holding ‖M‖_F².
pub struct LossInputs<'b> {
    pub mean: &'b wgpu::Buffer,
    pub target_mean: &'b wgpu::Buffer,
    pub cov: &'b wgpu::Buffer,
    pub y: &'b wgpu::Buffer,
    pub scalars: (&'b wgpu::Buffer, u32),
}

/// `losses[loss_slot] = weight / C · (Σ (mean − target_mean)² + tr cov + target_trace − 2 ‖M‖_F^½ tr Y)`.
pub fn w2_loss(
    ctx: &GpuContext,
    channels: usize,
    (weight, target_trace): (f64, f64),
    inputs: LossInputs<'_>,
    (losses, loss_slot): (&Buffer, usize),
) -> Result<Dispatch> {
    let p = LossParams {
        channels: u32_of(channels),
        norm_slot: inputs.scalars.1,
        loss_slot: u32_of(loss_slot),
        weight_over_c: (weight / channels as f64) as f32,
        target_trace: target_trace as f32,
        ..Default::default()
    };
    let buffers = [inputs.mean, inputs.target_mean, inputs.cov, inputs.y, inputs.scalars.0, losses];
    Dispatch::new(ctx, &shader("w2_loss")?, &p, &buffers, [1, 1, 1])
}

uniform! {
    struct MeanGradParams {
        channels: u32,
        w_over_n: f32,
    }
}

/// `bias = w/N · (2 (mean − target_mean) / C − 2 K·mean)`.
pub fn mean_grad(
    ctx: &GpuContext,
    channels: usize,
    w_over_n: f64,
    k: &Buffer,
    (mean, target_mean): (&Buffer, &Buffer),
    bias: &Buffer,
) -> Result<Dispatch> {
    let p = MeanGradParams { channels: u32_of(channels), w_over_n: w_over_n as f32, ..Default::default() };
    let grid = elementwise_grid(channels, max_dim(ctx));
    Dispatch::new(ctx, &shader("w2_mean_grad")?, &p, &[k, mean, target_mean, bias], grid)
}

uniform! {
    struct BiasParams {
        count: u32,
        channels: u32,
        plane: u32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[
    kernel!("channel_mean", &[GRID_ENTRY, WORKGROUP_SUM], MeanParams, "features; mut mean"),
    kernel!("w2_covariance", &[ELEMENTWISE], CovarianceParams, "gram; mean; mut cov"),
    kernel!("matmul", &[MATMUL_SCALE, GEMM_TILED], MatmulParams, "a; b; mut out"),
    kernel!(
        "matmul_cpu",
        &[GRID_ENTRY, MATMUL_SCALE],
        MatmulParams,
        "a: array<vec4<f32>>; b: array<vec4<f32>>; mut out: array<vec4<f32>>"
    ),
    kernel!("sqrtm_start", &[ELEMENTWISE], StartParams, "m; slots; mut y; mut z"),
    kernel!("w2_loss", &[WORKGROUP_SUM], LossParams, "mean; target_mean; cov; y; slots; mut losses"),
    kernel!("w2_mean_grad", &[ELEMENTWISE], MeanGradParams, "k; mean; target_mean; mut bias"),
    kernel!("channel_bias_grad", &[ELEMENTWISE], BiasParams, "bias; features; mut grad"),
];

/// `grad[c, p] += bias[c]` where `features[c, p] > 0` (framed at `frame`).
pub fn channel_bias_grad(ctx: &GpuContext, bias: &Buffer, features: Tensor<'_>, grad: &Buffer) -> Result<Dispatch> {
    let (channels, frame) = (features.channels, features.frame);
    let features = features.buffer;
    let count = frame.buffer_floats(channels);
    let p = BiasParams {
        count: u32_of(count),
        channels: u32_of(channels),
        plane: u32_of(frame.plane()),
        ..Default::default()
    };
    let grid = elementwise_grid(count, max_dim(ctx));
    Dispatch::new(ctx, &shader("channel_bias_grad")?, &p, &[bias, features, grad], grid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_adapters_get_the_register_blocked_matmul_where_the_size_allows() {
        assert_eq!(matmul_variant(&AdapterFacts::example_gpu(), 512), MatmulVariant::Tiled);
        let cpu = AdapterFacts { device_type: wgpu::DeviceType::Cpu, ..AdapterFacts::example_gpu() };
        for (c, v) in
            [(64, MatmulVariant::Cpu), (512, MatmulVariant::Cpu), (65, MatmulVariant::Tiled), (4, MatmulVariant::Tiled)]
        {
            assert_eq!(matmul_variant(&cpu, c), v, "C = {c}");
        }
    }
}

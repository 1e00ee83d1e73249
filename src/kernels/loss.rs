//! Host wrappers of the loss kernels: `sq_diff_sum` + `reduce_sum` (loss scalars), `content_grad`,
//! `style_grad` (variants: `style_grad.wgsl` on the tiled GEMM core for GPUs, `style_grad_cpu.wgsl` for CPU
//! adapters), `tv_loss_grad`. Feature maps and the image are framed ([`crate::frame`]); the elementwise
//! kernels run over whole buffers, whose frames are zero on both sides and so add nothing.

use super::shared::{ELEMENTWISE, GEMM_TILED, GRID_ENTRY, PARTIAL_SUMS, WORKGROUP_SUM};
use super::uniform::uniform;
use super::{kernel, template, Kernel};

use super::coop::{self, CoopConfig, OperandRange};
use super::grid::{elementwise_grid, gemm_grid, gemm_grid_with, grid_2d, ELEMENTWISE_GROUP};
use super::uniform::u32_of;
use super::{max_dim, render, shader, AdapterFacts, Dispatch, TemplateValue};
use crate::error::Result;
use crate::frame::Frame;
use crate::gpu::GpuContext;
use crate::tensor::Tensor;
use wgpu::Buffer;

uniform! {
    struct CountParams {
        count: u32,
    }
}

uniform! {
    struct ReduceParams {
        count: u32,
        slot: u32,
        scale: f32,
    }
}

uniform! {
    struct ContentParams {
        count: u32,
        accumulate: u32,
        scale: f32,
    }
}

uniform! {
    struct StyleParams {
        channels: u32,
        pixels: u32,
        pixel_tiles: u32,
        accumulate: u32,
        scale: f32,
        plane: u32,
        stride: u32,
    }
}

uniform! {
    struct StyleCpuParams {
        channels: u32,
        pixels4: u32,
        plane4: u32,
        stride4: u32,
        chunks: u32,
        accumulate: u32,
        scale: f32,
    }
}

uniform! {
    struct TvParams {
        height: u32,
        width: u32,
        accumulate: u32,
        weight: f32,
        stride: u32,
        plane: u32,
    }
}

uniform! {
    struct TemporalParams {
        height: u32,
        width: u32,
        accumulate: u32,
        stride: u32,
        plane: u32,
        grad_scale: f32,
        loss_scale: f32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[
    kernel!("sq_diff_sum", &[PARTIAL_SUMS, WORKGROUP_SUM], CountParams, "a; b; mut partials"),
    kernel!("reduce_sum", &[WORKGROUP_SUM], ReduceParams, "partials; mut losses"),
    kernel!("content_grad", &[ELEMENTWISE], ContentParams, "features; target_features; mut grad"),
    kernel!("style_grad", &[GEMM_TILED], StyleParams, "gram; target_gram; features; mut grad"),
    template!("style_grad_cpu", &[GRID_ENTRY], StyleCpuParams),
    kernel!("tv_loss_grad", &[GRID_ENTRY, WORKGROUP_SUM], TvParams, "x; mut grad; mut partials"),
    kernel!(
        "temporal_loss_grad",
        &[GRID_ENTRY, WORKGROUP_SUM],
        TemporalParams,
        "x; warped; weights; mut grad; mut partials"
    ),
];

/// Elements one `sq_diff_sum` workgroup reduces (256 threads x 16).
pub const SQ_DIFF_GROUP_ELEMS: usize = 256 * 16;

/// Partials [`sq_diff_sum`] writes for `count` elements (one per workgroup).
pub fn sq_diff_partials(count: usize) -> usize {
    count.div_ceil(SQ_DIFF_GROUP_ELEMS).max(1)
}

/// `partials[g] = Σ (a − b)²` over group g's elements.
pub fn sq_diff_sum(ctx: &GpuContext, count: usize, a: &Buffer, b: &Buffer, partials: &Buffer) -> Result<Dispatch> {
    let (x, y) = grid_2d(sq_diff_partials(count), max_dim(ctx));
    Dispatch::new(
        ctx,
        &shader("sq_diff_sum")?,
        &CountParams { count: u32_of(count), ..Default::default() },
        &[a, b, partials],
        [x, y, 1],
    )
}

/// `losses[slot] = scale * Σ partials[0..count]`.
pub fn reduce_sum(
    ctx: &GpuContext,
    count: usize,
    slot: usize,
    scale: f64,
    partials: &Buffer,
    losses: &Buffer,
) -> Result<Dispatch> {
    let p = ReduceParams { count: u32_of(count), slot: u32_of(slot), scale: scale as f32, ..Default::default() };
    Dispatch::new(ctx, &shader("reduce_sum")?, &p, &[partials, losses], [1, 1, 1])
}

/// `grad (+)= scale * (features − target)`.
pub fn content_grad(
    ctx: &GpuContext,
    count: usize,
    scale: f64,
    accumulate: bool,
    features: &Buffer,
    target: &Buffer,
    grad: &Buffer,
) -> Result<Dispatch> {
    let p = ContentParams {
        count: u32_of(count),
        accumulate: u32::from(accumulate),
        scale: scale as f32,
        ..Default::default()
    };
    Dispatch::new(ctx, &shader("content_grad")?, &p, &[features, target, grad], elementwise_grid(count, max_dim(ctx)))
}

/// Which kernel computes a style gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StyleGradVariant {
    /// `style_grad.wgsl`, a GEMM on the tiled core (GPUs).
    Tiled,
    /// `style_grad_cpu.wgsl`: [`STYLE_CPU_CHANNELS`] channels x 16 pixels per invocation (CPU adapters).
    Cpu,
    /// `style_grad.wgsl` on the tensor-core core (or its twin).
    Coop { config: CoopConfig, twin: bool },
}

/// Channels and vec4s of pixels per invocation, and invocations per workgroup, of the CPU style gradient.
pub const STYLE_CPU_CHANNELS: usize = 8;
pub const STYLE_CPU_VEC4S: usize = 4;
pub const STYLE_CPU_WORKGROUP: usize = 16;

impl StyleGradVariant {
    /// The variant for a layer of `channels` channels (its GEMM has that many rows): with tensor cores, the half
    /// tile when they fit it ([`super::coop::CoopConfig::for_rows`]).
    pub fn for_channels(self, channels: usize) -> StyleGradVariant {
        match self {
            StyleGradVariant::Coop { config, twin } => {
                StyleGradVariant::Coop { config: config.for_rows(channels), twin }
            }
            other => other,
        }
    }
}

pub fn style_grad_variant(adapter: &AdapterFacts) -> StyleGradVariant {
    if let Some((config, twin)) = adapter.coop {
        StyleGradVariant::Coop { config, twin }
    } else if adapter.is_cpu() {
        StyleGradVariant::Cpu
    } else {
        StyleGradVariant::Tiled
    }
}

/// The CPU style gradient's WGSL for `channels` channels (read 4 columns of G − A at a time when they are a
/// multiple of 4, as in every VGG layer).
pub fn style_grad_cpu_shader(channels: usize) -> Result<crate::gpu::Shader> {
    render(
        "style_grad_cpu",
        &[
            ("MR", TemplateValue::Int(u32_of(STYLE_CPU_CHANNELS))),
            ("NV", TemplateValue::Int(u32_of(STYLE_CPU_VEC4S))),
            ("WG", TemplateValue::Int(u32_of(STYLE_CPU_WORKGROUP))),
            ("QUAD", TemplateValue::Bool(channels.is_multiple_of(4))),
        ],
    )
    .map(|s| s.trusted(true))
}

/// A style-gradient kernel ready to record: the tensor-core arm carries its operands' ranges. A = G − target is
/// bounded by 2 · max(max|G|, max|target|): `gram_slot` receives max|G| (a [`coop::max_abs`] over the Gram, recorded
/// first), `target_largest` is max|target|; B = the features, whose range is already in `features_slot` (measured
/// for the Gram).
#[derive(Clone, Copy, Debug)]
pub enum StyleGradKernel<'a> {
    Tiled,
    Cpu,
    Coop { config: CoopConfig, twin: bool, ranges: &'a Buffer, gram_slot: u32, target_largest: f32, features_slot: u32 },
}

impl StyleGradKernel<'_> {
    /// The kernel of an f32 variant (a tensor-core variant needs its ranges: an error here).
    pub fn f32(variant: StyleGradVariant) -> Result<Self> {
        match variant {
            StyleGradVariant::Tiled => Ok(Self::Tiled),
            StyleGradVariant::Cpu => Ok(Self::Cpu),
            StyleGradVariant::Coop { .. } => {
                Err(crate::error::Error::Validation("the tensor-core style gradient needs its operand ranges".into()))
            }
        }
    }
}

/// The style gradient's operands: G, the target A, the features F and the gradient it adds to (framed like F).
#[derive(Clone, Copy)]
pub struct StyleGradIo<'a> {
    pub gram: &'a Buffer,
    pub target: &'a Buffer,
    pub features: Tensor<'a>,
    pub grad: &'a Buffer,
}

/// `grad (+)= scale * (gram − target) · features` (C x C times the C framed planes at `frame`), the ReLU mask
/// of `features` fused.
pub fn style_grad(
    ctx: &GpuContext,
    kernel: StyleGradKernel<'_>,
    scale: f64,
    accumulate: bool,
    io: StyleGradIo<'_>,
) -> Result<Vec<Dispatch>> {
    let (channels, frame) = (io.features.channels, io.features.frame);
    // N: each channel's data rows as they lie in the frame (their zero columns give zero gradients).
    let pixels = frame.height * frame.stride;
    let bufs = [io.gram, io.target, io.features.buffer, io.grad];
    let tiled_params = |pixel_tiles| StyleParams {
        channels: u32_of(channels),
        pixels: u32_of(pixels),
        pixel_tiles,
        accumulate: u32::from(accumulate),
        scale: scale as f32,
        plane: u32_of(frame.plane()),
        stride: u32_of(frame.stride),
        ..Default::default()
    };
    match kernel {
        StyleGradKernel::Tiled => {
            let (groups, pixel_tiles) = gemm_grid(channels, pixels, max_dim(ctx));
            Ok(vec![Dispatch::new(ctx, &shader("style_grad")?, &tiled_params(pixel_tiles), &bufs, groups)?])
        }
        StyleGradKernel::Coop { config, twin, ranges, gram_slot, target_largest, features_slot } => {
            let (groups, pixel_tiles) = gemm_grid_with(config.tile(), channels, pixels, max_dim(ctx));
            let range = coop::max_abs(ctx, channels * channels, gram_slot, io.gram, ranges)?;
            let a = OperandRange { slot: Some(gram_slot), largest: target_largest, bound: 2.0 };
            let uniform = coop::scale_uniform(ctx, a, OperandRange::measured(features_slot));
            let shader = coop::gemm_shader("style_grad", config, twin)?;
            let [g, t, f, gr] = bufs;
            let d = Dispatch::new(ctx, &shader, &tiled_params(pixel_tiles), &[g, t, f, gr, ranges, &uniform], groups)?;
            Ok(vec![range, d])
        }
        StyleGradKernel::Cpu => {
            let pixels4 = pixels / 4;
            let chunks = pixels4.div_ceil(STYLE_CPU_VEC4S);
            let p = StyleCpuParams {
                channels: u32_of(channels),
                pixels4: u32_of(pixels4),
                plane4: u32_of(frame.plane() / 4),
                stride4: u32_of(frame.stride / 4),
                chunks: u32_of(chunks),
                accumulate: u32::from(accumulate),
                scale: scale as f32,
                ..Default::default()
            };
            let (x, y) = grid_2d(chunks.div_ceil(STYLE_CPU_WORKGROUP), max_dim(ctx));
            let z = u32_of(channels.div_ceil(STYLE_CPU_CHANNELS));
            Ok(vec![Dispatch::new(ctx, &style_grad_cpu_shader(channels)?, &p, &bufs, [x, y, z])?])
        }
    }
}

/// Partials `tv_loss_grad` writes for a `height` x `width` image.
pub fn tv_partials(height: usize, width: usize) -> usize {
    (3 * height * width).div_ceil(ELEMENTWISE_GROUP)
}

/// TV loss partials and `grad (+)= dL_tv/dx` for the 3-channel framed image `x` of `height` x `width`.
pub fn tv_loss_grad(
    ctx: &GpuContext,
    (height, width): (usize, usize),
    weight: f64,
    accumulate: bool,
    x: &Buffer,
    grad: &Buffer,
    partials: &Buffer,
) -> Result<Dispatch> {
    let frame = Frame::new(height, width);
    let p = TvParams {
        height: u32_of(height),
        width: u32_of(width),
        accumulate: u32::from(accumulate),
        weight: weight as f32,
        stride: u32_of(frame.stride),
        plane: u32_of(frame.plane()),
        ..Default::default()
    };
    Dispatch::new(
        ctx,
        &shader("tv_loss_grad")?,
        &p,
        &[x, grad, partials],
        elementwise_grid(3 * height * width, max_dim(ctx)),
    )
}

/// Partials `temporal_loss_grad` writes for a `height` x `width` image (as TV's: one per 256 elements).
pub fn temporal_partials(height: usize, width: usize) -> usize {
    tv_partials(height, width)
}

/// What the temporal loss of one earlier frame reads on the framed 3-channel image x of `size` (height, width):
/// the warped painting (framed like x) and its reliability (one framed channel).
pub struct TemporalIo<'a> {
    pub x: &'a Buffer,
    pub target: &'a Buffer,
    pub weights: &'a Buffer,
    pub grad: &'a Buffer,
    pub partials: &'a Buffer,
}

/// The temporal loss's partials and `grad (+)= dL_t/dx` (docs/MATHS.md, "Video"): `weight` is w_t and `pixels`
/// the image's H·W (the canvas's margin has weight 0 and does not count).
pub fn temporal_loss_grad(
    ctx: &GpuContext,
    (height, width): (usize, usize),
    (weight, pixels): (f64, usize),
    accumulate: bool,
    io: TemporalIo<'_>,
) -> Result<Dispatch> {
    let frame = Frame::new(height, width);
    let d = 3.0 * pixels as f64;
    let p = TemporalParams {
        height: u32_of(height),
        width: u32_of(width),
        accumulate: u32::from(accumulate),
        stride: u32_of(frame.stride),
        plane: u32_of(frame.plane()),
        grad_scale: (2.0 * weight / d) as f32,
        loss_scale: (weight / d) as f32,
        ..Default::default()
    };
    let TemporalIo { x, target, weights, grad, partials } = io;
    Dispatch::new(
        ctx,
        &shader("temporal_loss_grad")?,
        &p,
        &[x, target, weights, grad, partials],
        elementwise_grid(3 * height * width, max_dim(ctx)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_style_grad_validates_with_naga_and_is_chosen_on_cpus() {
        for channels in [64, 65] {
            let s = style_grad_cpu_shader(channels).unwrap();
            crate::kernels::tests::validate(&s.name, &s.wgsl);
        }
        assert_eq!(style_grad_variant(&AdapterFacts::example_lavapipe()), StyleGradVariant::Cpu);
        assert_eq!(style_grad_variant(&AdapterFacts::example_gpu()), StyleGradVariant::Tiled);
    }
}

//! The Gram style term at one layer (docs/MATHS.md, "Losses"): w_s / C² · Σ (G − A)², G the image's Gram matrix
//! and A the blend of the style images' Grams, and the style images' blended statistics both style terms start
//! from ([`StyleBlend`]).

use super::{BlockSite, GradientAt, LossKind, LossSpec, LossTerm, Recorded, Site, StyleLoss, TermSetup};
use crate::error::Result;
use crate::gaussian::{w2_target, W2Target};
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels;
use crate::kernels::gram::{gram, GramKernel};
use crate::kernels::loss::{
    reduce_sum, sq_diff_partials, sq_diff_sum, style_grad, style_grad_variant, StyleGradIo, StyleGradKernel,
    StyleGradVariant,
};
use crate::network::{self, GpuNet};
use crate::plan::Shape;
use crate::planar::PlanarImage;
use crate::setup_stage::SetupStage;
use crate::tensor::Tensor;

/// The GPU buffers one Gram term allocates: the target A and the image's G.
pub fn buffers(shape: Shape) -> [(&'static str, usize); 2] {
    let c = shape.channels;
    [("style target", c * c), ("gram", c * c)]
}

/// Partials its reduction writes.
pub fn partials(shape: Shape) -> usize {
    sq_diff_partials(shape.channels * shape.channels)
}

/// The style images' statistics at each style layer, blended in f64 by the blend weights: A_l = Σ_k b_k G_l(k),
/// each Gram at its image's own size, and (for W2) the means.
pub struct StyleBlend {
    grams: Vec<Vec<f64>>,
    means: Vec<Vec<f64>>,
}

impl StyleBlend {
    /// Each image at its own size, at once or (beyond `limits`) block by block ([`crate::tiled::grams`]).
    pub fn new(
        ctx: &GpuContext,
        net: &GpuNet,
        spec: &LossSpec,
        styles: &[(PlanarImage, f64)],
        limits: crate::layout::MemoryLimits,
        on_stage: &mut dyn FnMut(SetupStage),
    ) -> Result<Self> {
        let mut blend = Self { grams: Vec::new(), means: Vec::new() };
        if spec.style_layers.is_empty() {
            return Ok(blend);
        }
        let (variant, w2) = (spec.gram_variant(&net.facts), spec.style_loss == StyleLoss::W2);
        for (k, (image, weight)) in styles.iter().enumerate() {
            let (width, height) = (image.width, image.height);
            on_stage(SetupStage::StyleTargets { index: k, count: styles.len(), width, height });
            let x = crate::vgg::subtract_mean(image);
            let image = (&x[..], width, height);
            let kind = (net.pooling, net.input_affine.is_some());
            let grid = crate::layout::statistics_grid((width, height), &spec.style_layers, kind, net.bytes, limits)?;
            let (g, means) = match grid {
                None => network::grams(ctx, net, image, &spec.style_layers, variant, w2)?,
                Some(grid) => crate::tiled::grams(ctx, net, image, &spec.style_layers, (variant, w2), &grid, on_stage)?,
            };
            if k == 0 {
                blend.grams = g.iter().map(|m| vec![0.0; m.len()]).collect();
                blend.means = means.iter().map(|m| vec![0.0; m.len()]).collect();
            }
            for (t, m) in blend.grams.iter_mut().zip(&g).chain(blend.means.iter_mut().zip(&means)) {
                for (a, &v) in t.iter_mut().zip(m) {
                    *a += weight * f64::from(v);
                }
            }
        }
        Ok(blend)
    }

    /// The blended Gram of style layer `i` (the i-th of the spec's style layers).
    pub fn gram(&self, i: usize) -> &[f64] {
        &self.grams[i]
    }

    /// The W2 target of style layer `i` of shape `shape`: the blend's second moments are C·A.
    pub fn w2_target(&self, i: usize, shape: Shape) -> W2Target {
        let c = shape.channels;
        let second_moments: Vec<f64> = self.grams[i].iter().map(|g| g * c as f64).collect();
        w2_target(&self.means[i], &second_moments, c)
    }
}

pub struct GramTerm {
    /// relu l on the whole canvas (what G's and the gradient's means are over), and in the network's buffers (a
    /// block's when tiled), with those buffers.
    shape: Shape,
    inside: Shape,
    features: wgpu::Buffer,
    gram_variant: kernels::gram::GramVariant,
    weight: f64,
    /// This image's Gram G and the blended target A.
    gram: wgpu::Buffer,
    target: wgpu::Buffer,
    /// With tensor cores: A's largest magnitude, the network's operand ranges and the entries where the
    /// features' and G's are measured.
    target_largest: f32,
    coop: Option<(wgpu::Buffer, (u32, u32))>,
    style_grad_variant: StyleGradVariant,
    recorded: Recorded,
}

impl GramTerm {
    pub fn new(setup: &TermSetup<'_>, layer: usize, slot: usize, blended: &[f64]) -> Result<Self> {
        let TermSetup { ctx, facts, network, spec, scratch, on } = setup;
        let (shape, inside) = (on.layers[layer], network.plan.layers[layer]);
        let (c, frame, features) = (shape.channels, inside.frame(), network.relu(layer));
        let target32: Vec<f32> = blended.iter().map(|&v| v as f32).collect();
        let target = ctx.buffer_from("style target", &target32)?;
        let gram_buffer = ctx.storage_buffer("gram", c * c)?;
        let target_largest = target32.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let coop = network.coop_ranges.as_ref().map(|r| (r.buffer.clone(), (r.slot(), r.slot())));
        let gp = &scratch.gram_partials;
        let gram_variant = spec.gram_variant(facts).for_channels(c);
        let kernel = GramKernel::of(gram_variant, || match &coop {
            Some((ranges, (features_slot, _))) => Ok((ranges, *features_slot)),
            None => Err(no_ranges()),
        })?;
        // Tiled, G is the blocks' sum (pass 1, [`LossTerm::block_statistics`]), made before the scalar reads it.
        let after_forward = match on.grid {
            None => gram(ctx, kernel, Tensor::new(features, c, frame), gp, &gram_buffer)?,
            Some(_) => Vec::new(),
        };
        let scale = spec.style_weight / (c * c) as f64;
        let scalar = vec![
            sq_diff_sum(ctx, c * c, &gram_buffer, &target, &scratch.partials)?,
            reduce_sum(ctx, sq_diff_partials(c * c), slot, scale, &scratch.partials, &scratch.slots)?,
        ];
        Ok(Self {
            shape,
            inside,
            features: features.clone(),
            gram_variant,
            weight: spec.style_weight,
            gram: gram_buffer,
            target,
            target_largest,
            coop,
            style_grad_variant: style_grad_variant(facts).for_channels(c),
            recorded: Recorded { kind: LossKind::Style, site: Site::Relu(layer), after_forward, scalar },
        })
    }
}

impl LossTerm for GramTerm {
    fn recorded(&self) -> &Recorded {
        &self.recorded
    }

    /// 4·w_s / (C²·C·H·W) · (G − A)·F, through F's ReLU mask.
    fn gradient(&self, ctx: &GpuContext, at: GradientAt<'_>) -> Result<Vec<Dispatch>> {
        let GradientAt { features, grad, accumulate } = at;
        let s = self.shape;
        let c = s.channels;
        let scale = 4.0 * self.weight / ((c * c) as f64 * s.floats() as f64);
        let kernel = match (self.style_grad_variant, &self.coop) {
            (StyleGradVariant::Coop { config, twin }, Some((ranges, (features_slot, gram_slot)))) => {
                let (gram_slot, features_slot, target_largest) = (*gram_slot, *features_slot, self.target_largest);
                StyleGradKernel::Coop { config, twin, ranges, gram_slot, target_largest, features_slot }
            }
            (variant, _) => StyleGradKernel::f32(variant)?,
        };
        let features = Tensor::new(features, c, self.inside.frame());
        let io = StyleGradIo { gram: &self.gram, target: &self.target, features, grad };
        style_grad(ctx, kernel, scale, accumulate, io)
    }

    /// The block's features outside what it owns zeroed, their Gram (over the block's positions), added to G
    /// weighted by the block's share of the positions: Σ over blocks = the canvas's G (docs/MATHS.md, "Tiled
    /// evaluation").
    fn block_statistics(&self, ctx: &GpuContext, block: BlockSite<'_>) -> Result<Vec<Dispatch>> {
        let features = Tensor::new(&self.features, self.shape.channels, self.inside.frame());
        block_gram(ctx, features, self.gram_variant, block, &self.gram)
    }
}

/// The dispatches adding one block's Gram of `features` over the positions it owns into `into` (keeping the
/// features outside them zeroed afterwards: pass 1 runs its own forward).
pub fn block_gram(
    ctx: &GpuContext,
    features: Tensor<'_>,
    variant: kernels::gram::GramVariant,
    block: BlockSite<'_>,
    into: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let c = features.channels;
    let partial = &block.scratch.gram_partials;
    let block_gram = block.scratch.block_gram.as_ref().ok_or_else(untiled)?;
    let mut out = vec![kernels::region::keep(ctx, features, block.owned)?];
    out.extend(gram(ctx, GramKernel::f32(variant)?, features, partial, block_gram)?);
    out.push(add_share(ctx, c * c, block, block_gram, into)?);
    Ok(out)
}

/// `into = share · block` for the first block, `into += share · block` for the others.
pub fn add_share(
    ctx: &GpuContext,
    count: usize,
    block: BlockSite<'_>,
    from: &wgpu::Buffer,
    into: &wgpu::Buffer,
) -> Result<Dispatch> {
    let share = kernels::vector::Coefficient::constant(block.share as f32);
    kernels::vector::axpy(ctx, count, !block.first, share, from, into, &block.scratch.slots)
}

/// A block statistic without the tiled scratch (a bug: they are made together).
fn untiled() -> crate::error::Error {
    crate::error::Error::Validation("a block's statistics without the tiled scratch".into())
}

/// A tensor-core Gram term in a network without operand ranges (a bug: they are made together).
fn no_ranges() -> crate::error::Error {
    crate::error::Error::Validation("a tensor-core Gram term in a network without operand ranges".into())
}

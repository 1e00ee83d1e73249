//! The Gram style term at one layer (docs/MATHS.md, "Losses"): w_s / C² · Σ (G − A)², G the image's Gram matrix
//! and A the blend of the style images' Grams, and the style images' blended statistics both style terms start
//! from ([`StyleBlend`]).

use super::masked::{self, weigh, Coverage, TermMask};
use super::w2::{w2_gram_variant, w2_style_grad_variant};
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
use crate::masks::Mask;
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

/// The style images' statistics at each style layer: blended in f64 by the blend weights, A_l = Σ_k b_k G_l(k),
/// each Gram at its image's own size, and (for W2) the means; or, with `--style-masks`, each image's own (one
/// region per image, weighted by its `--style-image-masks` mask where given).
pub struct StyleBlend {
    regions: Vec<Statistics>,
}

/// One target's statistics: per style layer, its Gram and (W2) its means.
#[derive(Default)]
struct Statistics {
    grams: Vec<Vec<f64>>,
    means: Vec<Vec<f64>>,
}

impl Statistics {
    /// Adds `weight` times one image's statistics.
    fn add(&mut self, weight: f64, (grams, means): &(Vec<Vec<f32>>, Vec<Vec<f32>>)) {
        if self.grams.is_empty() {
            self.grams = grams.iter().map(|m| vec![0.0; m.len()]).collect();
            self.means = means.iter().map(|m| vec![0.0; m.len()]).collect();
        }
        for (t, m) in self.grams.iter_mut().zip(grams).chain(self.means.iter_mut().zip(means)) {
            for (a, &v) in t.iter_mut().zip(m) {
                *a += weight * f64::from(v);
            }
        }
    }
}

/// The style images, each with its blend weight and (`--style-image-masks`) its mask at its size.
pub type StyleImages<'a> = &'a [(PlanarImage, f64, Option<Mask>)];

impl StyleBlend {
    /// Each image at its own size, at once or (beyond `limits`) block by block ([`crate::tiled::grams`]).
    pub fn new(
        ctx: &GpuContext,
        net: &GpuNet,
        spec: &LossSpec,
        styles: StyleImages<'_>,
        limits: crate::layout::MemoryLimits,
        on_stage: &mut dyn FnMut(SetupStage),
    ) -> Result<Self> {
        let mut blend = Self { regions: Vec::new() };
        if spec.style_layers.is_empty() {
            return Ok(blend);
        }
        let (variant, w2) = (spec.gram_variant(&net.facts), spec.style_loss == StyleLoss::W2);
        for (k, (image, weight, mask)) in styles.iter().enumerate() {
            let (width, height) = (image.width, image.height);
            on_stage(SetupStage::StyleTargets { index: k, count: styles.len(), width, height });
            let x = crate::vgg::subtract_mean(image);
            let image = (&x[..], width, height);
            let kind = (net.pooling, net.input_affine.is_some(), mask.is_some());
            let grid = crate::layout::statistics_grid((width, height), &spec.style_layers, kind, net.bytes, limits)?;
            let layers = &spec.style_layers;
            let statistics = match grid {
                None => network::masked_grams(ctx, net, image, layers, variant, w2, mask.as_ref())?,
                Some(grid) => {
                    crate::tiled::grams(ctx, net, image, layers, (variant, w2), (&grid, mask.as_ref()), on_stage)?
                }
            };
            // Masked, one region per image; else one blend of them all.
            if spec.style_masked() || blend.regions.is_empty() {
                blend.regions.push(Statistics::default());
            }
            let into = blend.regions.last_mut().expect("a region");
            into.add(if spec.style_masked() { 1.0 } else { *weight }, &statistics);
        }
        Ok(blend)
    }

    /// The target Gram of region `r` (0 for the blend) at style layer `i` (the i-th of the spec's style layers).
    pub fn gram(&self, r: usize, i: usize) -> &[f64] {
        &self.regions[r].grams[i]
    }

    /// The W2 target of region `r` at style layer `i` of shape `shape`: the statistics' second moments are C·A.
    pub fn w2_target(&self, r: usize, i: usize, shape: Shape) -> W2Target {
        let c = shape.channels;
        let region = &self.regions[r];
        let second_moments: Vec<f64> = region.grams[i].iter().map(|g| g * c as f64).collect();
        w2_target(&region.means[i], &second_moments, c)
    }
}

pub struct GramTerm {
    /// relu l on the whole canvas (what G's and the gradient's means are over), and in the network's buffers (a
    /// block's when tiled), with those buffers.
    shape: Shape,
    inside: Shape,
    features: wgpu::Buffer,
    gram_variant: kernels::gram::GramVariant,
    /// w_s, times the region's weight β with a mask.
    weight: f64,
    /// This image's Gram G and the blended target A.
    gram: wgpu::Buffer,
    target: wgpu::Buffer,
    /// With tensor cores: A's largest magnitude, the network's operand ranges and the entries where the
    /// features' and G's are measured.
    target_largest: f32,
    coop: Option<(wgpu::Buffer, (u32, u32))>,
    style_grad_variant: StyleGradVariant,
    /// With `--style-masks`: the region's weights at this layer and the scratch its weighted features and
    /// unweighted gradient pass through (docs/MATHS.md, "Spatial control").
    mask: Option<(TermMask, wgpu::Buffer)>,
    recorded: Recorded,
}

impl GramTerm {
    /// The term with target `blended`; with `masked`, the region's mask and weight β.
    pub fn new(
        setup: &TermSetup<'_>,
        layer: usize,
        slot: usize,
        blended: &[f64],
        masked: Option<(TermMask, f64)>,
    ) -> Result<Self> {
        let TermSetup { ctx, facts, network, spec, scratch, on } = setup;
        let (shape, inside) = (on.layers[layer], network.plan.layers[layer]);
        let (c, frame, features) = (shape.channels, inside.frame(), network.relu(layer));
        let target32: Vec<f32> = blended.iter().map(|&v| v as f32).collect();
        let target = ctx.buffer_from("style target", &target32)?;
        let gram_buffer = ctx.storage_buffer("gram", c * c)?;
        let target_largest = target32.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (mask, beta) = match masked {
            Some((m, beta)) => (Some((m, masked::scratch(scratch)?.clone())), beta),
            None => (None, 1.0),
        };
        let coverage = mask.as_ref().map_or(Coverage::Everywhere, |(m, _)| m.coverage);
        // Weighted features leave the operand range the tensor cores' scaling measured: f32 (as W2's).
        let weighted = coverage == Coverage::Partly;
        let coop = network.coop_ranges.as_ref().filter(|_| !weighted).map(|r| (r.buffer.clone(), (r.slot(), r.slot())));
        let gp = &scratch.gram_partials;
        let gram_variant = if weighted { w2_gram_variant(facts) } else { spec.gram_variant(facts) }.for_channels(c);
        let kernel = GramKernel::of(gram_variant, || match &coop {
            Some((ranges, (features_slot, _))) => Ok((ranges, *features_slot)),
            None => Err(no_ranges()),
        })?;
        // Tiled, G is the blocks' sum (pass 1, [`LossTerm::block_statistics`]), made before the scalar reads it.
        let after_forward = match (on.grid, &mask, coverage) {
            (Some(_), _, _) | (None, _, Coverage::Nowhere) => Vec::new(),
            (None, Some((m, weighted)), Coverage::Partly) => {
                let mut out = vec![weigh(ctx, &m.statistics_input, Tensor::new(features, c, frame), weighted)?];
                out.extend(gram(ctx, kernel, Tensor::new(weighted, c, frame), gp, &gram_buffer)?);
                out
            }
            (None, _, _) => gram(ctx, kernel, Tensor::new(features, c, frame), gp, &gram_buffer)?,
        };
        let weight = spec.style_weight * beta;
        let area = mask.as_ref().map_or(1.0, |(m, _)| m.area);
        let scale = weight * area / (c * c) as f64;
        let scalar = match coverage {
            Coverage::Nowhere => Vec::new(),
            _ => vec![
                sq_diff_sum(ctx, c * c, &gram_buffer, &target, &scratch.partials)?,
                reduce_sum(ctx, sq_diff_partials(c * c), slot, scale, &scratch.partials, &scratch.slots)?,
            ],
        };
        let style_grad_variant =
            if weighted { w2_style_grad_variant(facts) } else { style_grad_variant(facts) }.for_channels(c);
        Ok(Self {
            shape,
            inside,
            features: features.clone(),
            gram_variant,
            weight,
            gram: gram_buffer,
            target,
            target_largest,
            coop,
            style_grad_variant,
            mask,
            recorded: Recorded { kind: LossKind::Style, site: Site::Relu(layer), after_forward, scalar },
        })
    }
}

impl LossTerm for GramTerm {
    fn recorded(&self) -> &Recorded {
        &self.recorded
    }

    /// 4·w_s / (C²·C·H·W) · (G − A)·F, through F's ReLU mask; with a mask, that weighted by w per position.
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
        match &self.mask {
            Some((m, _)) if m.coverage == Coverage::Nowhere => m.nothing(ctx, features, grad, accumulate),
            Some((m, weighted)) if m.coverage == Coverage::Partly => {
                let io = StyleGradIo { gram: &self.gram, target: &self.target, features, grad: weighted };
                let mut out = style_grad(ctx, kernel, scale, false, io)?;
                let unweighted = Tensor::new(weighted, c, self.inside.frame());
                out.push(m.weighted_gradient(ctx, unweighted, grad, accumulate)?);
                Ok(out)
            }
            _ => {
                let io = StyleGradIo { gram: &self.gram, target: &self.target, features, grad };
                style_grad(ctx, kernel, scale, accumulate, io)
            }
        }
    }

    /// The block's features outside what it owns zeroed, their Gram (over the block's positions), added to G
    /// weighted by the block's share of the positions: Σ over blocks = the canvas's G (docs/MATHS.md, "Tiled
    /// evaluation").
    /// With a mask, the block's features weighted first (by the canvas's normalisation: Σ over blocks = G_w).
    fn block_statistics(&self, ctx: &GpuContext, block: BlockSite<'_>) -> Result<Vec<Dispatch>> {
        let features = Tensor::new(&self.features, self.shape.channels, self.inside.frame());
        match &self.mask {
            Some((m, _)) if m.coverage == Coverage::Nowhere => Ok(Vec::new()),
            Some((m, weighted)) if m.coverage == Coverage::Partly => {
                // block_gram zeroes the weighted copy outside what the block owns.
                let mut out = vec![weigh(ctx, &m.statistics_input, features, weighted)?];
                let weighted = Tensor::new(weighted, self.shape.channels, self.inside.frame());
                out.extend(block_gram(ctx, weighted, self.gram_variant, block, &self.gram)?);
                Ok(out)
            }
            _ => block_gram(ctx, features, self.gram_variant, block, &self.gram),
        }
    }

    fn block_uploads(&self, b: usize) -> Vec<(&wgpu::Buffer, &[f32])> {
        self.mask.as_ref().map_or_else(Vec::new, |(m, _)| m.uploads(b))
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

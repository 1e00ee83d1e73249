//! The Wasserstein-2 style term at one layer (docs/MATHS.md, "Style loss: Wasserstein-2"): the distance between
//! Gaussian fits (mean and covariance) of the image's features and the style images' blend, with the matrix
//! square root by Newton–Schulz iterations on the GPU (`kernels::w2`).

use super::masked::{weigh, Coverage, TermMask};
use super::{BlockSite, GradientAt, LossKind, LossTerm, Recorded, Site, TermSetup};
use crate::error::Result;
use crate::gaussian::W2Target;
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels::gram::GramVariant;
use crate::kernels::loss::StyleGradVariant;
use crate::kernels::w2::Alpha;
use crate::kernels::{self, AdapterFacts};
use crate::plan::Shape;
use crate::tensor::Tensor;

/// Newton–Schulz iterations of the W2 terms' matrix square root (fixed: docs/MATHS.md says why).
pub const W2_NEWTON_SCHULZ_ITERATIONS: usize = 20;

/// The W2 terms' Gram kernel: the f32 one even with tensor cores (the covariance C·G − μ·μᵀ subtracts large
/// numbers, which f16 operands would not survive).
pub fn w2_gram_variant(facts: &AdapterFacts) -> GramVariant {
    match kernels::gram::variant(facts) {
        GramVariant::Coop { .. } if facts.is_cpu() => GramVariant::Cpu,
        GramVariant::Coop { .. } => GramVariant::Tiled,
        v => v,
    }
}

/// The W2 terms' K·F kernel: the f32 style gradient (K is not a Gram: the tensor-core variant's operand range
/// for G would not bound it).
pub fn w2_style_grad_variant(facts: &AdapterFacts) -> StyleGradVariant {
    match kernels::loss::style_grad_variant(facts) {
        StyleGradVariant::Coop { .. } if facts.is_cpu() => StyleGradVariant::Cpu,
        StyleGradVariant::Coop { .. } => StyleGradVariant::Tiled,
        v => v,
    }
}

/// The GPU buffers one W2 term allocates: T = Σ̂_t^½ and μ_t; the image's μ, Σ̂, M, P, Y (two), Z (two), K and
/// the gradient's bias; the image's Gram; zeros standing for A in the style gradient kernel and ‖M‖_F².
pub fn buffers(shape: Shape) -> [(&'static str, usize); 4] {
    let c = shape.channels;
    [
        ("style target", c * c + c),
        ("w2 matrices", 8 * c * c + 2 * c),
        ("gram", c * c),
        ("w2 zeros and scalars", c * c + 1),
    ]
}

/// One W2 style term's target and working matrices (docs/MATHS.md, "Style loss: Wasserstein-2").
pub struct W2Term {
    /// relu l on the whole canvas (what the means are over), and in the network's buffers (a block's when tiled).
    shape: Shape,
    inside: Shape,
    features: wgpu::Buffer,
    weight: f64,
    /// T = Σ̂_t^½ (C x C) and μ_t (C), from the host.
    sqrt_target: wgpu::Buffer,
    target_mean: wgpu::Buffer,
    /// tr Σ̂_t and the ridge ε.
    target_trace: f64,
    ridge: f64,
    /// This image's Gram, means, Σ̂ and M = T·Σ̂·T.
    gram: wgpu::Buffer,
    mean: wgpu::Buffer,
    cov: wgpu::Buffer,
    m: wgpu::Buffer,
    /// Newton–Schulz: P, and Y, Z ping-ponged between two buffers each.
    p: wgpu::Buffer,
    y: [wgpu::Buffer; 2],
    z: [wgpu::Buffer; 2],
    /// The gradient's K and per-channel bias.
    k: wgpu::Buffer,
    bias: wgpu::Buffer,
    /// Zeros standing for A in the style gradient kernel, and ‖M‖_F² (entry `norm_slot`).
    zeros: wgpu::Buffer,
    scalars: wgpu::Buffer,
    norm_slot: u32,
    /// The matmul kernel for this layer's C x C products, the Gram's and the style gradient's.
    matmul: kernels::w2::MatmulVariant,
    gram_variant: GramVariant,
    style_grad_variant: StyleGradVariant,
    /// With `--style-masks`: the region's weights at this layer and the scratch its weighted features and
    /// unweighted gradient pass through (docs/MATHS.md, "Spatial control").
    mask: Option<(TermMask, wgpu::Buffer)>,
    /// The loss scalar's weight: w_s·β·a with a mask (`weight` is w_s·β), w_s without.
    loss_weight: f64,
    recorded: Recorded,
}

/// Which of the two Y, Z buffers holds the Newton–Schulz result.
const W2_RESULT: usize = W2_NEWTON_SCHULZ_ITERATIONS % 2;

impl W2Term {
    /// The term with `target`; with `masked`, the region's mask and weight β.
    pub fn new(
        setup: &TermSetup<'_>,
        layer: usize,
        slot: usize,
        target: &W2Target,
        masked: Option<(TermMask, f64)>,
    ) -> Result<Self> {
        let TermSetup { ctx, facts, network, spec, scratch, on } = setup;
        let (mask, beta) = match masked {
            Some((m, beta)) => (Some((m, super::masked::scratch(scratch)?.clone())), beta),
            None => (None, 1.0),
        };
        let area = mask.as_ref().map_or(1.0, |(m, _)| m.area);
        let (shape, inside) = (on.layers[layer], network.plan.layers[layer]);
        let c = shape.channels;
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let matrix = |label: &str| ctx.storage_buffer(label, c * c);
        let mut term = Self {
            shape,
            inside,
            features: network.relu(layer).clone(),
            weight: spec.style_weight * beta,
            loss_weight: spec.style_weight * beta * area,
            mask,
            sqrt_target: ctx.buffer_from("w2 target sqrt", &f32s(&target.sqrt))?,
            target_mean: ctx.buffer_from("w2 target mean", &f32s(&target.mean))?,
            target_trace: (0..c).map(|i| target.cov[i * c + i]).sum(),
            ridge: target.ridge,
            gram: matrix("gram")?,
            mean: ctx.storage_buffer("w2 mean", c)?,
            cov: matrix("w2 covariance")?,
            m: matrix("w2 M")?,
            p: matrix("w2 P")?,
            y: [matrix("w2 Y")?, matrix("w2 Y")?],
            z: [matrix("w2 Z")?, matrix("w2 Z")?],
            k: matrix("w2 K")?,
            bias: ctx.storage_buffer("w2 bias", c)?,
            zeros: ctx.storage_buffer("w2 zeros", c * c)?,
            scalars: ctx.storage_buffer("w2 scalars", 1)?,
            norm_slot: 0,
            matmul: kernels::w2::matmul_variant(facts, c),
            gram_variant: w2_gram_variant(facts),
            style_grad_variant: w2_style_grad_variant(facts),
            recorded: Recorded {
                kind: LossKind::Style,
                site: Site::Relu(layer),
                after_forward: Vec::new(),
                scalar: Vec::new(),
            },
        };
        if term.coverage() == Coverage::Nowhere {
            return Ok(term);
        }
        // Tiled, G and μ are the blocks' sums (pass 1, [`LossTerm::block_statistics`]); what follows from them
        // runs once.
        let mut after_forward = match on.grid {
            None => term.statistics(ctx, facts, &scratch.gram_partials)?,
            Some(_) => Vec::new(),
        };
        after_forward.extend(term.after_statistics(ctx, &scratch.partials)?);
        term.recorded.after_forward = after_forward;
        term.recorded.scalar = vec![term.loss_scalar(ctx, (&scratch.slots, slot))?];
        Ok(term)
    }

    /// Where the term's mask covers its layer (everywhere without one).
    fn coverage(&self) -> Coverage {
        self.mask.as_ref().map_or(Coverage::Everywhere, |(m, _)| m.coverage)
    }

    /// After the forward pass, the features' statistics: G and μ.
    fn statistics(
        &self,
        ctx: &GpuContext,
        facts: &AdapterFacts,
        gram_partials: &wgpu::Buffer,
    ) -> Result<Vec<Dispatch>> {
        let gram_kernel = kernels::gram::GramKernel::f32(w2_gram_variant(facts))?;
        let features = self.block_features();
        match &self.mask {
            Some((m, weighted)) if m.coverage == Coverage::Partly => {
                let mean_input = m.mean_input.as_ref().ok_or_else(|| {
                    crate::error::Error::Validation("a masked W2 term without its means' weights".into())
                })?;
                let weighted_features = Tensor::new(weighted, self.shape.channels, self.inside.frame());
                let mut out = vec![weigh(ctx, &m.statistics_input, features, weighted)?];
                out.extend(kernels::gram::gram(ctx, gram_kernel, weighted_features, gram_partials, &self.gram)?);
                out.push(weigh(ctx, mean_input, features, weighted)?);
                out.push(kernels::w2::channel_mean(ctx, weighted_features, &self.mean)?);
                Ok(out)
            }
            _ => {
                let mut out = kernels::gram::gram(ctx, gram_kernel, features, gram_partials, &self.gram)?;
                out.push(kernels::w2::channel_mean(ctx, features, &self.mean)?);
                Ok(out)
            }
        }
    }

    /// The features in the network's buffer.
    fn block_features(&self) -> Tensor<'_> {
        Tensor::new(&self.features, self.shape.channels, self.inside.frame())
    }

    /// From G and μ: Σ̂, M, ‖M‖_F², then the Newton–Schulz iterations.
    fn after_statistics(&self, ctx: &GpuContext, partials: &wgpu::Buffer) -> Result<Vec<Dispatch>> {
        use kernels::w2::{covariance, matmul, sqrtm_start};
        let (c, scalars) = (self.shape.channels, &self.scalars);
        let one = Alpha::constant(1.0);
        let mut out = vec![covariance(ctx, c, self.ridge, &self.gram, &self.mean, &self.cov)?];
        out.push(matmul(ctx, self.matmul, c, (one, 0.0), (&self.cov, &self.sqrt_target), &self.p, scalars)?);
        out.push(matmul(ctx, self.matmul, c, (one, 0.0), (&self.sqrt_target, &self.p), &self.m, scalars)?);
        let norm = (scalars, self.norm_slot as usize);
        out.extend(kernels::vector::dot(
            ctx,
            kernels::vector::Reduction::Dot,
            c * c,
            (&self.m, &self.m),
            partials,
            norm,
        )?);
        out.push(sqrtm_start(ctx, c, &self.m, (scalars, self.norm_slot), (&self.y[0], &self.z[0]))?);
        for i in 0..W2_NEWTON_SCHULZ_ITERATIONS {
            let (now, next) = (i % 2, 1 - i % 2);
            // P = (3I − Z·Y) / 2;  Y ← Y·P;  Z ← P·Z.
            out.push(matmul(
                ctx,
                self.matmul,
                c,
                (Alpha::constant(-0.5), 1.5),
                (&self.z[now], &self.y[now]),
                &self.p,
                scalars,
            )?);
            out.push(matmul(ctx, self.matmul, c, (one, 0.0), (&self.y[now], &self.p), &self.y[next], scalars)?);
            out.push(matmul(ctx, self.matmul, c, (one, 0.0), (&self.p, &self.z[now]), &self.z[next], scalars)?);
        }
        Ok(out)
    }

    /// The loss scalar into its slot.
    fn loss_scalar(&self, ctx: &GpuContext, slot: (&wgpu::Buffer, usize)) -> Result<Dispatch> {
        let (c, weight, scalars) = (self.shape.channels, self.loss_weight, &self.scalars);
        let inputs = kernels::w2::LossInputs {
            mean: &self.mean,
            target_mean: &self.target_mean,
            cov: &self.cov,
            y: &self.y[W2_RESULT],
            scalars: (scalars, self.norm_slot),
        };
        kernels::w2::w2_loss(ctx, c, (weight, self.target_trace), inputs, slot)
    }
}

impl LossTerm for W2Term {
    fn recorded(&self) -> &Recorded {
        &self.recorded
    }

    /// dL/dF: K = (I − T·M^−½·T) / C with M^−½ = Z / ‖M‖_F^½, then 2w/N · K·F (the style gradient kernel
    /// with K for G − A and zeros for A) and the per-channel bias, both through F's ReLU mask.
    fn gradient(&self, ctx: &GpuContext, at: GradientAt<'_>) -> Result<Vec<Dispatch>> {
        let GradientAt { features, grad, accumulate } = at;
        use kernels::w2::{channel_bias_grad, matmul, mean_grad};
        let (c, frame, weight) = (self.shape.channels, self.inside.frame(), self.weight);
        let (zeros, scalars, variant) = (&self.zeros, &self.scalars, self.style_grad_variant);
        let n = (self.shape.height * self.shape.width) as f64;
        let inv_c = 1.0 / c as f32;
        let scaled = Alpha { scale: -inv_c, slot: self.norm_slot, power: -0.25 };
        let (t, z) = (&self.sqrt_target, &self.z[W2_RESULT]);
        let features = Tensor::new(features, c, frame);
        // With a mask, the unweighted gradient goes to the scratch first, then w ⊙ it to dL/dF.
        let (into, into_accumulates) = match &self.mask {
            Some((m, _)) if m.coverage == Coverage::Nowhere => return m.nothing(ctx, features, grad, accumulate),
            Some((m, weighted)) if m.coverage == Coverage::Partly => (weighted, false),
            _ => (grad, accumulate),
        };
        let io = kernels::loss::StyleGradIo { gram: &self.k, target: zeros, features, grad: into };
        let kernel = kernels::loss::StyleGradKernel::f32(variant)?;
        let mut out = vec![
            matmul(ctx, self.matmul, c, (Alpha::constant(1.0), 0.0), (t, z), &self.p, scalars)?,
            matmul(ctx, self.matmul, c, (scaled, inv_c), (&self.p, t), &self.k, scalars)?,
        ];
        out.extend(kernels::loss::style_grad(ctx, kernel, 2.0 * weight / n, into_accumulates, io)?);
        out.push(mean_grad(ctx, c, weight / n, &self.k, (&self.mean, &self.target_mean), &self.bias)?);
        out.push(channel_bias_grad(ctx, &self.bias, features, into)?);
        if let Some((m, weighted)) = self.mask.as_ref().filter(|(m, _)| m.coverage == Coverage::Partly) {
            out.push(m.weighted_gradient(ctx, Tensor::new(weighted, c, frame), grad, accumulate)?);
        }
        Ok(out)
    }

    /// The block's G over the positions it owns, added to the canvas's (as the Gram term's), then its means of
    /// those positions (the others are zero now) added the same way.
    /// With a mask, the block's features weighted first for each (by the canvas's normalisation).
    fn block_statistics(&self, ctx: &GpuContext, block: BlockSite<'_>) -> Result<Vec<Dispatch>> {
        let variant = self.gram_variant;
        let block_mean =
            block.scratch.block_mean.as_ref().ok_or_else(|| {
                crate::error::Error::Validation("a W2 block's means without the tiled scratch".into())
            })?;
        let features = self.block_features();
        let c = self.shape.channels;
        let mut out = Vec::new();
        let (gram_of, mean_of) = match &self.mask {
            Some((m, _)) if m.coverage == Coverage::Nowhere => return Ok(out),
            Some((m, weighted)) if m.coverage == Coverage::Partly => {
                let mean_input = m.mean_input.as_ref().ok_or_else(|| {
                    crate::error::Error::Validation("a masked W2 term without its means' weights".into())
                })?;
                let weighted_features = Tensor::new(weighted, c, self.inside.frame());
                out.push(kernels::region::keep(ctx, features, block.owned)?);
                out.push(weigh(ctx, &m.statistics_input, features, weighted)?);
                out.extend(super::gram::block_gram(ctx, weighted_features, variant, block, &self.gram)?);
                out.push(weigh(ctx, mean_input, features, weighted)?);
                (None, weighted_features)
            }
            _ => (Some(features), features),
        };
        if let Some(features) = gram_of {
            out.extend(super::gram::block_gram(ctx, features, variant, block, &self.gram)?);
        }
        out.push(kernels::w2::channel_mean(ctx, mean_of, block_mean)?);
        out.push(super::gram::add_share(ctx, c, block, block_mean, &self.mean)?);
        Ok(out)
    }

    fn block_uploads(&self, b: usize) -> Vec<(&wgpu::Buffer, &[f32])> {
        self.mask.as_ref().map_or_else(Vec::new, |(m, _)| m.uploads(b))
    }
}

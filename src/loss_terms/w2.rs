//! The Wasserstein-2 style term at one layer (docs/MATHS.md, "Style loss: Wasserstein-2"): the distance between
//! Gaussian fits (mean and covariance) of the image's features and the style images' blend, with the matrix
//! square root by Newton–Schulz iterations on the GPU (`kernels::w2`).

use super::{GradientAt, LossKind, LossTerm, Recorded, Site, TermSetup};
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
    shape: Shape,
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
    /// The matmul kernel for this layer's C x C products, and the style gradient's.
    matmul: kernels::w2::MatmulVariant,
    style_grad_variant: StyleGradVariant,
    recorded: Recorded,
}

/// Which of the two Y, Z buffers holds the Newton–Schulz result.
const W2_RESULT: usize = W2_NEWTON_SCHULZ_ITERATIONS % 2;

impl W2Term {
    pub fn new(setup: &TermSetup<'_>, layer: usize, slot: usize, target: &W2Target) -> Result<Self> {
        let TermSetup { ctx, facts, network, spec, scratch } = setup;
        let shape = network.plan.layers[layer];
        let c = shape.channels;
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let matrix = |label: &str| ctx.storage_buffer(label, c * c);
        let mut term = Self {
            shape,
            weight: spec.style_weight,
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
            style_grad_variant: w2_style_grad_variant(facts),
            recorded: Recorded {
                kind: LossKind::Style,
                site: Site::Relu(layer),
                after_forward: Vec::new(),
                scalar: Vec::new(),
            },
        };
        let features = network.relu(layer);
        term.recorded.after_forward =
            term.forward(ctx, facts, features, (&scratch.gram_partials, &scratch.partials))?;
        term.recorded.scalar = vec![term.loss_scalar(ctx, (&scratch.slots, slot))?];
        Ok(term)
    }

    /// After the forward pass: G, μ, Σ̂, M, ‖M‖_F², then the Newton–Schulz iterations.
    fn forward(
        &self,
        ctx: &GpuContext,
        facts: &AdapterFacts,
        features: &wgpu::Buffer,
        (gram_partials, partials): (&wgpu::Buffer, &wgpu::Buffer),
    ) -> Result<Vec<Dispatch>> {
        use kernels::w2::{channel_mean, covariance, matmul, sqrtm_start};
        let (c, frame, scalars) = (self.shape.channels, self.shape.frame(), &self.scalars);
        let one = Alpha::constant(1.0);
        let gram_kernel = kernels::gram::GramKernel::f32(w2_gram_variant(facts))?;
        let features = Tensor::new(features, c, frame);
        let mut out = kernels::gram::gram(ctx, gram_kernel, features, gram_partials, &self.gram)?;
        out.push(channel_mean(ctx, features, &self.mean)?);
        out.push(covariance(ctx, c, self.ridge, &self.gram, &self.mean, &self.cov)?);
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
        let (c, weight, scalars) = (self.shape.channels, self.weight, &self.scalars);
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
        let (c, frame, weight) = (self.shape.channels, self.shape.frame(), self.weight);
        let (zeros, scalars, variant) = (&self.zeros, &self.scalars, self.style_grad_variant);
        let n = (frame.height * frame.width) as f64;
        let inv_c = 1.0 / c as f32;
        let scaled = Alpha { scale: -inv_c, slot: self.norm_slot, power: -0.25 };
        let (t, z) = (&self.sqrt_target, &self.z[W2_RESULT]);
        let features = Tensor::new(features, c, frame);
        let io = kernels::loss::StyleGradIo { gram: &self.k, target: zeros, features, grad };
        let kernel = kernels::loss::StyleGradKernel::f32(variant)?;
        let mut out = vec![
            matmul(ctx, self.matmul, c, (Alpha::constant(1.0), 0.0), (t, z), &self.p, scalars)?,
            matmul(ctx, self.matmul, c, (scaled, inv_c), (&self.p, t), &self.k, scalars)?,
        ];
        out.extend(kernels::loss::style_grad(ctx, kernel, 2.0 * weight / n, accumulate, io)?);
        out.push(mean_grad(ctx, c, weight / n, &self.k, (&self.mean, &self.target_mean), &self.bias)?);
        out.push(channel_bias_grad(ctx, &self.bias, features, grad)?);
        Ok(out)
    }
}

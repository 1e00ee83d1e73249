//! The loss terms of docs/MATHS.md on the GPU: their targets (the content image's features; the blended Gram
//! matrices of the style images, each at its own size), the dispatches that compute the loss scalars, and the
//! dispatches that add each term's gradient where the network's backward pass asks for it.
//!
//! The style terms measure either the Gram distance or the Wasserstein-2 distance between Gaussian fits of the
//! features ([`StyleLoss`]); the W2 terms run the Newton–Schulz square root on the GPU (`kernels::w2`).
//!
//! Terms are kept in a fixed order — content layers, then style layers, as the options list them — and each
//! writes one slot of a small loss buffer; TV on the image takes the last slot. Only the scalars are ever read
//! back, and only when asked for.

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels::gram::GramVariant;
use crate::kernels::w2::Alpha;
use crate::kernels::{self, loss::StyleGradVariant, AdapterFacts};
use crate::network::{self, GpuNet, LossGradientSite, Network};
use crate::plan::Shape;
use crate::planar::PlanarImage;

/// Loss values of one image (see `docs/MATHS.md`).
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize)]
pub struct Losses {
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    pub total: f64,
}

/// What one slot of the loss buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    Content,
    Style,
    TotalVariation,
}

/// What the style terms measure (docs/MATHS.md, "Losses" and "Style loss: Wasserstein-2").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StyleLoss {
    /// The squared distance between Gram matrices (jcjohnson/neural-style's).
    #[default]
    Gram,
    /// The Wasserstein-2 distance between Gaussian fits (mean and covariance) of the features.
    W2,
}

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

/// The loss weights and layers (relu indices) of a problem.
#[derive(Clone, Debug, PartialEq)]
pub struct LossSpec {
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
    pub content_layers: Vec<usize>,
    pub style_layers: Vec<usize>,
    pub style_loss: StyleLoss,
}

impl LossSpec {
    /// Every layer a term reads.
    pub fn taps(&self) -> Vec<usize> {
        self.content_layers.iter().chain(&self.style_layers).copied().collect()
    }

    /// The slot kinds in order (content terms, style terms, TV).
    pub fn slots(&self) -> Vec<LossKind> {
        let content = self.content_layers.iter().map(|_| LossKind::Content);
        let style = self.style_layers.iter().map(|_| LossKind::Style);
        content.chain(style).chain([LossKind::TotalVariation]).collect()
    }

    /// The GPU buffers the terms allocate for an image with these layer shapes (`layers[l]` = relu l's shape)
    /// on an adapter with these facts, as (what, floats): the same list [`LossTerms::new`] allocates from.
    pub fn buffers(
        &self,
        layers: &[Shape],
        width: usize,
        height: usize,
        facts: &AdapterFacts,
    ) -> Vec<(&'static str, usize)> {
        let w2 = self.style_loss == StyleLoss::W2;
        let gram = if w2 { w2_gram_variant(facts) } else { kernels::gram::variant(facts) };
        let mut partials = kernels::loss::tv_partials(height, width);
        let mut gram_scratch = 1;
        for &l in &self.content_layers {
            partials = partials.max(kernels::loss::sq_diff_partials(layers[l].buffer_floats()));
        }
        for &l in &self.style_layers {
            let s = layers[l];
            partials = partials.max(kernels::loss::sq_diff_partials(s.channels * s.channels));
            gram_scratch = gram_scratch.max(kernels::gram::partial_len(gram, s.channels, s.frame()));
        }
        // Content targets are copies of framed feature maps (their frames zero like the features').
        let mut out: Vec<(&'static str, usize)> =
            self.content_layers.iter().map(|&l| ("content target", layers[l].buffer_floats())).collect();
        let mut largest = 0;
        for &l in &self.style_layers {
            let c = layers[l].channels;
            largest = largest.max(c * c);
            match self.style_loss {
                StyleLoss::Gram => out.push(("style target", c * c)),
                // T = Σ̂_t^½ and μ_t; the image's μ, Σ̂, M, P, Y (two), Z (two), K and the gradient's bias.
                StyleLoss::W2 => out.extend([("style target", c * c + c), ("w2 matrices", 8 * c * c + 2 * c)]),
            }
            out.push(("gram", c * c));
        }
        if w2 && !self.style_layers.is_empty() {
            out.push(("w2 zeros and scalars", largest + self.style_layers.len()));
        }
        out.push(("loss partials", partials));
        out.push(("gram partials", gram_scratch));
        out.push(("loss slots", self.slots().len()));
        out
    }
}

/// A term evaluated at one tapped layer.
enum Term {
    /// Target features P.
    Content { layer: usize, target: wgpu::Buffer },
    /// This image's Gram G and the blended target A (with tensor cores: A's largest magnitude, and the entries
    /// of the network's ranges where the features' and G's are measured).
    Style { layer: usize, gram: wgpu::Buffer, target: wgpu::Buffer, target_largest: f32, slots: Option<(u32, u32)> },
    /// The Wasserstein-2 distance to the blended Gaussian fit.
    StyleW2 { layer: usize, w2: Box<W2Term> },
}

impl Term {
    fn layer(&self) -> usize {
        match self {
            Term::Content { layer, .. } | Term::Style { layer, .. } | Term::StyleW2 { layer, .. } => *layer,
        }
    }
}

/// One W2 style term's target and working matrices (docs/MATHS.md, "Style loss: Wasserstein-2").
pub struct W2Term {
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
    /// The entry of the W2 scalars holding ‖M‖_F².
    norm_slot: u32,
    /// The matmul kernel for this layer's C x C products.
    matmul: kernels::w2::MatmulVariant,
}

/// Which of the two Y, Z buffers holds the Newton–Schulz result.
const W2_RESULT: usize = W2_NEWTON_SCHULZ_ITERATIONS % 2;

impl W2Term {
    fn new(
        ctx: &GpuContext,
        facts: &AdapterFacts,
        c: usize,
        target: &crate::gaussian::W2Target,
        norm_slot: u32,
    ) -> Result<Self> {
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let matrix = |label: &str| ctx.storage_buffer(label, c * c);
        Ok(Self {
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
            norm_slot,
            matmul: kernels::w2::matmul_variant(facts, c),
        })
    }

    /// After the forward pass: G, μ, Σ̂, M, ‖M‖_F², then the Newton–Schulz iterations.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        ctx: &GpuContext,
        facts: &AdapterFacts,
        shape: Shape,
        features: &wgpu::Buffer,
        gram_partials: &wgpu::Buffer,
        partials: &wgpu::Buffer,
        scalars: &wgpu::Buffer,
    ) -> Result<Vec<Dispatch>> {
        use kernels::w2::{channel_mean, covariance, matmul, sqrtm_start};
        let (c, frame) = (shape.channels, shape.frame());
        let one = Alpha::constant(1.0);
        let mut out = kernels::gram::gram(ctx, w2_gram_variant(facts), c, frame, features, gram_partials, &self.gram)?;
        out.push(channel_mean(ctx, c, frame, features, &self.mean)?);
        out.push(covariance(ctx, c, self.ridge, &self.gram, &self.mean, &self.cov)?);
        out.push(matmul(ctx, self.matmul, c, one, 0.0, (&self.cov, &self.sqrt_target), &self.p, scalars)?);
        out.push(matmul(ctx, self.matmul, c, one, 0.0, (&self.sqrt_target, &self.p), &self.m, scalars)?);
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
                Alpha::constant(-0.5),
                1.5,
                (&self.z[now], &self.y[now]),
                &self.p,
                scalars,
            )?);
            out.push(matmul(ctx, self.matmul, c, one, 0.0, (&self.y[now], &self.p), &self.y[next], scalars)?);
            out.push(matmul(ctx, self.matmul, c, one, 0.0, (&self.p, &self.z[now]), &self.z[next], scalars)?);
        }
        Ok(out)
    }

    /// The loss scalar into its slot.
    fn scalar(
        &self,
        ctx: &GpuContext,
        c: usize,
        weight: f64,
        scalars: &wgpu::Buffer,
        slot: (&wgpu::Buffer, usize),
    ) -> Result<Dispatch> {
        let inputs = kernels::w2::LossInputs {
            mean: &self.mean,
            target_mean: &self.target_mean,
            cov: &self.cov,
            y: &self.y[W2_RESULT],
            scalars: (scalars, self.norm_slot),
        };
        kernels::w2::w2_loss(ctx, c, (weight, self.target_trace), inputs, slot)
    }

    /// dL/dF: K = (I − T·M^−½·T) / C with M^−½ = Z / ‖M‖_F^½, then 2w/N · K·F (the style gradient kernel
    /// with K for G − A and zeros for A) and the per-channel bias, both through F's ReLU mask.
    #[allow(clippy::too_many_arguments)]
    fn gradient(
        &self,
        ctx: &GpuContext,
        variant: StyleGradVariant,
        shape: Shape,
        weight: f64,
        written: bool,
        (zeros, scalars): (&wgpu::Buffer, &wgpu::Buffer),
        (features, grad): (&wgpu::Buffer, &wgpu::Buffer),
    ) -> Result<Vec<Dispatch>> {
        use kernels::w2::{channel_bias_grad, matmul, mean_grad};
        let (c, frame) = (shape.channels, shape.frame());
        let n = (frame.height * frame.width) as f64;
        let inv_c = 1.0 / c as f32;
        let scaled = Alpha { scale: -inv_c, slot: self.norm_slot, power: -0.25 };
        let (t, z) = (&self.sqrt_target, &self.z[W2_RESULT]);
        Ok(vec![
            matmul(ctx, self.matmul, c, Alpha::constant(1.0), 0.0, (t, z), &self.p, scalars)?,
            matmul(ctx, self.matmul, c, scaled, inv_c, (&self.p, t), &self.k, scalars)?,
            kernels::loss::style_grad(
                ctx,
                variant,
                c,
                frame,
                2.0 * weight / n,
                written,
                &self.k,
                zeros,
                features,
                grad,
            )?,
            mean_grad(ctx, c, weight / n, &self.k, (&self.mean, &self.target_mean), &self.bias)?,
            channel_bias_grad(ctx, c, frame, &self.bias, features, grad)?,
        ])
    }
}

/// The loss terms of one problem on the GPU.
pub struct LossTerms {
    spec: LossSpec,
    /// The network's tensor-core operand ranges (a handle to the same buffer), with tensor cores.
    ranges: Option<wgpu::Buffer>,
    style_grad_variant: StyleGradVariant,
    terms: Vec<Term>,
    /// W2 terms: zeros standing for A in the style gradient kernel, and the ‖M‖_F² of each term.
    w2_zeros: Option<wgpu::Buffer>,
    w2_scalars: Option<wgpu::Buffer>,
    /// The Grams of the image's style layers (after the forward pass; the style gradient needs them).
    pub grams: Vec<Dispatch>,
    /// Dispatches writing the content and style terms' scalars into their slots: only on iterations whose
    /// losses are read.
    pub scalars: Vec<Dispatch>,
    /// TV gradient on the image (its per-workgroup loss partials as a by-product): it adds to dL/dx, so it runs
    /// after the backward pass.
    pub tv_grad: Vec<Dispatch>,
    /// The TV partials summed into their slot: only when the losses are read.
    pub tv_scalar: Vec<Dispatch>,
    /// One f32 per slot of [`LossSpec::slots`].
    pub slots_buffer: wgpu::Buffer,
    partials: wgpu::Buffer,
    _gram_partials: wgpu::Buffer,
    bytes: u64,
}

impl LossTerms {
    /// Computes the targets and builds the dispatches. `content_x` is the content image (mean-subtracted);
    /// `styles` the style images (pixels) with their blend weights (summing to 1). `network` is the plan the
    /// image is optimised with: its forward runs once here on the content image.
    pub fn new(
        ctx: &GpuContext,
        net: &GpuNet,
        network: &Network,
        spec: &LossSpec,
        content_x: &[f32],
        styles: &[(PlanarImage, f64)],
        on_stage: &mut dyn FnMut(crate::setup_stage::SetupStage),
    ) -> Result<Self> {
        let layers = &network.plan.layers;
        let (w, h) = (network.plan.spec.width, network.plan.spec.height);
        let facts = net.facts.clone();
        let w2 = spec.style_loss == StyleLoss::W2;
        let (gram_variant, style_grad_variant) = if w2 {
            (w2_gram_variant(&facts), w2_style_grad_variant(&facts))
        } else {
            (kernels::gram::variant(&facts), kernels::loss::style_grad_variant(&facts))
        };
        let planned = spec.buffers(layers, w, h, &facts);
        let bytes = planned.iter().map(|(_, f)| 4 * *f as u64).sum();
        let floats = |what: &str| planned.iter().find(|(n, _)| *n == what).map_or(1, |p| p.1);

        // Style targets A_l = Σ_k b_k G_l(style k), each Gram at its image's own size, blended in f64 (W2: the
        // means too, and the blend's second moments are C·A_l).
        let mut blended: Vec<Vec<f64>> = Vec::new();
        let mut blended_means: Vec<Vec<f64>> = Vec::new();
        if !spec.style_layers.is_empty() {
            for (k, (image, weight)) in styles.iter().enumerate() {
                let (width, height) = (image.width, image.height);
                on_stage(crate::setup_stage::SetupStage::StyleTargets { index: k, count: styles.len(), width, height });
                let x = crate::vgg::subtract_mean(image);
                let (g, means) = network::grams(ctx, net, (&x, width, height), &spec.style_layers, gram_variant, w2)?;
                if k == 0 {
                    blended = g.iter().map(|m| vec![0.0; m.len()]).collect();
                    blended_means = means.iter().map(|m| vec![0.0; m.len()]).collect();
                }
                for (t, m) in blended.iter_mut().zip(&g).chain(blended_means.iter_mut().zip(&means)) {
                    for (a, &v) in t.iter_mut().zip(m) {
                        *a += weight * f64::from(v);
                    }
                }
            }
        }

        // Content targets: the content image's own features.
        let mut terms = Vec::new();
        if !spec.content_layers.is_empty() {
            on_stage(crate::setup_stage::SetupStage::ContentTargets);
            network.run_forward(ctx, content_x)?;
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            for &l in &spec.content_layers {
                let n = layers[l].buffer_floats();
                let target = ctx.storage_buffer("content target", n)?;
                enc.copy_buffer_to_buffer(network.relu(l), 0, &target, 0, (n * 4) as u64);
                terms.push(Term::Content { layer: l, target });
            }
            ctx.submit_and_wait(enc.finish())?;
        }
        if w2 && !spec.style_layers.is_empty() {
            on_stage(crate::setup_stage::SetupStage::W2Targets { layers: spec.style_layers.len() });
        }
        for (i, &l) in spec.style_layers.iter().enumerate() {
            let c = layers[l].channels;
            if w2 {
                let srm: Vec<f64> = blended[i].iter().map(|g| g * c as f64).collect();
                let target = crate::gaussian::w2_target(&blended_means[i], &srm, c);
                terms.push(Term::StyleW2 { layer: l, w2: Box::new(W2Term::new(ctx, &facts, c, &target, i as u32)?) });
                continue;
            }
            let target32: Vec<f32> = blended[i].iter().map(|&v| v as f32).collect();
            let target = ctx.buffer_from("style target", &target32)?;
            let gram = ctx.storage_buffer("gram", c * c)?;
            let target_largest = target32.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let slots = network.coop_ranges.as_ref().map(|r| (r.slot(), r.slot()));
            terms.push(Term::Style { layer: l, gram, target, target_largest, slots });
        }

        // Scratch shared by the reductions (each finishes before the next starts).
        let partials = ctx.storage_buffer("loss partials", floats("loss partials"))?;
        let gram_partials = ctx.storage_buffer("gram partials", floats("gram partials"))?;
        let slots_buffer = ctx.storage_buffer("loss slots", floats("loss slots"))?;
        let (w2_zeros, w2_scalars) = if w2 && !spec.style_layers.is_empty() {
            let largest = spec.style_layers.iter().map(|&l| layers[l].channels.pow(2)).max().unwrap_or(1);
            (
                Some(ctx.storage_buffer("w2 zeros", largest)?),
                Some(ctx.storage_buffer("w2 scalars", spec.style_layers.len())?),
            )
        } else {
            (None, None)
        };

        let (mut grams, mut scalars) = (Vec::new(), Vec::new());
        for (slot, t) in terms.iter().enumerate() {
            let s = layers[t.layer()];
            let f = network.relu(t.layer());
            match t {
                Term::Content { target, .. } => {
                    // Over the whole framed buffers (the frames are zero in both); the mean is over C·H·W.
                    let n = s.buffer_floats();
                    scalars.push(kernels::loss::sq_diff_sum(ctx, n, f, target, &partials)?);
                    let scale = spec.content_weight / s.floats() as f64;
                    let count = kernels::loss::sq_diff_partials(n);
                    scalars.push(kernels::loss::reduce_sum(ctx, count, slot, scale, &partials, &slots_buffer)?);
                }
                Term::Style { gram, target, slots, .. } => {
                    let c = s.channels;
                    grams.extend(match (gram_variant, slots) {
                        (kernels::gram::GramVariant::Coop { config, twin }, Some((features_slot, _))) => {
                            let ranges = &network.coop_ranges.as_ref().expect("ranges").buffer;
                            let (frame, gp) = (s.frame(), &gram_partials);
                            kernels::gram::gram_coop(ctx, config, twin, c, frame, f, gp, gram, ranges, *features_slot)?
                        }
                        _ => kernels::gram::gram(ctx, gram_variant, c, s.frame(), f, &gram_partials, gram)?,
                    });
                    scalars.push(kernels::loss::sq_diff_sum(ctx, c * c, gram, target, &partials)?);
                    let scale = spec.style_weight / (c * c) as f64;
                    let count = kernels::loss::sq_diff_partials(c * c);
                    scalars.push(kernels::loss::reduce_sum(ctx, count, slot, scale, &partials, &slots_buffer)?);
                }
                Term::StyleW2 { w2, .. } => {
                    let ws = w2_scalars.as_ref().expect("allocated with W2 terms");
                    grams.extend(w2.forward(ctx, &facts, s, f, &gram_partials, &partials, ws)?);
                    scalars.push(w2.scalar(ctx, s.channels, spec.style_weight, ws, (&slots_buffer, slot))?);
                }
            }
        }
        let (tv_grad, tv_scalar) = match network.grad_image() {
            Some(grad_x) => (
                vec![kernels::loss::tv_loss_grad(ctx, h, w, spec.tv_weight, true, network.image(), grad_x, &partials)?],
                vec![kernels::loss::reduce_sum(
                    ctx,
                    kernels::loss::tv_partials(h, w),
                    terms.len(),
                    1.0,
                    &partials,
                    &slots_buffer,
                )?],
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Self {
            spec: spec.clone(),
            ranges: network.coop_ranges.as_ref().map(|r| r.buffer.clone()),
            style_grad_variant,
            terms,
            w2_zeros,
            w2_scalars,
            grams,
            scalars,
            tv_grad,
            tv_scalar,
            slots_buffer,
            partials,
            _gram_partials: gram_partials,
            bytes,
        })
    }

    /// The dispatches adding every term at `site.layer` to its gradient (in term order), for
    /// [`Network::build_backward`].
    pub fn gradient_dispatches(
        &self,
        ctx: &GpuContext,
        shapes: &[Shape],
        site: LossGradientSite<'_>,
    ) -> Result<Vec<Dispatch>> {
        let s = shapes[site.layer];
        let mut written = !site.first_writes;
        let mut out = Vec::new();
        for t in self.terms.iter().filter(|t| t.layer() == site.layer) {
            match t {
                Term::Content { target, .. } => {
                    let scale = 2.0 * self.spec.content_weight / s.floats() as f64;
                    let n = s.buffer_floats();
                    out.push(kernels::loss::content_grad(ctx, n, scale, written, site.features, target, site.grad)?);
                }
                Term::Style { gram, target, target_largest, slots, .. } => {
                    let c = s.channels;
                    let scale = 4.0 * self.spec.style_weight / ((c * c) as f64 * s.floats() as f64);
                    match (self.style_grad_variant, slots, &self.ranges) {
                        (StyleGradVariant::Coop { config, twin }, Some((features_slot, gram_slot)), Some(ranges)) => {
                            let slots = (*gram_slot, *target_largest, *features_slot);
                            out.extend(kernels::loss::style_grad_coop(
                                ctx,
                                config,
                                twin,
                                c,
                                s.frame(),
                                scale,
                                written,
                                gram,
                                target,
                                site.features,
                                site.grad,
                                ranges,
                                slots,
                            )?);
                        }
                        _ => out.push(kernels::loss::style_grad(
                            ctx,
                            self.style_grad_variant,
                            c,
                            s.frame(),
                            scale,
                            written,
                            gram,
                            target,
                            site.features,
                            site.grad,
                        )?),
                    }
                }
                Term::StyleW2 { w2, .. } => {
                    let (zeros, ws) = (self.w2_zeros.as_ref(), self.w2_scalars.as_ref());
                    let buffers = (zeros.expect("allocated with W2 terms"), ws.expect("allocated with W2 terms"));
                    let (w, v) = (self.spec.style_weight, self.style_grad_variant);
                    out.extend(w2.gradient(ctx, v, s, w, written, buffers, (site.features, site.grad))?);
                }
            }
            written = true;
        }
        Ok(out)
    }

    /// The slot kinds, in slot order.
    pub fn slot_kinds(&self) -> Vec<LossKind> {
        self.spec.slots()
    }

    /// Sums slot values (read back from [`LossTerms::slots_buffer`]) into the losses.
    pub fn total(&self, slot_values: &[f32]) -> Losses {
        let mut l = Losses::default();
        for (k, v) in self.spec.slots().iter().zip(slot_values) {
            let v = f64::from(*v);
            match k {
                LossKind::Content => l.content += v,
                LossKind::Style => l.style += v,
                LossKind::TotalVariation => l.tv += v,
            }
        }
        l.total = l.content + l.style + l.tv;
        l
    }

    /// Bytes of the buffers the terms allocated (= [`LossSpec::buffers`]).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Scratch the reductions share (TV's partials live here too).
    pub fn partials(&self) -> &wgpu::Buffer {
        &self.partials
    }
}

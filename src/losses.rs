//! The loss terms of docs/MATHS.md on the GPU: their targets (the content image's features; the blended Gram
//! matrices of the style images, each at its own size), the dispatches that compute the loss scalars, and the
//! dispatches that add each term's gradient where the network's backward pass asks for it.
//!
//! Terms are kept in a fixed order — content layers, then style layers, as the options list them — and each
//! writes one slot of a small loss buffer; TV on the image takes the last slot. Only the scalars are ever read
//! back, and only when asked for.

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
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

/// The loss weights and layers (relu indices) of a problem.
#[derive(Clone, Debug, PartialEq)]
pub struct LossSpec {
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
    pub content_layers: Vec<usize>,
    pub style_layers: Vec<usize>,
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
        let gram = kernels::gram::variant(facts);
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
        for &l in &self.style_layers {
            let c = layers[l].channels;
            out.push(("style target", c * c));
            out.push(("gram", c * c));
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
}

impl Term {
    fn layer(&self) -> usize {
        match self {
            Term::Content { layer, .. } | Term::Style { layer, .. } => *layer,
        }
    }
}

/// The loss terms of one problem on the GPU.
pub struct LossTerms {
    spec: LossSpec,
    /// The network's tensor-core operand ranges (a handle to the same buffer), with tensor cores.
    ranges: Option<wgpu::Buffer>,
    style_grad_variant: StyleGradVariant,
    terms: Vec<Term>,
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
        let (gram_variant, style_grad_variant) =
            (kernels::gram::variant(&facts), kernels::loss::style_grad_variant(&facts));
        let planned = spec.buffers(layers, w, h, &facts);
        let bytes = planned.iter().map(|(_, f)| 4 * *f as u64).sum();
        let floats = |what: &str| planned.iter().find(|(n, _)| *n == what).map_or(1, |p| p.1);

        // Style targets A_l = Σ_k b_k G_l(style k), each Gram at its image's own size, blended in f64.
        let mut blended: Vec<Vec<f64>> = Vec::new();
        if !spec.style_layers.is_empty() {
            for (k, (image, weight)) in styles.iter().enumerate() {
                let (width, height) = (image.width, image.height);
                on_stage(crate::setup_stage::SetupStage::StyleTargets { index: k, count: styles.len(), width, height });
                let x = crate::vgg::subtract_mean(image);
                let g = network::grams(ctx, net, &x, image.width, image.height, &spec.style_layers)?;
                if k == 0 {
                    blended = g.iter().map(|m| vec![0.0; m.len()]).collect();
                }
                for (t, m) in blended.iter_mut().zip(&g) {
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
        for (i, &l) in spec.style_layers.iter().enumerate() {
            let c = layers[l].channels;
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

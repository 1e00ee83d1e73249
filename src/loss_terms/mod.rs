//! The loss terms of docs/MATHS.md on the GPU, one file each: [`content`], [`gram`] (the Gram style term),
//! [`w2`] (the Wasserstein-2 style term) and [`tv`]. Each term makes its targets, records the dispatches of its
//! scalar and its gradient, and says what it allocates; [`LossTerms`] puts them in order. A new term is one file
//! implementing [`LossTerm`] and one line in [`LossTerms::new`] (and its buffers in [`LossSpec::buffers`]).
//!
//! Terms are kept in a fixed order — content layers, then style layers, as the options list them, then TV on
//! the image — and each writes one slot of a small loss buffer. Only the scalars are ever read back, and only
//! when asked for.

pub mod content;
pub mod gram;
pub mod masked;
pub mod temporal;
pub mod tv;
pub mod w2;

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels::{self, AdapterFacts};
use crate::network::{GpuNet, LossGradientSite, Network};
use crate::plan::Shape;
use crate::setup_stage::SetupStage;
use crate::tiling::{self, BlockGrid, Rect};

pub use temporal::TemporalTarget;
pub use w2::{w2_gram_variant, w2_style_grad_variant, W2_NEWTON_SCHULZ_ITERATIONS};

/// Loss values of one image (see `docs/MATHS.md`).
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize)]
pub struct Losses {
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    /// The temporal loss of a video frame (docs/MATHS.md, "Video"); None where the problem has no such term.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporal: Option<f64>,
    pub total: f64,
}

/// What one slot of the loss buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    Content,
    Style,
    TotalVariation,
    Temporal,
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

/// Where a term adds to the gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// relu `l`'s features: the network's backward pass asks for it there.
    Relu(usize),
    /// The image itself, after the backward pass.
    Image,
}

/// What a term records once, when it is made.
pub struct Recorded {
    pub kind: LossKind,
    pub site: Site,
    /// Dispatches that run after the forward pass, before the scalars and the backward pass read their results
    /// (the image's Gram, W2's square root).
    pub after_forward: Vec<Dispatch>,
    /// Dispatches writing the term's slot: only on evaluations whose losses are read. An image term's run after
    /// its gradient (TV's partials are a by-product of it).
    pub scalar: Vec<Dispatch>,
}

/// One term of the loss: what it reads, the dispatches of its scalar, and its gradient.
pub trait LossTerm {
    fn recorded(&self) -> &Recorded;
    /// The dispatches adding the term's gradient at its site.
    fn gradient(&self, ctx: &GpuContext, at: GradientAt<'_>) -> Result<Vec<Dispatch>>;
    /// Tiled evaluation, pass 1: what one block adds to the canvas's statistics that the term's scalar and
    /// gradient read (the style terms' Gram sums and means); nothing for a local term.
    fn block_statistics(&self, _ctx: &GpuContext, _block: BlockSite<'_>) -> Result<Vec<Dispatch>> {
        Ok(Vec::new())
    }
    /// Tiled evaluation, pass 1: the block's share of the term's scalar, into `slot` (the content term: its sum
    /// over the positions the block owns); nothing for a term whose scalar comes from the canvas's statistics.
    fn block_scalar(&self, _ctx: &GpuContext, _block: BlockSite<'_>, _slot: usize) -> Result<Vec<Dispatch>> {
        Ok(Vec::new())
    }
    /// Tiled: what fills the term's block-sized buffers for block `b` before its passes (a mask's cut).
    fn block_uploads(&self, _b: usize) -> Vec<(&wgpu::Buffer, &[f32])> {
        Vec::new()
    }
}

/// One block of a tiled evaluation as a term at relu l sees it (docs/MATHS.md, "Tiled evaluation").
#[derive(Clone, Copy)]
pub struct BlockSite<'a> {
    /// The positions of relu l the block owns, in the block's own coordinates.
    pub owned: Rect,
    /// The block's relu l positions over the canvas's (what a block's mean is weighted by).
    pub share: f64,
    /// The first block overwrites the canvas's statistics; the others add.
    pub first: bool,
    pub scratch: &'a Scratch,
}

/// What the terms normalise by and where the image terms act: the whole canvas, whether the network evaluates it
/// at once (its own plan) or block by block (`grid`; the network's plan is one block's).
pub struct TermsOn<'a> {
    /// relu l's shape on the whole canvas: the means are over these.
    pub layers: &'a [Shape],
    /// (width, height) of the canvas.
    pub size: (usize, usize),
    /// The canvas's x and dL/dx (where the image terms act; no dL/dx for a forward-only evaluation).
    pub x: &'a wgpu::Buffer,
    pub grad: Option<&'a wgpu::Buffer>,
    /// The blocks, when tiled.
    pub grid: Option<&'a BlockGrid>,
}

impl<'a> TermsOn<'a> {
    /// The whole canvas, evaluated at once by `network`.
    pub fn whole(network: &'a Network) -> Self {
        let spec = &network.plan.spec;
        TermsOn {
            layers: &network.plan.layers,
            size: (spec.width, spec.height),
            x: network.image(),
            grad: network.grad_image(),
            grid: None,
        }
    }
}

/// Where a term's gradient goes: what the term reads at its site (the features, or the image x), the gradient it
/// adds into, and whether that already holds a value (else the first term overwrites it).
#[derive(Clone, Copy)]
pub struct GradientAt<'a> {
    pub features: &'a wgpu::Buffer,
    pub grad: &'a wgpu::Buffer,
    pub accumulate: bool,
}

/// Scratch the terms share: the reductions' partials and the Gram kernels' (each reduction finishes before the
/// next starts), and the loss slots.
pub struct Scratch {
    pub partials: wgpu::Buffer,
    pub gram_partials: wgpu::Buffer,
    /// One f32 per slot of [`LossSpec::slots`] (and, tiled, per block and content term).
    pub slots: wgpu::Buffer,
    /// Tiled: one block's Gram and means before they are added to the canvas's.
    pub block_gram: Option<wgpu::Buffer>,
    pub block_mean: Option<wgpu::Buffer>,
    /// With masks: the features weighted by a mask, or a masked term's gradient before its weighting.
    pub masked: Option<wgpu::Buffer>,
}

/// Floats of each [`Scratch`] buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScratchSizes {
    pub partials: usize,
    pub gram_partials: usize,
    pub slots: usize,
    /// Tiled only (0 otherwise): a block's Gram (the largest style layer's C²) and its means (W2 only).
    pub block_gram: usize,
    pub block_mean: usize,
    /// With masks (0 otherwise): the largest masked layer's features, weighted (docs/MATHS.md, "Spatial
    /// control").
    pub masked: usize,
}

/// What a term is built from.
pub struct TermSetup<'a> {
    pub ctx: &'a GpuContext,
    pub facts: &'a AdapterFacts,
    pub network: &'a Network,
    pub spec: &'a LossSpec,
    pub scratch: &'a Scratch,
    pub on: &'a TermsOn<'a>,
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
    /// With `--style-masks`, the style images (each on its own region, docs/MATHS.md, "Spatial control": one
    /// style term per style image and layer); None: one term per layer with the styles' blend everywhere.
    pub style_regions: Option<usize>,
    /// Whether the content terms are weighted by `--content-mask`.
    pub content_masked: bool,
    /// A video frame's earlier frames the temporal terms hold it to (docs/MATHS.md, "Video"), and their weight w_t.
    pub temporal_frames: usize,
    pub temporal_weight: f64,
}

impl LossSpec {
    /// Whether the style terms are masked, one region per style image.
    pub fn style_masked(&self) -> bool {
        self.style_regions.is_some()
    }

    /// Every layer a term reads.
    pub fn taps(&self) -> Vec<usize> {
        self.content_layers.iter().chain(&self.style_layers).copied().collect()
    }

    /// The slot kinds in order (content terms, style terms, TV, temporal terms).
    pub fn slots(&self) -> Vec<LossKind> {
        let content = self.content_layers.iter().map(|_| LossKind::Content);
        let style =
            (0..self.style_regions.unwrap_or(1)).flat_map(|_| self.style_layers.iter().map(|_| LossKind::Style));
        let temporal = std::iter::repeat_n(LossKind::Temporal, self.temporal_frames);
        content.chain(style).chain([LossKind::TotalVariation]).chain(temporal).collect()
    }

    /// The Gram kernel the style terms use.
    pub fn gram_variant(&self, facts: &AdapterFacts) -> kernels::gram::GramVariant {
        match self.style_loss {
            StyleLoss::Gram => kernels::gram::variant(facts),
            StyleLoss::W2 => w2_gram_variant(facts),
        }
    }

    /// The floats of the shared scratch for a network with these layer shapes (`layers[l]` = relu l's shape) on
    /// a `width` x `height` canvas (the image terms act on the canvas), and `blocks` blocks when tiled.
    pub fn scratch_sizes(
        &self,
        layers: &[Shape],
        (width, height): (usize, usize),
        facts: &AdapterFacts,
        blocks: Option<usize>,
    ) -> ScratchSizes {
        let gram = self.gram_variant(facts);
        let mut partials = tv::partials(width, height);
        let mut gram_partials = 1;
        for &l in &self.content_layers {
            partials = partials.max(content::partials(layers[l]));
        }
        for &l in &self.style_layers {
            let s = layers[l];
            partials = partials.max(gram::partials(s));
            gram_partials = gram_partials.max(kernels::gram::partial_len(gram, s.channels, s.frame()));
        }
        let tiled = blocks.is_some();
        let largest = self.style_layers.iter().map(|&l| layers[l].channels).max().filter(|_| tiled).unwrap_or(0);
        let masked_layers = self
            .content_layers
            .iter()
            .filter(|_| self.content_masked)
            .chain(self.style_layers.iter().filter(|_| self.style_masked()));
        ScratchSizes {
            partials,
            gram_partials,
            slots: self.slots().len() + blocks.unwrap_or(0) * self.content_layers.len(),
            block_gram: largest * largest,
            block_mean: if self.style_loss == StyleLoss::W2 { largest } else { 0 },
            masked: masked_layers.map(|&l| layers[l].buffer_floats()).max().unwrap_or(0),
        }
    }

    /// The GPU buffers the terms allocate for a network with these layer shapes on a `width` x `height` canvas
    /// (`blocks` blocks when tiled) on an adapter with these facts, as (what, floats): the same buffers
    /// [`LossTerms::new`] allocates.
    pub fn buffers(
        &self,
        layers: &[Shape],
        size: (usize, usize),
        facts: &AdapterFacts,
        blocks: Option<usize>,
    ) -> Vec<(&'static str, usize)> {
        let mut out: Vec<(&'static str, usize)> = Vec::new();
        for &l in &self.content_layers {
            out.extend(content::buffers(layers[l]));
            if self.content_masked {
                out.extend(masked::content_buffers(layers[l]));
            }
        }
        for _ in 0..self.style_regions.unwrap_or(1) {
            for &l in &self.style_layers {
                match self.style_loss {
                    StyleLoss::Gram => out.extend(gram::buffers(layers[l])),
                    StyleLoss::W2 => out.extend(w2::buffers(layers[l])),
                }
                if self.style_masked() {
                    out.extend(masked::style_buffers(layers[l], self.style_loss));
                }
            }
        }
        for _ in 0..self.temporal_frames {
            out.extend(temporal::buffers(size));
        }
        let sizes = self.scratch_sizes(layers, size, facts, blocks);
        out.push(("loss partials", sizes.partials));
        out.push(("gram partials", sizes.gram_partials));
        out.push(("loss slots", sizes.slots));
        let optional =
            [("block gram", sizes.block_gram), ("block means", sizes.block_mean), ("masked features", sizes.masked)];
        for (what, floats) in optional {
            if floats > 0 {
                out.push((what, floats));
            }
        }
        out
    }
}

/// What the terms compare with: the content features at each content layer, in buffers of `network`'s shape
/// ([`content::targets`]; tiled, one block's, uploaded per block), and the style images' blended statistics
/// ([`gram::StyleBlend::new`], computed before the network was allocated).
pub struct Targets {
    pub content: Vec<wgpu::Buffer>,
    pub style: gram::StyleBlend,
    /// The masks' weights at each term's layer, where the spec masks the terms.
    pub masks: masked::TermMasks,
    /// A video frame's warped earlier paintings, one per temporal term.
    pub temporal: Vec<TemporalTarget>,
}

/// The loss terms of one problem on the GPU, in slot order.
pub struct LossTerms {
    terms: Vec<Box<dyn LossTerm>>,
    scratch: Scratch,
    /// The image terms' gradients (TV), recorded after the backward pass.
    image_gradients: Vec<Dispatch>,
    /// What each loss slot holds: one per term, then (tiled) one per block and content term.
    kinds: Vec<LossKind>,
    /// Tiled: each block's statistics (pass 1) and content scalars (pass 1, when the losses are read).
    blocks: Vec<BlockDispatches>,
    bytes: u64,
}

/// One block's dispatches of the terms (tiled evaluation).
struct BlockDispatches {
    statistics: Vec<Dispatch>,
    scalars: Vec<Dispatch>,
}

impl LossTerms {
    /// Builds the terms' dispatches on `network` (the plan the image is optimised with, or one block's when
    /// `on.grid` is given), from their [`Targets`].
    pub fn new(
        ctx: &GpuContext,
        net: &GpuNet,
        network: &Network,
        spec: &LossSpec,
        on: &TermsOn<'_>,
        targets: Targets,
        on_stage: &mut dyn FnMut(SetupStage),
    ) -> Result<Self> {
        let Targets { content: content_targets, style: blend, masks, temporal } = targets;
        if temporal.len() != spec.temporal_frames {
            return Err(crate::error::Error::Validation("the temporal targets do not match their spec".into()));
        }
        let masks_wanted = (usize::from(spec.content_masked) * spec.content_layers.len(), spec.style_regions);
        if masks_wanted != (masks.content.len(), spec.style_regions.map(|_| masks.style.len())) {
            return Err(crate::error::Error::Validation("the terms' masks do not match their spec".into()));
        }
        let layers = &network.plan.layers;
        let facts = &net.facts;
        let blocks = on.grid.map(|g| g.blocks.len());
        let bytes = spec.buffers(layers, on.size, facts, blocks).iter().map(|(_, f)| 4 * *f as u64).sum();
        let sizes = spec.scratch_sizes(layers, on.size, facts, blocks);
        let optional = |label: &str, floats: usize| (floats > 0).then(|| ctx.storage_buffer(label, floats)).transpose();
        let scratch = Scratch {
            partials: ctx.storage_buffer("loss partials", sizes.partials)?,
            gram_partials: ctx.storage_buffer("gram partials", sizes.gram_partials)?,
            slots: ctx.storage_buffer("loss slots", sizes.slots)?,
            block_gram: optional("block gram", sizes.block_gram)?,
            block_mean: optional("block means", sizes.block_mean)?,
            masked: optional("masked features", sizes.masked)?,
        };
        let setup = TermSetup { ctx, facts, network, spec, scratch: &scratch, on };
        // The registration: one term per content layer, per style layer, and TV, in slot order.
        let mut terms: Vec<Box<dyn LossTerm>> = Vec::new();
        for (i, (&layer, target)) in spec.content_layers.iter().zip(content_targets).enumerate() {
            let site = masked::MaskSite { layer, inside: layers[layer], grid: on.grid };
            let mask = masks.content.get(i).map(|w| masked::TermMask::content(ctx, w, site)).transpose()?;
            terms.push(Box::new(content::ContentTerm::new(&setup, layer, terms.len(), target, mask)?));
        }
        let regions = spec.style_regions.unwrap_or(1);
        if spec.style_loss == StyleLoss::W2 && !spec.style_layers.is_empty() {
            on_stage(SetupStage::W2Targets { layers: regions * spec.style_layers.len() });
        }
        let w2 = spec.style_loss == StyleLoss::W2;
        for r in 0..regions {
            for (i, &layer) in spec.style_layers.iter().enumerate() {
                let slot = terms.len();
                let site = masked::MaskSite { layer, inside: layers[layer], grid: on.grid };
                let mask = match masks.style.get(r) {
                    Some(weights) => {
                        Some((masked::TermMask::style(ctx, &weights[i], w2, site)?, masks.region_weights[r]))
                    }
                    None => None,
                };
                terms.push(match spec.style_loss {
                    StyleLoss::Gram => Box::new(gram::GramTerm::new(&setup, layer, slot, blend.gram(r, i), mask)?),
                    StyleLoss::W2 => {
                        let target = blend.w2_target(r, i, layers[layer]);
                        Box::new(w2::W2Term::new(&setup, layer, slot, &target, mask)?)
                    }
                });
            }
        }
        let mut image_gradients = Vec::new();
        if let Some(grad_x) = on.grad {
            let tv = tv::TvTerm::new(&setup, terms.len())?;
            let at = GradientAt { features: on.x, grad: grad_x, accumulate: true };
            image_gradients.extend(tv.gradient(ctx, at)?);
            terms.push(Box::new(tv));
            for target in &temporal {
                let term = temporal::TemporalTerm::new(&setup, terms.len(), target)?;
                image_gradients.extend(term.gradient(ctx, at)?);
                terms.push(Box::new(term));
            }
        }
        let mut kinds: Vec<LossKind> = terms.iter().map(|t| t.recorded().kind).collect();
        let mut blocks = Vec::new();
        if let Some(grid) = on.grid {
            let content_terms = spec.content_layers.len();
            for (b, block) in grid.blocks.iter().enumerate() {
                let mut d = BlockDispatches { statistics: Vec::new(), scalars: Vec::new() };
                for (i, t) in terms.iter().enumerate() {
                    let Site::Relu(l) = t.recorded().site else { continue };
                    let (inside, whole) = (layers[l], on.layers[l]);
                    let stride = tiling::layer_stride(l);
                    let site = BlockSite {
                        owned: grid.owned_at(block, stride, (inside.width, inside.height)),
                        share: (inside.width * inside.height) as f64 / (whole.width * whole.height) as f64,
                        first: b == 0,
                        scratch: &scratch,
                    };
                    d.statistics.extend(t.block_statistics(ctx, site)?);
                    if i < content_terms {
                        d.scalars.extend(t.block_scalar(ctx, site, terms.len() + b * content_terms + i)?);
                    }
                }
                blocks.push(d);
            }
            kinds.extend(std::iter::repeat_n(LossKind::Content, grid.blocks.len() * content_terms));
        }
        Ok(Self { terms, scratch, image_gradients, kinds, blocks, bytes })
    }

    /// Tiled, pass 1: what block `b` adds to the canvas's statistics, after its forward pass.
    pub fn block_statistics(&self, b: usize) -> impl Iterator<Item = &Dispatch> {
        self.blocks[b].statistics.iter()
    }

    /// Tiled: what the terms upload before block `b`'s passes (their masks' cuts).
    pub fn block_uploads(&self, b: usize) -> Vec<(&wgpu::Buffer, &[f32])> {
        self.terms.iter().flat_map(|t| t.block_uploads(b)).collect()
    }

    /// Tiled: block `b`'s share of the content scalars, after its forward pass (they zero the features and
    /// targets the block does not own: nothing may read them after).
    pub fn block_scalars(&self, b: usize) -> impl Iterator<Item = &Dispatch> {
        self.blocks[b].scalars.iter()
    }

    /// Tiled: whether some term needs the canvas's statistics before its scalar and gradient (a style term).
    pub fn needs_statistics(&self) -> bool {
        self.blocks.iter().any(|b| !b.statistics.is_empty())
    }

    /// Tiled: whether some term's scalar is made block by block (a content term).
    pub fn has_block_scalars(&self) -> bool {
        self.blocks.iter().any(|b| !b.scalars.is_empty())
    }

    /// After the forward pass: what the scalars and the gradients read (the Grams, W2's square roots).
    pub fn after_forward(&self) -> impl Iterator<Item = &Dispatch> {
        self.terms.iter().flat_map(|t| &t.recorded().after_forward)
    }

    /// The scalars of the terms read at the network's layers (only when the losses are read).
    pub fn layer_scalars(&self) -> impl Iterator<Item = &Dispatch> {
        self.terms.iter().map(|t| t.recorded()).filter(|r| r.site != Site::Image).flat_map(|r| &r.scalar)
    }

    /// The image terms' gradients, after the backward pass.
    pub fn image_gradients(&self) -> impl Iterator<Item = &Dispatch> {
        self.image_gradients.iter()
    }

    /// The image terms' scalars, after their gradients (only when the losses are read).
    pub fn image_scalars(&self) -> impl Iterator<Item = &Dispatch> {
        self.terms.iter().map(|t| t.recorded()).filter(|r| r.site == Site::Image).flat_map(|r| &r.scalar)
    }

    /// The dispatches adding every term at `site.layer` to its gradient (in term order), for
    /// [`Network::build_backward`].
    pub fn gradient_dispatches(&self, ctx: &GpuContext, site: LossGradientSite<'_>) -> Result<Vec<Dispatch>> {
        let mut accumulate = !site.first_writes;
        let mut out = Vec::new();
        for t in self.terms.iter().filter(|t| t.recorded().site == Site::Relu(site.layer)) {
            out.extend(t.gradient(ctx, GradientAt { features: site.features, grad: site.grad, accumulate })?);
            accumulate = true;
        }
        Ok(out)
    }

    /// How many loss slots there are (one per term; tiled, one more per block and content term).
    pub fn slot_count(&self) -> usize {
        self.kinds.len()
    }

    /// The slot kinds, in slot order (a term's slot is its place in the list; the blocks' content slots follow).
    pub fn slot_kinds(&self) -> &[LossKind] {
        &self.kinds
    }

    /// The loss slots (one f32 each), for reading back.
    pub fn slots_buffer(&self) -> &wgpu::Buffer {
        &self.scratch.slots
    }

    /// Sums slot values (read back from [`LossTerms::slots_buffer`]) into the losses.
    pub fn total(&self, slot_values: &[f32]) -> Losses {
        let mut l = Losses::default();
        for (k, v) in self.kinds.iter().zip(slot_values) {
            let v = f64::from(*v);
            match k {
                LossKind::Content => l.content += v,
                LossKind::Style => l.style += v,
                LossKind::TotalVariation => l.tv += v,
                LossKind::Temporal => *l.temporal.get_or_insert(0.0) += v,
            }
        }
        l.total = l.content + l.style + l.tv + l.temporal.unwrap_or(0.0);
        l
    }

    /// Bytes of the buffers the terms allocated (= [`LossSpec::buffers`]).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

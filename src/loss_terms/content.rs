//! The content term at one layer (docs/MATHS.md, "Losses"): w_c / (C·H·W) · Σ (F − P)², P the content image's
//! features at that layer.

use super::masked::{weigh, Coverage, TermMask};
use super::{BlockSite, GradientAt, LossKind, LossTerm, Recorded, Site, TermSetup};
use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels;
use crate::kernels::loss::{content_grad, reduce_sum, sq_diff_partials, sq_diff_sum};
use crate::network::Network;
use crate::plan::Shape;
use crate::setup_stage::SetupStage;
use crate::tensor::Tensor;

/// The GPU buffers one content term allocates: its target, a copy of the framed feature map (its frame zero like
/// the features').
pub fn buffers(shape: Shape) -> [(&'static str, usize); 1] {
    [("content target", shape.buffer_floats())]
}

/// Partials its reduction writes.
pub fn partials(shape: Shape) -> usize {
    sq_diff_partials(shape.buffer_floats())
}

/// The content image's features at `layers`: one forward pass on `content_x` (mean-subtracted), copied out.
pub fn targets(
    ctx: &GpuContext,
    network: &Network,
    content_x: &[f32],
    layers: &[usize],
    on_stage: &mut dyn FnMut(SetupStage),
) -> Result<Vec<wgpu::Buffer>> {
    if layers.is_empty() {
        return Ok(Vec::new());
    }
    on_stage(SetupStage::ContentTargets);
    network.run_forward(ctx, content_x)?;
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    let mut targets = Vec::with_capacity(layers.len());
    for &l in layers {
        let n = network.plan.layers[l].buffer_floats();
        let target = ctx.storage_buffer("content target", n)?;
        enc.copy_buffer_to_buffer(network.relu(l), 0, &target, 0, (n * 4) as u64);
        targets.push(target);
    }
    ctx.submit_and_wait(enc.finish())?;
    Ok(targets)
}

pub struct ContentTerm {
    /// relu l on the whole canvas (what the mean is over), and in the network's buffers (a block's when tiled),
    /// with those buffers.
    shape: Shape,
    inside: Shape,
    features: wgpu::Buffer,
    weight: f64,
    target: wgpu::Buffer,
    /// With `--content-mask`: its weights at this layer, √m ⊙ P, and the scratch the weighted features and the
    /// unweighted gradient pass through (docs/MATHS.md, "Spatial control").
    mask: Option<ContentMask>,
    recorded: Recorded,
}

struct ContentMask {
    mask: TermMask,
    masked_target: wgpu::Buffer,
    scratch: wgpu::Buffer,
}

impl ContentTerm {
    /// The term with `target` (P), weighted by `mask` where given.
    pub fn new(
        setup: &TermSetup<'_>,
        layer: usize,
        slot: usize,
        target: wgpu::Buffer,
        mask: Option<TermMask>,
    ) -> Result<Self> {
        let TermSetup { ctx, network, spec, scratch, on, .. } = setup;
        let (shape, inside) = (on.layers[layer], network.plan.layers[layer]);
        let features = network.relu(layer).clone();
        let mask = match mask {
            Some(mask) => {
                let masked_target = ctx.storage_buffer("masked content target", inside.buffer_floats())?;
                let p = Tensor::new(&target, shape.channels, inside.frame());
                ctx.run(&[&weigh(ctx, &mask.statistics_input, p, &masked_target)?])?;
                Some(ContentMask { mask, masked_target, scratch: super::masked::scratch(scratch)?.clone() })
            }
            None => None,
        };
        let mut term = Self {
            shape,
            inside,
            features,
            weight: spec.content_weight,
            target,
            mask,
            recorded: Recorded {
                kind: LossKind::Content,
                site: Site::Relu(layer),
                after_forward: Vec::new(),
                scalar: Vec::new(),
            },
        };
        // Tiled, the blocks' shares (pass 1, [`LossTerm::block_scalar`]) make the scalar.
        if on.grid.is_none() {
            term.recorded.scalar = term.sum_into(ctx, scratch, slot)?;
        }
        Ok(term)
    }

    /// Σ (F − P)² into `slot`, over the whole framed buffers (the frames are zero in both); the mean is over the
    /// canvas's C·H·W.
    /// With a mask, Σ (√m ⊙ F − √m ⊙ P)².
    fn sum_into(&self, ctx: &GpuContext, scratch: &super::Scratch, slot: usize) -> Result<Vec<Dispatch>> {
        let n = self.inside.buffer_floats();
        let scale = self.weight / self.shape.floats() as f64;
        let reduce = reduce_sum(ctx, sq_diff_partials(n), slot, scale, &scratch.partials, &scratch.slots)?;
        Ok(match &self.mask {
            Some(m) if m.mask.coverage == Coverage::Nowhere => Vec::new(),
            Some(m) if m.mask.coverage == Coverage::Partly => vec![
                weigh(ctx, &m.mask.statistics_input, self.block_features(), &m.scratch)?,
                sq_diff_sum(ctx, n, &m.scratch, &m.masked_target, &scratch.partials)?,
                reduce,
            ],
            _ => vec![sq_diff_sum(ctx, n, &self.features, &self.target, &scratch.partials)?, reduce],
        })
    }

    /// The features in the network's buffer.
    fn block_features(&self) -> Tensor<'_> {
        Tensor::new(&self.features, self.shape.channels, self.inside.frame())
    }
}

impl LossTerm for ContentTerm {
    fn recorded(&self) -> &Recorded {
        &self.recorded
    }

    /// 2·w_c / (C·H·W) · (F − P); with a mask, that weighted by m per position.
    fn gradient(&self, ctx: &GpuContext, at: GradientAt<'_>) -> Result<Vec<Dispatch>> {
        let GradientAt { features, grad, accumulate } = at;
        let scale = 2.0 * self.weight / self.shape.floats() as f64;
        let n = self.inside.buffer_floats();
        let (c, frame) = (self.shape.channels, self.inside.frame());
        match &self.mask {
            Some(m) if m.mask.coverage == Coverage::Nowhere => {
                m.mask.nothing(ctx, Tensor::new(features, c, frame), grad, accumulate)
            }
            Some(m) if m.mask.coverage == Coverage::Partly => Ok(vec![
                content_grad(ctx, n, scale, false, features, &self.target, &m.scratch)?,
                m.mask.weighted_gradient(ctx, Tensor::new(&m.scratch, c, frame), grad, accumulate)?,
            ]),
            _ => Ok(vec![content_grad(ctx, n, scale, accumulate, features, &self.target, grad)?]),
        }
    }

    /// The block's F and P outside what it owns zeroed (after its backward pass has read them), then the sum.
    /// With a mask, √m ⊙ P made for the block's P first.
    fn block_scalar(&self, ctx: &GpuContext, block: BlockSite<'_>, slot: usize) -> Result<Vec<Dispatch>> {
        let (c, frame) = (self.shape.channels, self.inside.frame());
        let mut out = vec![
            kernels::region::keep(ctx, Tensor::new(&self.features, c, frame), block.owned)?,
            kernels::region::keep(ctx, Tensor::new(&self.target, c, frame), block.owned)?,
        ];
        if let Some(m) = &self.mask {
            out.push(weigh(ctx, &m.mask.statistics_input, Tensor::new(&self.target, c, frame), &m.masked_target)?);
        }
        out.extend(self.sum_into(ctx, block.scratch, slot)?);
        Ok(out)
    }

    fn block_uploads(&self, b: usize) -> Vec<(&wgpu::Buffer, &[f32])> {
        self.mask.as_ref().map_or_else(Vec::new, |m| m.mask.uploads(b))
    }
}

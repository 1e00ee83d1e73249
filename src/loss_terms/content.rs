//! The content term at one layer (docs/MATHS.md, "Losses"): w_c / (C·H·W) · Σ (F − P)², P the content image's
//! features at that layer.

use super::{GradientAt, LossKind, LossTerm, Recorded, Site, TermSetup};
use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels::loss::{content_grad, reduce_sum, sq_diff_partials, sq_diff_sum};
use crate::network::Network;
use crate::plan::Shape;
use crate::setup_stage::SetupStage;

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
    shape: Shape,
    weight: f64,
    target: wgpu::Buffer,
    recorded: Recorded,
}

impl ContentTerm {
    pub fn new(setup: &TermSetup<'_>, layer: usize, slot: usize, target: wgpu::Buffer) -> Result<Self> {
        let TermSetup { ctx, network, spec, scratch, .. } = setup;
        let shape = network.plan.layers[layer];
        // Over the whole framed buffers (the frames are zero in both); the mean is over C·H·W.
        let n = shape.buffer_floats();
        let features = network.relu(layer);
        let scale = spec.content_weight / shape.floats() as f64;
        let scalar = vec![
            sq_diff_sum(ctx, n, features, &target, &scratch.partials)?,
            reduce_sum(ctx, sq_diff_partials(n), slot, scale, &scratch.partials, &scratch.slots)?,
        ];
        let recorded = Recorded { kind: LossKind::Content, site: Site::Relu(layer), after_forward: Vec::new(), scalar };
        Ok(Self { shape, weight: spec.content_weight, target, recorded })
    }
}

impl LossTerm for ContentTerm {
    fn recorded(&self) -> &Recorded {
        &self.recorded
    }

    /// 2·w_c / (C·H·W) · (F − P).
    fn gradient(&self, ctx: &GpuContext, at: GradientAt<'_>) -> Result<Vec<Dispatch>> {
        let GradientAt { features, grad, accumulate } = at;
        let scale = 2.0 * self.weight / self.shape.floats() as f64;
        let n = self.shape.buffer_floats();
        Ok(vec![content_grad(ctx, n, scale, accumulate, features, &self.target, grad)?])
    }
}

//! The temporal term on the image (docs/MATHS.md, "Video"): x held to an earlier frame's painting warped into
//! this frame, wherever the flow is reliable. One term per earlier frame; its gradient kernel writes the loss's
//! partials as a by-product (like TV's), into partials of its own, since every image term's scalar is reduced
//! after all their gradients.

use super::{GradientAt, LossKind, LossTerm, Recorded, Site, TermSetup};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels::loss::{reduce_sum, temporal_loss_grad, temporal_partials, TemporalIo};

/// One earlier frame's painting, warped into this frame, on the canvas: what the term holds x to.
#[derive(Clone, Debug, PartialEq)]
pub struct TemporalTarget {
    /// ω in x's units (mean subtracted), 3 dense planes of the canvas's size.
    pub x: Vec<f32>,
    /// ĉ: one dense plane of the canvas's size in [0, 1], 0 on the margin.
    pub weights: Vec<f32>,
    /// H·W of the image (not the canvas): the loss's normaliser.
    pub pixels: usize,
}

/// The buffers of one temporal term on a `width` x `height` canvas, as (what, floats).
pub fn buffers((width, height): (usize, usize)) -> [(&'static str, usize); 3] {
    let frame = Frame::new(height, width);
    [
        ("temporal target", frame.buffer_floats(3)),
        ("temporal weights", frame.buffer_floats(1)),
        ("temporal partials", temporal_partials(height, width)),
    ]
}

pub struct TemporalTerm {
    size: (usize, usize),
    weight: f64,
    pixels: usize,
    target: wgpu::Buffer,
    weights: wgpu::Buffer,
    partials: wgpu::Buffer,
    recorded: Recorded,
}

impl TemporalTerm {
    pub fn new(setup: &TermSetup<'_>, slot: usize, target: &TemporalTarget) -> Result<Self> {
        let TermSetup { ctx, spec, scratch, on, .. } = setup;
        let (width, height) = on.size;
        if target.x.len() != 3 * width * height || target.weights.len() != width * height || target.pixels == 0 {
            return Err(Error::Validation(format!(
                "temporal target of {} and {} floats for a {width}x{height} canvas",
                target.x.len(),
                target.weights.len()
            )));
        }
        let frame = Frame::new(height, width);
        let count = temporal_partials(height, width);
        let partials = ctx.storage_buffer("temporal partials", count)?;
        let scalar = vec![reduce_sum(ctx, count, slot, 1.0, &partials, &scratch.slots)?];
        let recorded = Recorded { kind: LossKind::Temporal, site: Site::Image, after_forward: Vec::new(), scalar };
        Ok(Self {
            size: (width, height),
            weight: spec.temporal_weight,
            pixels: target.pixels,
            target: ctx.buffer_from("temporal target", &frame.frame(&target.x, 3))?,
            weights: ctx.buffer_from("temporal weights", &frame.frame(&target.weights, 1))?,
            partials,
            recorded,
        })
    }
}

impl LossTerm for TemporalTerm {
    fn recorded(&self) -> &Recorded {
        &self.recorded
    }

    /// `features` is the image x itself.
    fn gradient(&self, ctx: &GpuContext, at: GradientAt<'_>) -> Result<Vec<Dispatch>> {
        let GradientAt { features: x, grad, accumulate } = at;
        let (w, h) = self.size;
        let io = TemporalIo { x, target: &self.target, weights: &self.weights, grad, partials: &self.partials };
        Ok(vec![temporal_loss_grad(ctx, (h, w), (self.weight, self.pixels), accumulate, io)?])
    }
}

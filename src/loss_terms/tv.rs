//! The total-variation term on the image (docs/MATHS.md, "Losses"): its gradient kernel writes the loss's
//! per-workgroup partials as a by-product, so its scalar is their sum, recorded after the gradient.

use super::{GradientAt, LossKind, LossTerm, Recorded, Site, TermSetup};
use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels::loss::{reduce_sum, tv_loss_grad, tv_partials};

/// Partials the TV kernel writes for a `width` x `height` image.
pub fn partials(width: usize, height: usize) -> usize {
    tv_partials(height, width)
}

pub struct TvTerm {
    width: usize,
    height: usize,
    weight: f64,
    partials: wgpu::Buffer,
    recorded: Recorded,
}

impl TvTerm {
    pub fn new(setup: &TermSetup<'_>, slot: usize) -> Result<Self> {
        let TermSetup { ctx, spec, scratch, on, .. } = setup;
        let (width, height) = on.size;
        let count = tv_partials(height, width);
        let scalar = vec![reduce_sum(ctx, count, slot, 1.0, &scratch.partials, &scratch.slots)?];
        let recorded =
            Recorded { kind: LossKind::TotalVariation, site: Site::Image, after_forward: Vec::new(), scalar };
        Ok(Self { width, height, weight: spec.tv_weight, partials: scratch.partials.clone(), recorded })
    }
}

impl LossTerm for TvTerm {
    fn recorded(&self) -> &Recorded {
        &self.recorded
    }

    /// `features` is the image x itself.
    fn gradient(&self, ctx: &GpuContext, at: GradientAt<'_>) -> Result<Vec<Dispatch>> {
        let GradientAt { features: x, grad, accumulate } = at;
        let (h, w) = (self.height, self.width);
        Ok(vec![tv_loss_grad(ctx, (h, w), self.weight, accumulate, x, grad, &self.partials)?])
    }
}

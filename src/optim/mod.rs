//! Optimisers of the image x on the GPU. Adam (as torch.optim.Adam, docs/MATHS.md): the moments live on the
//! GPU next to x, one fused kernel updates x, m and v, and only the step-dependent constants change per step.
//! L-BFGS ([`lbfgs`]): the history and the two-loop recursion on the GPU, the strong-Wolfe line search
//! ([`line_search`]) on the CPU over scalars read back. After the optimiser, [`average`] keeps the moving
//! average of its iterates that the run writes.

pub mod average;
pub mod lbfgs;
pub mod line_search;

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels;

/// Adam's state for one image of `count` floats.
pub struct Adam {
    count: usize,
    learning_rate: f64,
    /// Updates done so far (t of the last update).
    step: u64,
    pub dispatch: Dispatch,
    moments: [wgpu::Buffer; 2],
}

impl Adam {
    /// Floats Adam keeps on the GPU for an image of `count` floats (m and v).
    pub fn buffer_floats(count: usize) -> usize {
        2 * count
    }

    /// Zeroed moments; the update reads `grad` and writes `x`.
    pub fn new(
        ctx: &GpuContext,
        count: usize,
        learning_rate: f64,
        x: &wgpu::Buffer,
        grad: &wgpu::Buffer,
    ) -> Result<Self> {
        let zeros = vec![0.0f32; count];
        let m = ctx.buffer_from("adam m", &zeros)?;
        let v = ctx.buffer_from("adam v", &zeros)?;
        let dispatch = kernels::adam::adam(ctx, count, learning_rate, x, &m, &v, grad)?;
        Ok(Self { count, learning_rate, step: 0, dispatch, moments: [m, v] })
    }

    /// Sets the constants of the next update (t = step + 1); call before recording it. Queue writes land before
    /// the next submit, so this is ordered with the iteration that follows.
    pub fn prepare_next(&mut self, ctx: &GpuContext) {
        self.step += 1;
        kernels::adam::set_step(ctx, &self.dispatch, self.count, self.learning_rate, self.step);
    }

    /// The first and second moments (framed like x).
    pub fn moments(&self) -> &[wgpu::Buffer; 2] {
        &self.moments
    }

    /// Continues from `step` updates already made (coarse-to-fine hands the state to the next scale).
    pub fn continue_from(&mut self, step: u64) {
        self.step = step;
    }

    /// Updates done (counting the one prepared).
    pub fn steps(&self) -> u64 {
        self.step
    }
}

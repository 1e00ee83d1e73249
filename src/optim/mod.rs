//! Optimisers of the image x on the GPU. Adam (as torch.optim.Adam, docs/MATHS.md): the moments live on the
//! GPU next to x, one fused kernel updates x, m and v, and only the step-dependent constants change per step.
//! L-BFGS ([`lbfgs`]): the history and the two-loop recursion on the GPU, the strong-Wolfe line search
//! ([`line_search`]) on the CPU over scalars read back. After the optimiser, [`average`] keeps the moving
//! average of its iterates that the run writes.

pub mod average;
pub mod lbfgs;
pub mod line_search;

use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::gpu::{Dispatch, GpuContext};
use crate::image_io::{self, Resample};
use crate::kernels;
use crate::loss_terms::Losses;
use wgpu::Buffer;

/// What an optimiser's iteration asks of the problem it optimises (the [`crate::Stylizer`] answers): evaluations
/// of the loss and its gradient at the image buffer's x, recorded with the optimiser's own dispatches.
pub trait Problem<'c>: lbfgs::Evaluator {
    fn context(&self) -> &'c GpuContext;
    /// One evaluation of ∇L followed by `update` in one submission. With `read_losses`, waits and returns the
    /// losses of x before the update; without, returns once the PREVIOUS submission has finished (one stays
    /// queued, so the GPU is not idle while the CPU records the next).
    fn evaluate_and_update(&mut self, update: &Dispatch, read_losses: bool) -> Result<Option<Losses>>;
    /// An iterate was accepted outside [`Problem::evaluate_and_update`] (the image average takes it in).
    fn accepted(&mut self) -> Result<()>;
}

/// An optimiser of the image x on the GPU: one shape for Adam and L-BFGS, so that the stylizer and the job never
/// ask which one runs.
pub trait ImageOptimizer {
    /// One iteration. Returns the losses of x before the update when they were read (`read_losses`, or always
    /// when the optimiser needs them anyway); None, and nothing done, once it has stopped.
    fn iterate(&mut self, problem: &mut dyn Problem<'_>, read_losses: bool) -> Result<Option<Losses>>;
    /// Updates made so far (counting one continued from an earlier scale).
    fn iterations(&self) -> usize;
    /// Evaluations of the loss so far, where they differ from the iterations (L-BFGS's line search).
    fn evaluations(&self) -> Option<usize> {
        None
    }
    /// Why it stopped before its iterations were done, once it has.
    fn stopped(&self) -> Option<String> {
        None
    }
    /// The losses at the current x when the optimiser evaluated them last.
    fn current_losses(&self) -> Option<Losses> {
        None
    }
    /// The accepted step lengths t, for an optimiser that searches along a line.
    fn line_steps(&self) -> Option<&[f64]> {
        None
    }
    /// The update an iteration records after one evaluation, for an optimiser whose iteration is exactly that
    /// (Adam); None for one that searches (L-BFGS). Benchmarks record it themselves.
    fn fused_update(&self) -> Option<&Dispatch> {
        None
    }
    /// Sets the constants of the next [`ImageOptimizer::fused_update`].
    fn prepare_fused_update(&mut self, _ctx: &GpuContext) {}
    /// The state the next coarse-to-fine scale continues from (`frame`: how x lies in its buffer).
    fn handover(&self, ctx: &GpuContext, frame: Frame) -> Result<Handover>;
    /// Continues from a handover resized to this image.
    fn resume(&mut self, ctx: &GpuContext, frame: Frame, handover: &Handover) -> Result<()>;
}

/// An optimiser's state as the host sees it, handed from one coarse-to-fine scale to the next: image-sized
/// planes (dense CHW like x, each with how it resizes) and the update count.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Handover {
    pub planes: Vec<HandoverPlane>,
    pub steps: u64,
}

/// One image-sized part of an optimiser's state.
#[derive(Clone, Debug, PartialEq)]
pub struct HandoverPlane {
    pub values: Vec<f32>,
    pub resample: Resample,
    /// Values below this after resizing are raised to it (Adam's v, of which Adam takes the square root).
    pub floor: Option<f32>,
}

impl Handover {
    /// The planes resized from `from` to `to` (width, height).
    pub fn resized(&self, from: (usize, usize), to: (usize, usize)) -> Handover {
        self.map_planes(|p| {
            let mut values = image_io::resample_planes(&p.values, 3, from, to, p.resample);
            if let Some(f) = p.floor {
                values.iter_mut().for_each(|v| *v = v.max(f));
            }
            values
        })
    }

    /// Each plane's values replaced by `f` of the plane (its resampling and floor kept).
    pub fn map_planes(&self, f: impl Fn(&HandoverPlane) -> Vec<f32>) -> Handover {
        let planes = self.planes.iter().map(|p| HandoverPlane { values: f(p), ..*p }).collect();
        Handover { planes, steps: self.steps }
    }
}

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
    pub fn new(ctx: &GpuContext, count: usize, learning_rate: f64, x: &Buffer, grad: &Buffer) -> Result<Self> {
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
}

impl ImageOptimizer for Adam {
    fn iterate(&mut self, problem: &mut dyn Problem<'_>, read_losses: bool) -> Result<Option<Losses>> {
        self.prepare_next(problem.context());
        let done = problem.evaluate_and_update(&self.dispatch, read_losses);
        if let Err(Error::Stopped) = done {
            self.step -= 1; // the update was not made (the next prepare_next writes its constants again)
        }
        done
    }

    fn iterations(&self) -> usize {
        self.step as usize
    }

    fn fused_update(&self) -> Option<&Dispatch> {
        Some(&self.dispatch)
    }

    fn prepare_fused_update(&mut self, ctx: &GpuContext) {
        self.prepare_next(ctx);
    }

    /// m resizes bicubically like x; v bilinearly and clamped at 0 (bicubic overshoots below 0, and Adam takes
    /// sqrt(v)).
    fn handover(&self, ctx: &GpuContext, frame: Frame) -> Result<Handover> {
        let [m, v] = &self.moments;
        let plane = |b, resample, floor| -> Result<HandoverPlane> {
            Ok(HandoverPlane { values: frame.unframe(&ctx.read_all(b)?, 3), resample, floor })
        };
        let planes = vec![plane(m, Resample::Bicubic, None)?, plane(v, Resample::Bilinear, Some(0.0))?];
        Ok(Handover { planes, steps: self.step })
    }

    fn resume(&mut self, ctx: &GpuContext, frame: Frame, handover: &Handover) -> Result<()> {
        let [m, v] = &self.moments;
        let [mh, vh] = &handover.planes[..] else {
            return Err(Error::InvalidOption("Adam continues from Adam's state only (m and v)".into()));
        };
        let dense = 3 * frame.width * frame.height;
        if mh.values.len() != dense || vh.values.len() != dense {
            return Err(Error::InvalidOption(format!(
                "Adam state of {} values for an image of {dense}",
                mh.values.len()
            )));
        }
        ctx.queue.write_buffer(m, 0, bytemuck::cast_slice(&frame.frame(&mh.values, 3)));
        ctx.queue.write_buffer(v, 0, bytemuck::cast_slice(&frame.frame(&vh.values, 3)));
        self.step = handover.steps;
        Ok(())
    }
}

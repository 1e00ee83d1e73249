//! The image average (docs/MATHS.md, "Image averaging"): a bias-corrected exponential moving average of the
//! iterates, kept on the GPU next to x. It reads x after each update and is never read by the optimiser; the
//! run writes it.

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels;
use wgpu::Buffer;

/// The average of the iterates of one image of `count` floats.
pub struct ImageAverage {
    count: usize,
    decay: f64,
    /// Images taken in so far (the first image included).
    taken: u64,
    /// Takes in the current x (constants set by [`ImageAverage::prepare_next`]).
    pub dispatch: Dispatch,
    average: wgpu::Buffer,
    _biased: wgpu::Buffer,
}

impl ImageAverage {
    /// Floats the average keeps on the GPU for an image of `count` floats (b and a).
    pub fn buffer_floats(count: usize) -> usize {
        2 * count
    }

    /// An empty average of `x`; the first [`ImageAverage::prepare_next`] + dispatch takes in the first image.
    pub fn new(ctx: &GpuContext, count: usize, decay: f64, x: &Buffer) -> Result<Self> {
        let biased = ctx.storage_buffer("average b", count)?;
        let average = ctx.storage_buffer("average", count)?;
        let dispatch = kernels::image_average::image_average(ctx, count, decay, x, &biased, &average)?;
        Ok(Self { count, decay, taken: 0, dispatch, average, _biased: biased })
    }

    /// Sets the constants for taking in the next image; call before recording the dispatch.
    pub fn prepare_next(&mut self, ctx: &GpuContext) {
        kernels::image_average::set_update(ctx, &self.dispatch, self.count, self.decay, self.taken);
        self.taken += 1;
    }

    /// The average (framed like x), valid once an image was taken in.
    pub fn average(&self) -> &Buffer {
        &self.average
    }
}

//! Host wrapper of `image_average.wgsl`: the bias-corrected exponential moving average of the image
//! (docs/MATHS.md, "Image averaging"). The update-dependent constants live in the dispatch's uniform and are
//! rewritten before each submit with [`set_update`].

use super::shared::ELEMENTWISE;
use super::uniform::uniform;
use super::{kernel, Kernel};

use super::grid::elementwise_grid;
use super::uniform::u32_of;
use super::{max_dim, shader, Dispatch};
use crate::error::Result;
use crate::gpu::GpuContext;
use wgpu::Buffer;

uniform! {
    struct AverageParams {
        count: u32,
        restart: u32,
        decay: f32,
        correction: f32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] =
    &[kernel!("image_average", &[ELEMENTWISE], AverageParams, "x; mut biased; mut average")];

/// The constants of update `t` (t = 0 takes in the first image and restarts the average).
fn params(count: usize, decay: f64, t: u64) -> AverageParams {
    let t = i32::try_from(t.saturating_add(1)).unwrap_or(i32::MAX);
    AverageParams {
        count: u32_of(count),
        restart: u32::from(t == 1),
        decay: decay as f32,
        correction: (1.0 / (1.0 - decay.powi(t))) as f32,
        ..Default::default()
    }
}

/// The averaging dispatch over `count` elements of `x`, set for update t = 0 (the first image).
pub fn image_average(
    ctx: &GpuContext,
    count: usize,
    decay: f64,
    x: &Buffer,
    biased: &Buffer,
    average: &Buffer,
) -> Result<Dispatch> {
    let grid = elementwise_grid(count, max_dim(ctx));
    Dispatch::new(ctx, &shader("image_average")?, &params(count, decay, 0), &[x, biased, average], grid)
}

/// Rewrites the constants of `dispatch` (built by [`image_average`]) for update `t` (0 = the first image).
/// Queue writes land before the next submit, so this is ordered with the work that follows.
pub fn set_update(ctx: &GpuContext, dispatch: &Dispatch, count: usize, decay: f64, t: u64) {
    ctx.queue.write_buffer(&dispatch.params, 0, bytemuck::bytes_of(&params(count, decay, t)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_update_restarts_and_its_average_is_the_image() {
        let p = params(10, 0.99, 0);
        assert_eq!(p.restart, 1);
        // a₀ = (1 − D)·x₀ / (1 − D) = x₀.
        assert!(((1.0 - 0.99f32) * p.correction - 1.0).abs() < 1e-5);
        let later = params(10, 0.99, 5);
        assert_eq!(later.restart, 0);
        assert!((f64::from(later.correction) - 1.0 / (1.0 - 0.99f64.powi(6))).abs() < 1e-4);
    }
}

//! Video (docs/MATHS.md, "Video"): each frame after the first starts from the previous painting warped by the
//! optical flow and is held to it, and optionally to earlier ones, by the temporal loss wherever the flow is
//! reliable. This module makes a frame's [`Job`] from its content and the earlier paintings (flows by
//! [`crate::flow`], warping and reliability by `warp_bilinear`, `flow_reliability` and `reliability_smooth`), and
//! measures a painted sequence's warping error. The CLI (`neural-style video`) owns files, progress and resuming.

use crate::error::{Error, Result};
use crate::flow::FlowEstimator;
use crate::gpu::{Dispatch, GpuContext, Read as BufferRead};
use crate::job::{Job, JobImages, JobOptions, JobSize};
use crate::kernels::warp::{flow_reliability, reliability_smooth, warp_bilinear};
use crate::planar::PlanarImage;
use crate::stylizer::{Init, Optimizer, Temporal, WarpedFrame};

/// The temporal weight w_t (docs/MATHS.md, "Video"): 3x Ruder et al.'s 1e3, measured (docs/PERFORMANCE.md,
/// "Video").
pub const TEMPORAL_WEIGHT: f32 = 3e3;

/// The earlier frames each frame is held to: the previous one, or with long-term consistency also t−2 and t−4.
pub fn earlier_offsets(long_term: bool) -> &'static [usize] {
    if long_term {
        &[1, 2, 4]
    } else {
        &[1]
    }
}

/// Each earlier frame's weights ĉ_j = max(0, c_j − Σ_{k<j} c_k), the maps given nearest first: a pixel is held to
/// the nearest frame that sees it.
pub fn held_weights(maps: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mut covered = vec![0.0f32; maps.first().map_or(0, Vec::len)];
    maps.iter()
        .map(|c| {
            let held: Vec<f32> = c.iter().zip(&covered).map(|(&c, &k)| (c - k).max(0.0)).collect();
            covered.iter_mut().zip(c).for_each(|(k, &c)| *k += c);
            held
        })
        .collect()
}

/// How a sequence is painted.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoOptions {
    /// The first frame's job (a still painting: its scales and iterations), and every frame's problem.
    pub still: JobOptions,
    /// Iterations of each later frame (at the output size only).
    pub frame_iterations: usize,
    /// What optimises each later frame (it starts near its answer: L-BFGS settles there, Adam's fixed step
    /// keeps moving it by about its learning rate).
    pub frame_optimizer: Optimizer,
    /// w_t.
    pub temporal_weight: f32,
    /// The earlier frames each frame is held to ([`earlier_offsets`]).
    pub offsets: Vec<usize>,
    /// Paint every frame as a still from its own content (the baseline): no flow, no temporal loss.
    pub independent: bool,
}

/// An earlier frame as the next frames see it: its content (at the output size) and its painting as written.
#[derive(Clone, Debug)]
pub struct Painted {
    pub content: PlanarImage,
    pub painting: PlanarImage,
}

/// Warping and reliability on the GPU for frames of one size, bound to a [`FlowEstimator`]'s flow buffers
/// (dense planes; buffers and dispatches made once).
pub struct Warper {
    size: (usize, usize),
    /// The earlier frame's painting (in), warped into frame t, and its reliability c (out).
    image: wgpu::Buffer,
    warped: wgpu::Buffer,
    reliable: wgpu::Buffer,
    /// Kept alive for the smoothing's dispatches.
    _smoothed: wgpu::Buffer,
    /// The warp, the consistency check and the two smoothing passes.
    dispatches: Vec<Dispatch>,
}

impl Warper {
    /// `backward` holds the flow frame t → the earlier frame, `forward` the earlier frame → t.
    fn new(ctx: &GpuContext, (width, height): (usize, usize), (backward, forward): FlowBuffers<'_>) -> Result<Self> {
        let n = width * height;
        let image = ctx.storage_buffer("warp image", 3 * n)?;
        let warped = ctx.storage_buffer("warped image", 3 * n)?;
        let reliable = ctx.storage_buffer("reliability", n)?;
        let smoothed = ctx.storage_buffer("reliability smoothed", n)?;
        let (h, w) = (height, width);
        let dispatches = vec![
            warp_bilinear(ctx, (3, h, w), &image, backward, &warped)?,
            flow_reliability(ctx, (h, w), backward, forward, &reliable)?,
            reliability_smooth(ctx, (h, w), false, &reliable, &smoothed)?,
            reliability_smooth(ctx, (h, w), true, &smoothed, &reliable)?,
        ];
        Ok(Self { size: (width, height), image, warped, reliable, _smoothed: smoothed, dispatches })
    }
}

/// A flow estimator's buffers (frame t → the earlier frame, the earlier frame → t).
type FlowBuffers<'b> = (&'b wgpu::Buffer, &'b wgpu::Buffer);

/// Flows, warping and reliability for frames of one size: a frame's two flows, the warp of the earlier painting and
/// its reliability are one submission, the flows never leaving the GPU.
pub struct Motion<'c> {
    ctx: &'c GpuContext,
    flow: FlowEstimator<'c>,
    warper: Warper,
}

impl<'c> Motion<'c> {
    pub fn new(ctx: &'c GpuContext, size: (usize, usize)) -> Result<Self> {
        let flow = FlowEstimator::new(ctx, size.0, size.1)?;
        let warper = Warper::new(ctx, size, flow.flow_buffers())?;
        Ok(Self { ctx, flow, warper })
    }

    /// The frame size (width, height).
    pub fn size(&self) -> (usize, usize) {
        self.warper.size
    }

    /// The painting of an earlier frame warped into the frame of `content`, and its reliability c.
    pub fn warped(&self, content: &PlanarImage, earlier: &Painted) -> Result<WarpedFrame> {
        let (w, h) = self.size();
        let painting = &earlier.painting;
        if (painting.width, painting.height) != (w, h) {
            return Err(Error::InvalidOption(format!(
                "a {}x{} painting for {w}x{h} frames",
                painting.width, painting.height
            )));
        }
        self.ctx.queue.write_buffer(&self.warper.image, 0, bytemuck::cast_slice(&painting.data));
        // (this frame → the earlier one, the earlier one → this frame), both pyramids built once, then the warp and
        // the reliability, which bind those flows.
        let then: Vec<&Dispatch> = self.warper.dispatches.iter().collect();
        let reads =
            [BufferRead::new(&self.warper.warped, 0, 3 * w * h), BufferRead::new(&self.warper.reliable, 0, w * h)];
        let mut out = self.flow.pair_then((&content.data, &earlier.content.data), &then, &reads)?;
        let weights = out.pop().expect("two reads");
        Ok(WarpedFrame { image: PlanarImage::new(w, h, out.pop().expect("two reads")), weights })
    }
}

/// The job of a frame: `content` at the output size; `earlier[i]` the painted frame `options.offsets[i]` frames
/// back where there is one (the first frame of a sequence has none: it is painted as a still).
pub fn frame_job(
    motion: &Motion<'_>,
    options: &VideoOptions,
    content: &PlanarImage,
    styles: &[PlanarImage],
    earlier: &[Option<&Painted>],
) -> Result<Job> {
    let images = JobImages::new(content.clone(), styles.to_vec());
    if options.independent || earlier.first().copied().flatten().is_none() {
        return Job::plan(images, options.still.clone());
    }
    let mut warped = Vec::with_capacity(earlier.len());
    for e in earlier.iter().flatten() {
        warped.push(motion.warped(content, e)?);
    }
    let maps: Vec<Vec<f32>> = warped.iter().map(|w| w.weights.clone()).collect();
    for (w, held) in warped.iter_mut().zip(held_weights(&maps)) {
        w.weights = held;
    }
    let mut o = options.still.clone();
    o.size = JobSize { iterations: options.frame_iterations, min_scale: None, ..o.size };
    o.style.optimizer = options.frame_optimizer;
    o.style.init = Init::Image(warped[0].image.clone());
    o.style.temporal = Some(Temporal { weight: options.temporal_weight, frames: warped });
    Job::plan(images, o)
}

/// The warping error of painted frames (docs/MATHS.md, "Video"): over t ≥ 2, the reliability-weighted mean squared
/// difference (0–255 units) between frame t's painting and frame t−1's warped into it; also each frame's.
pub fn warping_error(motion: &Motion<'_>, frames: &[Painted]) -> Result<(f64, Vec<f64>)> {
    let mut each = Vec::new();
    for pair in frames.windows(2) {
        let sizes =
            [&pair[0].content, &pair[0].painting, &pair[1].content, &pair[1].painting].map(|i| (i.width, i.height));
        if sizes.iter().any(|&s| s != motion.size()) {
            return Err(Error::InvalidOption(format!("frames of sizes {sizes:?} for a {:?} motion", motion.size())));
        }
        each.push(frame_warping_error(&pair[1].painting, &motion.warped(&pair[1].content, &pair[0])?)?);
    }
    let mean = if each.is_empty() { 0.0 } else { each.iter().sum::<f64>() / each.len() as f64 };
    Ok((mean, each))
}

/// One frame's warping error: its painting against `previous`, frame t−1's painting warped into it with its
/// reliability c (as [`frame_job`] holds it: a coherent frame's first temporal target, so a painted frame's error
/// needs no second flow).
pub fn frame_warping_error(painting: &PlanarImage, previous: &WarpedFrame) -> Result<f64> {
    let n = previous.weights.len();
    if painting.data.len() != 3 * n || previous.image.data.len() != 3 * n {
        return Err(Error::InvalidOption(format!(
            "a {}x{} painting against a warped frame of {n} pixels",
            painting.width, painting.height
        )));
    }
    let (mut sum, mut weight) = (0.0f64, 0.0f64);
    for (p, &c) in previous.weights.iter().enumerate() {
        let c = f64::from(c);
        for ch in 0..3 {
            let d = f64::from(painting.data[ch * n + p]) - f64::from(previous.image.data[ch * n + p]);
            sum += c * d * d;
        }
        weight += 3.0 * c;
    }
    Ok(if weight > 0.0 { sum / weight } else { 0.0 })
}

/// A camera move over a still image, for tests and demonstrations: `count` frames of `width` x `height`, frame k
/// the window whose top-left corner is `start + k·step` (px of `image`, sub-pixel: bilinear), so the true flow from
/// frame k to k+1 is −step everywhere. The windows must stay inside the image.
pub fn pan_frames(
    image: &PlanarImage,
    count: usize,
    (width, height): (usize, usize),
    start: (f64, f64),
    step: (f64, f64),
) -> Result<Vec<PlanarImage>> {
    let last = (start.0 + step.0 * (count.max(1) - 1) as f64, start.1 + step.1 * (count.max(1) - 1) as f64);
    let fits = |(x, y): (f64, f64)| {
        x >= 0.0 && y >= 0.0 && x + width as f64 <= image.width as f64 && y + height as f64 <= image.height as f64
    };
    if !fits(start) || !fits(last) {
        return Err(Error::InvalidOption(format!(
            "a {width}x{height} window from {start:?} by {step:?} leaves the {}x{} image",
            image.width, image.height
        )));
    }
    let n = image.width * image.height;
    let frames = (0..count)
        .map(|k| {
            let (x0, y0) = (start.0 + step.0 * k as f64, start.1 + step.1 * k as f64);
            let mut data = Vec::with_capacity(3 * width * height);
            for plane in image.data.chunks_exact(n) {
                for y in 0..height {
                    for x in 0..width {
                        let (px, py) = (x0 + x as f64, y0 + y as f64);
                        let (ix, iy) =
                            ((px.floor() as usize).min(image.width - 1), (py.floor() as usize).min(image.height - 1));
                        let (jx, jy) = ((ix + 1).min(image.width - 1), (iy + 1).min(image.height - 1));
                        let (ax, ay) = (px - ix as f64, py - iy as f64);
                        let at = |yy: usize, xx: usize| f64::from(plane[yy * image.width + xx]);
                        let top = at(iy, ix) * (1.0 - ax) + at(iy, jx) * ax;
                        let bottom = at(jy, ix) * (1.0 - ax) + at(jy, jx) * ax;
                        data.push((top * (1.0 - ay) + bottom * ay) as f32);
                    }
                }
            }
            PlanarImage::new(width, height, data)
        })
        .collect();
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pixel_is_held_to_the_nearest_frame_that_sees_it() {
        let maps = vec![vec![1.0, 0.0, 0.0, 0.5], vec![1.0, 1.0, 0.0, 1.0], vec![1.0, 1.0, 1.0, 0.25]];
        let held = held_weights(&maps);
        assert_eq!(held[0], vec![1.0, 0.0, 0.0, 0.5]);
        assert_eq!(held[1], vec![0.0, 1.0, 0.0, 0.5]);
        assert_eq!(held[2], vec![0.0, 0.0, 1.0, 0.0]);
        assert_eq!(earlier_offsets(false), &[1]);
        assert_eq!(earlier_offsets(true), &[1, 2, 4]);
    }
}

//! The whole painting, as one library call: the one place that knows the order of a painting's stages.
//!
//! A [`Job`] is planned from the images and [`JobOptions`] without touching the GPU (every size is checked
//! there), then [`Job::run`] paints: per scale (one, or coarse to fine: docs/MATHS.md, "Coarse-to-fine") it sets
//! up a [`Stylizer`], starts it from the previous scale's image and optimiser state, runs the scale's iterations
//! with L-BFGS's caps, and at the end scores and reads back the image it writes. It reports to an [`Observer`]
//! (stages, losses, images it read back, the optimiser stopping) and stops between iterations when asked.
//!
//! ```no_run
//! # fn main() -> neural_style::Result<()> {
//! use neural_style::gpu::{GpuContext, GpuOptions};
//! use neural_style::job::{Job, JobImages, JobOptions, JobSize, Silent};
//! use neural_style::weights::Vgg16Weights;
//! use neural_style::image_io;
//! let ctx = GpuContext::new(&GpuOptions::default())?;
//! let weights = Vgg16Weights::load(&Vgg16Weights::default_path())?;
//! let images = JobImages::new(
//!     image_io::load_image("photo.png".as_ref())?,
//!     vec![image_io::load_image("painting.png".as_ref())?],
//! );
//! // The adapter's default size and iterations, coarse to fine.
//! let size = JobSize::resolve(None, None, Some(neural_style::defaults::MIN_SCALE), ctx.info.device_type);
//! let job = Job::plan(images, JobOptions::new(size))?;
//! let painted = job.run(&ctx, &weights, &mut Silent, &Default::default()).map_err(|f| f.into_error())?;
//! image_io::write_image_atomic("out.png".as_ref(), &painted.image)?;
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::defaults;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::image_io::{self, Resample};
use crate::loss_terms::Losses;
use crate::optim::Handover;
use crate::planar::PlanarImage;
use crate::schedule::{iterations_per_scale, scale_sizes};
use crate::setup_stage::SetupStage;
use crate::stylizer::{Init, Optimizer, StyleOptions, Stylizer};
use crate::vgg::{self, MIN_SIDE};
use neural_style_weights::Vgg16Weights;

/// The job's size and length after the defaults that depend on the adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobSize {
    /// Longest side of the output, px.
    pub image_size: usize,
    /// Iterations in all (over every scale).
    pub iterations: usize,
    /// Coarse to fine from this smallest scale (px); None: one scale.
    pub min_scale: Option<usize>,
    /// Some default was lowered for a CPU adapter (a caller may say so, and how to get the full job).
    pub cpu_defaults: bool,
}

/// How a caller asks for the scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Scales {
    /// The adapter's default: coarse to fine for a CPU adapter's whole default job, else one scale.
    #[default]
    Default,
    /// Coarse to fine from this smallest scale (px).
    CoarseToFine(usize),
    /// The job's size only.
    Single,
}

impl JobSize {
    /// The job for a given (or defaulted) size and iterations on an adapter of `device_type`; a pure function.
    /// A CPU adapter's whole default job paints coarse to fine (measured better in the same time); any other job
    /// only when asked.
    pub fn resolve_scales(
        image_size: Option<usize>,
        iterations: Option<usize>,
        scales: Scales,
        device_type: wgpu::DeviceType,
    ) -> JobSize {
        let cpu = device_type == wgpu::DeviceType::Cpu;
        let cpu_job = cpu && image_size.is_none() && iterations.is_none();
        let min_scale = match scales {
            Scales::Single => None,
            Scales::CoarseToFine(m) => Some(m),
            Scales::Default => cpu_job.then_some(defaults::MIN_SCALE),
        };
        let cpu_iterations = if cpu_job && min_scale.is_some() {
            defaults::CPU_COARSE_TO_FINE_ITERATIONS
        } else {
            defaults::CPU_ITERATIONS
        };
        let (size, its) = if cpu {
            (defaults::CPU_IMAGE_SIZE, cpu_iterations)
        } else {
            (defaults::GPU_IMAGE_SIZE, defaults::GPU_ITERATIONS)
        };
        JobSize {
            image_size: image_size.unwrap_or(size),
            iterations: iterations.unwrap_or(its),
            min_scale,
            cpu_defaults: cpu && (image_size.is_none() || iterations.is_none()),
        }
    }

    /// As [`JobSize::resolve_scales`], with `min_scale` Some: coarse to fine from it, None: the default scales.
    pub fn resolve(
        image_size: Option<usize>,
        iterations: Option<usize>,
        min_scale: Option<usize>,
        device_type: wgpu::DeviceType,
    ) -> JobSize {
        let scales = min_scale.map_or(Scales::Default, Scales::CoarseToFine);
        Self::resolve_scales(image_size, iterations, scales, device_type)
    }
}

/// Everything a painting is asked to do beyond one [`Stylizer`]'s problem.
#[derive(Clone, Debug, PartialEq)]
pub struct JobOptions {
    /// The problem at every scale. With L-BFGS, `max_evals` is replaced per scale from `lbfgs_max_evals`.
    pub style: StyleOptions,
    pub size: JobSize,
    /// Style images are resized so that their longest side is ceil(style_scale · the scale's size).
    pub style_scale: f64,
    /// L-BFGS's cap on loss evaluations at each scale; None: 1.25 x the scale's iterations.
    pub lbfgs_max_evals: Option<usize>,
}

impl JobOptions {
    /// The default problem at this size.
    pub fn new(size: JobSize) -> Self {
        Self { style: StyleOptions::default(), size, style_scale: defaults::STYLE_SCALE, lbfgs_max_evals: None }
    }

    /// The longest side of the style images at the job's own size.
    pub fn style_side(&self) -> usize {
        image_io::style_longest_side(self.size.image_size, self.style_scale)
    }
}

/// The images of a painting at their own sizes, with the names errors use.
#[derive(Clone, Debug)]
pub struct JobImages {
    pub content: PlanarImage,
    pub styles: Vec<PlanarImage>,
    /// Names of the content image and then each style image in messages ("content image 'a.png'").
    pub names: Vec<String>,
}

impl JobImages {
    pub fn new(content: PlanarImage, styles: Vec<PlanarImage>) -> Self {
        let names = std::iter::once("the content image".to_string())
            .chain((1..=styles.len()).map(|i| format!("style image {i}")));
        Self { names: names.collect(), content, styles }
    }

    fn name(&self, i: usize) -> &str {
        self.names.get(i).map_or("an image", String::as_str)
    }
}

/// One scale of a job: the longest side, its iterations, and the images at that scale.
#[derive(Clone, Debug)]
pub struct Scale {
    pub side: usize,
    pub iterations: usize,
    pub content: PlanarImage,
    pub styles: Vec<PlanarImage>,
    pub style_side: usize,
}

/// A planned painting: its scales with their images, checked; nothing on the GPU yet.
pub struct Job {
    options: JobOptions,
    scales: Vec<Scale>,
}

/// What a job reports, in the order it happens.
#[derive(Debug)]
pub enum Event<'e> {
    /// Scale `index` of `count` starts its setup.
    Scale { index: usize, count: usize, scale: &'e Scale },
    /// A stage of the scale's setup starts.
    Setup(SetupStage),
    /// The scale is set up; the loop starts. At the first scale, the initial image (what a stop before the
    /// first update can save).
    Ready { index: usize, initial_image: Option<PlanarImage> },
    /// The update of this iteration is about to be recorded (L-BFGS may still stop without making it).
    Update { iteration: usize },
    /// Tiled evaluation: `done` of the iteration's `of` block passes are done (sent as each finishes).
    Blocks { done: usize, of: usize },
    /// The losses of an iterate, read back because the observer wanted them (L-BFGS: always).
    Losses(IterationLosses<'e>),
    /// An iteration is done: `iteration` updates made in all (counting the earlier scales' iterations in full),
    /// `done` of them by this run; the losses read back for it and the image when the observer wanted it.
    Iteration { iteration: usize, done: usize, losses: Option<(usize, &'e Losses)>, image: Option<PlanarImage> },
    /// The optimiser stopped at this scale before its iterations were done (L-BFGS's stopping rules).
    OptimizerStopped { at: usize, why: String },
    /// The losses of the image the job writes (one more forward pass, made when the observer wants them).
    FinalLosses(IterationLosses<'e>),
}

/// Losses of one iterate as a log writes them.
#[derive(Debug)]
pub struct IterationLosses<'e> {
    pub iteration: usize,
    pub losses: &'e Losses,
    /// Milliseconds the step (or the final scoring) took, read-back included.
    pub ms: f64,
    /// L-BFGS's evaluations of the loss so far (None with Adam: one per iteration).
    pub evaluations: Option<usize>,
    /// The longest side of this iterate's scale (coarse-to-fine jobs only).
    pub scale: Option<usize>,
}

/// Who watches a job: what it wants read back (each read costs a wait for the GPU) and what it is told.
pub trait Observer {
    type Error;
    /// Whether the losses of iterate `iteration` (before its update) are wanted.
    fn wants_losses(&mut self, _iteration: usize) -> bool {
        false
    }
    /// Whether the image after `iteration` updates is wanted.
    fn wants_image(&mut self, _iteration: usize) -> bool {
        false
    }
    /// Whether the losses of the written image are wanted at the end (one more forward pass).
    fn wants_final_losses(&mut self) -> bool {
        false
    }
    fn event(&mut self, event: Event<'_>) -> std::result::Result<(), Self::Error>;
}

/// An observer that wants nothing and says nothing.
pub struct Silent;

impl Observer for Silent {
    type Error = std::convert::Infallible;
    fn event(&mut self, _: Event<'_>) -> std::result::Result<(), Self::Error> {
        Ok(())
    }
}

/// A painted image and how far the job got.
pub struct Painted {
    /// The image the job writes (the average when averaging), pixel units, at the last scale it reached.
    pub image: PlanarImage,
    /// Updates made in all (the earlier scales' iterations counted in full).
    pub iterations: usize,
    /// Updates this run made (L-BFGS may stop a scale early).
    pub done: usize,
    /// The stop request was seen.
    pub stopped: bool,
}

/// Why a job failed.
#[derive(Debug)]
pub enum Failure<E> {
    /// Before the first update: the images, the options, the setup of the first scale.
    Setup(Error),
    /// The GPU (or the setup of a later scale) failed after `iteration` updates: the image of the last update
    /// read back is still good.
    Gpu { iteration: usize, error: Error },
    /// The observer returned an error.
    Observer(E),
}

impl<E: std::fmt::Display> Failure<E> {
    /// The failure as the library's error type.
    pub fn into_error(self) -> Error {
        match self {
            Failure::Setup(e) | Failure::Gpu { error: e, .. } => e,
            Failure::Observer(e) => Error::Io(e.to_string()),
        }
    }
}

impl<E> From<Error> for Failure<E> {
    fn from(e: Error) -> Self {
        Failure::Setup(e)
    }
}

/// `r`'s error as a GPU failure after `iteration` updates.
fn at<T, E>(iteration: usize, r: Result<T>) -> std::result::Result<T, Failure<E>> {
    r.map_err(|error| Failure::Gpu { iteration, error })
}

/// What a scale hands to the next: the image it writes (x or the average, dense CHW), the optimiser's state,
/// and their size.
struct Carry {
    x: Vec<f32>,
    handover: Handover,
    from: (usize, usize),
}

impl Carry {
    /// The image upscaled bicubically to `to` (docs/MATHS.md, "Coarse-to-fine"), pixel units.
    fn image(&self, to: (usize, usize)) -> PlanarImage {
        let up = image_io::resample_planes(&self.x, 3, self.from, to, Resample::Bicubic);
        vgg::add_mean(&up, to.0, to.1)
    }
}

/// How far a job has got: the counts the loop and the observer share.
struct Count {
    /// Updates made at earlier scales (their iterations counted in full).
    offset: usize,
    /// Updates this run made.
    done: usize,
}

/// Refuses an image under 16 px on a side: `message(width, height)` says which and how to fix it.
fn too_small(img: &PlanarImage, message: impl FnOnce(usize, usize) -> String) -> Result<()> {
    if img.width < MIN_SIDE || img.height < MIN_SIDE {
        return Err(Error::InvalidOption(message(img.width, img.height)));
    }
    Ok(())
}

impl Job {
    /// Checks every scale's images (no GPU work; the options are checked when the first scale is set up): the
    /// content at the job's size, the style images
    /// at `style_scale` of it, and the coarse-to-fine scales from `min_scale` (sizes by √2, the first with two
    /// shares of the iterations). Each scale's style images are resized from the originals, never above their
    /// own size, except at the last scale, which matches a single-scale run.
    pub fn plan(images: JobImages, options: JobOptions) -> Result<Job> {
        let size = options.size;
        let style_side = options.style_side();
        let after_resizing = |what: &str, (w, h): (usize, usize), hint: &str| {
            format!("{what} becomes {w}x{h} px after resizing; both sides must be at least {MIN_SIDE} px ({hint})")
        };
        let content = image_io::resize_longest(&images.content, size.image_size);
        too_small(&content, |w, h| after_resizing(images.name(0), (w, h), "raise --image-size"))?;
        let mut styles = Vec::with_capacity(images.styles.len());
        for (i, s) in images.styles.iter().enumerate() {
            let s = image_io::resize_longest(s, style_side);
            let hint = "raise --style-scale or --image-size";
            too_small(&s, |w, h| after_resizing(images.name(i + 1), (w, h), hint))?;
            styles.push(s);
        }
        let sides = match size.min_scale {
            Some(min) => scale_sizes(size.image_size, min),
            None => vec![size.image_size],
        };
        let iterations = iterations_per_scale(size.iterations, sides.len());
        let last = sides.len() - 1;
        let mut scales = Vec::with_capacity(sides.len());
        for (i, (&side, iterations)) in sides.iter().zip(iterations).enumerate() {
            if i == last {
                scales.push(Scale { side, iterations, content, styles, style_side });
                break;
            }
            let c = image_io::resize_longest(&images.content, side);
            too_small(&c, |w, h| {
                format!(
                    "coarse to fine: at the {side} px scale the content would be {w}x{h} px; both sides must be at \
                     least {MIN_SIDE} px (raise --min-scale)"
                )
            })?;
            let own = images.styles.iter().map(|s| s.width.max(s.height)).min().unwrap_or(usize::MAX);
            let scale_style_side = image_io::style_longest_side(side, options.style_scale).min(own);
            let mut s = Vec::with_capacity(images.styles.len());
            for style in &images.styles {
                let r = image_io::resize_longest(style, scale_style_side);
                too_small(&r, |w, h| {
                    format!(
                        "coarse to fine: at the {side} px scale a style image would be {w}x{h} px; both sides must \
                         be at least {MIN_SIDE} px (raise --min-scale or --style-scale)"
                    )
                })?;
                s.push(r);
            }
            scales.push(Scale { side, iterations, content: c, styles: s, style_side: scale_style_side });
        }
        for scale in &scales {
            options.style.canvas(scale.content.width, scale.content.height)?;
        }
        let mut options = options;
        // An init image of any size starts the job at the content's size.
        let out = scales.last().expect("at least one scale");
        if let Init::Image(img) = &options.style.init {
            let (w, h) = (out.content.width, out.content.height);
            options.style.init = Init::Image(image_io::resize_exact(img, w, h));
        }
        Ok(Job { options, scales })
    }

    /// The scales, coarsest first; the last is the job's own size.
    pub fn scales(&self) -> &[Scale] {
        &self.scales
    }

    /// The content image at the job's size (the output's size).
    pub fn content(&self) -> &PlanarImage {
        &self.output_scale().content
    }

    /// The style images at the job's size.
    pub fn styles(&self) -> &[PlanarImage] {
        &self.output_scale().styles
    }

    pub fn options(&self) -> &JobOptions {
        &self.options
    }

    fn output_scale(&self) -> &Scale {
        self.scales.last().expect("at least one scale")
    }

    /// The options of scale `index`: L-BFGS's evaluation cap counted for the scale's own iterations (its history
    /// starts afresh at each scale) and its initial image: the previous scale's, upscaled, or the job's init.
    fn scale_options(&self, index: usize, carry: Option<&Carry>) -> StyleOptions {
        let scale = &self.scales[index];
        let mut o = self.options.style.clone();
        if let Optimizer::Lbfgs { history, .. } = o.optimizer {
            let max_evals = self.options.lbfgs_max_evals.unwrap_or(defaults::lbfgs_max_evals(scale.iterations));
            o.optimizer = Optimizer::Lbfgs { history, max_evals: max_evals.max(1) };
        }
        let size = (scale.content.width, scale.content.height);
        // A video frame's temporal targets are at the output's size: only its scale is held to them.
        if index + 1 != self.scales.len() {
            o.temporal = None;
        }
        match (carry, &o.init) {
            (Some(c), _) => o.init = Init::Image(c.image(size)),
            (None, Init::Image(img)) => o.init = Init::Image(image_io::resize_exact(img, size.0, size.1)),
            (None, _) => {}
        }
        o
    }

    /// Paints: every scale in turn, stopping between iterations once `stop` is set (the image so far is still
    /// returned). A failure after the first update says how many updates were made.
    pub fn run<O: Observer>(
        &self,
        ctx: &GpuContext,
        weights: &Vgg16Weights,
        observer: &mut O,
        stop: &AtomicBool,
    ) -> std::result::Result<Painted, Failure<O::Error>> {
        let mut count = Count { offset: 0, done: 0 };
        let mut carry: Option<Carry> = None;
        let count_of_scales = self.scales.len();
        let mut index = 0;
        loop {
            let scale = &self.scales[index];
            observer.event(Event::Scale { index, count: count_of_scales, scale }).map_err(Failure::Observer)?;
            let mut stylizer = match self.set_up(ctx, weights, index, carry.take(), observer) {
                Err(Failure::Setup(error)) if index > 0 => return Err(Failure::Gpu { iteration: count.offset, error }),
                made => made?,
            };
            let scale_start = stylizer.iteration();
            self.run_scale(&mut stylizer, scale, &mut count, observer, stop)?;
            let stopped = stop.load(Ordering::SeqCst);
            if index + 1 == count_of_scales || stopped {
                count.offset += stylizer.iteration() - scale_start;
                return self.finish(stylizer, count, observer, stopped);
            }
            // Hand the image (the average, when averaging) and the optimiser's state to the next scale;
            // iterations L-BFGS left unused are skipped.
            count.offset += scale.iterations;
            count.done = count.offset;
            let x = at(count.offset, stylizer.output_x())?;
            let handover = at(count.offset, stylizer.handover())?;
            carry = Some(Carry { x, handover, from: stylizer.size() });
            index += 1;
        }
    }

    /// Sets scale `index` up: its stylizer from the previous scale's image and optimiser state.
    fn set_up<'c, O: Observer>(
        &self,
        ctx: &'c GpuContext,
        weights: &Vgg16Weights,
        index: usize,
        carry: Option<Carry>,
        observer: &mut O,
    ) -> std::result::Result<Stylizer<'c>, Failure<O::Error>> {
        let scale = &self.scales[index];
        let opts = self.scale_options(index, carry.as_ref());
        let mut observer_failed = None;
        let made = Stylizer::with_progress(ctx, weights, &scale.content, &scale.styles, &opts, &mut |stage| {
            if observer_failed.is_none() {
                observer_failed = observer.event(Event::Setup(stage)).err();
            }
        });
        if let Some(e) = observer_failed {
            return Err(Failure::Observer(e));
        }
        let mut stylizer = made?;
        if let Some(c) = carry {
            let to = stylizer.size();
            stylizer.resume(&c.handover.resized(c.from, to))?;
        }
        let initial = if index == 0 { Some(stylizer.image()?) } else { None };
        observer.event(Event::Ready { index, initial_image: initial }).map_err(Failure::Observer)?;
        Ok(stylizer)
    }

    /// The iterations of one scale, until they are done, the optimiser stops or `stop` is set.
    fn run_scale<O: Observer>(
        &self,
        stylizer: &mut Stylizer<'_>,
        scale: &Scale,
        count: &mut Count,
        observer: &mut O,
        stop: &AtomicBool,
    ) -> std::result::Result<(), Failure<O::Error>> {
        let coarse_to_fine = self.scales.len() > 1;
        // The optimiser's update count carries over between scales; this scale's own count starts here.
        let scale_start = stylizer.iteration();
        let ended = |s: &Stylizer<'_>| count_at(s, scale_start, count.offset);
        while stylizer.iteration() - scale_start < scale.iterations {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let j = stylizer.iteration();
            let i = ended(stylizer);
            let read_losses = observer.wants_losses(i);
            observer.event(Event::Update { iteration: i }).map_err(Failure::Observer)?;
            // L-BFGS: the evaluations made when this iterate was accepted (the first step also evaluates x0).
            let evaluations = stylizer.evaluations().map(|e| e.max(1));
            // Adam's losses arrive one step late (the GPU never waits for the host to read them); L-BFGS's at once.
            // Tiled, the blocks are reported as they finish, and a stop request is honoured between them.
            let mut observer_failed = None;
            let mut watch = |done: usize, of: usize| {
                if observer_failed.is_none() {
                    observer_failed = observer.event(Event::Blocks { done, of }).err();
                }
                !stop.load(Ordering::SeqCst)
            };
            let stepped = stylizer.step_watched(read_losses, &mut watch);
            if let Some(e) = observer_failed {
                return Err(Failure::Observer(e));
            }
            let late = match stepped {
                Err(Error::Stopped) => break,
                other => at(i, other)?,
            };
            if stylizer.iteration() == j && stylizer.stopped().is_some() {
                break; // stopped without an update: the next scale (or the final scoring) starts here
            }
            let read = late.map(|l| (count.offset + l.iteration - scale_start, l));
            if let Some((at_iteration, l)) = &read {
                let scale = coarse_to_fine.then_some(scale.side);
                let evaluations = if l.iteration == j { evaluations } else { None };
                let report =
                    IterationLosses { iteration: *at_iteration, losses: &l.losses, ms: l.ms, evaluations, scale };
                observer.event(Event::Losses(report)).map_err(Failure::Observer)?;
            }
            count.done += 1;
            let k = ended(stylizer);
            let image = if observer.wants_image(k) { Some(at(k, stylizer.image())?) } else { None };
            let losses = read.as_ref().map(|(at_iteration, l)| (*at_iteration, &l.losses));
            let event = Event::Iteration { iteration: k, done: count.done, losses, image };
            observer.event(event).map_err(Failure::Observer)?;
            if stylizer.stopped().is_some() {
                break;
            }
        }
        // The last pipelined read.
        if let Some(l) = at(ended(stylizer), stylizer.flush_losses())? {
            let scale = coarse_to_fine.then_some(scale.side);
            let iteration = count.offset + l.iteration - scale_start;
            let report = IterationLosses { iteration, losses: &l.losses, ms: l.ms, evaluations: None, scale };
            observer.event(Event::Losses(report)).map_err(Failure::Observer)?;
        }
        if let Some(why) = stylizer.stopped() {
            observer.event(Event::OptimizerStopped { at: ended(stylizer), why }).map_err(Failure::Observer)?;
        }
        Ok(())
    }

    /// The end: the written image's losses (skipped after a stop request, which should stop now) and the image.
    fn finish<O: Observer>(
        &self,
        mut stylizer: Stylizer<'_>,
        count: Count,
        observer: &mut O,
        stopped: bool,
    ) -> std::result::Result<Painted, Failure<O::Error>> {
        let k = count.offset;
        if !stopped && observer.wants_final_losses() {
            let t = Instant::now();
            let l = at(k, stylizer.output_losses())?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let scale = (self.scales.len() > 1).then_some(self.output_scale().side);
            let report = IterationLosses { iteration: k, losses: &l, ms, evaluations: stylizer.evaluations(), scale };
            observer.event(Event::FinalLosses(report)).map_err(Failure::Observer)?;
        }
        let image = at(k, stylizer.image())?;
        Ok(Painted { image, iterations: k, done: count.done, stopped })
    }
}

/// The run's iteration count for a stylizer whose scale began at update `scale_start`, after `offset` updates
/// at earlier scales.
fn count_at(s: &Stylizer<'_>, scale_start: usize, offset: usize) -> usize {
    offset + s.iteration() - scale_start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_adapters_get_a_job_of_minutes_unless_told_otherwise() {
        let cpu = wgpu::DeviceType::Cpu;
        let gpu = wgpu::DeviceType::DiscreteGpu;
        let j = JobSize::resolve(None, None, None, gpu);
        assert_eq!((j.image_size, j.iterations, j.cpu_defaults, j.min_scale), (512, 1000, false, None));
        let j = JobSize::resolve(None, None, None, cpu);
        assert_eq!((j.image_size, j.iterations, j.cpu_defaults, j.min_scale), (256, 600, true, Some(128)));
        let j = JobSize::resolve_scales(None, None, Scales::Single, cpu);
        assert_eq!((j.image_size, j.iterations, j.min_scale), (256, 300, None));
        let j = JobSize::resolve(Some(400), None, None, cpu);
        assert_eq!((j.image_size, j.iterations, j.cpu_defaults, j.min_scale), (400, 300, true, None));
        let j = JobSize::resolve(None, None, Some(128), gpu);
        assert_eq!((j.iterations, j.min_scale), (1000, Some(128)));
        let j = JobSize::resolve(None, None, Some(200), gpu);
        assert_eq!(j.min_scale, Some(200));
        let j = JobSize::resolve(Some(512), Some(1000), None, cpu);
        assert_eq!((j.image_size, j.iterations, j.cpu_defaults), (512, 1000, false));
    }

    fn flat(w: usize, h: usize) -> PlanarImage {
        PlanarImage::new(w, h, vec![100.0; 3 * w * h])
    }

    #[test]
    fn the_plan_resizes_every_scale_and_names_the_image_that_is_too_small() {
        let gpu = wgpu::DeviceType::DiscreteGpu;
        let size = JobSize::resolve(Some(256), Some(300), Some(128), gpu);
        let job = Job::plan(JobImages::new(flat(400, 200), vec![flat(300, 300)]), JobOptions::new(size)).unwrap();
        let sides: Vec<usize> = job.scales().iter().map(|s| s.side).collect();
        assert_eq!(sides, vec![128, 181, 256]);
        let its: Vec<usize> = job.scales().iter().map(|s| s.iterations).collect();
        assert_eq!(its, vec![150, 75, 75]);
        assert_eq!((job.content().width, job.content().height), (256, 128));
        assert_eq!(job.styles()[0].width, 256);
        assert_eq!((job.scales()[0].content.width, job.scales()[0].styles[0].width), (128, 128));

        // A wide content image: 64 px tall at 256, 32 at 128, 16 at 64: the 45 px scale is under 16 px tall.
        let size = JobSize::resolve(Some(256), Some(10), Some(40), gpu);
        let e = Job::plan(JobImages::new(flat(1600, 100), vec![flat(64, 64)]), JobOptions::new(size)).err().unwrap();
        assert!(e.to_string().starts_with("coarse to fine: at the 45 px scale the content would be 45x3 px"), "{e}");
        let mut images = JobImages::new(flat(64, 64), vec![flat(64, 64), flat(100, 10)]);
        images.names[2] = "style image 'thin.png'".into();
        let size = JobSize::resolve(Some(64), Some(10), None, gpu);
        let e = Job::plan(images, JobOptions::new(size)).err().unwrap();
        assert!(e.to_string().starts_with("style image 'thin.png' becomes 64x6 px after resizing"), "{e}");
    }

    #[test]
    fn each_scale_gets_its_own_lbfgs_cap_and_the_init_image_at_its_size() {
        let gpu = wgpu::DeviceType::DiscreteGpu;
        let size = JobSize::resolve(Some(64), Some(40), Some(32), gpu);
        let mut opts = JobOptions::new(size);
        opts.style.optimizer = Optimizer::Lbfgs { history: 5, max_evals: 1 };
        opts.style.init = Init::Image(flat(10, 10));
        let job = Job::plan(JobImages::new(flat(64, 64), vec![flat(64, 64)]), opts.clone()).unwrap();
        let its: Vec<usize> = job.scales().iter().map(|s| s.iterations).collect();
        assert_eq!(its, vec![20, 10, 10]);
        let first = job.scale_options(0, None);
        assert_eq!(first.optimizer, Optimizer::Lbfgs { history: 5, max_evals: 25 });
        assert!(matches!(&first.init, Init::Image(i) if (i.width, i.height) == (32, 32)));
        opts.lbfgs_max_evals = Some(0);
        let job = Job::plan(JobImages::new(flat(64, 64), vec![flat(64, 64)]), opts).unwrap();
        assert_eq!(job.scale_options(2, None).optimizer, Optimizer::Lbfgs { history: 5, max_evals: 1 });
    }
}

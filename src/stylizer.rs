//! The library API: a [`Stylizer`] holds everything one style-transfer problem needs on the GPU and steps the
//! optimiser. It asks [`crate::network`] for the network's plan at the content size, adds the loss terms
//! ([`crate::loss_terms`]) where the plan taps the network, and the optimiser ([`crate::optim`]) on the image:
//! data flows image → plan → kernels → losses → optimiser. The whole painting (scales, hand-over between them)
//! is [`crate::job`], on which the CLI is a thin layer.
//!
//! ```no_run
//! # fn main() -> neural_style::Result<()> {
//! use neural_style::gpu::{GpuContext, GpuOptions};
//! use neural_style::weights::Vgg16Weights;
//! use neural_style::{image_io, StyleOptions, Stylizer};
//! let ctx = GpuContext::new(&GpuOptions::default())?;
//! let weights = Vgg16Weights::load(&Vgg16Weights::default_path())?;
//! let content = image_io::resize_longest(&image_io::load_image("photo.png".as_ref())?, 512);
//! let style = image_io::resize_longest(&image_io::load_image("painting.png".as_ref())?, 512);
//! let mut s = Stylizer::new(&ctx, &weights, &content, &[style], &StyleOptions::default())?;
//! for _ in 0..1000 {
//!     s.step(false)?; // step(true) also returns the losses of the image before the update
//! }
//! let losses = s.losses()?; // losses of the current image
//! let image = s.image()?; // current image, pixel units, not clamped
//! # Ok(())
//! # }
//! ```

use crate::canvas::Canvas;
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::gpu::{Dispatch, GpuContext, Read};
use crate::kernels::AdapterFacts;
use crate::layout::{self, MemoryLimits};
use crate::loss_terms::content;
use crate::loss_terms::gram::StyleBlend;
use crate::loss_terms::masked::TermMasks;
pub use crate::loss_terms::StyleLoss;
use crate::loss_terms::{LossSpec, LossTerms, Losses, Targets, TemporalTarget, TermsOn};
use crate::masks::{Mask, Masks};
use crate::network::{GpuNet, Network};
use crate::optim::average::ImageAverage;
use crate::optim::lbfgs::{self, Evaluated, Lbfgs};
use crate::optim::{Adam, Handover, ImageOptimizer, Problem};
use crate::plan::{Plan, Shape};
use crate::planar::PlanarImage;
pub use crate::setup_stage::SetupStage;
use crate::submission::{self, Recording};
use crate::tiled::{Segment, Tiled};
pub use crate::vgg::{add_mean, subtract_mean, Pooling};
use crate::{defaults, first_use, vgg};
use neural_style_weights::{Vgg16Weights, CAFFE_MEAN_RGB};

/// Where the optimisation starts.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Init {
    /// Start from the content image.
    #[default]
    Content,
    /// Start from this image (pixel units, must be the content image's size).
    Image(PlanarImage),
    /// Seeded noise around the mean colour: x = 0.001 · N(0, 1) in mean-subtracted pixel units (as
    /// jcjohnson/neural-style's `-init random`), from a ChaCha8 generator seeded by `StyleOptions::seed`.
    Random,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StyleOptions {
    pub content_weight: f32,
    pub style_weight: f32,
    pub tv_weight: f32,
    pub learning_rate: f32,
    /// relu layer names, e.g. `["relu4_2"]`.
    pub content_layers: Vec<String>,
    /// relu layer names, e.g. `["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]`.
    pub style_layers: Vec<String>,
    /// One per style image; empty = equal. Normalised to sum 1.
    pub style_blend_weights: Vec<f32>,
    pub pooling: Pooling,
    pub init: Init,
    pub seed: u64,
    /// The arithmetic of the convolutions, Gram matrices and style gradients (docs/MATHS.md, "Precision").
    pub precision: Precision,
    pub optimizer: Optimizer,
    /// What the style terms measure: Gram matrices (the default) or the Wasserstein-2 distance between Gaussian
    /// fits (docs/MATHS.md). W2 runs its terms in f32 whatever `precision` says.
    pub style_loss: StyleLoss,
    /// Decay of the image average the run writes (docs/MATHS.md, "Image averaging"); None: the last iterate.
    pub average_decay: Option<f64>,
    /// Pixels of free canvas around the image on every side, cropped away at the end (docs/MATHS.md, "Edges: the
    /// margin"); 0 optimises the image itself; None: [`defaults::margin`] for the image's size.
    pub margin: Option<usize>,
    /// Bytes of GPU memory the problem may allocate; above it the canvas is evaluated in blocks (docs/MATHS.md,
    /// "Tiled evaluation"). None: the adapter's default ([`MemoryLimits::new`]).
    pub max_memory: Option<u64>,
    /// Blocks owning at most this many px per side, whatever fits (None: blocks only when needed).
    pub tile_size: Option<usize>,
    /// Spatial control (docs/MATHS.md, "Spatial control"): a region per style, where to take each style from, a
    /// content mask. Any size: each is resized to its image at every scale.
    pub masks: Masks,
    /// A video frame's temporal loss (docs/MATHS.md, "Video"); None for a still image.
    pub temporal: Option<Temporal>,
}

/// The temporal loss of a video frame: its weight w_t and the earlier frames' warped paintings.
#[derive(Clone, Debug, PartialEq)]
pub struct Temporal {
    pub weight: f32,
    pub frames: Vec<WarpedFrame>,
}

/// An earlier frame's painting warped into this frame and where to trust it (ĉ), at the content's size.
#[derive(Clone, Debug, PartialEq)]
pub struct WarpedFrame {
    /// Pixel units (0–255), the content image's size.
    pub image: PlanarImage,
    /// One weight in [0, 1] per pixel (H·W, row-major).
    pub weights: Vec<f32>,
}

/// What updates the image (docs/MATHS.md, "Optimiser").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Optimizer {
    /// torch.optim.Adam at `learning_rate`.
    #[default]
    Adam,
    /// torch.optim.LBFGS with the strong-Wolfe line search: `history` pairs, at most `max_evals` evaluations
    /// of the loss in all. The learning rate is not used (L-BFGS's is 1).
    Lbfgs { history: usize, max_evals: usize },
}

/// The arithmetic of the GEMM-shaped kernels (convs, Gram, style gradient). Losses, their reductions, the
/// optimiser and every other kernel stay f32 in all cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Tensor cores where the adapter has them and they pass the first-use check (said in the setup stages),
    /// else f32.
    #[default]
    Auto,
    /// f32 throughout.
    F32,
    /// Tensor cores: f16 operands, f32 sums (an error where the adapter has none).
    F16,
    /// The tensor-core kernels' software twin: the same tiling, indexing and f16 rounding in plain f32 WGSL, on
    /// any adapter (slow; for verification).
    F16Twin,
}

impl Default for StyleOptions {
    fn default() -> Self {
        Self {
            content_weight: defaults::CONTENT_WEIGHT,
            style_weight: defaults::style_weight(StyleLoss::Gram),
            tv_weight: defaults::TV_WEIGHT,
            learning_rate: defaults::LEARNING_RATE,
            content_layers: defaults::layer_names(defaults::CONTENT_LAYERS),
            style_layers: defaults::layer_names(defaults::STYLE_LAYERS),
            style_blend_weights: Vec::new(),
            pooling: Pooling::Max,
            init: Init::Content,
            seed: 0,
            precision: Precision::Auto,
            optimizer: Optimizer::Adam,
            style_loss: StyleLoss::Gram,
            average_decay: None,
            margin: None,
            max_memory: None,
            tile_size: None,
            masks: Masks::default(),
            temporal: None,
        }
    }
}

impl StyleOptions {
    /// The margin of a `width` x `height` image: as given, else the default for its size.
    pub fn margin_for(&self, width: usize, height: usize) -> usize {
        self.margin.unwrap_or_else(|| defaults::margin(width, height))
    }

    /// The canvas of a `width` x `height` image (an error when the margin is too wide for it).
    pub fn canvas(&self, width: usize, height: usize) -> Result<Canvas> {
        Canvas::new(width, height, self.margin_for(width, height))
    }

    /// What the problem may allocate on `ctx`'s adapter.
    pub fn memory_limits(&self, ctx: &GpuContext) -> MemoryLimits {
        MemoryLimits::new(self.max_memory, ctx.info.device_type == wgpu::DeviceType::Cpu, ctx.max_binding())
    }
}

fn layer_indices(names: &[String], what: &str) -> Result<Vec<usize>> {
    names
        .iter()
        .map(|n| {
            vgg::relu_index(n).ok_or_else(|| {
                Error::InvalidOption(format!(
                    "unknown {what} layer \"{n}\" (choose from {})",
                    vgg::RELU_NAMES.join(", ")
                ))
            })
        })
        .collect()
}

/// Normalised blend weights (sum 1), or a clear error.
pub fn blend_weights(given: &[f32], styles: usize) -> Result<Vec<f64>> {
    if styles == 0 {
        return Err(Error::InvalidOption("at least one style image is needed".into()));
    }
    if given.is_empty() {
        return Ok(vec![1.0 / styles as f64; styles]);
    }
    if given.len() != styles {
        return Err(Error::InvalidOption(format!(
            "--style-blend-weights has {} values for {} style images",
            given.len(),
            styles
        )));
    }
    if given.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(Error::InvalidOption("style blend weights must be finite and >= 0".into()));
    }
    let sum: f64 = given.iter().map(|&w| f64::from(w)).sum();
    if sum <= 0.0 {
        return Err(Error::InvalidOption("style blend weights must have a positive sum".into()));
    }
    Ok(given.iter().map(|&w| f64::from(w) / sum).collect())
}

fn check_options(o: &StyleOptions) -> Result<()> {
    for (name, v) in
        [("content weight", o.content_weight), ("style weight", o.style_weight), ("tv weight", o.tv_weight)]
    {
        if !v.is_finite() || v < 0.0 {
            return Err(Error::InvalidOption(format!("{name} must be finite and >= 0, got {v}")));
        }
    }
    if !o.learning_rate.is_finite() || o.learning_rate <= 0.0 {
        return Err(Error::InvalidOption(format!("learning rate must be > 0, got {}", o.learning_rate)));
    }
    if let Some(d) = o.average_decay {
        if !(d > 0.0 && d < 1.0) {
            return Err(Error::InvalidOption(format!("the image average's decay must be in (0, 1), got {d}")));
        }
    }
    if o.content_layers.is_empty() && o.style_layers.is_empty() {
        return Err(Error::InvalidOption("no content or style layers given".into()));
    }
    Ok(())
}

/// Neural style transfer state for one content image: the network plan, the loss terms, the optimiser.
pub struct Stylizer<'a> {
    ctx: &'a GpuContext,
    /// The image inside the optimised canvas.
    canvas: Canvas,
    net: GpuNet,
    evaluated: CanvasNetwork,
    losses: LossTerms,
    optimizer: Box<dyn ImageOptimizer>,
    /// The average of the iterates, which the run writes (when asked for).
    average: Option<ImageAverage>,
    /// The last iteration submitted without a read-back, not yet waited for.
    in_flight: Option<wgpu::SubmissionIndex>,
    bytes: u64,
    /// Conv GFLOP of one iteration on the canvas, and the last iteration's measured time: whether an iteration
    /// is submitted block by block and how long its launches may be ([`crate::submission`]).
    conv_gflop: f64,
    last_ms: Option<f64>,
    /// When the last step returned: the time from one step's return to the next's is an iteration's (with one
    /// kept in flight, a step returns once the previous iteration has run), the host's reads included.
    last_step_end: Option<std::time::Instant>,
    /// Overrides that choice (tests).
    recording: Option<Recording>,
    /// Two read-back buffers for the loss slots, used in turn by [`Stylizer::step_pipelined`], and the read
    /// still in flight.
    late_staging: [wgpu::Buffer; 2],
    late_next: usize,
    pending: Option<PendingLosses>,
    /// The pending read finished when a step stopped between blocks ([`Error::Stopped`]), for
    /// [`Stylizer::flush_losses`].
    stopped_read: Option<LateLosses>,
}

/// Losses copied out in a submission not yet waited for.
struct PendingLosses {
    iteration: usize,
    ms: f64,
    slot: usize,
    submission: wgpu::SubmissionIndex,
}

/// The losses of an earlier iteration, delivered by [`Stylizer::step_pipelined`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LateLosses {
    /// The stylizer's update count when that iteration started ([`Stylizer::iteration`]): the losses are those
    /// of the image before its update.
    pub iteration: usize,
    pub losses: Losses,
    /// How long that step took.
    pub ms: f64,
}

impl<'a> Stylizer<'a> {
    /// Plans the network at the size of the content's canvas (the content plus [`StyleOptions::margin`] on every
    /// side), computes the targets (the content features on the canvas, the style Grams at each style image's own
    /// size) and sets up the optimiser at the initial image.
    pub fn new(
        ctx: &'a GpuContext,
        weights: &Vgg16Weights,
        content: &PlanarImage,
        styles: &[PlanarImage],
        opts: &StyleOptions,
    ) -> Result<Self> {
        Self::with_progress(ctx, weights, content, styles, opts, &mut |_| {})
    }

    /// As [`Stylizer::new`], reporting each stage of the setup as it starts (the style targets run the network
    /// once per style image, and on a CPU adapter the first use of each kernel compiles it: seconds).
    pub fn with_progress(
        ctx: &'a GpuContext,
        weights: &Vgg16Weights,
        content: &PlanarImage,
        styles: &[PlanarImage],
        opts: &StyleOptions,
        on_stage: &mut dyn FnMut(SetupStage),
    ) -> Result<Self> {
        check_options(opts)?;
        vgg::check_size(content.width, content.height)?;
        let canvas = opts.canvas(content.width, content.height)?;
        let (w, h) = canvas.size();
        for s in styles {
            vgg::check_size(s.width, s.height)?;
        }
        let spec = loss_spec(opts)?;
        let uncovered = opts.masks.check(styles.len())?;
        let blend = if spec.style_layers.is_empty() {
            vec![0.0; styles.len()]
        } else {
            blend_weights(&opts.style_blend_weights, styles.len())?
        };
        let limits = opts.memory_limits(ctx);
        let input_affine = weights.convention.input_affine() != ([1.0; 3], [0.0; 3]);
        let (mut facts, mut precision_note) = choose_precision(ctx, opts.precision)?;
        let mut layout = layout::choose((w, h), opts, &spec, input_affine, &facts, limits)?;
        if layout.grid.is_some() && facts.coop.is_some() {
            // Tensor cores measure their operands' ranges per evaluation; a tiled one would need them per block.
            facts.coop = None;
            precision_note.push_str("; tiled evaluation runs f32 instead");
            layout = layout::choose((w, h), opts, &spec, input_affine, &facts, limits)?;
        }
        on_stage(SetupStage::Precision(precision_note));
        if let Some(line) = layout.describe() {
            on_stage(SetupStage::Tiled(line));
        }
        if let Some(line) = masks_line(&opts.masks, &uncovered) {
            on_stage(SetupStage::Masks(line));
        }
        on_stage(SetupStage::Weights);
        let net = GpuNet::with_facts(ctx, weights, opts.pooling, facts)?;
        // The style targets before the network: each style image's forward pass has its own buffers, freed once
        // its statistics are read back, so they are never live beside the whole network's.
        let style_images = opts.masks.with_style_images(styles, &blend);
        let style_targets = StyleBlend::new(ctx, &net, &spec, &style_images, limits, on_stage)?;
        let content_x = canvas.pad(&subtract_mean(content), 3);
        let temporal = temporal_targets(opts.temporal.as_ref(), content, &canvas)?;
        let targets = (&content_x[..], style_targets, opts.masks.on_canvas(&canvas, &blend), temporal);
        let (evaluated, losses) = canvas_network(ctx, &net, (&spec, (w, h)), layout.grid, targets, on_stage)?;

        let (x, grad_x) = (evaluated.x(), evaluated.grad());
        // Adam runs over the whole framed buffer: the frame's gradient is zero, so its x stays zero.
        let count = evaluated.frame().buffer_floats(3);
        let (optimizer, optimizer_bytes): (Box<dyn ImageOptimizer>, u64) = match opts.optimizer {
            Optimizer::Adam => (
                Box::new(Adam::new(ctx, count, f64::from(opts.learning_rate), x, grad_x)?),
                4 * Adam::buffer_floats(count) as u64,
            ),
            Optimizer::Lbfgs { history, max_evals } => {
                let bytes = lbfgs::bytes(count, history);
                let l = Lbfgs::new(ctx, count, history, max_evals, x, grad_x).map_err(|e| match e {
                    Error::Gpu(why) | Error::OutOfMemory(why) => Error::OutOfMemory(format!(
                        ": L-BFGS's history of {history} pairs needs {:.2} GB at {w}x{h} and could not be allocated \
                         ({}); use a smaller --lbfgs-history (or --image-size, or --optimizer adam)",
                        bytes as f64 / 1e9,
                        why.trim_start_matches([':', ' '])
                    )),
                    other => other,
                })?;
                (Box::new(l), bytes)
            }
        };

        // Initial image.
        let x0: Vec<f32> = match &opts.init {
            Init::Content => content_x,
            Init::Image(img) => {
                if (img.width, img.height) != (content.width, content.height) {
                    return Err(Error::InvalidOption(format!(
                        "init image is {}x{}, must be the content size {}x{}",
                        img.width, img.height, content.width, content.height
                    )));
                }
                canvas.pad(&subtract_mean(img), 3)
            }
            Init::Random => random_init(3 * w * h, opts.seed),
        };
        ctx.queue.write_buffer(evaluated.x(), 0, bytemuck::cast_slice(&evaluated.frame().frame(&x0, 3)));
        let mut average = opts.average_decay.map(|d| ImageAverage::new(ctx, count, d, evaluated.x())).transpose()?;
        if let Some(a) = &mut average {
            a.prepare_next(ctx);
            ctx.run(&[&a.dispatch])?; // the first image
        }
        ctx.check()?;
        let average_bytes = average.as_ref().map_or(0, |_| 4 * ImageAverage::buffer_floats(count) as u64);
        let bytes = net.bytes + evaluated.bytes() + losses.bytes() + optimizer_bytes + average_bytes;
        let conv_gflop = vgg::conv_flops_per_iteration(w, h) / 1e9;
        let slots = losses.slot_count();
        let late_staging = [ctx.staging_buffer("late losses", slots), ctx.staging_buffer("late losses", slots)];
        Ok(Self {
            ctx,
            canvas,
            net,
            evaluated,
            losses,
            optimizer,
            average,
            in_flight: None,
            bytes,
            conv_gflop,
            last_ms: None,
            last_step_end: None,
            recording: None,
            late_staging,
            late_next: 0,
            pending: None,
            stopped_read: None,
        })
    }

    /// All dispatches of one iteration of an optimiser with a fused update (Adam) in order, the image average's
    /// update last when averaging; the loss scalars only when `read_losses` (the gradient needs none of them).
    /// With L-BFGS, one evaluation of the loss and its gradient (no update). Tiled, every block's in order,
    /// without the uploads of the content targets between them: for counting and timing, not for a run.
    pub fn iteration_dispatches(&self, read_losses: bool) -> Vec<&Dispatch> {
        let segments = self.evaluated.segments(&self.losses, read_losses, true);
        let mut list: Vec<&Dispatch> = segments.into_iter().flat_map(|s| s.dispatches).collect();
        if let Some(update) = self.optimizer.fused_update() {
            list.push(update);
            list.extend(self.average.as_ref().map(|a| &a.dispatch));
        }
        list
    }

    /// Prepares the constants of the next fused update and the average's (call before recording
    /// [`Stylizer::iteration_dispatches`] yourself; [`Stylizer::step`] does it).
    pub fn prepare_step(&mut self) {
        if self.optimizer.fused_update().is_some() {
            self.optimizer.prepare_fused_update(self.ctx);
            if let Some(a) = &mut self.average {
                a.prepare_next(self.ctx);
            }
        }
    }

    /// One iteration. With `read_losses`, returns the losses of the image BEFORE this update (the log
    /// convention: the first call gives iteration 0 = the initial image).
    ///
    /// Adam without `read_losses` reads nothing back, and the call returns once the PREVIOUS iteration has
    /// finished: one iteration stays queued, so the GPU is not idle while the CPU records the next one, and a GPU
    /// error surfaces at most one call late.
    ///
    /// With L-BFGS, one L-BFGS iteration (a line search: one or more evaluations, each waited for); the losses
    /// come for free and are always returned, until L-BFGS has stopped ([`Stylizer::stopped`]): then None and
    /// nothing is done.
    pub fn step(&mut self, read_losses: bool) -> Result<Option<Losses>> {
        self.step_reading(read_losses, false, &mut |_, _| true)
    }

    /// One iteration, as [`Stylizer::step`], without making the GPU wait for the host: with `read_losses`, Adam's
    /// losses are copied out in the iteration's own submission and read at the NEXT call, once that submission
    /// has run (the call waits for it anyway, with its own queued), or at [`Stylizer::flush_losses`]. Returns
    /// the losses read at this call: an earlier iteration's with Adam, this one's with L-BFGS (its line search
    /// reads them at once).
    pub fn step_pipelined(&mut self, read_losses: bool) -> Result<Option<LateLosses>> {
        self.step_watched(read_losses, &mut |_, _| true)
    }

    /// As [`Stylizer::step_pipelined`], telling `watch` (done, of) as the blocks of a tiled evaluation are done;
    /// when it answers false, Adam's iteration stops there with [`Error::Stopped`], its update not made (x and
    /// the optimiser's state as before the call). L-BFGS's evaluations are only reported (a line search stopped
    /// halfway would leave x at a trial point).
    pub fn step_watched(
        &mut self,
        read_losses: bool,
        watch: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Option<LateLosses>> {
        let (iteration, start) = (self.iteration(), std::time::Instant::now());
        if self.optimizer.fused_update().is_none() {
            let losses = self.step_reading(read_losses, false, watch)?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            return Ok(losses.map(|losses| LateLosses { iteration, losses, ms }));
        }
        let slot = self.late_next;
        // The earlier read's map is asked for now: the step's own wait for the previous submission completes it.
        let n = self.losses.slot_count();
        let requested = self.pending.as_ref().map(|p| self.ctx.request_map(&self.late_staging[p.slot], n));
        let stepped = self.step_reading(read_losses, true, watch);
        if let Err(Error::Stopped) = stepped {
            // The map asked for above is pending: finish it, so the read stays deliverable by flush_losses.
            if let (Some(p), Some(request)) = (self.pending.take(), requested) {
                self.stopped_read = Some(self.take_losses(p, request)?);
            }
            return Err(Error::Stopped);
        }
        stepped?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let delivered = match (self.pending.take(), requested) {
            (Some(p), Some(request)) => Some(self.take_losses(p, request)?),
            _ => None,
        };
        if read_losses {
            let submission = self.in_flight.clone().expect("a pipelined step stays in flight");
            self.pending = Some(PendingLosses { iteration, ms, slot, submission });
            self.late_next = 1 - slot;
        }
        Ok(delivered)
    }

    /// The losses a pipelined step left in flight, if any (waits for their submission only).
    pub fn flush_losses(&mut self) -> Result<Option<LateLosses>> {
        if let Some(read) = self.stopped_read.take() {
            return Ok(Some(read));
        }
        let Some(p) = self.pending.take() else { return Ok(None) };
        let request = self.ctx.request_map(&self.late_staging[p.slot], self.losses.slot_count());
        self.take_losses(p, request).map(Some)
    }

    fn take_losses(&self, p: PendingLosses, request: crate::gpu::MapRequest) -> Result<LateLosses> {
        let values = self.ctx.mapped_f32(&self.late_staging[p.slot], request, p.submission)?;
        let losses = finite(self.losses.total(&values))?;
        Ok(LateLosses { iteration: p.iteration, losses, ms: p.ms })
    }

    fn step_reading(
        &mut self,
        read_losses: bool,
        late: bool,
        watch: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Option<Losses>> {
        let evaluations = self.optimizer.evaluations();
        let recording = self.recording();
        let mut problem = Evaluation {
            ctx: self.ctx,
            evaluated: &self.evaluated,
            losses: &self.losses,
            average: self.average.as_mut(),
            in_flight: &mut self.in_flight,
            recording,
            late_copy: late.then(|| &self.late_staging[self.late_next]),
            watch,
        };
        let losses = self.optimizer.iterate(&mut problem, read_losses)?;
        // The time per evaluation, from step to step (not the step's own time: a step that found nothing in
        // flight returns at once). An overestimate when the host is slow between steps, which only cuts more.
        let evaluations = self.optimizer.evaluations().zip(evaluations).map_or(1, |(now, then)| now - then);
        let now = std::time::Instant::now();
        if let Some(previous) = self.last_step_end.replace(now) {
            self.last_ms = Some((now - previous).as_secs_f64() * 1e3 / evaluations.max(1) as f64);
        }
        // L-BFGS reports the losses its line search read: garbage there stops the run here (a non-finite trial
        // inside the search only shortens the step).
        match losses {
            Some(l) if self.optimizer.fused_update().is_none() => finite(l).map(Some),
            other => Ok(other),
        }
    }

    /// Records every iteration as `recording` says, or (`None`, the default) as [`Recording::for_iteration`]
    /// decides from its size and measured time.
    pub fn set_recording(&mut self, recording: Option<Recording>) {
        self.recording = recording;
    }

    /// Command buffers the next iteration is submitted as (one, or one per VGG block).
    pub fn command_buffers_per_iteration(&self) -> usize {
        let segments = self.evaluated.segments(&self.losses, false, true);
        if !self.cuts_per_block() {
            return segments.len();
        }
        let per_segment = |s: &Segment<'_>| {
            let kernels: Vec<&str> = s.dispatches.iter().map(|d| d.kernel.as_ref()).collect();
            submission::block_lengths(&kernels).len()
        };
        segments.iter().map(per_segment).sum()
    }

    /// Launches (dispatch calls) the next iteration is recorded as: one per dispatch, more where a GEMM built in
    /// pieces is launched in parts on a slow adapter ([`Stylizer::recording`]).
    pub fn launches_per_iteration(&self) -> usize {
        let limit = self.recording().launch_gflop;
        self.iteration_dispatches(false).iter().map(|d| d.launch_count(limit)).sum()
    }

    /// How the next iteration is recorded: block by block or not, and the most work one launch holds.
    pub fn recording(&self) -> Recording {
        self.recording.unwrap_or_else(|| Recording::for_iteration(self.conv_gflop, self.last_ms))
    }

    /// Whether the next iteration is submitted block by block.
    pub fn cuts_per_block(&self) -> bool {
        self.recording().per_block
    }

    /// Losses of the current image (one forward pass, no update).
    pub fn losses(&mut self) -> Result<Losses> {
        if let Some(now) = self.optimizer.current_losses() {
            return finite(now); // the optimiser evaluated the current x last
        }
        let segments = self.evaluated.segments(&self.losses, true, false);
        let list = submit_leading(self.ctx, self.recording(), segments, &mut |_, _| true)?;
        let encs = self.recording().encode(self.ctx, list);
        let read = finish(self.ctx, &self.losses, &mut self.in_flight, encs, true)?;
        Ok(read.expect("losses requested"))
    }

    /// Number of updates done so far (Adam's count carries over from an earlier scale's [`Handover`]).
    pub fn iteration(&self) -> usize {
        self.optimizer.iterations()
    }

    /// Evaluations of the loss and its gradient so far (L-BFGS only: Adam makes exactly one per iteration).
    pub fn evaluations(&self) -> Option<usize> {
        self.optimizer.evaluations()
    }

    /// The optimiser's state for the next coarse-to-fine scale (dense CHW planes of the image, like
    /// [`Stylizer::x`]: the margin's part is not handed over).
    pub fn handover(&self) -> Result<Handover> {
        let canvas = self.optimizer.handover(self.ctx, self.evaluated.frame())?;
        Ok(canvas.map_planes(|p| self.canvas.crop(&p.values, 3)))
    }

    /// Continues from an earlier scale's [`Stylizer::handover`], resized to this image
    /// ([`Handover::resized`]); the margin's state is the image's reflected, as its pixels are.
    pub fn resume(&mut self, handover: &Handover) -> Result<()> {
        let on_canvas = handover.map_planes(|p| self.canvas.pad(&p.values, 3));
        self.optimizer.resume(self.ctx, self.evaluated.frame(), &on_canvas)
    }

    /// The accepted step lengths t so far, one per iteration (L-BFGS; None with Adam).
    pub fn line_steps(&self) -> Option<&[f64]> {
        self.optimizer.line_steps()
    }

    /// Why the optimiser stopped before its iterations were done (L-BFGS's stopping rules), once it has.
    pub fn stopped(&self) -> Option<String> {
        self.optimizer.stopped()
    }

    /// The image the run writes, + mean, pixel units, NOT clamped: the average of the iterates when averaging
    /// ([`StyleOptions::average_decay`]), else the current x.
    pub fn image(&mut self) -> Result<PlanarImage> {
        let x = self.output_x()?;
        let (w, h) = self.size();
        let plane = w * h;
        let data = x[..3 * plane].iter().enumerate().map(|(i, v)| v + CAFFE_MEAN_RGB[i / plane]).collect();
        Ok(PlanarImage::new(w, h, data))
    }

    /// The image's part of the mean-subtracted variable x, the optimiser's current iterate (dense CHW).
    pub fn x(&self) -> Result<Vec<f32>> {
        self.read_image(self.evaluated.x())
    }

    /// The image's part of a canvas-framed buffer (x or the average), read back in one copy.
    fn read_image(&self, framed: &wgpu::Buffer) -> Result<Vec<f32>> {
        Ok(self.evaluated.frame().unframe_inset(&self.ctx.read_all(framed)?, 3, self.canvas.margin))
    }

    /// The whole canvas's x, margin included (dense CHW, [`Stylizer::canvas`]'s size).
    pub fn canvas_x(&self) -> Result<Vec<f32>> {
        Ok(self.evaluated.frame().unframe(&self.ctx.read_all(self.evaluated.x())?, 3))
    }

    /// What [`Stylizer::image`] holds, mean-subtracted (dense CHW): the average when averaging, else x.
    pub fn output_x(&self) -> Result<Vec<f32>> {
        match &self.average {
            Some(a) => self.read_image(a.average()),
            None => self.x(),
        }
    }

    /// Losses of the image the run writes ([`Stylizer::image`]): the average's when averaging (x is set to the
    /// average for one forward pass and put back; the optimiser's state is untouched), else [`Stylizer::losses`].
    pub fn output_losses(&mut self) -> Result<Losses> {
        let Some(a) = &self.average else { return self.losses() };
        let (x, bytes) = (self.evaluated.x(), 4 * self.evaluated.frame().buffer_floats(3) as u64);
        let saved = self.ctx.storage_buffer("x while the average is scored", (bytes / 4) as usize)?;
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(x, 0, &saved, 0, bytes);
        enc.copy_buffer_to_buffer(a.average(), 0, x, 0, bytes);
        self.ctx.queue.submit([enc.finish()]);
        let segments = self.evaluated.segments(&self.losses, true, false);
        let list = submit_leading(self.ctx, self.recording(), segments, &mut |_, _| true)?;
        let mut encs = self.recording().encode(self.ctx, list);
        encs.last_mut().expect("one encoder at least").copy_buffer_to_buffer(&saved, 0, x, 0, bytes);
        let read = finish(self.ctx, &self.losses, &mut self.in_flight, encs, true)?;
        Ok(read.expect("losses requested"))
    }

    /// The gradient of the total loss w.r.t. the canvas's x, margin included, at the current image (runs forward
    /// + backward, no update).
    pub fn gradient(&mut self) -> Result<Vec<f32>> {
        let segments = self.evaluated.segments(&self.losses, false, true);
        let list = submit_leading(self.ctx, self.recording(), segments, &mut |_, _| true)?;
        let idx = self.ctx.submit(self.recording().encode(self.ctx, list));
        self.ctx.wait(Some(idx))?;
        self.in_flight = None;
        let framed = self.ctx.read_all(self.evaluated.grad())?;
        Ok(self.evaluated.frame().unframe(&framed, 3))
    }

    /// (width, height) of the image (the canvas without its margin).
    pub fn size(&self) -> (usize, usize) {
        (self.canvas.width, self.canvas.height)
    }

    /// The image inside the optimised canvas.
    pub fn canvas(&self) -> Canvas {
        self.canvas
    }

    /// Bytes of GPU buffers this stylizer allocated (weights, activations, gradients, targets, scratch,
    /// optimiser state): the same number [`memory_plan`] computes from the shapes alone.
    pub fn gpu_bytes(&self) -> u64 {
        self.bytes
    }

    /// The network's plan: at the canvas's size, or one block's when tiled.
    pub fn plan(&self) -> &Plan {
        &self.evaluated.network().plan
    }

    /// The blocks of a tiled evaluation (None: the canvas at once).
    pub fn grid(&self) -> Option<&crate::tiling::BlockGrid> {
        match &self.evaluated {
            CanvasNetwork::Whole(_) => None,
            CanvasNetwork::Tiled(t) => Some(&t.grid),
        }
    }

    pub fn context(&self) -> &GpuContext {
        self.ctx
    }

    /// The weights on the GPU.
    pub fn net(&self) -> &GpuNet {
        &self.net
    }
}

/// The output's masks on the canvas: each region's with its weight β, and the content mask.
type CanvasMasks = (Vec<(Mask, f64)>, Option<Mask>);

/// The setup line of the masks: what they do, and which style's mask covers nothing (that style is unused).
fn masks_line(masks: &Masks, uncovered: &[usize]) -> Option<String> {
    if !masks.any() {
        return None;
    }
    let mut parts = Vec::new();
    if masks.by_region() {
        let mut regions = format!("{} style regions", masks.style.len());
        let from = masks.style_image.iter().filter(|m| m.is_some()).count();
        if from > 0 {
            regions.push_str(&format!(" ({from} taking its style from part of its image)"));
        }
        parts.push(regions);
    }
    if masks.content.is_some() {
        parts.push("the content loss weighted by the content mask".to_string());
    }
    let mut line = format!("masks: {}", parts.join("; "));
    for k in uncovered {
        line.push_str(&format!("; warning: the mask of style image {k} is black, so that style is not used"));
    }
    Some(line)
}

/// The temporal terms' targets on the canvas: each warped painting in x's units, its margin reflected like the
/// content's (it is not held there: its weights are 0 on the margin).
fn temporal_targets(
    temporal: Option<&Temporal>,
    content: &PlanarImage,
    canvas: &Canvas,
) -> Result<Vec<TemporalTarget>> {
    let Some(t) = temporal else { return Ok(Vec::new()) };
    let (w, h) = (content.width, content.height);
    let (cw, ch) = canvas.size();
    let m = canvas.margin;
    let mut out = Vec::with_capacity(t.frames.len());
    for f in &t.frames {
        if (f.image.width, f.image.height) != (w, h) || f.weights.len() != w * h {
            return Err(Error::InvalidOption(format!(
                "a warped frame of {}x{} px with {} weights for a {w}x{h} content image",
                f.image.width,
                f.image.height,
                f.weights.len()
            )));
        }
        let mut weights = vec![0.0f32; cw * ch];
        for (y, row) in f.weights.chunks_exact(w).enumerate() {
            weights[(y + m) * cw + m..][..w].copy_from_slice(row);
        }
        out.push(TemporalTarget { x: canvas.pad(&subtract_mean(&f.image), 3), weights, pixels: w * h });
    }
    Ok(out)
}

/// The network that evaluates the canvas (at once, or one block's when `grid` is given) and the loss terms on it:
/// the content targets computed on it, the style targets given, the backward pass built with the terms'
/// gradients.
fn canvas_network(
    ctx: &GpuContext,
    net: &GpuNet,
    (spec, (w, h)): (&LossSpec, (usize, usize)),
    grid: Option<crate::tiling::BlockGrid>,
    (content_x, style_targets, (regions, content_mask), temporal): (
        &[f32],
        StyleBlend,
        CanvasMasks,
        Vec<TemporalTarget>,
    ),
    on_stage: &mut dyn FnMut(SetupStage),
) -> Result<(CanvasNetwork, LossTerms)> {
    let taps = spec.taps();
    Ok(match grid {
        None => {
            let mut network = Network::new(ctx, net, net.plan_spec(w, h, &taps, true))?;
            let targets = content::targets(ctx, &network, content_x, &spec.content_layers, on_stage)?;
            let on = TermsOn::whole(&network);
            let masks = TermMasks::new(spec, &network.plan.layers, &regions, content_mask.as_ref());
            let targets = Targets { content: targets, style: style_targets, masks, temporal };
            let losses = LossTerms::new(ctx, net, &network, spec, &on, targets, on_stage)?;
            network.build_backward(ctx, net, |site| losses.gradient_dispatches(ctx, site))?;
            (CanvasNetwork::Whole(Box::new(network)), losses)
        }
        Some(grid) => {
            let (bw, bh) = grid.block;
            let mut tiled = Tiled::new(ctx, net, net.plan_spec(bw, bh, &taps, true), grid)?;
            let targets = tiled.content_targets(ctx, content_x, &spec.content_layers, on_stage)?;
            let couts: Vec<usize> = net.convs.iter().map(|c| c.cout).collect();
            let layers: Vec<Shape> = vgg::layer_shapes(&couts, h, w)
                .iter()
                .map(|&(channels, height, width)| Shape { channels, height, width })
                .collect();
            let on = TermsOn {
                layers: &layers,
                size: (w, h),
                x: &tiled.x,
                grad: Some(&tiled.grad),
                grid: Some(&tiled.grid),
            };
            let masks = TermMasks::new(spec, &layers, &regions, content_mask.as_ref());
            let targets = Targets { content: targets, style: style_targets, masks, temporal };
            let losses = LossTerms::new(ctx, net, &tiled.network, spec, &on, targets, on_stage)?;
            tiled.network.build_backward(ctx, net, |site| losses.gradient_dispatches(ctx, site))?;
            (CanvasNetwork::Tiled(Box::new(tiled)), losses)
        }
    })
}

/// The canvas evaluated at once by one network, or block by block ([`crate::tiled`]).
enum CanvasNetwork {
    Whole(Box<Network>),
    Tiled(Box<Tiled>),
}

impl CanvasNetwork {
    /// The network that runs: the canvas's, or one block's.
    fn network(&self) -> &Network {
        match self {
            CanvasNetwork::Whole(n) => n,
            CanvasNetwork::Tiled(t) => &t.network,
        }
    }

    /// The canvas's x (what the optimiser updates).
    fn x(&self) -> &wgpu::Buffer {
        match self {
            CanvasNetwork::Whole(n) => n.image(),
            CanvasNetwork::Tiled(t) => &t.x,
        }
    }

    /// The canvas's dL/dx.
    fn grad(&self) -> &wgpu::Buffer {
        match self {
            CanvasNetwork::Whole(n) => n.grad_image().expect("planned with the backward pass"),
            CanvasNetwork::Tiled(t) => &t.grad,
        }
    }

    /// How x and dL/dx lie in their buffers.
    fn frame(&self) -> Frame {
        match self {
            CanvasNetwork::Whole(n) => n.image_frame(),
            CanvasNetwork::Tiled(t) => t.frame,
        }
    }

    /// Bytes of the network's buffers (and, tiled, of the canvas's x and dL/dx).
    fn bytes(&self) -> u64 {
        match self {
            CanvasNetwork::Whole(n) => n.bytes(),
            CanvasNetwork::Tiled(t) => t.network.bytes() + Tiled::canvas_bytes(t.frame),
        }
    }

    /// One evaluation of L (its scalars only with `read_losses`) and, with `backward`, of ∇L at x, as the parts
    /// submitted on their own: one at once, one per block pass when tiled.
    fn segments<'a>(&'a self, losses: &'a LossTerms, read_losses: bool, backward: bool) -> Vec<Segment<'a>> {
        match self {
            CanvasNetwork::Whole(network) => {
                let dispatches = if backward {
                    loss_and_gradient(network, losses, read_losses)
                } else {
                    loss_only(network, losses).collect()
                };
                vec![Segment { uploads: Vec::new(), dispatches }]
            }
            CanvasNetwork::Tiled(t) => t.segments(losses, read_losses, backward),
        }
    }
}

/// The loss scalars at the image buffer's x: forward, the style Grams, the scalars. tv_grad writes the TV
/// partials (and adds to dL/dx, which the next evaluation overwrites).
fn loss_only<'n>(network: &'n Network, l: &'n LossTerms) -> impl Iterator<Item = &'n Dispatch> {
    let forward = network.forward.iter().chain(l.after_forward()).chain(l.layer_scalars());
    forward.chain(l.image_gradients()).chain(l.image_scalars())
}

/// Submits every segment but the last, each its uploads and then its dispatches as `recording` says, keeping at
/// most two in flight and telling `watch` after each (a false answer stops here with [`Error::Stopped`]); writes
/// the last's uploads and returns its dispatches, which the caller submits with its own work and reads. One
/// segment (the canvas at once) submits nothing here.
fn submit_leading<'d>(
    ctx: &GpuContext,
    recording: Recording,
    mut segments: Vec<Segment<'d>>,
    watch: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<&'d Dispatch>> {
    let total = segments.len();
    let last = segments.pop().expect("an evaluation has one segment at least");
    let upload = |uploads: &[(&wgpu::Buffer, &[f32])]| {
        for (buffer, data) in uploads {
            ctx.queue.write_buffer(buffer, 0, bytemuck::cast_slice(data));
        }
    };
    let mut previous = None;
    for (i, segment) in segments.into_iter().enumerate() {
        upload(&segment.uploads);
        let submitted = ctx.submit(recording.encode(ctx, segment.dispatches));
        if let Some(p) = previous.replace(submitted) {
            ctx.wait(Some(p))?;
        }
        if !watch(i, total) {
            return Err(Error::Stopped);
        }
    }
    upload(&last.uploads);
    Ok(last.dispatches)
}

/// The problem as an optimiser sees it: evaluations of the loss and ∇L at the image buffer's x, recorded with the
/// optimiser's dispatches, and the image average that takes in each accepted iterate.
struct Evaluation<'s> {
    ctx: &'s GpuContext,
    evaluated: &'s CanvasNetwork,
    losses: &'s LossTerms,
    average: Option<&'s mut ImageAverage>,
    in_flight: &'s mut Option<wgpu::SubmissionIndex>,
    /// Block by block or whole, and how long a launch may be ([`crate::submission`]).
    recording: Recording,
    /// Where a pipelined step copies its loss slots instead of waiting for them.
    late_copy: Option<&'s wgpu::Buffer>,
    /// Told (done, of) between the blocks of a tiled evaluation; false stops an Adam iteration.
    watch: &'s mut dyn FnMut(usize, usize) -> bool,
}

/// L-BFGS's evaluations: the caller's `before` dispatches, the forward pass with every loss scalar, the backward
/// pass, the caller's `after`, in one submission (tiled: `before` with the first block, `after` with the last),
/// waited for once with the caller's `reads`.
impl lbfgs::Evaluator for Evaluation<'_> {
    fn evaluate(&mut self, before: &[&Dispatch], after: &[&Dispatch], reads: &[Read<'_>]) -> Result<Evaluated> {
        let mut segments = self.evaluated.segments(self.losses, true, true);
        segments[0].dispatches.splice(0..0, before.iter().copied());
        // A line search stopped halfway would leave x at a trial point: blocks are only reported.
        let watch = &mut *self.watch;
        let mut report = |done, of| {
            watch(done, of);
            true
        };
        let mut list = submit_leading(self.ctx, self.recording, segments, &mut report)?;
        list.extend(after.iter().copied());
        let encs = self.recording.encode(self.ctx, list);
        let n = self.losses.slot_count();
        let mut all = vec![Read::new(self.losses.slots_buffer(), 0, n)];
        all.extend_from_slice(reads);
        let mut values = self.ctx.submit_all_and_read(encs, &all)?;
        // Not checked here: the line search backs off from a non-finite trial; what it reports is checked.
        let losses = self.losses.total(&values.remove(0));
        Ok(Evaluated { losses, reads: values })
    }
}

impl<'s> Problem<'s> for Evaluation<'s> {
    fn context(&self) -> &'s GpuContext {
        self.ctx
    }

    /// The evaluation, the update, then the average's update, in one submission (tiled: with the last block).
    fn evaluate_and_update(&mut self, update: &Dispatch, read_losses: bool) -> Result<Option<Losses>> {
        let segments = self.evaluated.segments(self.losses, read_losses, true);
        let mut list = submit_leading(self.ctx, self.recording, segments, self.watch)?;
        // After the blocks (a stop between them leaves the average as it was); its constants' write lands before
        // the submission below.
        if let Some(a) = self.average.as_deref_mut() {
            a.prepare_next(self.ctx);
        }
        list.push(update);
        list.extend(self.average.as_deref().map(|a| &a.dispatch));
        let mut encs = self.recording.encode(self.ctx, list);
        if let (true, Some(staging)) = (read_losses, self.late_copy) {
            let bytes = 4 * self.losses.slot_count() as u64;
            let last = encs.last_mut().expect("one encoder at least");
            last.copy_buffer_to_buffer(self.losses.slots_buffer(), 0, staging, 0, bytes);
            return finish(self.ctx, self.losses, self.in_flight, encs, false);
        }
        finish(self.ctx, self.losses, self.in_flight, encs, read_losses)
    }

    fn accepted(&mut self) -> Result<()> {
        if let Some(a) = self.average.as_deref_mut() {
            a.prepare_next(self.ctx);
            self.ctx.queue.submit([self.ctx.encode([&a.dispatch]).finish()]);
        }
        Ok(())
    }
}

/// Submits `enc`. Without `read_losses`, returns once the previous submission kept `in_flight` has finished
/// (this one stays queued); with, copies the loss slots out in the same submission, waits and sums them.
fn finish(
    ctx: &GpuContext,
    losses: &LossTerms,
    in_flight: &mut Option<wgpu::SubmissionIndex>,
    encs: Vec<wgpu::CommandEncoder>,
    read_losses: bool,
) -> Result<Option<Losses>> {
    if !read_losses {
        let idx = ctx.submit(encs);
        if let Some(prev) = in_flight.replace(idx) {
            ctx.wait(Some(prev))?;
        }
        return Ok(None);
    }
    *in_flight = None; // mapping waits for everything submitted
    Ok(Some(submit_and_read_losses(ctx, losses, encs)?))
}

/// One evaluation of L and ∇L at the image buffer's x, in order: forward, the style Grams, the loss scalars
/// (only with `read_losses`: the gradient needs none of them), backward with the loss gradients, TV.
fn loss_and_gradient<'n>(network: &'n Network, losses: &'n LossTerms, read_losses: bool) -> Vec<&'n Dispatch> {
    let mut list: Vec<&Dispatch> = network.forward.iter().chain(losses.after_forward()).collect();
    if read_losses {
        list.extend(losses.layer_scalars());
    }
    list.extend(&network.backward);
    list.extend(losses.image_gradients());
    if read_losses {
        list.extend(losses.image_scalars());
    }
    list
}

/// Submits `enc` with a copy of the loss slots (in the same submission), waits once, and sums them.
fn submit_and_read_losses(ctx: &GpuContext, losses: &LossTerms, encs: Vec<wgpu::CommandEncoder>) -> Result<Losses> {
    let n = losses.slot_count();
    let slots = ctx.submit_all_and_read(encs, &[Read::new(losses.slots_buffer(), 0, n)])?;
    finite(losses.total(&slots[0]))
}

/// The losses, or [`Error::NotFinite`]: every read is checked, so garbage from the GPU (or a diverged run) stops
/// the run at once instead of being painted.
fn finite(l: Losses) -> Result<Losses> {
    if l.total.is_finite() {
        Ok(l)
    } else {
        Err(Error::NotFinite(format!("content {:e}, style {:e}, tv {:e}", l.content, l.style, l.tv)))
    }
}

/// The adapter facts the kernels are chosen with for `precision`, and a one-line note of the choice. Every
/// choice but the verification twin goes through the first-use check ([`first_use::verdict`]: the kernels a run
/// would use against the f64 reference, once per adapter, driver and version, kept in the user's cache): with
/// `Auto`, tensor cores only when theirs passed; a failed f32 kernel family falls back to the other family when
/// that passed, or stops the run. A failure is said in the note or the error, never silently.
pub fn choose_precision(ctx: &GpuContext, precision: Precision) -> Result<(AdapterFacts, String)> {
    let mut facts = AdapterFacts::of(ctx);
    let config = crate::kernels::coop::config(&facts);
    let f32_kind = if facts.is_cpu() { "f32 (the CPU-shaped kernels)" } else { "f32" };
    if precision == Precision::F16Twin {
        let c = config.unwrap_or_else(|| crate::kernels::coop::tiling(16, 32));
        facts.coop = Some((c, true));
        let note = format!(
            "precision: f16 operands, f32 sums, on the tensor-core kernels' software twin ({}x{} tiles)",
            c.tile(),
            c.tile()
        );
        return Ok((facts, note));
    }
    // lavapipe (Mesa 26) offers cooperative matrices, but emulated on the CPU's vector units: measured 15x
    // slower than its CPU-shaped f32 kernels (docs/PERFORMANCE.md), so Auto leaves them to explicit asks.
    let wants_cores = match (precision, config) {
        (Precision::F32, _) | (Precision::Auto, None) => None,
        (Precision::Auto, Some(_)) if facts.is_cpu() => None,
        (_, Some(c)) => Some(c),
        (_, None) => {
            return Err(Error::InvalidOption(format!(
                "--precision f16 needs tensor cores (wgpu cooperative matrices, f16 x f16 -> f32), which {} does \
                 not offer; use --precision f32",
                ctx.adapter_name()
            )))
        }
    };
    let (decision, ran) = first_use::verdict(ctx, &facts, wants_cores)?;
    let checked = if ran { "first-use check passed" } else { "first-use check passed earlier" };
    let name = ctx.adapter_name();
    let selftest = format!("run `neural-style selftest --adapter \"{name}\"` for the full set");
    // --precision f16 runs on the tensor cores or not at all.
    if precision == Precision::F16 {
        let why = match &decision {
            first_use::Decision::TensorCores => None,
            first_use::Decision::F32 { why_not_tensor_cores } => why_not_tensor_cores.clone(),
            first_use::Decision::OtherFamily { failed } | first_use::Decision::Stop { failed } => Some(failed.clone()),
        };
        if let Some(why) = why {
            return Err(Error::Gpu(format!(
                "--precision f16: the first-use check failed on {name} ({why}); {selftest}"
            )));
        }
    }
    let note = match decision {
        first_use::Decision::TensorCores => {
            let c = wants_cores.expect("tensor cores were checked");
            facts.coop = Some((c, false));
            format!(
                "precision: tensor cores, f16 operands and f32 sums ({}x{} fragments; {checked} against the f64 \
                 reference)",
                c.fragment, c.fragment
            )
        }
        first_use::Decision::F32 { why_not_tensor_cores: Some(why) } => {
            format!("precision: {f32_kind} — the tensor-core kernels failed their first-use check on this adapter ({why})")
        }
        first_use::Decision::F32 { why_not_tensor_cores: None } => match (precision, config) {
            (Precision::F32, _) => format!("precision: {f32_kind}, as asked ({checked})"),
            (_, None) => format!("precision: {f32_kind} (no tensor cores through wgpu on this adapter; {checked})"),
            _ => format!(
                "precision: {f32_kind} (this CPU adapter's cooperative matrices are emulated: slower than f32; {checked})"
            ),
        },
        first_use::Decision::OtherFamily { failed } => {
            facts.device_type = if facts.is_cpu() { wgpu::DeviceType::DiscreteGpu } else { wgpu::DeviceType::Cpu };
            format!(
                "precision: {} instead — this adapter's own f32 kernels failed their first-use check ({failed}); \
                 {selftest}",
                if facts.is_cpu() { "f32 on the CPU-shaped kernels (slower)" } else { "f32 on the GPU-shaped kernels" }
            )
        }
        first_use::Decision::Stop { failed } => {
            return Err(Error::Gpu(format!(
                "the kernels failed their first-use check on {name} ({failed}); nothing was painted. {selftest}, or \
                 pick another adapter with --adapter"
            )))
        }
    };
    Ok((facts, note))
}

/// Refuses, before anything is allocated, a content image whose canvas fits the memory budget neither at once nor
/// in blocks, or a style image whose forward pass does not ([`layout::choose`]): one line with the numbers.
pub fn check_fits(
    ctx: &GpuContext,
    opts: &StyleOptions,
    content: (usize, usize),
    styles: &[(usize, usize)],
) -> Result<()> {
    vgg::check_size(content.0, content.1)?;
    let canvas = opts.canvas(content.0, content.1)?.size();
    let (spec, facts, limits) = (loss_spec(opts)?, AdapterFacts::of(ctx), opts.memory_limits(ctx));
    let layout = layout::choose(canvas, opts, &spec, false, &facts, limits)?;
    let weights = layout.items.first().map_or(0, |i| i.bytes);
    for (k, &(w, h)) in styles.iter().enumerate() {
        vgg::check_size(w, h)?;
        let masked = opts.masks.style_image.get(k).is_some_and(Option::is_some);
        layout::statistics_grid((w, h), &spec.style_layers, (opts.pooling, false, masked), weights, limits)?;
    }
    Ok(())
}

/// The loss terms' layers and weights from the options (unknown layer names are an error).
pub fn loss_spec(opts: &StyleOptions) -> Result<LossSpec> {
    Ok(LossSpec {
        content_weight: f64::from(opts.content_weight),
        style_weight: f64::from(opts.style_weight),
        tv_weight: f64::from(opts.tv_weight),
        content_layers: layer_indices(&opts.content_layers, "content")?,
        style_layers: layer_indices(&opts.style_layers, "style")?,
        style_loss: opts.style_loss,
        style_regions: opts.masks.by_region().then_some(opts.masks.style.len()),
        content_masked: opts.masks.content.is_some(),
        temporal_frames: opts.temporal.as_ref().map_or(0, |t| t.frames.len()),
        temporal_weight: opts.temporal.as_ref().map_or(0.0, |t| f64::from(t.weight)),
    })
}

/// One line of the memory plan.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemoryItem {
    pub what: String,
    pub bytes: u64,
}

/// The GPU buffers a [`Stylizer`] allocates for a `width` x `height` content image with these options on an
/// adapter with these facts and limits, from the shapes alone: the same accounting as [`Stylizer::gpu_bytes`]
/// (one source of truth: both come from the network's [`Plan`] and the loss terms' [`LossSpec::buffers`]), at
/// once or block by block as [`layout::choose`] decides. Everything is the size of the image's canvas
/// ([`StyleOptions::margin`]). `input_affine`: torchvision-convention weights.
pub fn memory_plan(
    width: usize,
    height: usize,
    opts: &StyleOptions,
    input_affine: bool,
    facts: &AdapterFacts,
    limits: MemoryLimits,
) -> Result<layout::Layout> {
    let canvas = opts.canvas(width, height)?.size();
    layout::choose(canvas, opts, &loss_spec(opts)?, input_affine, facts, limits)
}

/// Seeded noise init: 0.001 · N(0, 1) per element (ChaCha8).
pub fn random_init(len: usize, seed: u64) -> Vec<f32> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = rand_distr::StandardNormal;
    (0..len)
        .map(|_| {
            let z: f64 = normal.sample(&mut rng);
            (0.001 * z) as f32
        })
        .collect()
}

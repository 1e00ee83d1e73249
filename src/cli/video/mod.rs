//! `neural-style video`: a sequence painted frame by frame (docs/MATHS.md, "Video"). The library makes each
//! frame's job ([`neural_style::video::frame_job`]); this module reads the frames, writes each one atomically as
//! it is finished, reports progress per frame and for the sequence, stops cleanly on Ctrl-C (finished frames
//! kept, the current one saved beside them as `.partial.png`), and resumes from the frames already written.

mod files;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use neural_style::gpu::{GpuContext, GpuOptions};
use neural_style::image_io::{self, OutputDepth, OutputProfile};
use neural_style::job::{Event, Failure, Observer};
use neural_style::stylizer::WarpedFrame;
use neural_style::video::{self, earlier_offsets, Motion, Painted, VideoOptions};
use neural_style::weights::Vgg16Weights;
use neural_style::{Init, PlanarImage};

use super::observer::LossLog;
use super::outputs::{self, canonical, same_file};
use super::progress::{duration_text, losses_text};
use super::rescue::Writer;
use super::web::{self, WebPreview};
use super::{CliError, Outcome, VideoArgs};

/// Set by Ctrl-C; the current frame stops between iterations.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn runtime(msg: impl Into<String>) -> CliError {
    CliError::Runtime(msg.into())
}

/// Where the frames go, and the video file made from them at the end.
struct Output {
    frames: PathBuf,
    video: Option<PathBuf>,
}

/// What decides a sequence's frames, resolved (the sizes and iterations as this adapter's defaults make them):
/// `--resume` continues only under the same.
fn settings(
    a: &VideoArgs,
    input: &Path,
    (range, count): ((usize, usize), usize),
    o: &VideoOptions,
) -> serde_json::Value {
    let s = &a.style;
    serde_json::json!({
        "input": input, "frames": count, "range": [range.0, range.1],
        "styles": s.styles, "style_blend_weights": s.style_blend_weights, "style_scale": s.style_scale,
        "style_masks": s.style_masks, "style_image_masks": s.style_image_masks, "content_mask": s.content_mask,
        "image_size": o.still.size.image_size, "iterations": o.still.size.iterations,
        "min_scale": o.still.size.min_scale, "frame_iterations": o.frame_iterations,
        "content_weight": s.content_weight, "style_weight": s.style_weight(), "tv_weight": s.tv_weight,
        "temporal_weight": a.temporal_weight, "flow_long_term": a.flow_long_term, "independent": a.independent,
        "optimizer": format!("{:?}", s.optimizer), "frame_optimizer": format!("{:?}", o.frame_optimizer),
        "lbfgs_history": s.lbfgs_history,
        "lbfgs_max_evals": s.lbfgs_max_evals, "learning_rate": s.learning_rate,
        "style_loss": format!("{:?}", s.style_loss), "pooling": format!("{:?}", s.pooling),
        "content_layers": s.content_layers, "style_layers": s.style_layers, "margin": s.margin,
        "max_memory": s.max_memory, "tile_size": s.tile_size,
        "init": format!("{:?}", s.init), "seed": s.seed, "precision": format!("{:?}", s.precision),
        "weights": s.weights, "output_depth": s.output_depth, "original_colors": s.original_colors,
        "avg_decay": s.avg_decay,
    })
}

/// Never writes over an input: the output frames are not the input's directory (nor inside it, nor around it),
/// an output video is no input (nor is the log, which is not inside the input directory either), and an existing
/// output video is replaced only with --overwrite (the main command's checks, src/cli/outputs.rs).
fn check_paths(a: &VideoArgs, input: &Path, out: &Output) -> Result<(), CliError> {
    let (input_c, frames_c) = (canonical(input), canonical(&out.frames));
    if frames_c.starts_with(&input_c) || (input.is_dir() && input_c.starts_with(&frames_c)) {
        return Err(runtime(format!(
            "the output frames '{}' and the input '{}' overlap: give another -o",
            out.frames.display(),
            input.display()
        )));
    }
    let weights = a.style.weights.clone().unwrap_or_else(Vgg16Weights::default_path);
    let mut ins = outputs::inputs(&a.style, &weights);
    ins[0].0 = "the input".into();
    if let Some(v) = &out.video {
        if let Some((what, _)) = ins.iter().find(|(_, p)| same_file(v, p)) {
            return Err(runtime(format!("-o '{}' is {what}: give another -o", v.display())));
        }
        if v.exists() && !a.style.overwrite {
            return Err(runtime(format!("'{}' exists; --overwrite replaces it", v.display())));
        }
    }
    if let Some(log) = &a.style.log {
        if input.is_dir() && canonical(log).starts_with(&input_c) {
            return Err(runtime(format!(
                "--log '{}' is inside the input directory; choose another file",
                log.display()
            )));
        }
        let video = out.video.as_deref().map(|v| ("the output video", v));
        outputs::check_log(log, &ins, video.as_slice())?;
    }
    Ok(())
}

/// Flags of a still run that a sequence cannot honour yet, refused in one line.
fn refuse_still_only(a: &VideoArgs) -> Result<(), CliError> {
    let s = &a.style;
    let refused = [
        (s.save_every > 0, "--save-every"),
        (s.init_image.is_some(), "--init-image"),
        (s.output_profile != super::args::OutputProfileArg::Srgb, "--output-profile content"),
    ];
    if let Some((_, flag)) = refused.iter().find(|(on, _)| *on) {
        return Err(CliError::Usage(format!("{flag} is not available for video")));
    }
    Ok(())
}

/// The output: a directory of frames, or a video file with its frames kept in `<stem>.frames/` beside it (so a
/// stopped sequence can resume).
fn output(a: &VideoArgs) -> Result<Output, CliError> {
    let o = &a.style.output;
    if files::is_video(o) {
        let stem = o.file_stem().and_then(|s| s.to_str()).unwrap_or("video");
        return Ok(Output { frames: o.with_file_name(format!("{stem}.frames")), video: Some(o.clone()) });
    }
    if o.extension().is_some() && !o.is_dir() {
        return Err(CliError::Usage(format!(
            "-o '{}': give a directory for the frames, or a video file (.mp4, .mkv, .mov, .webm, .gif)",
            o.display()
        )));
    }
    Ok(Output { frames: o.clone(), video: None })
}

pub fn run(a: &VideoArgs) -> Result<Outcome, CliError> {
    let started = Instant::now();
    a.validate()?;
    refuse_still_only(a)?;
    let out = output(a)?;
    let input = a.style.content.clone().expect("validated");
    check_paths(a, &input, &out)?;
    // Input frames: a directory, or a video file decoded by ffmpeg into a temporary directory.
    let extracted = tempfile::tempdir().map_err(|e| runtime(format!("temporary directory: {e}")))?;
    let (inputs, input_fps) = if input.is_dir() {
        (files::frames_in(&input)?, None)
    } else if files::is_video(&input) {
        files::extract(&input, extracted.path())?
    } else {
        return Err(runtime(format!("'{}' is neither a directory of frames nor a video file", input.display())));
    };
    let range = files::frame_range(a.frames.as_deref(), inputs.len())?;
    files::refuse_taken(&out.frames, a.resume, a.style.overwrite)?;
    let ctx = GpuContext::new(&GpuOptions { adapter: a.style.adapter.clone(), ..Default::default() })?;
    let sequence = Sequence::prepare(a, &ctx, &inputs, range)?;
    // The preview: bound before any painting, so a busy port fails first; "stop and save" is Ctrl-C.
    let web = WebPreview::start(a.style.web.as_deref(), &INTERRUPTED)?;
    // The manifest once everything is checked and set up, so a refused start leaves nothing to resume.
    std::fs::create_dir_all(&out.frames)
        .map_err(|e| runtime(format!("cannot create '{}': {e}", out.frames.display())))?;
    let recorded = settings(a, &input, (range, inputs.len()), &sequence.options);
    files::check_manifest(&out.frames, &recorded, a.resume, a.style.overwrite)?;
    // The first line once nothing is refused any more (a refusal is the only line printed).
    eprintln!(
        "[{:>5.1}s] adapter: {} ({:?}); frames {}..{} of {} from '{}'",
        started.elapsed().as_secs_f64(),
        ctx.adapter_name(),
        ctx.info.device_type,
        range.0,
        range.1,
        inputs.len(),
        input.display()
    );
    super::rescue::install_ctrlc_flag(&INTERRUPTED);
    let painted = sequence.paint(a, (&ctx, &web), (&inputs, range), &out.frames, started)?;
    web.finish(painted.iterations, painted.stopped, &out.frames);
    if painted.stopped {
        return Ok(Outcome::Interrupted);
    }
    if let Some(v) = &out.video {
        let fps = a.fps.or(input_fps).unwrap_or(25.0);
        if let Err(e) = files::encode(&out.frames, range, fps, v) {
            // Ctrl-C reaches ffmpeg too: the frames are all written, and encoding is one command away.
            if INTERRUPTED.load(Ordering::SeqCst) {
                eprintln!(
                    "interrupted while encoding: the frames are in '{}' (run again with --resume)",
                    out.frames.display()
                );
                return Ok(Outcome::Interrupted);
            }
            return Err(e);
        }
        eprintln!("wrote '{}' ({} frames at {fps} fps)", v.display(), range.1 - range.0 + 1);
    }
    Ok(Outcome::Done)
}

/// What every frame shares: the options, styles and weights, the motion estimator, the writer.
struct Sequence<'c> {
    options: VideoOptions,
    styles: Vec<PlanarImage>,
    weights: Vgg16Weights,
    motion: Motion<'c>,
    size: (usize, usize),
    writer_depth: OutputDepth,
}

/// How a sequence ended.
struct SequenceEnd {
    stopped: bool,
    /// Iterations this run made, over every frame.
    iterations: usize,
}

impl<'c> Sequence<'c> {
    fn prepare(
        a: &VideoArgs,
        ctx: &'c GpuContext,
        inputs: &[PathBuf],
        range: (usize, usize),
    ) -> Result<Self, CliError> {
        let s = &a.style;
        let size = s.job_size(ctx.info.device_type);
        let init = match s.init {
            super::args::InitArg::Random => Init::Random,
            super::args::InitArg::Image => Init::Content,
        };
        let mut still = s.job_options(size, init);
        still.style.masks = super::run::load_masks(s)?;
        let first = load_frame(&inputs[range.0 - 1], size.image_size)?;
        let frame_iterations = a.frame_iterations.unwrap_or(size.iterations.div_ceil(3).max(1));
        let frame_optimizer = match a.frame_optimizer {
            super::args::OptimizerArg::Adam => neural_style::Optimizer::Adam,
            // The cap is set by the job (from --lbfgs-max-evals, else 1.25 x the frame's iterations).
            super::args::OptimizerArg::Lbfgs => {
                neural_style::Optimizer::Lbfgs { history: s.lbfgs_history, max_evals: 1 }
            }
        };
        let options = VideoOptions {
            still,
            frame_iterations,
            frame_optimizer,
            temporal_weight: a.temporal_weight,
            offsets: earlier_offsets(a.flow_long_term).to_vec(),
            independent: a.independent,
        };
        let mut styles = Vec::new();
        for p in &s.styles {
            styles.push(image_io::load_image(p).map_err(|e| runtime(format!("style image '{}': {e}", p.display())))?);
        }
        let weights_path = s.weights.clone().unwrap_or_else(Vgg16Weights::default_path);
        let weights = Vgg16Weights::load(&weights_path).map_err(|e| CliError::from(neural_style::Error::from(e)))?;
        let size_px = (first.width, first.height);
        let motion = Motion::new(ctx, size_px)?;
        let writer_depth = OutputDepth::from_bits(s.output_depth).expect("validated");
        Ok(Self { options, styles, weights, motion, size: size_px, writer_depth })
    }

    /// Paints frames `range` in order, skipping (with --resume) those already written.
    fn paint(
        &self,
        a: &VideoArgs,
        (ctx, web): (&GpuContext, &WebPreview),
        (inputs, range): (&[PathBuf], (usize, usize)),
        dir: &Path,
        started: Instant,
    ) -> Result<SequenceEnd, CliError> {
        let deepest = *self.options.offsets.iter().max().unwrap_or(&1);
        // The earlier frames the next one is held to, nearest last.
        let mut recent: VecDeque<(usize, Painted)> = VecDeque::new();
        let count = range.1 - range.0 + 1;
        let mut clock = SequenceClock { painted: 0, remaining: count };
        let mut log = a.style.log.as_deref().map(|p| LossLog::open(p, a.resume)).transpose()?;
        let later_iterations =
            if self.options.independent { self.options.still.size.iterations } else { self.options.frame_iterations };
        // What the preview counts: every frame's iterations this run makes, the first frame's as a still.
        let kept = |n: usize| a.resume && files::frame_path(dir, n).exists();
        let to_paint: Vec<usize> = (range.0..=range.1).filter(|&n| !kept(n)).collect();
        let total = to_paint
            .iter()
            .map(|&n| if n == range.0 { self.options.still.size.iterations } else { later_iterations })
            .sum();
        let mut done = 0;
        let mut warping: Vec<f64> = Vec::new();
        for n in range.0..=range.1 {
            if INTERRUPTED.load(Ordering::SeqCst) {
                eprintln!("interrupted before frame {n}: frames before it are complete; --resume continues");
                return Ok(SequenceEnd { stopped: true, iterations: done });
            }
            let path = files::frame_path(dir, n);
            clock.remaining -= 1;
            if kept(n) {
                eprintln!("frame {n}: kept '{}' (already painted)", path.display());
                // Read only where a frame to paint is held to it.
                if to_paint.iter().any(|&m| m > n && m <= n + deepest) {
                    let content = self.frame_content(inputs, n)?;
                    let painting = self.kept_frame(&path)?;
                    push_recent(&mut recent, (n, Painted { content, painting }), deepest);
                }
                continue;
            }
            let content = self.frame_content(inputs, n)?;
            let earlier: Vec<Option<&Painted>> = self
                .options
                .offsets
                .iter()
                .map(|&j| recent.iter().find(|(m, _)| *m + j == n).map(|(_, p)| p))
                .collect();
            let job = video::frame_job(&self.motion, &self.options, &content, &self.styles, &earlier)
                .map_err(|e| runtime(format!("frame {n}: {e}")))?;
            let iterations = job.options().size.iterations;
            let held = job.options().style.temporal.as_ref().map_or(0, |t| t.frames.len());
            let mut observer = FrameObserver {
                frame: (n, range.1),
                iterations,
                print_every: a.style.print_every,
                clock: &clock,
                later_iterations,
                start: Instant::now(),
                log: log.as_mut(),
                web: Preview { web, args: a, ctx, job: &job, done, total, output: &path },
            };
            let how = if held > 0 {
                format!("from frame {} warped, held to {held} earlier frame(s)", n - 1)
            } else {
                "as a still".to_string()
            };
            eprintln!("frame {n} of {}..{}: {iterations} iterations, {how}", range.0, range.1);
            let result = job.run(ctx, &self.weights, &mut observer, &INTERRUPTED);
            let frame_secs = observer.start.elapsed().as_secs_f64();
            let painted = frame_result(n, result)?;
            let writer = self.writer(a, &content);
            if painted.stopped || INTERRUPTED.load(Ordering::SeqCst) {
                let partial = files::partial_path(dir, n);
                writer.write(&partial, painted.image)?;
                eprintln!(
                    "interrupted in frame {n} after {} iterations: wrote '{}' (frames before it are complete; --resume continues)",
                    painted.done,
                    partial.display()
                );
                return Ok(SequenceEnd { stopped: true, iterations: done + painted.done });
            }
            done += painted.done;
            writer.write(&path, painted.image)?;
            let _ = std::fs::remove_file(files::partial_path(dir, n));
            // What the next frames warp is the frame as written (what --resume would read back).
            let painting = image_io::load_image(&path).map_err(|e| runtime(format!("'{}': {e}", path.display())))?;
            clock.painted += 1;
            let current = Painted { content, painting };
            let previous = recent.back().filter(|(m, _)| m + 1 == n).map(|(_, p)| p);
            let held = job.options().style.temporal.as_ref().and_then(|t| t.frames.first());
            let flicker = self.flicker(previous, held, &current)?;
            warping.extend(flicker);
            let flicker = flicker.map(|e| format!("; warping error {e:.1}")).unwrap_or_default();
            eprintln!(
                "frame {n}: wrote '{}' in {}{flicker}; {} of the sequence so far{}",
                path.display(),
                duration_text(frame_secs),
                duration_text(started.elapsed().as_secs_f64()),
                clock.eta_text(frame_secs, iterations, later_iterations)
            );
            push_recent(&mut recent, (n, current), deepest);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        eprintln!(
            "painted frames {}..{} into '{}' in {}{}",
            range.0,
            range.1,
            dir.display(),
            duration_text(started.elapsed().as_secs_f64()),
            if warping.is_empty() { String::new() } else { format!("; mean warping error {:.1}", mean(&warping)) }
        );
        Ok(SequenceEnd { stopped: false, iterations: done })
    }

    /// Input frame `n` at the job's size, which must be the first frame's.
    fn frame_content(&self, inputs: &[PathBuf], n: usize) -> Result<PlanarImage, CliError> {
        let content = load_frame(&inputs[n - 1], self.options.still.size.image_size)?;
        if (content.width, content.height) != self.size {
            return Err(runtime(format!(
                "frame {n} ('{}') is {}x{} px at this size, the first {}x{}: every frame must have one size",
                inputs[n - 1].display(),
                content.width,
                content.height,
                self.size.0,
                self.size.1
            )));
        }
        Ok(content)
    }

    /// How much a frame flickers against the frame before it, when that one is at hand (docs/MATHS.md, "Video":
    /// the warping error). A coherent frame's job already holds frame t−1 warped into it with its reliability
    /// (`held`); a frame painted on its own needs that flow.
    fn flicker(
        &self,
        previous: Option<&Painted>,
        held: Option<&WarpedFrame>,
        current: &Painted,
    ) -> Result<Option<f64>, CliError> {
        let Some(previous) = previous else { return Ok(None) };
        let computed;
        let held = match held {
            Some(h) => h,
            None => {
                computed = self.motion.warped(&current.content, previous)?;
                &computed
            }
        };
        Ok(Some(video::frame_warping_error(&current.painting, held)?))
    }

    /// A frame already painted (`--resume`), as written, checked to be the sequence's size.
    fn kept_frame(&self, path: &Path) -> Result<PlanarImage, CliError> {
        let painting = image_io::load_image(path).map_err(|e| runtime(format!("'{}': {e}", path.display())))?;
        if (painting.width, painting.height) != self.size {
            return Err(runtime(format!(
                "--resume: '{}' is {}x{} px, the sequence's frames {}x{}",
                path.display(),
                painting.width,
                painting.height,
                self.size.0,
                self.size.1
            )));
        }
        Ok(painting)
    }

    fn writer(&self, a: &VideoArgs, content: &PlanarImage) -> Writer {
        Writer {
            format: image::ImageFormat::Png,
            depth: self.writer_depth,
            original_colors: a.style.original_colors.then(|| content.clone()),
            profile: OutputProfile::Srgb,
        }
    }
}

/// A frame's job's outcome, its failures named by the frame.
fn frame_result(
    n: usize,
    result: Result<neural_style::job::Painted, Failure<CliError>>,
) -> Result<neural_style::job::Painted, CliError> {
    match result {
        Ok(p) => Ok(p),
        Err(Failure::Gpu { iteration, error }) => {
            Err(runtime(format!("frame {n}: GPU failure at iteration {iteration}: {error}")))
        }
        Err(Failure::Setup(e)) => Err(runtime(format!("frame {n}: {e}"))),
        Err(Failure::Observer(e)) => Err(e),
    }
}

fn push_recent(recent: &mut VecDeque<(usize, Painted)>, p: (usize, Painted), deepest: usize) {
    recent.push_back(p);
    while recent.len() > deepest {
        recent.pop_front();
    }
}

/// A frame at the job's size (its longest side `image_size`).
fn load_frame(path: &Path, image_size: usize) -> Result<PlanarImage, CliError> {
    let img = image_io::load_image(path).map_err(|e| runtime(format!("frame '{}': {e}", path.display())))?;
    Ok(image_io::resize_longest(&img, image_size))
}

/// The sequence's pace: frames painted by this run and those still to come.
struct SequenceClock {
    painted: usize,
    remaining: usize,
}

impl SequenceClock {
    /// The ETA of the frames after the current one, from the seconds per iteration of the last frame.
    fn eta_text(&self, frame_secs: f64, iterations: usize, later_iterations: usize) -> String {
        if self.remaining == 0 || iterations == 0 {
            return String::new();
        }
        let per_iteration = frame_secs / iterations as f64;
        let secs = per_iteration * (later_iterations * self.remaining) as f64;
        format!(", {} frame(s) to go, ETA {}", self.remaining, duration_text(secs))
    }
}

/// One frame's job, watched: a line every --print-every iterations with the frame's and the sequence's ETA.
struct FrameObserver<'a> {
    frame: (usize, usize),
    iterations: usize,
    print_every: usize,
    clock: &'a SequenceClock,
    later_iterations: usize,
    start: Instant,
    log: Option<&'a mut LossLog>,
    web: Preview<'a>,
}

/// The live preview of a sequence: the frame being painted, and the sequence's iterations and losses.
struct Preview<'a> {
    web: &'a WebPreview,
    args: &'a VideoArgs,
    ctx: &'a GpuContext,
    job: &'a neural_style::job::Job,
    /// Iterations of the earlier frames (this run), and of every frame this run paints.
    done: usize,
    total: usize,
    output: &'a Path,
}

impl Preview<'_> {
    fn frame_started(&self, (n, last): (usize, usize)) {
        let (a, ctx) = (self.args, self.ctx);
        let sequence = format!("frame {n} (to {last}); {} of {} iterations done", self.done, self.total);
        self.web.publish_run_info(&web::RunInfo {
            adapter: ctx.adapter_name(),
            width: self.job.content().width,
            height: self.job.content().height,
            iterations: self.total,
            style_scale: a.style.style_scale,
            style_side: self.job.options().style_side(),
            content: self.job.content(),
            styles: self.job.styles(),
            original_colors: a.style.original_colors,
            output: self.output,
            sequence: Some(&sequence),
        });
    }
}

impl Observer for FrameObserver<'_> {
    type Error = CliError;

    fn wants_losses(&mut self, iteration: usize) -> bool {
        self.log.is_some() || (self.print_every > 0 && iteration.is_multiple_of(self.print_every))
    }

    /// The log's last line of a frame is its written image's (docs/MATHS.md, "The log").
    fn wants_final_losses(&mut self) -> bool {
        self.log.is_some()
    }

    /// The preview's image, every 5 iterations while it is on (each is a wait for the GPU).
    fn wants_image(&mut self, iteration: usize) -> bool {
        self.web.web.url().is_some() && iteration.is_multiple_of(5)
    }

    fn event(&mut self, event: Event<'_>) -> Result<(), CliError> {
        let r = match event {
            Event::Losses(r) => r,
            Event::FinalLosses(r) => {
                return self.log_line(&r);
            }
            Event::Ready { .. } => {
                self.web.frame_started(self.frame);
                return Ok(());
            }
            Event::OptimizerStopped { at, why } => {
                eprintln!("frame {}: L-BFGS stopped after {at} of {} iterations: {why}", self.frame.0, self.iterations);
                return Ok(());
            }
            Event::Iteration { iteration, losses, image, .. } => {
                let at = self.web.done;
                self.web.web.publish_progress(at + iteration, losses.map(|(i, l)| (at + i, l)));
                if let Some(img) = image {
                    self.web.web.offer_image(at + iteration, &img);
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        self.log_line(&r)?;
        self.print(&r)
    }
}

impl FrameObserver<'_> {
    /// The log's line (the main command's, with the frame).
    fn log_line(&mut self, r: &neural_style::job::IterationLosses<'_>) -> Result<(), CliError> {
        if let Some(log) = self.log.as_mut() {
            log.set_frame(self.frame.0);
            log.write(r)?;
        }
        Ok(())
    }

    /// The progress line, every --print-every iterations.
    fn print(&self, r: &neural_style::job::IterationLosses<'_>) -> Result<(), CliError> {
        if self.print_every == 0 || !r.iteration.is_multiple_of(self.print_every) {
            return Ok(());
        }
        let secs = self.start.elapsed().as_secs_f64();
        let per = if r.iteration > 0 { secs / r.iteration as f64 } else { 0.0 };
        let frame_left = per * self.iterations.saturating_sub(r.iteration) as f64;
        let sequence_left = frame_left + per * (self.later_iterations * self.clock.remaining) as f64;
        let eta = if r.iteration > 0 {
            format!("  frame ETA {}, sequence ETA {}", duration_text(frame_left), duration_text(sequence_left))
        } else {
            String::new()
        };
        eprintln!(
            "frame {}/{} iter {}/{}  {}{eta}",
            self.frame.0,
            self.frame.1,
            r.iteration,
            self.iterations,
            losses_text(r.losses)
        );
        Ok(())
    }
}

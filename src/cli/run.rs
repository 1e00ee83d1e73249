//! The main command: check everything that can be checked before the GPU is touched, load and preprocess the
//! images, run the optimisation loop (progress, JSON-lines log, frames, Ctrl-C) and write the result atomically.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use image::ImageFormat;
use neural_style::gpu::{GpuContext, GpuOptions};
use neural_style::image_io::Resample;
use neural_style::image_io::{self, OutputDepth};
use neural_style::optim::lbfgs;
use neural_style::schedule::{iterations_per_scale, scale_sizes};
use neural_style::stylizer::AdamState;
use neural_style::weights::Vgg16Weights;
use neural_style::{Init, Losses, Optimizer, PlanarImage, Pooling, StyleLoss, StyleOptions, Stylizer};

use super::args::{
    InitArg, Job, OptimizerArg, PoolingArg, CPU_IMAGE_SIZE, CPU_ITERATIONS, GPU_IMAGE_SIZE, GPU_ITERATIONS,
    MIN_IMAGE_SIZE,
};
use super::progress::{duration_text, Progress, Stages};
use super::web::{self, WebPreview};
use super::{CliError, Outcome, StyleArgs};

/// Set by the Ctrl-C handler (and by the web preview's "stop and save"); checked between iterations.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Frames beyond this many are not checked one by one before the run (`--save-every 1 --iterations 10^9`).
const MAX_FRAME_PRECHECK: usize = 100_000;

fn runtime(msg: impl Into<String>) -> CliError {
    CliError::Runtime(msg.into())
}

/// The path as it is on disk (symlinks and `..` resolved), also for a file that does not exist yet.
fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => dir.canonicalize().map(|d| d.join(name)).unwrap_or(abs.clone()),
        _ => abs,
    }
}

/// Whether two paths name the same file (canonical paths, and on Unix the same device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    if canonical(a) == canonical(b) {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    false
}

/// The files the run reads, with a name for messages.
fn inputs(a: &StyleArgs, weights: &Path) -> Vec<(String, PathBuf)> {
    let mut v = vec![("the content image".to_string(), a.content.clone().expect("validated"))];
    for s in &a.styles {
        v.push(("a style image".to_string(), s.clone()));
    }
    if let Some(p) = &a.init_image {
        v.push(("the --init-image".to_string(), p.clone()));
    }
    v.push(("the weights file".to_string(), weights.to_path_buf()));
    v
}

/// Refuses, before any work, every output that would overwrite an input, an existing file without
/// `--overwrite`, or cannot be written.
fn check_outputs(a: &StyleArgs, job: &Job, weights: &Path) -> Result<(), CliError> {
    let ins = inputs(a, weights);
    let out = &a.output;
    let shown = out.display();
    if out.is_dir() {
        return Err(runtime(format!("output '{shown}' is a directory; give a file name such as out.png")));
    }
    for (what, p) in &ins {
        if same_file(out, p) {
            return Err(runtime(format!("output '{shown}' is {what}; choose another --output")));
        }
    }
    if out.exists() && !a.overwrite {
        return Err(runtime(format!("output '{shown}' already exists; pass --overwrite to replace it")));
    }
    // Probe the directory the way the atomic write will use it (a temporary file, removed at once).
    if let Err(e) = tempfile::NamedTempFile::new_in(image_io::output_dir(out)) {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "its directory does not exist".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        return Err(runtime(format!("cannot write output '{shown}': {reason}")));
    }
    if a.save_every > 0 && job.iterations / a.save_every <= MAX_FRAME_PRECHECK {
        for k in (a.save_every..=job.iterations).step_by(a.save_every) {
            let f = image_io::frame_path(out, k);
            for (what, p) in &ins {
                if same_file(&f, p) {
                    return Err(runtime(format!(
                        "--save-every frame '{}' would overwrite {what}; choose another --output",
                        f.display()
                    )));
                }
            }
            if f.exists() && !a.overwrite {
                return Err(runtime(format!(
                    "--save-every frame '{}' already exists; pass --overwrite to replace it",
                    f.display()
                )));
            }
        }
    }
    if let Some(log) = &a.log {
        for (what, p) in ins.iter().map(|(w, p)| (w.as_str(), p)).chain([("the output", out)]) {
            if same_file(log, p) {
                return Err(runtime(format!("--log '{}' is {what}; choose another file", log.display())));
            }
        }
        if log.is_dir() {
            return Err(runtime(format!("--log '{}' is a directory", log.display())));
        }
        let dir = canonical(log).parent().map(Path::to_path_buf);
        if !dir.is_some_and(|d| d.is_dir()) {
            return Err(runtime(format!("cannot write --log '{}': its directory does not exist", log.display())));
        }
    }
    Ok(())
}

/// Loads an image and names it in the error.
fn load(what: &str, path: &Path) -> Result<PlanarImage, CliError> {
    image_io::load_image(path).map_err(|e| runtime(format!("{what}: {e}")))
}

fn check_min_side(what: &str, path: &Path, img: &PlanarImage, hint: &str) -> Result<(), CliError> {
    if img.width < MIN_IMAGE_SIZE || img.height < MIN_IMAGE_SIZE {
        return Err(runtime(format!(
            "{what} '{}' becomes {}x{} px after resizing; both sides must be at least {MIN_IMAGE_SIZE} px ({hint})",
            path.display(),
            img.width,
            img.height
        )));
    }
    Ok(())
}

/// JSON-lines loss log.
struct LossLog {
    out: BufWriter<File>,
    path: PathBuf,
}

impl LossLog {
    fn create(path: &Path) -> Result<Self, CliError> {
        let f = File::create(path).map_err(|e| runtime(format!("cannot write --log '{}': {e}", path.display())))?;
        Ok(LossLog { out: BufWriter::new(f), path: path.to_path_buf() })
    }

    /// `evals`: L-BFGS's evaluations of the loss so far (not written for Adam: one per iteration).
    /// `scale`: the longest side of the scale this iterate belongs to (coarse-to-fine runs only).
    fn write(
        &mut self,
        iter: usize,
        l: &Losses,
        ms: f64,
        evals: Option<usize>,
        scale: Option<usize>,
    ) -> Result<(), CliError> {
        let mut line = serde_json::json!({
            "iter": iter,
            "content": l.content,
            "style": l.style,
            "tv": l.tv,
            "total": l.total,
            "ms": (ms * 1000.0).round() / 1000.0,
        });
        if let Some(e) = evals {
            line["evals"] = e.into();
        }
        if let Some(s) = scale {
            line["scale"] = s.into();
        }
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .map_err(|e| runtime(format!("cannot write --log '{}': {e}", self.path.display())))
    }
}

/// Encodes and writes atomically, applying `--original-colors` when asked.
struct Writer {
    format: ImageFormat,
    depth: OutputDepth,
    original_colors: Option<PlanarImage>,
}

impl Writer {
    fn write(&self, path: &Path, img: PlanarImage) -> Result<(), CliError> {
        let img = match &self.original_colors {
            // A frame of an earlier coarse-to-fine scale takes its colours from the content at its own size.
            Some(content) if (content.width, content.height) != (img.width, img.height) => {
                image_io::original_colors(&img, &image_io::resize_exact(content, img.width, img.height))
            }
            Some(content) => image_io::original_colors(&img, content),
            None => img,
        };
        let bytes = image_io::encode_image_with_depth(&img, self.format, self.depth)?;
        image_io::write_bytes_atomic(path, &bytes)?;
        Ok(())
    }
}

/// The last completed iterate kept on the host, and how to write it: what Ctrl-C saves without waiting for
/// work still on the GPU (on a CPU adapter one iteration at 512 px takes seconds), and what a GPU failure
/// salvages.
struct Rescue {
    writer: Writer,
    output: PathBuf,
    /// The output's size: an image of an earlier coarse-to-fine scale (after Ctrl-C) is resized to it.
    size: (usize, usize),
    snapshot: Mutex<Option<(usize, PlanarImage)>>,
    /// Held while the output is written; `true` once the main thread has written it.
    written: Mutex<bool>,
}

static RESCUE: OnceLock<Rescue> = OnceLock::new();

/// How long Ctrl-C waits for the loop to stop by itself before the last snapshot is written from the handler.
const CTRL_C_GRACE: Duration = Duration::from_millis(1500);

impl Rescue {
    fn keep(&self, iteration: usize, img: PlanarImage) {
        *self.snapshot.lock().unwrap() = Some((iteration, img));
    }

    /// `img` at the output's size (Lanczos; only an interrupted coarse-to-fine run needs it).
    fn fit(&self, img: PlanarImage) -> PlanarImage {
        if (img.width, img.height) == self.size {
            img
        } else {
            image_io::resize_exact(&img, self.size.0, self.size.1)
        }
    }

    fn last(&self) -> Option<(usize, PlanarImage)> {
        self.snapshot.lock().unwrap().clone()
    }

    /// Writes the final image from the main thread (unless the Ctrl-C path already did and is exiting).
    fn write_final(&self, img: PlanarImage) -> Result<(), CliError> {
        let mut written = self.written.lock().unwrap();
        self.writer.write(&self.output, self.fit(img))?;
        *written = true;
        Ok(())
    }

    /// The Ctrl-C path when the loop did not stop in time: write the snapshot, exit 130.
    fn write_snapshot_and_exit(&self) -> ! {
        let written = self.written.lock().unwrap();
        if !*written {
            match self.last() {
                Some((k, img)) => match self.writer.write(&self.output, self.fit(img)) {
                    Ok(()) => eprintln!("interrupted: wrote the image of iteration {k} to '{}'", self.output.display()),
                    Err(CliError::Usage(e) | CliError::Runtime(e)) => eprintln!("error: saving failed: {e}"),
                },
                None => eprintln!("interrupted before the first iteration: nothing written"),
            }
        }
        std::process::exit(super::EXIT_INTERRUPTED as i32)
    }
}

fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        // A second Ctrl-C quits at once, without saving.
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: quitting without saving");
            std::process::exit(super::EXIT_INTERRUPTED as i32);
        }
        eprintln!("\ninterrupted: saving the last completed iteration (Ctrl-C again to quit without saving)");
        // The loop checks the flag between iterations; if an iteration is still running after the grace
        // period, write what the host already has rather than wait for it.
        std::thread::spawn(|| {
            std::thread::sleep(CTRL_C_GRACE);
            match RESCUE.get() {
                Some(r) => r.write_snapshot_and_exit(),
                None => {
                    eprintln!("interrupted during setup: nothing written");
                    std::process::exit(super::EXIT_INTERRUPTED as i32)
                }
            }
        });
    });
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// A GPU failure mid-run: write the last image kept on the host (if any) to the output, and say so.
fn salvage(e: neural_style::Error, iteration: usize, rescue: &Rescue) -> CliError {
    let what = format!("GPU failure at iteration {iteration}: {e}");
    match rescue.last() {
        Some((k, img)) => match rescue.write_final(img) {
            Ok(()) => {
                CliError::Runtime(format!("{what}; wrote the image of iteration {k} to '{}'", rescue.output.display()))
            }
            Err(CliError::Usage(w) | CliError::Runtime(w)) => {
                CliError::Runtime(format!("{what}; saving the last good image failed too: {w}"))
            }
        },
        None => CliError::Runtime(format!("{what}; no image had been read back yet, nothing written")),
    }
}

/// What a coarse-to-fine scale hands to the next: the image it writes (x or the average, dense CHW), Adam's
/// state, and their size.
struct Carry {
    x: Vec<f32>,
    adam: Option<AdamState>,
    from: (usize, usize),
}

/// One scale of a run: the longest side, its iterations, and the images at that scale.
struct Scale {
    side: usize,
    iterations: usize,
    content: PlanarImage,
    styles: Vec<PlanarImage>,
    style_side: usize,
}

/// The scales of the run: the job's own size alone, or coarse to fine (`Job::min_scale`):
/// sizes by √2 from the smallest to the job's, the first with two shares of the iterations. Each scale's style
/// images are resized from the originals (never above their own size, except at the last scale, which matches
/// a single-scale run, so it takes the images already resized for the job: `at_job_size`). Refuses a scale whose
/// content would be under 16 px on a side.
fn scale_plan(
    a: &StyleArgs,
    job: &Job,
    (content, styles): (&PlanarImage, &[PlanarImage]),
    at_job_size: (&PlanarImage, &[PlanarImage]),
) -> Result<Vec<Scale>, CliError> {
    let sides = match job.min_scale {
        Some(min) => scale_sizes(job.image_size, min),
        None => vec![job.image_size],
    };
    let iterations = iterations_per_scale(job.iterations, sides.len());
    let last = sides.len() - 1;
    let mut plan = Vec::with_capacity(sides.len());
    for (i, (&side, iterations)) in sides.iter().zip(iterations).enumerate() {
        if i == last {
            let (c, s) = at_job_size;
            plan.push(Scale { side, iterations, content: c.clone(), styles: s.to_vec(), style_side: job.style_side });
            break;
        }
        let c = image_io::resize_longest(content, side);
        if c.width < MIN_IMAGE_SIZE || c.height < MIN_IMAGE_SIZE {
            return Err(runtime(format!(
                "coarse to fine: at the {side} px scale the content would be {}x{} px; both sides must be at least \
                 {MIN_IMAGE_SIZE} px (raise --min-scale)",
                c.width, c.height
            )));
        }
        let own = styles.iter().map(|s| s.width.max(s.height)).min().unwrap_or(usize::MAX);
        let style_side = image_io::style_longest_side(side, a.style_scale).min(own);
        let s: Vec<PlanarImage> = styles.iter().map(|s| image_io::resize_longest(s, style_side)).collect();
        if let Some(bad) = s.iter().find(|s| s.width < MIN_IMAGE_SIZE || s.height < MIN_IMAGE_SIZE) {
            return Err(runtime(format!(
                "coarse to fine: at the {side} px scale a style image would be {}x{} px; both sides must be at least \
                 {MIN_IMAGE_SIZE} px (raise --min-scale or --style-scale)",
                bad.width, bad.height
            )));
        }
        plan.push(Scale { side, iterations, content: c, styles: s, style_side });
    }
    Ok(plan)
}

/// What the run says when a CPU adapter lowered a default (and how to get the full job).
fn cpu_defaults_line(a: &StyleArgs, job: &Job) -> String {
    match (a.image_size, a.iterations) {
        (None, None) if job.min_scale.is_some() => format!(
            "CPU adapter: painting at {CPU_IMAGE_SIZE} px, coarse to fine, {} iterations (about ten minutes on 2 \
             cores); --image-size {GPU_IMAGE_SIZE} --iterations {GPU_ITERATIONS} for the full job",
            job.iterations
        ),
        (None, None) => format!(
            "CPU adapter: painting at {CPU_IMAGE_SIZE} px with {CPU_ITERATIONS} iterations (about ten minutes on 2 \
             cores); --image-size {GPU_IMAGE_SIZE} --iterations {GPU_ITERATIONS} for the full job"
        ),
        (Some(_), None) => {
            format!(
                "CPU adapter: {CPU_ITERATIONS} iterations by default; --iterations {GPU_ITERATIONS} for the full job"
            )
        }
        _ => format!("CPU adapter: {CPU_IMAGE_SIZE} px by default; --image-size {GPU_IMAGE_SIZE} for the full job"),
    }
}

/// Iterations slower than this keep a host copy of every iterate (Ctrl-C then never waits for the GPU).
const SNAPSHOT_EVERY_ITERATION_ABOVE: Duration = Duration::from_millis(250);

pub fn run(a: &StyleArgs) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let stages = Stages::new(started);
    // 1. Flags, output format and paths: nothing read yet.
    a.validate()?;
    let format = image_io::output_format(&a.output)?;
    let depth = OutputDepth::from_bits(a.output_depth).expect("validated");
    image_io::check_output_depth(&a.output, format, depth)?;
    let weights_path = a.weights.clone().unwrap_or_else(Vgg16Weights::default_path);
    // The first line appears once the inputs are read (well within a second); every refusal before it is the
    // only line printed.

    // 2. The adapter: it decides the defaults (a CPU adapter gets a job that finishes in minutes).
    let ctx = GpuContext::new(&GpuOptions { adapter: a.adapter.clone(), ..Default::default() })?;
    let job = Job::resolve(a, ctx.info.device_type);
    check_outputs(a, &job, &weights_path)?;
    // Web preview: bound here, so that a busy or forbidden port fails before any image is read or the GPU is
    // used. Without --web it is a handle that does nothing.
    let web = WebPreview::start(a.web.as_deref(), &INTERRUPTED)?;

    // 3. Images (decoded, resized) and weights: every refusal so far is one line with nothing before it.
    let content_path = a.content.as_deref().expect("validated");
    let content_original = load("content image", content_path)?;
    let content = image_io::resize_longest(&content_original, job.image_size);
    check_min_side("content image", content_path, &content, "raise --image-size")?;
    let mut styles = Vec::with_capacity(a.styles.len());
    let mut styles_original = Vec::with_capacity(a.styles.len());
    for p in &a.styles {
        let original = load("style image", p)?;
        let s = image_io::resize_longest(&original, job.style_side);
        check_min_side("style image", p, &s, "raise --style-scale or --image-size")?;
        styles.push(s);
        styles_original.push(original);
    }
    // The scales: one, or coarse-to-fine (docs/MATHS.md); each is checked before any GPU work.
    let scales = scale_plan(a, &job, (&content_original, &styles_original), (&content, &styles))?;
    let init = match (a.init, &a.init_image) {
        (InitArg::Random, _) => Init::Random,
        (InitArg::Image, None) => Init::Content,
        (InitArg::Image, Some(p)) => {
            Init::Image(image_io::resize_exact(&load("--init-image", p)?, content.width, content.height))
        }
    };
    let weights = Vgg16Weights::load(&weights_path).map_err(|e| CliError::from(neural_style::Error::from(e)))?;
    for img in std::iter::once(&content).chain(&styles) {
        neural_style::stylizer::check_fits(&ctx, img.width, img.height)?;
    }
    stages.line(format!("adapter: {} ({:?}, {:?})", ctx.adapter_name(), ctx.info.device_type, ctx.info.backend));
    if job.cpu_defaults {
        stages.line(cpu_defaults_line(a, &job));
    }

    // `..default()` keeps this compiling when the engine grows options.
    #[allow(clippy::needless_update)]
    let opts = StyleOptions {
        content_weight: a.content_weight,
        style_weight: a.style_weight(),
        tv_weight: a.tv_weight,
        learning_rate: a.learning_rate,
        content_layers: a.content_layers.clone(),
        style_layers: a.style_layers.clone(),
        style_blend_weights: a.style_blend_weights.clone(),
        pooling: match a.pooling {
            PoolingArg::Max => Pooling::Max,
            PoolingArg::Avg => Pooling::Avg,
        },
        precision: a.precision.into(),
        optimizer: match a.optimizer {
            OptimizerArg::Adam => Optimizer::Adam,
            OptimizerArg::Lbfgs => Optimizer::Lbfgs {
                history: a.lbfgs_history,
                max_evals: a.lbfgs_max_evals.unwrap_or(lbfgs::default_max_evals(job.iterations)).max(1),
            },
        },
        init,
        seed: a.seed,
        average_decay: a.avg_decay,
        style_loss: a.style_loss.into(),
        ..StyleOptions::default()
    };

    // 4. Per scale: the GPU plan and the targets, then the loop. Losses are read back only when printed or logged.
    install_ctrlc();
    let writer = Writer { format, depth, original_colors: a.original_colors.then(|| content.clone()) };
    let rescue = RESCUE.get_or_init(|| Rescue {
        writer,
        output: a.output.clone(),
        size: (content.width, content.height),
        snapshot: Mutex::new(None),
        written: Mutex::new(false),
    });
    let mut log = a.log.as_deref().map(LossLog::create).transpose()?;
    let n = job.iterations;
    let mut progress = Progress::new(n);
    let mut done = 0usize;
    let mut snapshot_each = ctx.info.device_type == wgpu::DeviceType::Cpu;
    // Test hook: destroy the device before this update, to exercise the device-lost path for real.
    let lose_at: Option<usize> = std::env::var("NEURAL_STYLE_TEST_LOSE_DEVICE_AT").ok().and_then(|v| v.parse().ok());
    let coarse_to_fine = scales.len() > 1;
    if coarse_to_fine {
        // An iteration costs about its scale's pixels: the ETA counts the larger scales still to come.
        let costs =
            scales.iter().flat_map(|s| std::iter::repeat_n((s.content.width * s.content.height) as f64, s.iterations));
        progress.set_costs(costs.collect());
    }
    // Iterations finished at earlier scales: this scale's iteration j is the run's iteration offset + j.
    let mut offset = 0usize;
    // What the next scale starts from.
    let mut carry: Option<Carry> = None;
    let mut last: Option<Stylizer> = None;
    for (si, scale) in scales.iter().enumerate() {
        let mut scale_opts = opts.clone();
        if let Optimizer::Lbfgs { history, .. } = opts.optimizer {
            // The history starts afresh at each scale; so does the evaluation cap's count.
            let max_evals = a.lbfgs_max_evals.unwrap_or(lbfgs::default_max_evals(scale.iterations)).max(1);
            scale_opts.optimizer = Optimizer::Lbfgs { history, max_evals };
        }
        let (w, h) = (scale.content.width, scale.content.height);
        match &carry {
            // The previous scale's x, upscaled bicubically (docs/MATHS.md, "Coarse-to-fine").
            Some(Carry { x, from, .. }) => {
                let up = image_io::resample_planes(x, 3, *from, (w, h), Resample::Bicubic);
                scale_opts.init = Init::Image(neural_style::stylizer::add_mean(&up, w, h));
            }
            None => {
                if let Init::Image(img) = &opts.init {
                    scale_opts.init = Init::Image(image_io::resize_exact(img, w, h));
                }
            }
        }
        if si > 0 {
            stages.line(format!(
                "scale {}/{}: {w}x{h}, {} iterations (style images {} px)",
                si + 1,
                scales.len(),
                scale.iterations,
                scale.style_side
            ));
        }
        let mut stylizer =
            Stylizer::with_progress(&ctx, &weights, &scale.content, &scale.styles, &scale_opts, &mut |stage| {
                stages.line(stage)
            })?;
        if let Some(Carry { adam: Some(state), from, .. }) = carry.take() {
            let m = image_io::resample_planes(&state.m, 3, from, (w, h), Resample::Bicubic);
            // Bilinear and clamped: bicubic overshoots below 0, and Adam takes sqrt(v).
            let v = image_io::resample_planes(&state.v, 3, from, (w, h), Resample::Bilinear)
                .into_iter()
                .map(|v| v.max(0.0))
                .collect();
            stylizer.set_adam_state(&AdamState { m, v, step: state.step })?;
        }
        if si == 0 {
            // The initial image is the first thing Ctrl-C can save.
            rescue.keep(0, stylizer.image()?);
            let (fw, fh) = (content.width, content.height);
            web.publish_run_info(&web::RunInfo {
                adapter: ctx.adapter_name(),
                width: fw,
                height: fh,
                iterations: job.iterations,
                style_scale: a.style_scale,
                style_side: job.style_side,
                content: &content,
                styles: &styles,
                original_colors: a.original_colors,
                output: &a.output,
            });
            let scales_text = if coarse_to_fine {
                let sides: Vec<String> = scales.iter().map(|s| s.side.to_string()).collect();
                let iters: Vec<String> = scales.iter().map(|s| s.iterations.to_string()).collect();
                format!(", coarse to fine: scales {} px, iterations {}; now {w}x{h}", sides.join("/"), iters.join("/"))
            } else {
                String::new()
            };
            let mut average_text = match opts.average_decay {
                Some(d) => format!(", writing the average of the iterates (decay {d})"),
                None => String::new(),
            };
            if opts.style_loss == StyleLoss::W2 {
                average_text.push_str(", Wasserstein-2 style loss");
            }
            stages.line(format!(
                "{fw}x{fh}, {} style image{} ({} px longest side), {} iterations{scales_text}{average_text}{}",
                styles.len(),
                if styles.len() == 1 { "" } else { "s" },
                job.style_side,
                job.iterations,
                if ctx.info.device_type == wgpu::DeviceType::Cpu {
                    " (the first one also compiles the kernels on this CPU adapter)"
                } else {
                    ""
                }
            ));
            progress.start();
        }
        let log_scale = coarse_to_fine.then_some(scale.side);
        let mut last_tick = Instant::now();
        // Adam's update count carries over between scales; this scale's own count starts here.
        let scale_start = stylizer.iteration();
        while stylizer.iteration() - scale_start < scale.iterations {
            if INTERRUPTED.load(Ordering::SeqCst) {
                break;
            }
            let j = stylizer.iteration();
            let i = offset + j - scale_start;
            let print = a.print_every > 0 && i.is_multiple_of(a.print_every);
            if lose_at == Some(i) {
                ctx.device.destroy();
            }
            // L-BFGS: the evaluations made when this iterate was accepted (the first step also evaluates x0).
            let evals = stylizer.evaluations().map(|e| e.max(1));
            let t = Instant::now();
            let losses = match stylizer.step(print || log.is_some()) {
                Ok(l) => l,
                Err(e) => return Err(salvage(e, i, rescue)),
            };
            let ms = ms_since(t);
            if stylizer.iteration() == j && stylizer.stopped().is_some() {
                break; // L-BFGS stopped without an update: the next scale (or the final line) starts here
            }
            if let Some(l) = &losses {
                if let Some(log) = &mut log {
                    log.write(i, l, ms, evals, log_scale)?;
                }
                if print {
                    progress.report(i, l);
                }
            }
            done += 1;
            let k = offset + stylizer.iteration() - scale_start;
            web.publish_progress(k, losses.as_ref().map(|l| (i, l)));
            let frame = a.save_every > 0 && k.is_multiple_of(a.save_every);
            if print || frame || snapshot_each {
                match stylizer.image() {
                    Ok(img) => {
                        web.offer_image(k, &img);
                        rescue.keep(k, img);
                    }
                    Err(e) => return Err(salvage(e, k, rescue)),
                }
            }
            // Measured after the read-back: that is when the iteration is known to be done.
            let secs = last_tick.elapsed();
            last_tick = Instant::now();
            snapshot_each |= secs > SNAPSHOT_EVERY_ITERATION_ABOVE;
            progress.inc(done, secs.as_secs_f64());
            if frame {
                let f = image_io::frame_path(&a.output, k);
                rescue.writer.write(&f, rescue.last().expect("just read").1)?;
            }
            if stylizer.stopped().is_some() {
                break;
            }
        }
        if let Some(why) = stylizer.stopped() {
            let at = offset + stylizer.iteration() - scale_start;
            stages.line(format!("L-BFGS stopped after {at} of {n} iterations: {why}"));
        }
        let interrupted = INTERRUPTED.load(Ordering::SeqCst);
        if si + 1 < scales.len() && !interrupted {
            // Hand the image (the average, when averaging) and the optimiser's state to the next scale;
            // iterations L-BFGS left unused are skipped.
            offset += scale.iterations;
            done = offset;
            let x = match stylizer.output_x() {
                Ok(x) => x,
                Err(e) => return Err(salvage(e, offset, rescue)),
            };
            let state = match stylizer.adam_state() {
                Ok(s) => s,
                Err(e) => return Err(salvage(e, offset, rescue)),
            };
            carry = Some(Carry { x, adam: state, from: (w, h) });
            drop(stylizer);
        } else {
            offset += stylizer.iteration() - scale_start;
            last = Some(stylizer);
            break;
        }
    }
    drop(weights);
    let mut stylizer = last.expect("the last scale ran");
    let interrupted = INTERRUPTED.load(Ordering::SeqCst);
    let k = offset;
    let (w, h) = stylizer.size();
    // The losses of the final image (one more forward pass; skipped after Ctrl-C, which should stop now).
    if (log.is_some() || a.print_every > 0) && !interrupted {
        let t = Instant::now();
        let l = match stylizer.output_losses() {
            Ok(l) => l,
            Err(e) => return Err(salvage(e, k, rescue)),
        };
        let ms = ms_since(t);
        if let Some(log) = &mut log {
            log.write(k, &l, ms, stylizer.evaluations(), coarse_to_fine.then_some(scales.last().expect("one").side))?;
        }
        if a.print_every > 0 {
            progress.report(k, &l);
        }
        web.publish_progress(k, Some((k, &l)));
    }
    let rate = progress.finish(done);

    // 6. The result.
    match stylizer.image() {
        Ok(img) => rescue.write_final(img)?,
        Err(e) => return Err(salvage(e, k, rescue)),
    }
    web.finish(k, interrupted, &a.output);
    if interrupted {
        eprintln!("interrupted after {k} of {n} iterations: wrote '{}'", a.output.display());
        return Ok(Outcome::Interrupted);
    }
    let took = duration_text(started.elapsed().as_secs_f64());
    eprintln!("wrote '{}' ({w}x{h}, {k} iterations, {rate:.2} it/s, {took} in all)", a.output.display());
    Ok(Outcome::Done)
}

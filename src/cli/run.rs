//! The main command: flags → a library [`Job`] and the CLI's observer. Everything that can be checked is checked
//! before the GPU is touched; the job paints; the result is written atomically.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use neural_style::defaults::{CPU_IMAGE_SIZE, CPU_ITERATIONS, GPU_IMAGE_SIZE, GPU_ITERATIONS};
use neural_style::gpu::{GpuContext, GpuOptions};
use neural_style::image_io::{self, OutputDepth, OutputProfile};
use neural_style::job::{Failure, Job, JobImages, JobSize};
use neural_style::masks::{Mask, Masks};
use neural_style::weights::Vgg16Weights;
use neural_style::PlanarImage;

use super::args::{InitArg, OutputProfileArg};
use super::observer::{CliObserver, LossLog, Sinks};
use super::outputs::check_outputs;
use super::progress::{duration_text, Stages};
use super::rescue::{install_ctrlc, salvage, Rescue, Writer, RESCUE};
use super::web::WebPreview;
use super::{CliError, Outcome, StyleArgs};

/// Set by the Ctrl-C handler (and by the web preview's "stop and save"); checked between iterations.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn runtime(msg: impl Into<String>) -> CliError {
    CliError::Runtime(msg.into())
}

/// Loads an image and names it in the error.
fn load(what: &str, path: &Path) -> Result<PlanarImage, CliError> {
    image_io::load_image(path).map_err(|e| runtime(format!("{what}: {e}")))
}

/// The images at their own sizes, named by their paths for the job's messages, and the content's ICC profile
/// (what `--output-profile content` writes back).
fn load_images(a: &StyleArgs) -> Result<(JobImages, Option<Vec<u8>>), CliError> {
    let content_path = a.content.as_deref().expect("validated");
    let (content, content_icc) =
        image_io::load_image_with_profile(content_path).map_err(|e| runtime(format!("content image: {e}")))?;
    let mut names = vec![format!("content image '{}'", content_path.display())];
    let mut styles = Vec::with_capacity(a.styles.len());
    for p in &a.styles {
        styles.push(load("style image", p)?);
        names.push(format!("style image '{}'", p.display()));
    }
    Ok((JobImages { content, styles, names }, content_icc))
}

/// The masks of --style-masks, --style-image-masks and --content-mask, read at their own sizes, and checked
/// against the style images (a black mask for every style is refused; one black mask is a warning at setup).
pub(super) fn load_masks(a: &StyleArgs) -> Result<Masks, CliError> {
    let read = |what: &str, p: &Path| Mask::load(p).map_err(|e| runtime(format!("{what}: {e}")));
    let masks = Masks {
        style: a.style_masks.iter().map(|p| read("--style-masks", p)).collect::<Result<_, _>>()?,
        style_image: a
            .style_image_masks
            .iter()
            .map(|p| (!p.is_empty()).then(|| read("--style-image-masks", Path::new(p))).transpose())
            .collect::<Result<_, _>>()?,
        content: a.content_mask.as_deref().map(|p| read("--content-mask", p)).transpose()?,
    };
    masks.check(a.styles.len()).map_err(|e| runtime(e.to_string()))?;
    Ok(masks)
}

/// What the run says when a CPU adapter lowered a default (and how to get the full job).
fn cpu_defaults_line(a: &StyleArgs, size: &JobSize) -> String {
    match (a.image_size, a.iterations) {
        (None, None) if size.min_scale.is_some() => format!(
            "CPU adapter: painting at {CPU_IMAGE_SIZE} px, coarse to fine, {} iterations (about ten minutes on 2 \
             cores); --image-size {GPU_IMAGE_SIZE} --iterations {GPU_ITERATIONS} for the full job",
            size.iterations
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

/// Flags, paths, adapter, images and weights, each refused in one line before any GPU work; then the job.
struct Prepared {
    ctx: GpuContext,
    job: Job,
    weights: Vgg16Weights,
    web: WebPreview,
    writer: Writer,
}

fn prepare(a: &StyleArgs, stages: &Stages) -> Result<Prepared, CliError> {
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
    let size = a.job_size(ctx.info.device_type);
    check_outputs(a, size.iterations, &weights_path)?;
    // Web preview: bound here, so that a busy or forbidden port fails before any image is read or the GPU is
    // used. Without --web it is a handle that does nothing.
    let web = WebPreview::start(a.web.as_deref(), &INTERRUPTED)?;

    // 3. Images (decoded; the job resizes and checks every scale) and weights.
    let (images, content_icc) = load_images(a)?;
    let profile = match a.output_profile {
        OutputProfileArg::Srgb => OutputProfile::Srgb,
        OutputProfileArg::Content => OutputProfile::content(content_icc),
    };
    image_io::check_output_profile(&a.output, format, &profile)?;
    let init = match (a.init, &a.init_image) {
        (InitArg::Random, _) => neural_style::Init::Random,
        (InitArg::Image, None) => neural_style::Init::Content,
        (InitArg::Image, Some(p)) => neural_style::Init::Image(load("--init-image", p)?),
    };
    let mut options = a.job_options(size, init);
    options.style.masks = load_masks(a)?;
    let job = Job::plan(images, options).map_err(|e| runtime(e.to_string()))?;
    let weights = Vgg16Weights::load(&weights_path).map_err(|e| CliError::from(neural_style::Error::from(e)))?;
    let (content, style) = (job.content(), &job.options().style);
    let styles: Vec<(usize, usize)> = job.styles().iter().map(|s| (s.width, s.height)).collect();
    neural_style::stylizer::check_fits(&ctx, style, (content.width, content.height), &styles)?;
    stages.line(format!("adapter: {} ({:?}, {:?})", ctx.adapter_name(), ctx.info.device_type, ctx.info.backend));
    // The first-use check runs here (once per adapter, driver and version; the verdict is kept, and the job's
    // setup reads it back). A device the check lost is opened again: the kept verdict leaves out what lost it.
    let ctx = match neural_style::stylizer::choose_precision(&ctx, a.precision.into()) {
        Err(neural_style::Error::DeviceLost(why)) => {
            stages.line(format!("{}; opening the device again", neural_style::error::one_line(&why)));
            drop(ctx);
            GpuContext::new(&GpuOptions { adapter: a.adapter.clone(), ..Default::default() })?
        }
        // Any other refusal is the job's to say, in its place among the setup lines.
        _ => ctx,
    };
    if size.cpu_defaults {
        stages.line(cpu_defaults_line(a, &size));
    }
    let original_colors = a.original_colors.then(|| job.content().clone());
    let writer = Writer { format, depth, original_colors, profile };
    Ok(Prepared { ctx, job, weights, web, writer })
}

pub fn run(a: &StyleArgs) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let stages = Stages::new(started);
    let Prepared { ctx, job, weights, web, writer } = prepare(a, &stages)?;

    // 4. The job, watched: Ctrl-C and the preview's stop button stop it between iterations.
    install_ctrlc(&INTERRUPTED);
    let (w, h) = (job.content().width, job.content().height);
    let rescue = RESCUE.get_or_init(|| Rescue::new(writer, a.output.clone(), (w, h)));
    let log = a.log.as_deref().map(|p| LossLog::open(p, false)).transpose()?;
    let sinks = Sinks { stages: &stages, log, web: &web, rescue };
    let mut observer = CliObserver::new(a, &job, &ctx, sinks);
    let painted = match job.run(&ctx, &weights, &mut observer, &INTERRUPTED) {
        Ok(p) => p,
        Err(Failure::Gpu { iteration, error }) => return Err(salvage(error, iteration, rescue)),
        Err(Failure::Setup(e)) => return Err(e.into()),
        Err(Failure::Observer(e)) => return Err(e),
    };
    drop(weights);
    let rate = observer.progress.finish(painted.done);

    // 5. The result.
    let k = painted.iterations;
    rescue.write_final(painted.image)?;
    let interrupted = painted.stopped;
    web.finish(k, interrupted, &a.output);
    let n = job.options().size.iterations;
    if interrupted {
        eprintln!("interrupted after {k} of {n} iterations: wrote '{}'", a.output.display());
        return Ok(Outcome::Interrupted);
    }
    let took = duration_text(started.elapsed().as_secs_f64());
    eprintln!("wrote '{}' ({w}x{h}, {k} iterations, {rate:.2} it/s, {took} in all)", a.output.display());
    Ok(Outcome::Done)
}

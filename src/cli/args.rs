//! Command-line arguments (clap) and their validation. Flag names follow jcjohnson/neural-style,
//! neural-style-pt and anishathalye/neural-style, in kebab-case.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::CliError;
use neural_style::defaults::{self, CPU_IMAGE_SIZE, GPU_IMAGE_SIZE};
use neural_style::job::{JobOptions, JobSize, Scales};
use neural_style::{Init, Optimizer, Pooling, StyleOptions};

/// Smallest accepted `--image-size`: the network needs both sides ≥ 16 px to reach relu5_1.
use neural_style::vgg::MIN_SIDE as MIN_IMAGE_SIZE;
/// Every relu layer the network computes (up to relu5_1), in order.
use neural_style::vgg::RELU_NAMES as LAYERS;

/// Largest accepted `--image-size`.
pub const MAX_IMAGE_SIZE: usize = 16_384;

#[derive(Parser, Debug)]
#[command(
    name = "neural-style",
    version,
    about = "Neural style transfer (Gatys, Ecker & Bethge) on the GPU",
    long_about = "Paints CONTENT in the style of one or more STYLE images (Gatys, Ecker & Bethge, \
                  \"A Neural Algorithm of Artistic Style\"), on any GPU wgpu can drive.\n\n\
                  Example: neural-style content.png style.png -o out.png",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    allow_negative_numbers = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub style: StyleArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the GPU adapters wgpu can see (the name to pass to --adapter).
    Devices,
    /// Time the engine on synthetic images.
    Bench(BenchArgs),
    /// Check the engine's kernels against the CPU reference on this machine's GPU.
    Selftest(SelftestArgs),
    /// Paint a video, each frame held to the previous painting warped by the optical flow (docs/MATHS.md,
    /// "Video"). CONTENT is a directory of frames (sorted by name) or a video file; -o a directory of frames or
    /// a video file (video files through ffmpeg). Every frame is written as it is finished.
    Video(Box<VideoArgs>),
    /// Optical flow from image A to image B (DIS on the GPU, docs/MATHS.md "Video"), written as Middlebury .flo:
    /// where each pixel of A is in B. Prints the GPU time per pair (the median of --repeat runs).
    Flow(FlowArgs),
}

#[derive(Args, Debug, Clone)]
pub struct FlowArgs {
    /// The first image.
    #[arg(value_name = "A")]
    pub first: PathBuf,
    /// The second image (the same size as A).
    #[arg(value_name = "B")]
    pub second: PathBuf,
    /// The flow file (.flo).
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: PathBuf,
    /// Resize A so its longest side is PX, and B to A's size (for timing at a given size).
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u64).range(16..=16384))]
    pub size: Option<u64>,
    /// Timed runs of the same pair (after one untimed run that builds the pipelines).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub repeat: usize,
    /// GPU adapter: a substring of its name (see `neural-style devices`).
    #[arg(long)]
    pub adapter: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct VideoArgs {
    #[command(flatten)]
    pub style: StyleArgs,
    /// Iterations of each frame after the first, which starts from the previous painting warped [default: a third
    /// of --iterations].
    #[arg(long, value_name = "N")]
    pub frame_iterations: Option<usize>,
    /// What optimises each frame after the first (the first, and every frame with --independent, uses
    /// --optimizer): L-BFGS settles where the frame starts, near its answer; Adam keeps moving it by about its
    /// learning rate, which flickers.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Lbfgs)]
    pub frame_optimizer: OptimizerArg,
    /// Weight of the temporal loss (3x Ruder et al.'s 1e3, measured: docs/PERFORMANCE.md, "Video").
    #[arg(long, value_name = "F", default_value_t = neural_style::video::TEMPORAL_WEIGHT)]
    pub temporal_weight: f32,
    /// Long-term consistency: hold each frame to the paintings of frames t-1, t-2 and t-4.
    #[arg(long)]
    pub flow_long_term: bool,
    /// Paint every frame as a still image from its own content: no flow, no temporal loss (flickers; for
    /// comparison).
    #[arg(long, conflicts_with_all = ["flow_long_term", "frame_iterations"])]
    pub independent: bool,
    /// Paint only input frames A to B (1-based, inclusive; `A:`, `:B`): one shot per job, into its own -o.
    /// Frame A is painted as a still, so cut the ranges at the cuts of the film.
    #[arg(long, value_name = "A:B")]
    pub frames: Option<String>,
    /// Continue a stopped sequence: frames already in the output directory are kept (the settings must match
    /// those it was started with).
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Frames per second of an output video file [default: the input video's, else 25].
    #[arg(long, value_name = "FPS")]
    pub fps: Option<f64>,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Longest side of the benchmark image.
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Number of timed iterations.
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,
    /// GPU adapter: a substring of its name (see `neural-style devices`).
    #[arg(long)]
    pub adapter: Option<String>,
    /// VGG16 weights file (default: random weights, seeded; the speed does not depend on the values).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Arithmetic of the products, as for a style run.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Auto)]
    pub precision: PrecisionArg,
    /// The style distance, as for a style run (w2 adds its Newton–Schulz square roots to every iteration).
    #[arg(long, value_enum, default_value_t = StyleLossArg::Gram)]
    pub style_loss: StyleLossArg,
    /// Time a whole coarse-to-fine job instead, from this smallest scale up to --size, with --iterations in all
    /// (a run's shares per scale): setup and ms per iteration of each scale, and the total.
    #[arg(long, value_name = "PX")]
    pub min_scale: Option<usize>,
    /// Free canvas around the image, as a run's --margin [default: 0, the network at exactly --size, as PyTorch's
    /// peer runs it; a run's default is 8].
    #[arg(long, value_name = "PX", default_value_t = 0)]
    pub margin: usize,
    /// The run's memory budget in GB (as a run's --max-memory): beyond it, iterations are evaluated in blocks.
    #[arg(long, value_name = "GB", value_parser = positive_gb)]
    pub max_memory: Option<f64>,
    /// Blocks owning at most PX px per side (as a run's --tile-size).
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u64).range(16..))]
    pub tile_size: Option<u64>,
    /// Print the memory plan (at once or in blocks, every buffer's bytes) as one JSON line and run nothing.
    #[arg(long)]
    pub plan_only: bool,
    /// Time the masks' cost instead (docs/MATHS.md, "Spatial control"): the same problem with and without
    /// --style-masks and --content-mask, in the same run.
    #[arg(long, conflicts_with_all = ["plan_only", "min_scale", "max_memory", "tile_size"])]
    pub masks: bool,
    /// With --plan-only: plan for an adapter binding at most MIB MiB per buffer instead of this one's (e.g. 2048
    /// for NVIDIA's Vulkan driver).
    #[arg(long, value_name = "MIB", requires = "plan_only")]
    pub max_binding_mib: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct SelftestArgs {
    /// GPU adapter: a substring of its name (see `neural-style devices`).
    #[arg(long)]
    pub adapter: Option<String>,
    /// Run on every adapter found.
    #[arg(long, conflicts_with = "adapter")]
    pub all_adapters: bool,
    /// Every kernel case and whole iterations against the CPU reference (minutes on a CPU adapter) instead of
    /// the first-use set a run checks (seconds).
    #[arg(long)]
    pub full: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputProfileArg {
    /// sRGB (what every input is converted to), embedded where the format can carry it.
    Srgb,
    /// The content image's embedded profile (sRGB when it has none).
    Content,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StyleLossArg {
    /// Squared distance of the Gram matrices (jcjohnson/neural-style).
    Gram,
    /// Wasserstein-2 distance between Gaussian fits (means and covariances) of the features.
    W2,
}

impl From<StyleLossArg> for neural_style::StyleLoss {
    fn from(a: StyleLossArg) -> Self {
        match a {
            StyleLossArg::Gram => Self::Gram,
            StyleLossArg::W2 => Self::W2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// torch.optim.Adam at --learning-rate: one evaluation per iteration.
    Adam,
    /// L-BFGS with a strong-Wolfe line search (torch.optim.LBFGS): fewer, costlier iterations.
    Lbfgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InitArg {
    /// Start from the content image, or from --init-image when given.
    Image,
    /// Start from seeded random noise (see --seed).
    Random,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// Tensor cores where the adapter has them and they pass a first-use check, else f32.
    Auto,
    /// f32 everywhere.
    F32,
    /// f16 operands with f32 sums on the tensor cores (an error where there are none).
    F16,
    /// The tensor-core kernels' software twin (any adapter; for checking, not speed).
    #[value(name = "f16-twin")]
    F16Twin,
}

impl From<PrecisionArg> for neural_style::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Auto => Self::Auto,
            PrecisionArg::F32 => Self::F32,
            PrecisionArg::F16 => Self::F16,
            PrecisionArg::F16Twin => Self::F16Twin,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PoolingArg {
    Max,
    Avg,
}

#[derive(Args, Debug, Clone)]
pub struct StyleArgs {
    /// Content image (any format the `image` crate reads: PNG, JPEG, WebP, TIFF, GIF, BMP, ...).
    #[arg(value_name = "CONTENT", required = true)]
    pub content: Option<PathBuf>,
    /// One or more style images.
    #[arg(value_name = "STYLE", required = true, num_args = 1..)]
    pub styles: Vec<PathBuf>,

    /// Output image; the format comes from the extension (.png, .jpg, .webp, .tiff, .bmp, ...).
    #[arg(short = 'o', long, value_name = "PATH", default_value = "out.png")]
    pub output: PathBuf,
    /// Replace the output (and --save-every snapshots) when they already exist.
    #[arg(long)]
    pub overwrite: bool,
    /// Longest side of the output, in pixels (at least 16) [default: 512; 256 on a CPU adapter].
    #[arg(long, value_name = "N")]
    pub image_size: Option<usize>,
    /// Style images are resized so that their longest side is ceil(F · image size).
    #[arg(long, value_name = "F", default_value_t = defaults::STYLE_SCALE)]
    pub style_scale: f64,
    /// Comma-separated weights, one per style image (default: equal). Normalised to sum 1. With --style-masks,
    /// each region's relative weight.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub style_blend_weights: Vec<f32>,
    /// Comma-separated masks, one per style image: where on the output each style goes (white = this style,
    /// black = not, grey = partly; any size, resized to the output). Regions may overlap (their losses add) or
    /// leave parts unstyled (content and smoothness only).
    #[arg(long, value_name = "M1,M2,...", value_delimiter = ',')]
    pub style_masks: Vec<PathBuf>,
    /// Comma-separated masks, one per style image: which part of each style image its style is taken from; an
    /// empty entry takes all of that image (e.g. `,sky.png`). Needs --style-masks.
    #[arg(long, value_name = "M1,M2,...", value_delimiter = ',')]
    pub style_image_masks: Vec<String>,
    /// Weights of the content loss over the output: white keeps the photo, black leaves it free to restyle.
    #[arg(long, value_name = "M")]
    pub content_mask: Option<PathBuf>,
    /// Weight of the content loss.
    #[arg(long, value_name = "F", default_value_t = defaults::CONTENT_WEIGHT)]
    pub content_weight: f32,
    /// Weight of the style loss [default: 100; 200 with --style-loss w2].
    #[arg(long, value_name = "F")]
    pub style_weight: Option<f32>,
    /// Weight of the total-variation (smoothness) loss.
    #[arg(long, value_name = "F", default_value_t = defaults::TV_WEIGHT)]
    pub tv_weight: f32,
    /// Number of optimisation steps (0 writes the initial image) [default: 1000; on a CPU adapter 600, coarse to
    /// fine, or 300 when --image-size is given].
    #[arg(long, visible_alias = "num-iterations", value_name = "N")]
    pub iterations: Option<usize>,
    /// Optimiser (docs/MATHS.md). With lbfgs, --iterations counts L-BFGS iterations and --learning-rate is
    /// not used.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    pub optimizer: OptimizerArg,
    /// Coarse to fine: paint at sizes growing by √2 from 128 px (or --min-scale) up to --image-size, the first
    /// scale with twice the iterations of the others, each scale starting from the previous one upscaled.
    /// The default of a CPU adapter's default job.
    #[arg(long, conflicts_with = "single_scale")]
    pub coarse_to_fine: bool,
    /// The smallest scale of a coarse-to-fine run, in px (implies --coarse-to-fine) [default: 128].
    #[arg(long, value_name = "PX", conflicts_with = "single_scale")]
    pub min_scale: Option<usize>,
    /// Paint at --image-size only, even where coarse to fine is the default.
    #[arg(long)]
    pub single_scale: bool,
    /// L-BFGS: history pairs kept on the GPU (2 x N image-sized vectors).
    #[arg(long, visible_alias = "lbfgs-num-correction", value_name = "N", default_value_t = defaults::LBFGS_HISTORY)]
    pub lbfgs_history: usize,
    /// L-BFGS: cap on evaluations of the loss and its gradient at each scale [default: 1.25 x the scale's
    /// iterations].
    #[arg(long, value_name = "N")]
    pub lbfgs_max_evals: Option<usize>,
    /// Write the moving average of the iterates with this decay (bias-corrected, restarted at each scale;
    /// crowsonkb's 0.99) instead of the last iterate, also for snapshots and the preview [default: the last
    /// iterate].
    #[arg(long, value_name = "D")]
    pub avg_decay: Option<f64>,
    /// The style distance: gram (jcjohnson's) or w2 (Wasserstein-2 between Gaussian fits of the features; about
    /// 37 GFLOP more per iteration, so slow on a CPU adapter).
    #[arg(long, value_enum, default_value_t = StyleLossArg::Gram)]
    pub style_loss: StyleLossArg,
    /// Adam learning rate, in pixel units.
    #[arg(long, value_name = "F", default_value_t = defaults::LEARNING_RATE)]
    pub learning_rate: f32,
    /// Initial image: `image` = the content image (or --init-image), `random` = seeded noise.
    #[arg(long, value_enum, default_value_t = InitArg::Image)]
    pub init: InitArg,
    /// Start from this image (resized to the content's size) instead of the content image.
    #[arg(long, value_name = "PATH")]
    pub init_image: Option<PathBuf>,
    /// Seed of --init random. Same seed, same adapter, same flags → bit-identical output.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Keep the content's colours: take only the luminance (Y of YCbCr, BT.601) from the result.
    #[arg(long)]
    pub original_colors: bool,
    /// Arithmetic of the network's products: `auto` uses tensor cores (f16 operands, f32 sums) where wgpu
    /// offers them and they pass a first-use check, else f32; the choice is printed.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Auto)]
    pub precision: PrecisionArg,
    /// Pooling after relu1_2, relu2_2, relu3_3 and relu4_3.
    #[arg(long, value_enum, default_value_t = PoolingArg::Max)]
    pub pooling: PoolingArg,
    /// Paint on a canvas PX wider on every side (the content reflected into it) and crop it away: the network's
    /// zero padding makes the style loss paint a dark frame along the canvas's edge, which then lies outside the
    /// picture. 0 paints the image itself, with that frame, as versions before 0.3 did [default: 1/32 of the
    /// longest side at each scale, at least 8].
    #[arg(long, value_name = "PX")]
    pub margin: Option<usize>,
    /// GPU memory the run may use, in GB; a larger canvas is evaluated exactly in blocks (the same loss and
    /// gradient, no seams) [default: half the host's memory on a CPU adapter, 8 on a GPU].
    #[arg(long, value_name = "GB", value_parser = positive_gb)]
    pub max_memory: Option<f64>,
    /// Evaluate in blocks owning at most PX px per side (rounded down to a multiple of 16), even when the canvas
    /// would fit at once [default: blocks only when needed, as large as fit].
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u64).range(16..))]
    pub tile_size: Option<u64>,
    /// Comma-separated content layers (relu1_1 ... relu5_1).
    #[arg(long, value_name = "LAYERS", value_delimiter = ',', default_values = defaults::CONTENT_LAYERS)]
    pub content_layers: Vec<String>,
    /// Comma-separated style layers (relu1_1 ... relu5_1).
    #[arg(
        long,
        value_name = "LAYERS",
        value_delimiter = ',',
        default_values = defaults::STYLE_LAYERS
    )]
    pub style_layers: Vec<String>,
    /// Report the losses every N iterations (0: never).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub print_every: usize,
    /// Also write the image every N iterations as <stem>_<iter>.<ext> beside the output (0: off).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub save_every: usize,
    /// Write the losses of every iteration as JSON lines: {"iter","content","style","tv","total","ms"}.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// GPU adapter: a substring of its name (see `neural-style devices`; default: $NEURAL_STYLE_ADAPTER, else
    /// the fastest).
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
    /// VGG16 weights file (default: the shipped weights).
    #[arg(long, value_name = "PATH")]
    pub weights: Option<PathBuf>,
    /// Bits per channel of the output (and snapshots): 8, or 16 for .png and .tiff.
    #[arg(long, value_name = "BITS", default_value_t = 8)]
    pub output_depth: u32,
    /// The output's colour profile (docs/COLOUR.md): sRGB, embedded; or `content`, the content image's own ICC
    /// profile (the pixels converted back into it; .png, .jpg, .tiff or .webp).
    #[arg(long, value_enum, default_value_t = OutputProfileArg::Srgb)]
    pub output_profile: OutputProfileArg,
    /// Live preview in a browser: serve a page on [ADDR:]PORT (default address 127.0.0.1; port 0: any free
    /// port) and print its URL, which carries a per-run token.
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub web: Option<String>,
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

impl VideoArgs {
    /// The still run's checks, and the video's own flags.
    pub fn validate(&self) -> Result<(), CliError> {
        self.style.validate()?;
        check_weight("temporal-weight", self.temporal_weight)?;
        if self.frame_iterations == Some(0) {
            return Err(usage("--frame-iterations must be at least 1"));
        }
        if self.fps.is_some_and(|f| !(f.is_finite() && f > 0.0)) {
            return Err(usage("--fps must be a number above 0"));
        }
        Ok(())
    }
}

fn check_weight(name: &str, v: f32) -> Result<(), CliError> {
    if !v.is_finite() || v < 0.0 {
        return Err(usage(format!("--{name} must be a finite number >= 0 (got {v})")));
    }
    Ok(())
}

fn check_layers(flag: &str, layers: &[String]) -> Result<(), CliError> {
    if layers.is_empty() {
        return Err(usage(format!("--{flag} needs at least one layer")));
    }
    for (i, l) in layers.iter().enumerate() {
        if !LAYERS.contains(&l.as_str()) {
            return Err(usage(format!("--{flag}: unknown layer '{l}'; valid layers: {}", LAYERS.join(", "))));
        }
        if layers[..i].contains(l) {
            return Err(usage(format!("--{flag}: layer '{l}' is listed twice")));
        }
    }
    Ok(())
}

impl StyleArgs {
    /// The style weight: as given, else 100 for Gram and 200 for W2 (docs/MATHS.md).
    pub fn style_weight(&self) -> f32 {
        self.style_weight.unwrap_or(defaults::style_weight(self.style_loss.into()))
    }

    /// The scales asked for.
    fn scales(&self) -> Scales {
        match (self.single_scale, self.min_scale) {
            (true, _) => Scales::Single,
            (false, Some(m)) => Scales::CoarseToFine(m),
            (false, None) if self.coarse_to_fine => Scales::CoarseToFine(defaults::MIN_SCALE),
            (false, None) => Scales::Default,
        }
    }

    /// The job's size on an adapter of `device_type` (a CPU adapter gets a job of minutes by default).
    pub fn job_size(&self, device_type: wgpu::DeviceType) -> JobSize {
        JobSize::resolve_scales(self.image_size, self.iterations, self.scales(), device_type)
    }

    /// The library's options for these flags.
    pub fn job_options(&self, size: JobSize, init: Init) -> JobOptions {
        let style = StyleOptions {
            content_weight: self.content_weight,
            style_weight: self.style_weight(),
            tv_weight: self.tv_weight,
            learning_rate: self.learning_rate,
            content_layers: self.content_layers.clone(),
            style_layers: self.style_layers.clone(),
            style_blend_weights: self.style_blend_weights.clone(),
            pooling: match self.pooling {
                PoolingArg::Max => Pooling::Max,
                PoolingArg::Avg => Pooling::Avg,
            },
            precision: self.precision.into(),
            optimizer: match self.optimizer {
                OptimizerArg::Adam => Optimizer::Adam,
                // The cap is set per scale by the job (from lbfgs_max_evals below).
                OptimizerArg::Lbfgs => Optimizer::Lbfgs { history: self.lbfgs_history, max_evals: 1 },
            },
            init,
            seed: self.seed,
            average_decay: self.avg_decay,
            style_loss: self.style_loss.into(),
            margin: self.margin,
            max_memory: self.max_memory.map(|gb| (gb * 1e9) as u64),
            tile_size: self.tile_size.map(|px| px as usize),
            // Read with the images (run.rs): validation touches no file.
            masks: Default::default(),
            temporal: None,
        };
        JobOptions { style, size, style_scale: self.style_scale, lbfgs_max_evals: self.lbfgs_max_evals }
    }

    /// Checks every flag value (nothing touches a file or the GPU here). Errors are usage errors (exit 2).
    pub fn validate(&self) -> Result<(), CliError> {
        if self.content.is_none() || self.styles.is_empty() {
            return Err(usage("give a content image and at least one style image"));
        }
        let image_size = self.image_size.unwrap_or(CPU_IMAGE_SIZE);
        if image_size < MIN_IMAGE_SIZE {
            return Err(usage(format!(
                "--image-size {image_size} is too small: the network needs at least {MIN_IMAGE_SIZE} px"
            )));
        }
        if image_size > MAX_IMAGE_SIZE {
            return Err(usage(format!("--image-size {image_size} is too large (at most {MAX_IMAGE_SIZE})")));
        }
        if !self.style_scale.is_finite() || self.style_scale <= 0.0 {
            return Err(usage(format!("--style-scale must be a finite number > 0 (got {})", self.style_scale)));
        }
        // Without --image-size the size depends on the adapter, not known yet: check both defaults.
        let (small, large) = match self.image_size {
            Some(s) => (s, s),
            None => (CPU_IMAGE_SIZE, GPU_IMAGE_SIZE),
        };
        let style_side = neural_style::image_io::style_longest_side(small, self.style_scale);
        let style_side_max = neural_style::image_io::style_longest_side(large, self.style_scale);
        if style_side < MIN_IMAGE_SIZE {
            return Err(usage(format!(
                "--style-scale {} gives style images a longest side of {style_side} px; at least {MIN_IMAGE_SIZE} needed",
                self.style_scale
            )));
        }
        if style_side_max > MAX_IMAGE_SIZE {
            return Err(usage(format!(
                "--style-scale {} gives style images a longest side of {style_side_max} px; at most {MAX_IMAGE_SIZE}",
                self.style_scale
            )));
        }
        let n = self.styles.len();
        let counts = [("--style-masks", self.style_masks.len()), ("--style-image-masks", self.style_image_masks.len())];
        for (flag, count) in counts {
            if count != 0 && count != n {
                return Err(usage(format!(
                    "{flag} has {count} mask(s) but there {} {n} style image{}",
                    if n == 1 { "is" } else { "are" },
                    if n == 1 { "" } else { "s" }
                )));
            }
        }
        if !self.style_image_masks.is_empty() && self.style_masks.is_empty() {
            return Err(usage(
                "--style-image-masks needs --style-masks (which region of the output each style paints)",
            ));
        }
        if !self.style_blend_weights.is_empty() {
            if self.style_blend_weights.len() != n {
                return Err(usage(format!(
                    "--style-blend-weights has {} value(s) but there {} {n} style image{}",
                    self.style_blend_weights.len(),
                    if n == 1 { "is" } else { "are" },
                    if n == 1 { "" } else { "s" }
                )));
            }
            if self.style_blend_weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
                return Err(usage("--style-blend-weights must be finite numbers >= 0"));
            }
            if self.style_blend_weights.iter().map(|w| *w as f64).sum::<f64>() <= 0.0 {
                return Err(usage("--style-blend-weights must have a positive sum"));
            }
        }
        check_weight("content-weight", self.content_weight)?;
        check_weight("style-weight", self.style_weight())?;
        check_weight("tv-weight", self.tv_weight)?;
        if !self.learning_rate.is_finite() || self.learning_rate <= 0.0 {
            return Err(usage(format!("--learning-rate must be a finite number > 0 (got {})", self.learning_rate)));
        }
        if let Some(m) = self.min_scale {
            if m < MIN_IMAGE_SIZE {
                return Err(usage(format!(
                    "--min-scale {m} is too small: the network needs at least {MIN_IMAGE_SIZE} px"
                )));
            }
        }
        if self.lbfgs_history == 0 {
            return Err(usage("--lbfgs-history must be at least 1"));
        }
        if self.lbfgs_max_evals == Some(0) {
            return Err(usage("--lbfgs-max-evals must be at least 1"));
        }
        if self.optimizer != OptimizerArg::Lbfgs
            && (self.lbfgs_max_evals.is_some() || self.lbfgs_history != defaults::LBFGS_HISTORY)
        {
            return Err(usage("--lbfgs-history and --lbfgs-max-evals need --optimizer lbfgs"));
        }
        if let Some(d) = self.avg_decay {
            if !(d > 0.0 && d < 1.0) {
                return Err(usage(format!("--avg-decay must be a number between 0 and 1, exclusive (got {d})")));
            }
        }
        if self.init == InitArg::Random && self.init_image.is_some() {
            return Err(usage("--init-image cannot be combined with --init random"));
        }
        check_layers("content-layers", &self.content_layers)?;
        check_layers("style-layers", &self.style_layers)?;
        if self.adapter.as_deref().is_some_and(|a| a.trim().is_empty()) {
            return Err(usage("--adapter needs a non-empty name (see `neural-style devices`)"));
        }
        if neural_style::image_io::OutputDepth::from_bits(self.output_depth).is_none() {
            return Err(usage(format!("--output-depth must be 8 or 16 (got {})", self.output_depth)));
        }
        if let Some(spec) = &self.web {
            super::web::parse_listen_addr(spec).map_err(usage)?;
        }
        Ok(())
    }
}

/// A memory size in GB: a finite number above 0.
fn positive_gb(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(gb) if gb.is_finite() && gb > 0.0 => Ok(gb),
        _ => Err(format!("expected a size in GB above 0, got '{s}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> StyleArgs {
        let mut argv = vec!["neural-style", "c.png", "s.png"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().style
    }

    #[test]
    fn the_scale_flags_pick_the_job() {
        let cpu = wgpu::DeviceType::Cpu;
        let gpu = wgpu::DeviceType::DiscreteGpu;
        let j = args(&[]).job_size(cpu);
        assert_eq!((j.image_size, j.iterations, j.cpu_defaults, j.min_scale), (256, 600, true, Some(128)));
        let j = args(&["--single-scale"]).job_size(cpu);
        assert_eq!((j.image_size, j.iterations, j.min_scale), (256, 300, None));
        assert_eq!(args(&["--coarse-to-fine"]).job_size(gpu).min_scale, Some(128));
        assert_eq!(args(&["--min-scale", "200"]).job_size(gpu).min_scale, Some(200));
        assert_eq!(args(&[]).job_size(gpu).min_scale, None);
        let o = args(&["--style-scale", "0.5"]).job_options(args(&[]).job_size(cpu), Init::Content);
        assert_eq!(o.style_side(), 128);
    }

    #[test]
    fn the_flags_default_to_the_library_defaults() {
        let style = args(&[]).job_options(args(&[]).job_size(wgpu::DeviceType::Cpu), Init::Content).style;
        assert_eq!(style, StyleOptions::default());
    }

    #[test]
    fn the_style_weight_defaults_by_style_loss() {
        assert_eq!(args(&[]).style_weight(), 100.0);
        assert_eq!(args(&["--style-loss", "w2"]).style_weight(), 200.0);
        assert_eq!(args(&["--style-loss", "w2", "--style-weight", "50"]).style_weight(), 50.0);
        assert_eq!(args(&["--avg-decay", "0.9"]).avg_decay, Some(0.9));
        assert_eq!(args(&[]).avg_decay, None);
    }

    #[test]
    fn the_style_side_is_checked_at_both_default_sizes() {
        // 0.05 x 256 = 13 px: too small for a CPU adapter's default, so refused before the adapter is known.
        assert!(args(&["--style-scale", "0.05"]).validate().is_err());
        assert!(args(&["--style-scale", "0.05", "--image-size", "512"]).validate().is_ok());
    }
}

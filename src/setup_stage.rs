//! The stages of a style problem's setup on the GPU, reported to the caller as each starts (the CLI prints
//! them with timestamps: on a CPU adapter the setup takes seconds).

/// A stage of [`crate::Stylizer::with_progress`]'s setup, reported as it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupStage {
    /// Uploading the weights in the layouts of this adapter's kernels.
    Weights,
    /// The Gram matrices of style image `index` (of `count`), at its own size.
    StyleTargets { index: usize, count: usize, width: usize, height: usize },
    /// The features of the content image.
    ContentTargets,
    /// The Wasserstein-2 targets: the square roots of the blended style covariances, in f64 on the CPU.
    W2Targets { layers: usize },
    /// Which arithmetic the GEMM-shaped kernels use, and why.
    Precision(String),
    /// The canvas is evaluated in blocks: how ([`crate::layout::Layout::describe`]).
    Tiled(String),
    /// `done` of `of` blocks of a target computed in blocks (the content targets of a tiled canvas, a style
    /// image's Grams in blocks), reported as each finishes.
    Blocks { what: &'static str, done: usize, of: usize },
    /// How the masks shape the losses (docs/MATHS.md, "Spatial control"), with a warning where a style's mask
    /// covers nothing.
    Masks(String),
}

impl std::fmt::Display for SetupStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupStage::Weights => write!(f, "uploading the weights"),
            SetupStage::StyleTargets { index, count, width, height } => {
                write!(f, "style targets: style image {}/{count} ({width}x{height})", index + 1)
            }
            SetupStage::ContentTargets => write!(f, "content targets"),
            SetupStage::W2Targets { layers } => {
                write!(f, "Wasserstein-2 targets: square roots of {layers} style covariances")
            }
            SetupStage::Precision(note) | SetupStage::Tiled(note) | SetupStage::Masks(note) => write!(f, "{note}"),
            SetupStage::Blocks { what, done, of } => write!(f, "{what}: {done}/{of} blocks"),
        }
    }
}

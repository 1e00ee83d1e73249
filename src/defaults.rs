//! Every default of a painting, in one place: the loss weights and layers, the optimiser's settings, and the job's
//! size, which depends on the adapter (a CPU adapter gets a job of minutes). [`crate::StyleOptions::default`],
//! [`crate::job::JobSize::resolve`], `bench` and the CLI's flags all read them from here.

use crate::loss_terms::StyleLoss;

/// Weight of the content loss (jcjohnson/neural-style's).
pub const CONTENT_WEIGHT: f32 = 5.0;
/// Weight of the Gram style loss (jcjohnson/neural-style's).
pub const GRAM_STYLE_WEIGHT: f32 = 100.0;
/// Weight of the Wasserstein-2 style loss: its terms are of another size than the Gram ones (docs/MATHS.md).
pub const W2_STYLE_WEIGHT: f32 = 200.0;
/// Weight of the total-variation loss.
pub const TV_WEIGHT: f32 = 1e-3;
/// Adam's learning rate, in pixel units.
pub const LEARNING_RATE: f32 = 10.0;
/// The content layers.
pub const CONTENT_LAYERS: &[&str] = &["relu4_2"];
/// The style layers.
pub const STYLE_LAYERS: &[&str] = &["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"];
/// Style images are resized so that their longest side is ceil(STYLE_SCALE · image size).
pub const STYLE_SCALE: f64 = 1.0;
/// L-BFGS's history pairs (torch's and jcjohnson's).
pub const LBFGS_HISTORY: usize = 100;
/// The free canvas around a `width` x `height` image on every side, cropped away at the end: 1/32 of the longest
/// side, at least 8 px — far enough out that the frame the convs' zero padding makes the style loss paint falls
/// outside the picture (docs/MATHS.md, "Edges: the margin"; the study behind the numbers in docs/PERFORMANCE.md,
/// "Edges": 4 px sufficed at 128 px and not at 256, 8 px at both) — and less than the shorter side, which the
/// reflection needs.
pub fn margin(width: usize, height: usize) -> usize {
    let wanted = width.max(height).div_ceil(MARGIN_FRACTION).max(MIN_MARGIN);
    wanted.min(width.min(height).saturating_sub(1))
}
/// The default margin is 1/MARGIN_FRACTION of the longest side ...
pub const MARGIN_FRACTION: usize = 32;
/// ... and at least this many pixels.
pub const MIN_MARGIN: usize = 8;
/// The smallest scale of a coarse-to-fine run (crowsonkb's style-transfer-pytorch: 128 px).
pub const MIN_SCALE: usize = 128;

/// The job when the image size and the iterations are not given: on a GPU, jcjohnson/neural-style's defaults; on
/// a CPU adapter (lavapipe, where a 512 px iteration takes ~10 s on 2 cores) a job that finishes in about ten
/// minutes on such a machine (256 px: ~2.4 s per iteration for a square image, measured; docs/PERFORMANCE.md).
pub const GPU_IMAGE_SIZE: usize = 512;
pub const GPU_ITERATIONS: usize = 1000;
pub const CPU_IMAGE_SIZE: usize = 256;
pub const CPU_ITERATIONS: usize = 300;
/// Iterations of a CPU adapter's default job, which paints coarse to fine: about as long as 300 iterations at
/// one scale, and a better picture (docs/PERFORMANCE.md, "Coarse-to-fine").
pub const CPU_COARSE_TO_FINE_ITERATIONS: usize = 600;

/// The style weight of a style loss.
pub fn style_weight(loss: StyleLoss) -> f32 {
    match loss {
        StyleLoss::Gram => GRAM_STYLE_WEIGHT,
        StyleLoss::W2 => W2_STYLE_WEIGHT,
    }
}

/// L-BFGS's cap on evaluations of the loss for `iterations` iterations when none is given (torch: max_iter · 5/4).
pub fn lbfgs_max_evals(iterations: usize) -> usize {
    iterations * 5 / 4
}

/// `names` as owned strings (the layer lists of the options).
pub fn layer_names(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

//! The VGG16 architecture the engine runs: conv1_1 … conv5_1, each followed by a ReLU, with 2x2 pooling after
//! relu1_2, relu2_2, relu3_3 and relu4_3 (nothing after relu5_1 is computed). Names, shapes and size rules only;
//! [`crate::plan`] plans a pass over it and [`crate::network`] runs it on the GPU.

use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::planar::PlanarImage;
use neural_style_weights::{CAFFE_MEAN_RGB, VGG16_CONV_LAYERS};

/// Pooling used after relu1_2, relu2_2, relu3_3, relu4_3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Pooling {
    #[default]
    Max,
    Avg,
}

/// Post-ReLU layer names, one per conv, in order.
pub const RELU_NAMES: [&str; 11] = [
    "relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu4_1", "relu4_2", "relu4_3",
    "relu5_1",
];
/// Pooling follows these convs (relu1_2, relu2_2, relu3_3, relu4_3).
pub const POOL_AFTER: [usize; 4] = [1, 3, 6, 9];
/// Smallest side that still reaches relu5_1 (four halvings leave ≥ 1 pixel).
pub const MIN_SIDE: usize = 16;

/// Index of a relu layer by name.
pub fn relu_index(name: &str) -> Option<usize> {
    RELU_NAMES.iter().position(|n| *n == name)
}

/// (C, H, W) of every conv output for an input of `height` x `width`.
pub fn layer_shapes(weights_cout: &[usize], height: usize, width: usize) -> Vec<(usize, usize, usize)> {
    let (mut h, mut w) = (height, width);
    let mut out = Vec::new();
    for (i, &c) in weights_cout.iter().enumerate() {
        out.push((c, h, w));
        if POOL_AFTER.contains(&i) {
            h /= 2;
            w /= 2;
        }
    }
    out
}

/// The network's input x for an image: pixels − the Caffe ImageNet mean, CHW (docs/MATHS.md).
pub fn subtract_mean(img: &PlanarImage) -> Vec<f32> {
    let plane = img.width * img.height;
    img.data.iter().enumerate().map(|(i, v)| v - CAFFE_MEAN_RGB[i / plane]).collect()
}

/// The inverse of [`subtract_mean`]: x (dense CHW, mean-subtracted) back to pixel units, not clamped.
pub fn add_mean(x: &[f32], width: usize, height: usize) -> PlanarImage {
    let plane = width * height;
    PlanarImage::new(width, height, x.iter().enumerate().map(|(i, v)| v + CAFFE_MEAN_RGB[i / plane]).collect())
}

/// Refuses images that cannot reach relu5_1.
pub fn check_size(width: usize, height: usize) -> Result<()> {
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(Error::ImageTooSmall { width, height, min: MIN_SIDE });
    }
    Ok(())
}

/// The largest longest-side (keeping `width:height`) whose biggest activation fits `max_binding` bytes when the
/// image is painted on a canvas `margin(width, height)` px wider on every side (docs/MATHS.md, "Edges: the
/// margin"). The largest tensor is conv1's output (64 channels at the canvas's size, in its frame:
/// [`crate::frame`]).
pub fn largest_fitting_side(
    width: usize,
    height: usize,
    max_binding: u64,
    margin: impl Fn(usize, usize) -> usize,
) -> usize {
    let (long, short) = (width.max(height), width.min(height));
    // The image resized so its longest side is `side` (as image_io::target_size rounds), on its canvas.
    let fits = |side: usize| {
        let other = ((short as f64 * side as f64 / long as f64).round() as usize).max(1);
        let (w, h) = if width >= height { (side, other) } else { (other, side) };
        let m = margin(w, h);
        4 * Frame::new(h + 2 * m, w + 2 * m).buffer_floats(64) as u64 <= max_binding
    };
    // 64 channels x long x short x 4 bytes ≤ max_binding bounds it from above; the frame and the margin only add.
    let mut side = ((max_binding as f64 / (256.0 * short as f64 / long as f64)).sqrt().ceil() as usize).max(MIN_SIDE);
    while side > MIN_SIDE && !fits(side) {
        side -= 1;
    }
    side
}

/// VGG16-shaped weights with He-scaled uniform values from a ChaCha8 generator seeded by `seed` (benchmarks,
/// where the speed does not depend on the values, and the tests and the self-test, which compare with the
/// reference on the same weights).
pub fn random_weights(seed: u64) -> neural_style_weights::Vgg16Weights {
    use neural_style_weights::{ConvWeights, InputConvention, Vgg16Weights, VGG16_CONV_LAYERS};
    use rand::{Rng, SeedableRng};
    let mut g = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut uniform =
        |n: usize, scale: f64| -> Vec<f32> { (0..n).map(|_| g.random_range(-scale..=scale) as f32).collect() };
    let layers = VGG16_CONV_LAYERS
        .iter()
        .map(|&(name, cin, cout)| {
            let s = (6.0 / (cin as f64 * 9.0)).sqrt();
            let weight = uniform(cout * cin * 9, s);
            ConvWeights { name: name.to_string(), cin, cout, weight, bias: uniform(cout, 0.1) }
        })
        .collect();
    Vgg16Weights { layers, convention: InputConvention::Caffe, metadata: Default::default() }
}

/// FLOPs of one style iteration's convolutions, counted as `torch_baseline.py` does: forward and backward-data
/// of all 11 convs (2 FLOPs per multiply-add), no weight gradients. Losses, pools and Adam are not counted.
pub fn conv_flops_per_iteration(width: usize, height: usize) -> f64 {
    let couts: Vec<usize> = VGG16_CONV_LAYERS.iter().map(|l| l.2).collect();
    layer_shapes(&couts, height, width)
        .iter()
        .zip(VGG16_CONV_LAYERS.iter())
        .map(|(&(c, h, w), &(_, cin, _))| 2.0 * 2.0 * (cin * c * 9 * h * w) as f64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_floor_pooling() {
        let couts: Vec<usize> = neural_style_weights::VGG16_CONV_LAYERS.iter().map(|l| l.2).collect();
        let s = layer_shapes(&couts, 33, 17);
        assert_eq!(s[0], (64, 33, 17));
        assert_eq!(s[2], (128, 16, 8));
        assert_eq!(s[4], (256, 8, 4));
        assert_eq!(s[7], (512, 4, 2));
        assert_eq!(s[10], (512, 2, 1));
        assert!(check_size(16, 16).is_ok());
        assert!(matches!(check_size(15, 40), Err(Error::ImageTooSmall { min: 16, .. })));
    }

    #[test]
    fn largest_fitting_side_fits() {
        let limit = 128u64 << 20;
        let s = largest_fitting_side(1000, 500, limit, |_, _| 0);
        let bytes = |side: usize| 4 * Frame::new((side as f64 * 0.5).round() as usize, side).buffer_floats(64) as u64;
        assert!(bytes(s) <= limit);
        assert!(bytes(s + 1) > limit);
        // With a margin of 10 px the canvas must fit: a smaller image.
        let m = largest_fitting_side(1000, 500, limit, |_, _| 10);
        let canvas =
            |side: usize| 4 * Frame::new((side as f64 * 0.5).round() as usize + 20, side + 20).buffer_floats(64) as u64;
        assert!(canvas(m) <= limit && canvas(m + 1) > limit && m < s);
        assert_eq!(relu_index("relu4_2"), Some(8));
        assert_eq!(relu_index("relu5_2"), None);
    }
}

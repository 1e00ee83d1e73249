//! Guidance masks for spatial control (docs/MATHS.md, "Spatial control"): reading a mask image as weights in
//! [0, 1], resizing it to a job's size, and its weights at each relu layer (2x2 means at each pooling). Pure: the
//! GPU side is `kernels/mask_weight.wgsl` and the loss terms.

use std::path::Path;

use crate::canvas::Canvas;
use crate::error::{Error, Result};
use crate::image_io::{self, Resample};
use crate::plan::Shape;
use crate::planar::PlanarImage;

/// A greyscale mask: weights in [0, 1], row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

/// The masks of a job, at their files' own sizes (each scale resizes them to its images).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Masks {
    /// One per style image, over the output: where that style goes (empty: the styles are blended everywhere).
    pub style: Vec<Mask>,
    /// One per style image (empty: all of every style image): where in the style image its style is taken from.
    pub style_image: Vec<Option<Mask>>,
    /// Weights of the content loss over the output (None: 1 everywhere).
    pub content: Option<Mask>,
}

impl Masks {
    /// Whether the styles are painted per region (each style its own target, not blended).
    pub fn by_region(&self) -> bool {
        !self.style.is_empty()
    }

    /// Whether any mask is given.
    pub fn any(&self) -> bool {
        self.by_region() || self.content.is_some() || self.style_image.iter().any(Option::is_some)
    }

    /// The style images with their blend weights and their `--style-image-masks` masks at their sizes.
    pub fn with_style_images(&self, styles: &[PlanarImage], blend: &[f64]) -> Vec<(PlanarImage, f64, Option<Mask>)> {
        let image_mask = |k: usize, s: &PlanarImage| {
            self.style_image.get(k).cloned().flatten().map(|m| m.resized(s.width, s.height))
        };
        styles.iter().zip(blend).enumerate().map(|(k, (s, &b))| (s.clone(), b, image_mask(k, s))).collect()
    }

    /// The output's masks on `canvas` (resized to its image, reflected into its margin): each region's with its
    /// relative weight β_k = K·b_k (1 by default), and the content mask.
    pub fn on_canvas(&self, canvas: &Canvas, blend: &[f64]) -> (Vec<(Mask, f64)>, Option<Mask>) {
        let place = |m: &Mask| m.resized(canvas.width, canvas.height).on_canvas(canvas);
        let regions = self.style.iter().zip(blend).map(|(m, &b)| (place(m), b * blend.len() as f64)).collect();
        (regions, self.content.as_ref().map(place))
    }

    /// The mask counts against `styles` style images: a clear error when they do not match, and when every
    /// style's mask covers nothing. Returns the (1-based) styles whose mask covers nothing, for a warning.
    pub fn check(&self, styles: usize) -> Result<Vec<usize>> {
        let count = |what: &str, n: usize| {
            if n != styles {
                let s = if styles == 1 { "" } else { "s" };
                return Err(Error::InvalidOption(format!("{what} has {n} masks for {styles} style image{s}")));
            }
            Ok(())
        };
        if !self.style.is_empty() {
            count("--style-masks", self.style.len())?;
        }
        if !self.style_image.is_empty() {
            count("--style-image-masks", self.style_image.len())?;
            if self.style.is_empty() {
                return Err(Error::InvalidOption(
                    "--style-image-masks needs --style-masks (which region of the output each style paints)".into(),
                ));
            }
        }
        let empty: Vec<usize> =
            self.style.iter().enumerate().filter(|(_, m)| m.is_empty()).map(|(i, _)| i + 1).collect();
        if !self.style.is_empty() && empty.len() == self.style.len() {
            return Err(Error::InvalidOption(
                "every --style-masks mask is black: no region of the output gets a style".into(),
            ));
        }
        for (i, m) in self.style_image.iter().enumerate() {
            if m.as_ref().is_some_and(Mask::is_empty) {
                return Err(Error::InvalidOption(format!(
                    "--style-image-masks: the mask of style image {} is black (no part of it to take the style from)",
                    i + 1
                )));
            }
        }
        Ok(empty)
    }
}

impl Mask {
    /// A mask of `value` everywhere.
    pub fn uniform(width: usize, height: usize, value: f32) -> Self {
        Self { width, height, values: vec![value; width * height] }
    }

    /// Reads a mask image: the mean of R, G and B over 255 (white = 1, black = 0). Any failure is one line naming
    /// the file.
    pub fn load(path: &Path) -> Result<Self> {
        let image = image_io::load_image(path)?;
        let n = image.width * image.height;
        let values = (0..n)
            .map(|i| ((image.data[i] + image.data[n + i] + image.data[2 * n + i]) / (3.0 * 255.0)).clamp(0.0, 1.0))
            .collect();
        Ok(Self { width: image.width, height: image.height, values })
    }

    /// Whether every weight is zero.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(|&v| v == 0.0)
    }

    /// The mask at `width` x `height` (bilinear; the same mask when already that size). Stretched when the
    /// aspect ratio differs.
    pub fn resized(&self, width: usize, height: usize) -> Self {
        if (self.width, self.height) == (width, height) {
            return self.clone();
        }
        let values =
            image_io::resample_planes(&self.values, 1, (self.width, self.height), (width, height), Resample::Bilinear);
        Self { width, height, values: values.into_iter().map(|v| v.clamp(0.0, 1.0)).collect() }
    }

    /// The mask on a canvas (the margin reflected as the content image's is).
    pub fn on_canvas(&self, canvas: &Canvas) -> Self {
        let (width, height) = canvas.size();
        Self { width, height, values: canvas.pad(&self.values, 1) }
    }

    /// The weights at relu layer `layer` (`shape` its size on this mask's image): the 2x2 means at each pooling
    /// before it, rounding down like the pooling.
    pub fn at_layer(&self, layer: usize, shape: Shape) -> LayerWeights {
        let pools = crate::tiling::layer_stride(layer).trailing_zeros();
        let (mut w, mut h) = (self.width, self.height);
        let mut v: Vec<f64> = self.values.iter().map(|&x| f64::from(x)).collect();
        for _ in 0..pools {
            let (nw, nh) = (w / 2, h / 2);
            let mut next = vec![0.0; nw * nh];
            for y in 0..nh {
                for x in 0..nw {
                    let at = |dy: usize, dx: usize| v[(2 * y + dy) * w + 2 * x + dx];
                    next[y * nw + x] = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0;
                }
            }
            (v, w, h) = (next, nw, nh);
        }
        assert_eq!((w, h), (shape.width, shape.height), "mask pyramid vs the layer's shape");
        let weights: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        let sum = weights.iter().map(|&x| f64::from(x)).sum();
        LayerWeights { shape, weights, sum }
    }
}

impl Mask {
    /// A style image's mask (`--style-image-masks`, at the image's size) at relu `layer` of shape `shape`: None where
    /// it is 1 everywhere (the statistics are then the unmasked ones), an error where it covers nothing.
    pub fn image_layer(&self, layer: usize, shape: Shape) -> Result<Option<LayerWeights>> {
        let w = self.at_layer(layer, shape);
        if w.sum == 0.0 {
            return Err(Error::InvalidOption(format!(
                "a --style-image-masks mask covers nothing at {}: its white part is too small, or lies only in the \
                 last odd row or column that the poolings drop",
                crate::vgg::RELU_NAMES[layer]
            )));
        }
        Ok((!w.is_ones()).then_some(w))
    }
}

/// A mask's weights w_p at one relu layer, and S = Σ w_p (of the f32 weights the GPU reads).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeights {
    pub shape: Shape,
    pub weights: Vec<f32>,
    pub sum: f64,
}

impl LayerWeights {
    /// Whether w = 1 everywhere: the term is then computed exactly as without a mask.
    pub fn is_ones(&self) -> bool {
        self.weights.iter().all(|&w| w == 1.0)
    }

    /// The area fraction a = S / (H·W).
    pub fn area(&self) -> f64 {
        self.sum / (self.shape.width * self.shape.height) as f64
    }

    /// (w·H·W/S)^power at each position, framed as a one-channel tensor of the layer (what `mask_weight.wgsl`
    /// reads): power ½ for the Gram's input, 1 for the means'. S > 0.
    pub fn normalised(&self, power: f64) -> Vec<f32> {
        self.normalised_in(power, self.whole())
    }

    /// w^power at each position, framed (power 1 for the gradient, ½ for the content sum).
    pub fn raw(&self, power: f64) -> Vec<f32> {
        self.raw_in(power, self.whole())
    }

    /// As [`LayerWeights::normalised`] (H, W and S the whole layer's), on the positions of `block` only: its
    /// top-left position on this layer and its own layer shape (a tiled evaluation's block, whose buffers are its
    /// own size).
    pub fn normalised_in(&self, power: f64, block: ((usize, usize), Shape)) -> Vec<f32> {
        let scale = (self.shape.width * self.shape.height) as f64 / self.sum;
        self.framed(|w| (f64::from(w) * scale).powf(power) as f32, block)
    }

    /// As [`LayerWeights::raw`], on the positions of `block` only.
    pub fn raw_in(&self, power: f64, block: ((usize, usize), Shape)) -> Vec<f32> {
        self.framed(|w| f64::from(w).powf(power) as f32, block)
    }

    /// The whole layer as a block.
    fn whole(&self) -> ((usize, usize), Shape) {
        ((0, 0), self.shape)
    }

    fn framed(&self, f: impl Fn(f32) -> f32, ((x0, y0), shape): ((usize, usize), Shape)) -> Vec<f32> {
        assert!(x0 + shape.width <= self.shape.width && y0 + shape.height <= self.shape.height, "block in the layer");
        let row = |y: usize| &self.weights[(y0 + y) * self.shape.width + x0..][..shape.width];
        let dense: Vec<f32> = (0..shape.height).flat_map(|y| row(y).iter().map(|&w| f(w))).collect();
        shape.frame().frame(&dense, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(width: usize, height: usize) -> Shape {
        Shape { channels: 1, width, height }
    }

    #[test]
    fn layer_weights_are_2x2_means_per_pooling_rounding_down() {
        // 5x3: relu1_x sees the mask itself, relu2_1 (one pooling) 2x1 means of 2x2 windows, the odd column
        // and row dropped.
        let m = Mask {
            width: 5,
            height: 3,
            values: vec![1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 0.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0],
        };
        let l0 = m.at_layer(0, shape(5, 3));
        assert_eq!(l0.weights, m.values);
        let l2 = m.at_layer(2, shape(2, 1));
        assert_eq!(l2.weights, vec![0.25, 1.0]);
        assert_eq!(l2.sum, 1.25);
        assert!((l2.area() - 0.625).abs() < 1e-12);
    }

    #[test]
    fn ones_normalise_to_exactly_one_and_zero_weights_stay_zero() {
        let ones = Mask::uniform(32, 32, 1.0).at_layer(2, shape(16, 16));
        assert!(ones.is_ones());
        let framed = ones.normalised(0.5);
        let frame = ones.shape.frame();
        assert!((0..16).all(|y| (0..16).all(|x| framed[frame.index(0, y, x)] == 1.0)));
        let mut half = Mask::uniform(4, 2, 1.0);
        half.values[..4].fill(0.0);
        let w = half.at_layer(0, shape(4, 2));
        // S = 4 of 8 positions: w·HW/S = 2 where covered, its square root √2.
        let sqrt = w.normalised(0.5);
        let frame = w.shape.frame();
        assert_eq!(sqrt[frame.index(0, 0, 0)], 0.0);
        assert_eq!(sqrt[frame.index(0, 1, 3)], std::f32::consts::SQRT_2);
        assert_eq!(w.normalised(1.0)[frame.index(0, 1, 0)], 2.0);
    }

    #[test]
    fn counts_and_empty_masks_are_checked() {
        let white = Mask::uniform(4, 4, 1.0);
        let black = Mask::uniform(4, 4, 0.0);
        let masks = Masks { style: vec![white.clone(), black.clone()], ..Default::default() };
        assert_eq!(masks.check(2).unwrap(), vec![2]);
        assert!(masks.check(3).unwrap_err().to_string().contains("2 masks for 3 style images"));
        let all_black = Masks { style: vec![black.clone()], ..Default::default() };
        assert!(all_black.check(1).unwrap_err().to_string().contains("black"));
        let image_only = Masks { style_image: vec![Some(white)], ..Default::default() };
        assert!(image_only.check(1).unwrap_err().to_string().contains("needs --style-masks"));
    }
}

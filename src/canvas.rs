//! The canvas a painting is optimised on: the image plus a margin of free pixels on every side, cropped away at
//! the end (docs/MATHS.md, "Edges: the margin"). The convs' zero padding shows the network an edge around
//! whatever it is given; with a margin that edge, and the frame the style loss paints along it, lie outside the
//! picture.

use crate::error::{Error, Result};

/// An image of `width` x `height` inside a canvas `margin` px wider on every side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub margin: usize,
}

impl Canvas {
    /// The margin is filled by reflecting the image about its edge rows and columns, so it must be smaller than
    /// both sides.
    pub fn new(width: usize, height: usize, margin: usize) -> Result<Canvas> {
        if margin > 0 && (margin >= width || margin >= height) {
            return Err(Error::InvalidOption(format!(
                "--margin {margin} must be smaller than both sides of the image ({width}x{height} px at this scale)"
            )));
        }
        Ok(Canvas { width, height, margin })
    }

    /// (width, height) of the canvas.
    pub fn size(&self) -> (usize, usize) {
        (self.width + 2 * self.margin, self.height + 2 * self.margin)
    }

    /// `planes` (`channels` dense planes of the image's size) on the canvas, the margin filled by reflection
    /// about the edge pixels, which are not repeated (numpy's "reflect"): canvas column −i is image column i.
    pub fn pad(&self, planes: &[f32], channels: usize) -> Vec<f32> {
        let (w, h, m) = (self.width, self.height, self.margin);
        assert_eq!(planes.len(), channels * w * h, "Canvas::pad: planes of the image's size");
        if m == 0 {
            return planes.to_vec();
        }
        let (cw, ch) = self.size();
        let reflect = |i: usize, n: usize| -> usize {
            // i is a canvas index; i - m is the image index, reflected into 0..n.
            let k = i as isize - m as isize;
            let k = if k < 0 { -k } else { k };
            let last = n as isize - 1;
            (if k > last { 2 * last - k } else { k }) as usize
        };
        let cols: Vec<usize> = (0..cw).map(|x| reflect(x, w)).collect();
        let mut out = Vec::with_capacity(channels * cw * ch);
        for plane in planes.chunks_exact(w * h) {
            for y in 0..ch {
                let row = &plane[reflect(y, h) * w..][..w];
                out.extend(cols.iter().map(|&x| row[x]));
            }
        }
        out
    }

    /// The image's part of `planes` (`channels` dense planes of the canvas's size).
    pub fn crop(&self, planes: &[f32], channels: usize) -> Vec<f32> {
        let (w, h, m) = (self.width, self.height, self.margin);
        let (cw, ch) = self.size();
        assert_eq!(planes.len(), channels * cw * ch, "Canvas::crop: planes of the canvas's size");
        if m == 0 {
            return planes.to_vec();
        }
        let mut out = Vec::with_capacity(channels * w * h);
        for plane in planes.chunks_exact(cw * ch) {
            for y in m..m + h {
                out.extend_from_slice(&plane[y * cw + m..][..w]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_reflects_the_image_about_its_edge_pixels_and_the_crop_gives_the_image_back() {
        // 4x3 image, one channel, values 10·row + column; margin 2.
        let c = Canvas::new(4, 3, 2).unwrap();
        assert_eq!(c.size(), (8, 7));
        let img: Vec<f32> = (0..3).flat_map(|y| (0..4).map(move |x| (10 * y + x) as f32)).collect();
        let padded = c.pad(&img, 1);
        let row = |y: usize| padded[y * 8..][..8].to_vec();
        // Canvas rows 0..7 are image rows 2,1,0,1,2,1,0; columns 0..8 are image columns 2,1,0,1,2,3,2,1.
        assert_eq!(row(0), vec![22.0, 21.0, 20.0, 21.0, 22.0, 23.0, 22.0, 21.0]);
        assert_eq!(row(2), vec![2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
        assert_eq!(row(6), vec![2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
        assert_eq!(row(5), vec![12.0, 11.0, 10.0, 11.0, 12.0, 13.0, 12.0, 11.0]);
        assert_eq!(c.crop(&padded, 1), img);
        // Three channels: each plane on its own.
        let three: Vec<f32> = (0..3).flat_map(|k| img.iter().map(move |v| v + 100.0 * k as f32)).collect();
        let p3 = c.pad(&three, 3);
        assert_eq!(p3.len(), 3 * 8 * 7);
        assert_eq!(&p3[2 * 56..][..8], &row(0).iter().map(|v| v + 200.0).collect::<Vec<_>>()[..]);
        assert_eq!(c.crop(&p3, 3), three);
    }

    #[test]
    fn the_default_margin_is_a_32nd_of_the_longest_side_at_least_8_and_less_than_the_shorter() {
        use crate::defaults::margin;
        assert_eq!(margin(128, 85), 8);
        assert_eq!(margin(256, 170), 8);
        assert_eq!(margin(257, 170), 9);
        assert_eq!(margin(340, 512), 16);
        assert_eq!(margin(1024, 683), 32);
        assert_eq!(margin(16, 16), 8);
        // A long thin image: the reflection needs the margin under the shorter side.
        assert_eq!(margin(4096, 20), 19);
        for (w, h) in [(16, 16), (4096, 20), (20, 3000), (512, 340)] {
            assert!(Canvas::new(w, h, margin(w, h)).is_ok());
        }
    }

    #[test]
    fn no_margin_is_the_image_itself_and_a_margin_as_wide_as_a_side_is_refused() {
        let c = Canvas::new(5, 4, 0).unwrap();
        let img: Vec<f32> = (0..20).map(|v| v as f32).collect();
        assert_eq!(c.size(), (5, 4));
        assert_eq!(c.pad(&img, 1), img);
        assert_eq!(c.crop(&img, 1), img);
        assert!(Canvas::new(16, 20, 15).is_ok());
        let e = Canvas::new(16, 20, 16).unwrap_err().to_string();
        assert!(e.contains("--margin 16 must be smaller than both sides"), "{e}");
    }
}

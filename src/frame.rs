//! How every image-shaped tensor lies in its GPU buffer: CHW, each channel's H x W pixels inside a zero
//! *frame*, so that the 3x3 convolutions read their taps without a single bounds check.
//!
//! ```text
//!            stride S = max(round8(W), round4(W + 1)) floats per row
//!   row 0    0 0 0 0 0 0 0 0 0 0 0 0        border row (zeros)
//!   row 1    p p p p p p p p p p 0 0        data row 0 (W pixels), then zero columns
//!   …
//!   row H    p p p p p p p p p p 0 0        data row H - 1
//!   row H+1  0 0 0 0 0 0 0 0 0 0 0 0        border row, then zero rows up to round4(H) + 2
//! ```
//!
//! A buffer holds [`Frame::HEAD`] zero floats, then the channel planes one after another, then
//! [`Frame::TAIL`] zero floats. The left neighbour of a row's first pixel is the previous row's last column
//! (a zero), the rows above and below the image are zero rows, and the head and tail keep the first and last
//! planes' neighbours inside the buffer; rows are whole vec4s (S is a multiple of 4) and padded to whole
//! 8-pixel chunks; the rows per plane are a multiple of 4 plus the two borders, so a kernel working on bands
//! of 4 rows never leaves the plane.
//!
//! The invariant every kernel keeps: **nothing but zeros is ever written outside the data pixels.** Buffers
//! start zeroed and the plan shares a buffer only between tensors of the same frame
//! ([`crate::plan`]), so the frame of every tensor is zero without any kernel clearing it.

/// The frame of an H x W image (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    pub height: usize,
    pub width: usize,
    /// Floats per row.
    pub stride: usize,
    /// Rows per channel plane, borders included.
    pub rows: usize,
}

impl Frame {
    /// Zero floats before the first plane (the kernels' `HEAD` constant).
    pub const HEAD: usize = 4;
    /// Zero floats after the last plane.
    pub const TAIL: usize = 4;

    pub fn new(height: usize, width: usize) -> Self {
        let stride = width.next_multiple_of(8).max((width + 1).next_multiple_of(4));
        Self { height, width, stride, rows: height.next_multiple_of(4) + 2 }
    }

    /// Floats per channel plane.
    pub fn plane(&self) -> usize {
        self.rows * self.stride
    }

    /// Floats of a buffer holding `channels` planes.
    pub fn buffer_floats(&self, channels: usize) -> usize {
        Self::HEAD + channels * self.plane() + Self::TAIL
    }

    /// Index in the buffer of pixel (row `y`, column `x`) of channel `c`.
    pub fn index(&self, c: usize, y: usize, x: usize) -> usize {
        debug_assert!(y < self.height && x < self.width);
        Self::HEAD + c * self.plane() + (y + 1) * self.stride + x
    }

    /// Whether buffer index `i` is a data pixel (of any channel).
    pub fn is_data(&self, i: usize) -> bool {
        if i < Self::HEAD {
            return false;
        }
        let r = (i - Self::HEAD) % self.plane();
        let (row, col) = (r / self.stride, r % self.stride);
        (1..=self.height).contains(&row) && col < self.width
    }

    /// Dense CHW (`channels` x H x W) → a framed buffer's contents.
    pub fn frame(&self, dense: &[f32], channels: usize) -> Vec<f32> {
        assert_eq!(dense.len(), channels * self.height * self.width, "frame: dense length");
        let mut out = vec![0.0; self.buffer_floats(channels)];
        for c in 0..channels {
            for y in 0..self.height {
                let src = &dense[(c * self.height + y) * self.width..][..self.width];
                let at = self.index(c, y, 0);
                out[at..at + self.width].copy_from_slice(src);
            }
        }
        out
    }

    /// A framed buffer's contents (at least `channels` planes) → dense CHW.
    pub fn unframe(&self, framed: &[f32], channels: usize) -> Vec<f32> {
        self.unframe_inset(framed, channels, 0)
    }

    /// As [`Frame::unframe`], only the pixels at least `inset` from every side: (H − 2·inset) x (W − 2·inset)
    /// per channel (a painting's image inside its canvas, [`crate::canvas`]), in one copy.
    pub fn unframe_inset(&self, framed: &[f32], channels: usize, inset: usize) -> Vec<f32> {
        let (h, w) = (self.height - 2 * inset, self.width - 2 * inset);
        let mut out = Vec::with_capacity(channels * h * w);
        for c in 0..channels {
            for y in inset..inset + h {
                let at = self.index(c, y, inset);
                out.extend_from_slice(&framed[at..at + w]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_whole_vec4s_and_chunks_and_keep_a_zero_column() {
        for w in 1..100 {
            let f = Frame::new(7, w);
            assert_eq!(f.stride % 4, 0, "{w}");
            assert!(f.stride > w, "{w}: the left neighbour of column 0 is the previous row's padding");
            assert!(f.stride >= w.next_multiple_of(8), "{w}: whole 8-pixel chunks");
            assert!(f.stride <= w + 8);
        }
        assert_eq!(Frame::new(16, 16).stride, 20);
        assert_eq!(Frame::new(13, 9).stride, 16);
        assert_eq!(Frame::new(13, 9).rows, 18);
        assert_eq!(Frame::new(16, 9).rows, 18);
    }

    #[test]
    fn frame_and_unframe_round_trip_and_only_data_is_set() {
        let f = Frame::new(5, 7);
        let dense: Vec<f32> = (0..2 * 5 * 7).map(|i| i as f32 + 1.0).collect();
        let framed = f.frame(&dense, 2);
        assert_eq!(framed.len(), f.buffer_floats(2));
        assert_eq!(f.unframe(&framed, 2), dense);
        let data = framed.iter().enumerate().filter(|&(i, _)| f.is_data(i)).count();
        assert_eq!(data, dense.len());
        assert!(framed.iter().enumerate().all(|(i, &v)| f.is_data(i) == (v != 0.0)));
        assert_eq!(framed[f.index(1, 4, 6)], dense.last().copied().unwrap());
        // The pixels 2 in from every side: rows 2..3 and columns 2..5 of each channel.
        let d = &dense;
        let inner: Vec<f32> =
            (0..2).flat_map(|c| (2..3).flat_map(move |y| (2..5).map(move |x| d[(c * 5 + y) * 7 + x]))).collect();
        assert_eq!(f.unframe_inset(&framed, 2, 2), inner);
    }
}

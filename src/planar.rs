//! A planar (CHW) RGB float image: the host-side currency between image I/O and the engine.

/// RGB image stored plane by plane (all R, then all G, then all B), values in pixel units (0–255).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanarImage {
    pub width: usize,
    pub height: usize,
    /// `3 * height * width` values, CHW order.
    pub data: Vec<f32>,
}

impl PlanarImage {
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), 3 * width * height, "PlanarImage: data length must be 3*H*W");
        Self { width, height, data }
    }

    pub fn zeros(width: usize, height: usize) -> Self {
        Self::new(width, height, vec![0.0; 3 * width * height])
    }

    /// Value of channel `c` at row `y`, column `x`.
    pub fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.height + y) * self.width + x]
    }

    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.width * self.height;
        &self.data[c * n..(c + 1) * n]
    }
}

//! One error type for the library: every failure a user can cause or meet has a readable one-line message.

use neural_style_weights::WeightsError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter found{0}")]
    NoAdapter(String),
    #[error("could not open the GPU device on {adapter}: {reason}")]
    DeviceRequest { adapter: String, reason: String },
    #[error("GPU out of memory{0}")]
    OutOfMemory(String),
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    #[error("GPU validation error (a bug in neural-style, please report it): {0}")]
    Validation(String),
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error(
        "the loss is not finite ({0}): the run diverged or the GPU computed garbage; try a smaller --learning-rate, \
         --precision f32, or `neural-style selftest` to check this GPU"
    )]
    NotFinite(String),
    #[error("image is {width}x{height} px; the network needs both sides >= {min} px to reach relu5_1")]
    ImageTooSmall { width: usize, height: usize, min: usize },
    #[error("{0}")]
    InvalidOption(String),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{0}")]
    Image(String),
    #[error("{0}")]
    Io(String),
    /// A stop request honoured inside an iteration (between the blocks of a tiled evaluation): its update was not
    /// made. The job ends as after a stop between iterations.
    #[error("stopped before the iteration's update")]
    Stopped,
}

/// Collapses a message to one line (every error the user sees is one line).
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

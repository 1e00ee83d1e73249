//! neural-style: Gatys et al. neural style transfer on a from-scratch wgpu/WGSL compute engine.
//!
//! Data flows one way: image → plan → kernels → losses → optimiser.
//! - [`image_io`], [`planar`]: decoding, resizing and atomic writing of images; the planar float image; [`colour`]:
//!   embedded ICC profiles converted to and from sRGB (docs/COLOUR.md).
//! - [`vgg`]: the VGG16 architecture (layer names, shapes, size rules); [`weights`]: the weights file reader.
//! - [`plan`]: the network's plan for one image size (steps, tensors, liveness, buffer reuse), pure; [`frame`]:
//!   how an image-shaped tensor lies in its buffer (a zero frame around each channel, so convs need no bounds checks).
//! - [`network`]: the weights on the GPU and a plan made real (buffers, forward and backward dispatches).
//! - [`kernels`]: one thin host wrapper per WGSL kernel in `kernels/`, the WGSL composition and the choice of
//!   variant; [`gpu`]: the wgpu context (adapter choice, limits, typed errors, pipelines from WGSL source).
//! - [`loss_terms`]: the content, style and TV terms; [`optim`]: the optimiser on the image.
//! - [`stylizer`]: one style problem at one size on the GPU: build a [`Stylizer`], step it, read the image.
//! - [`tiling`], [`tiled`]: exact tiled evaluation (blocks with margins, statistics summed over blocks) for images
//!   beyond one evaluation's memory: the geometry (pure) and the blocks on the GPU.
//! - [`canvas`]: the image inside the optimised canvas (a margin that keeps the zero padding's edge out of the
//!   picture).
//! - [`job`]: the whole painting (scales, hand-over between them, caps, averaging) reported to an observer;
//!   [`defaults`]: every default in one place.
//! - [`verify`]: the f64 CPU reference and the GPU-vs-reference checks, family by family, that the tests and
//!   `neural-style selftest` share; production code never imports them. [`selftest`], [`bench`]: the self-test
//!   and the benchmarks.

pub mod bench;
pub mod canvas;
pub mod colour;
pub mod defaults;
pub mod error;
pub mod first_use;
pub mod flow;
pub mod frame;
pub mod gaussian;
pub mod gpu;
pub mod image_io;
pub mod job;
pub mod kernels;
pub mod layout;
pub mod loss_terms;
pub mod masks;
pub mod network;
pub mod optim;
pub mod plan;
pub mod planar;
pub mod schedule;
pub mod selftest;
pub mod setup_stage;
pub mod stylizer;
pub mod submission;
pub mod tensor;
pub mod tiled;
pub mod tiling;
pub mod verify;
pub mod vgg;
pub mod video;

/// The weights format and its reader (crate `neural-style-weights`, in `weights/`).
pub use neural_style_weights as weights;

pub use error::{Error, Result};
pub use loss_terms::Losses;
pub use planar::PlanarImage;
pub use stylizer::{Init, Optimizer, Pooling, Precision, SetupStage, StyleLoss, StyleOptions, Stylizer};

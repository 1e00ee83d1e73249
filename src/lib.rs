//! neural-style: Gatys et al. neural style transfer on a from-scratch wgpu/WGSL compute engine.
//!
//! Layout:
//! - [`gpu`]: the wgpu context (adapter choice, limits, typed errors) and the pipeline cache.
//! - [`kernels`]: one thin host wrapper per WGSL kernel in `kernels/*.wgsl`.
//! - [`reference`]: plain CPU (f64-accumulating) implementations the tests compare against.
//! - [`vgg`]: the VGG16 graph (conv1_1 … conv5_1) and its forward/backward executor.
//! - [`stylizer`]: the library API: build a [`stylizer::Stylizer`], step it, read the image and losses.
//! - [`weights`]: the safetensors weights format, loader and converter core.
//! - [`image_io`]: decoding, preprocessing and atomic writing of images.

pub mod bench;
pub mod conformance;
pub mod dispatch;
pub mod error;
pub mod gpu;
pub mod image_io;
pub mod kernels;
pub mod planar;
pub mod reference;
pub mod selftest;
pub mod stylizer;
pub mod vgg;
pub mod weights;

pub use error::{Error, Result};
pub use planar::PlanarImage;
pub use stylizer::{Init, Losses, Pooling, StyleOptions, Stylizer};

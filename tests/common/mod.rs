//! Shared by the GPU test binaries: one device per binary, seeded data, and the conformance comparison (mixed
//! abs/rel tolerance naming the first failing index).
#![allow(dead_code)]

use std::sync::OnceLock;

// Each test binary uses its own part of these.
use neural_style::gpu::{GpuContext, GpuOptions};
#[allow(unused_imports)]
pub use neural_style::{
    verify::network::{random_image, ref_net},
    verify::{random, rms, rng, to_f32, to_f64},
    vgg::random_weights as random_vgg,
};

/// The adapter the suite runs on: `$NEURAL_STYLE_ADAPTER` or the best one. No adapter is a hard failure, never
/// a skip: CI must have lavapipe.
pub fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let c = GpuContext::new(&GpuOptions::default())
            .unwrap_or_else(|e| panic!("tests need a GPU adapter (install mesa-vulkan-drivers): {e}"));
        eprintln!("testing on {} ({:?})", c.adapter_name(), c.info.backend);
        c
    })
}

/// A second device on the same adapter whose kernel variants are chosen as for a discrete GPU: the GPU kernels
/// (workgroup-tiled GEMMs, the narrow backward) run whole networks on lavapipe too.
pub fn ctx_gpu_kernels() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let opts = GpuOptions { kernels_for: Some(wgpu::DeviceType::DiscreteGpu), ..Default::default() };
        GpuContext::new(&opts).unwrap_or_else(|e| panic!("tests need a GPU adapter: {e}"))
    })
}

/// Panics with the conformance message unless every |gpu − ref| ≤ rtol · (|ref| + rms(ref)).
pub fn assert_close(what: &str, gpu: &[f32], reference: &[f64], rtol: f64) -> f64 {
    neural_style::verify::compare(what, gpu, reference, rtol).unwrap_or_else(|e| panic!("{e}"))
}

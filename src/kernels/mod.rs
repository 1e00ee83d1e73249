//! The kernels: one thin host wrapper per WGSL kernel in `kernels/`, the WGSL each one is composed of, and the
//! choice of variant and tiling.
//!
//! - WGSL: every kernel has its own file in `kernels/` (its parameters, bindings and what is specific to it);
//!   what several kernels share lives once in `kernels/shared/` (the tiled GEMM core, the im2col operands of a
//!   3x3 conv, the elementwise entry point, the workgroup sum, the pooling indexing) and is appended on the
//!   host ([`shader`]). WGSL has no include; the composition is plain concatenation.
//! - Variants: each wrapper picks its WGSL variant and tiling with a pure function of the shape and the
//!   [`AdapterFacts`] (unit-tested without a GPU), e.g. [`conv::backward_variant`].
//! - Wrappers build [`Dispatch`]es (pipeline, uniform, bind group, grid) once per plan; the plan records them
//!   every iteration.
//!
//! Binding convention in every kernel: binding 0 is the uniform `params`, bindings 1.. are the storage buffers in
//! the order the wrapper's arguments list them.

pub mod adam;
pub mod affine;
pub mod conv;
pub mod gram;
pub mod grid;
pub mod loss;
pub mod peak;
pub mod pool;

pub use crate::gpu::Dispatch;
use crate::gpu::{GpuContext, Shader};

/// The pieces in `kernels/shared/`.
mod shared {
    pub const GEMM_TILED: &str = include_str!("../../kernels/shared/gemm_tiled.wgsl");
    pub const CONV3X3_IM2COL: &str = include_str!("../../kernels/shared/conv3x3_im2col.wgsl");
    pub const ELEMENTWISE: &str = include_str!("../../kernels/shared/elementwise.wgsl");
    pub const WORKGROUP_SUM: &str = include_str!("../../kernels/shared/workgroup_sum.wgsl");
    pub const POOL2X2: &str = include_str!("../../kernels/shared/pool2x2.wgsl");
}

/// Each kernel: its name (the file stem in `kernels/`), its own WGSL, and the shared pieces appended to it.
const KERNELS: &[(&str, &str, &[&str])] = {
    use shared::*;
    &[
        ("adam", include_str!("../../kernels/adam.wgsl"), &[ELEMENTWISE]),
        ("avgpool2x2", include_str!("../../kernels/avgpool2x2.wgsl"), &[POOL2X2, ELEMENTWISE]),
        ("avgpool2x2_backward", include_str!("../../kernels/avgpool2x2_backward.wgsl"), &[POOL2X2, ELEMENTWISE]),
        ("channel_affine", include_str!("../../kernels/channel_affine.wgsl"), &[ELEMENTWISE]),
        ("content_grad", include_str!("../../kernels/content_grad.wgsl"), &[ELEMENTWISE]),
        ("conv3x3", include_str!("../../kernels/conv3x3.wgsl"), &[CONV3X3_IM2COL, GEMM_TILED]),
        (
            "conv3x3_backward_data",
            include_str!("../../kernels/conv3x3_backward_data.wgsl"),
            &[CONV3X3_IM2COL, GEMM_TILED],
        ),
        ("conv3x3_backward_data_narrow", include_str!("../../kernels/conv3x3_backward_data_narrow.wgsl"), &[]),
        ("gram", include_str!("../../kernels/gram.wgsl"), &[GEMM_TILED]),
        ("gram_reduce", include_str!("../../kernels/gram_reduce.wgsl"), &[ELEMENTWISE]),
        ("maxpool2x2", include_str!("../../kernels/maxpool2x2.wgsl"), &[POOL2X2, ELEMENTWISE]),
        ("maxpool2x2_backward", include_str!("../../kernels/maxpool2x2_backward.wgsl"), &[POOL2X2, ELEMENTWISE]),
        ("peak_copy", include_str!("../../kernels/peak_copy.wgsl"), &[ELEMENTWISE]),
        ("peak_fma", include_str!("../../kernels/peak_fma.wgsl"), &[ELEMENTWISE]),
        ("reduce_sum", include_str!("../../kernels/reduce_sum.wgsl"), &[WORKGROUP_SUM]),
        ("sq_diff_sum", include_str!("../../kernels/sq_diff_sum.wgsl"), &[WORKGROUP_SUM]),
        ("style_grad", include_str!("../../kernels/style_grad.wgsl"), &[GEMM_TILED]),
        ("tv_loss_grad", include_str!("../../kernels/tv_loss_grad.wgsl"), &[WORKGROUP_SUM]),
    ]
};

/// Names of all kernels.
pub fn names() -> impl Iterator<Item = &'static str> {
    KERNELS.iter().map(|k| k.0)
}

/// The composed WGSL of kernel `name`: its own file, then the shared pieces it names. `None` for an unknown
/// name.
pub fn source(name: &str) -> Option<String> {
    let (_, own, pieces) = KERNELS.iter().find(|k| k.0 == name)?;
    let mut s = String::from(*own);
    for p in *pieces {
        s.push('\n');
        s.push_str(p);
    }
    Some(s)
}

/// The [`Shader`] of kernel `name` (a name from [`names`]; anything else is a bug in a wrapper).
pub fn shader(name: &'static str) -> Shader {
    Shader::new(name, source(name).unwrap_or_else(|| panic!("no kernel named {name}")))
}

/// What the variant choices may depend on, read off the adapter once. Plain data, so every choice is a pure
/// function tested without a GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterFacts {
    pub device_type: wgpu::DeviceType,
    pub backend: wgpu::Backend,
    pub f16: bool,
    pub subgroups: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// Whether modules may skip naga's runtime checks (the driver bounds every access itself).
    pub trusted_modules: bool,
    pub max_workgroups_per_dim: u32,
    pub max_workgroup_storage: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_storage_binding: u64,
}

impl AdapterFacts {
    pub fn of(ctx: &GpuContext) -> Self {
        Self {
            device_type: ctx.info.device_type,
            backend: ctx.info.backend,
            f16: ctx.features.contains(wgpu::Features::SHADER_F16),
            subgroups: ctx.features.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: ctx.info.subgroup_min_size,
            subgroup_max_size: ctx.info.subgroup_max_size,
            trusted_modules: ctx.trusts_modules(),
            max_workgroups_per_dim: ctx.limits.max_compute_workgroups_per_dimension.min(grid::MAX_GROUPS_PER_DIM),
            max_workgroup_storage: ctx.limits.max_compute_workgroup_storage_size,
            max_invocations_per_workgroup: ctx.limits.max_compute_invocations_per_workgroup,
            max_storage_binding: ctx.limits.max_storage_buffer_binding_size,
        }
    }

    /// A discrete GPU with WebGPU's default limits, for tests of the choices.
    pub fn example_gpu() -> Self {
        Self {
            device_type: wgpu::DeviceType::DiscreteGpu,
            backend: wgpu::Backend::Vulkan,
            f16: true,
            subgroups: true,
            subgroup_min_size: 32,
            subgroup_max_size: 32,
            trusted_modules: true,
            max_workgroups_per_dim: grid::MAX_GROUPS_PER_DIM,
            max_workgroup_storage: 48 << 10,
            max_invocations_per_workgroup: 1024,
            max_storage_binding: 2 << 30,
        }
    }

    /// lavapipe as measured on the development machine (Mesa 22.3, 2 cores), for tests of the choices.
    pub fn example_lavapipe() -> Self {
        Self {
            device_type: wgpu::DeviceType::Cpu,
            subgroup_min_size: 8,
            subgroup_max_size: 8,
            max_workgroup_storage: 32 << 10,
            max_storage_binding: 128 << 20,
            ..Self::example_gpu()
        }
    }
}

/// Max workgroups per grid dimension on this device (never above WebGPU's 65,535).
pub(crate) fn max_dim(ctx: &GpuContext) -> u32 {
    ctx.limits.max_compute_workgroups_per_dimension.min(grid::MAX_GROUPS_PER_DIM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_composes_to_one_entry_point() {
        for name in names() {
            let s = source(name).unwrap();
            assert_eq!(s.matches("@compute").count(), 1, "{name}: one entry point");
            assert_eq!(s.matches("fn main(").count(), 1, "{name}");
        }
        assert!(source("no_such_kernel").is_none());
    }

    /// Parses and validates every composed kernel with naga and writes SPIR-V, as wgpu would: a WGSL error shows
    /// here, on any machine, before any adapter compiles it.
    #[test]
    fn every_kernel_validates_with_naga() {
        for name in names() {
            let src = source(name).unwrap();
            let module =
                naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
            let caps = naga::valid::Capabilities::all();
            let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                .validate(&module)
                .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
            let opts = naga::back::spv::Options { lang_version: (1, 3), ..Default::default() };
            naga::back::spv::write_vec(&module, &info, &opts, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn every_kernel_file_is_registered() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "wgsl") {
                let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
                assert!(names().any(|n| n == stem), "kernels/{stem}.wgsl is not in KERNELS");
            }
        }
    }
}

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
pub mod average;
pub mod conv;
pub mod coop;
pub mod frame;
pub mod gram;
pub mod grid;
pub mod loss;
pub mod peak;
pub mod pool;
pub mod vector;
pub mod w2;

pub use crate::gpu::Dispatch;
use crate::gpu::{GpuContext, Shader};

/// The pieces in `kernels/shared/`.
mod shared {
    pub const GEMM_TILED: &str = include_str!("../../kernels/shared/gemm_tiled.wgsl");
    pub const CONV3X3_IM2COL: &str = include_str!("../../kernels/shared/conv3x3_im2col.wgsl");
    pub const ELEMENTWISE: &str = include_str!("../../kernels/shared/elementwise.wgsl");
    pub const WORKGROUP_SUM: &str = include_str!("../../kernels/shared/workgroup_sum.wgsl");
    pub const MATMUL_PARAMS: &str = include_str!("../../kernels/shared/matmul_params.wgsl");
    pub const PARTIAL_SUMS: &str = include_str!("../../kernels/shared/partial_sums.wgsl");
    pub const POOL2X2: &str = include_str!("../../kernels/shared/pool2x2.wgsl");
    /// A template (see [`super::coop`]).
    pub const GEMM_COOP: &str = include_str!("../../kernels/shared/gemm_coop.wgsl");
}

/// Each kernel: its name (the file stem in `kernels/`), its own WGSL, and the shared pieces appended to it.
const KERNELS: &[(&str, &str, &[&str])] = {
    use shared::*;
    &[
        ("adam", include_str!("../../kernels/adam.wgsl"), &[ELEMENTWISE]),
        ("axpy_slots", include_str!("../../kernels/axpy_slots.wgsl"), &[ELEMENTWISE]),
        ("avgpool2x2", include_str!("../../kernels/avgpool2x2.wgsl"), &[POOL2X2, ELEMENTWISE]),
        ("avgpool2x2_backward", include_str!("../../kernels/avgpool2x2_backward.wgsl"), &[POOL2X2, ELEMENTWISE]),
        ("channel_affine", include_str!("../../kernels/channel_affine.wgsl"), &[ELEMENTWISE]),
        ("channel_bias_grad", include_str!("../../kernels/channel_bias_grad.wgsl"), &[ELEMENTWISE]),
        ("channel_mean", include_str!("../../kernels/channel_mean.wgsl"), &[WORKGROUP_SUM]),
        ("content_grad", include_str!("../../kernels/content_grad.wgsl"), &[ELEMENTWISE]),
        ("conv3x3", include_str!("../../kernels/conv3x3.wgsl"), &[CONV3X3_IM2COL, GEMM_TILED]),
        (
            "conv3x3_backward_data",
            include_str!("../../kernels/conv3x3_backward_data.wgsl"),
            &[CONV3X3_IM2COL, GEMM_TILED],
        ),
        ("conv3x3_backward_data_narrow", include_str!("../../kernels/conv3x3_backward_data_narrow.wgsl"), &[]),
        ("dot_sum", include_str!("../../kernels/dot_sum.wgsl"), &[PARTIAL_SUMS, WORKGROUP_SUM]),
        ("frame_clear", include_str!("../../kernels/frame_clear.wgsl"), &[ELEMENTWISE]),
        ("gram", include_str!("../../kernels/gram.wgsl"), &[GEMM_TILED]),
        ("image_average", include_str!("../../kernels/image_average.wgsl"), &[ELEMENTWISE]),
        ("gram_reduce", include_str!("../../kernels/gram_reduce.wgsl"), &[ELEMENTWISE]),
        ("matmul", include_str!("../../kernels/matmul.wgsl"), &[MATMUL_PARAMS, GEMM_TILED]),
        ("matmul_cpu", include_str!("../../kernels/matmul_cpu.wgsl"), &[MATMUL_PARAMS]),
        ("max_abs", include_str!("../../kernels/max_abs.wgsl"), &[]),
        ("maxpool2x2", include_str!("../../kernels/maxpool2x2.wgsl"), &[POOL2X2, ELEMENTWISE]),
        ("maxpool2x2_backward", include_str!("../../kernels/maxpool2x2_backward.wgsl"), &[POOL2X2, ELEMENTWISE]),
        ("peak_copy", include_str!("../../kernels/peak_copy.wgsl"), &[ELEMENTWISE]),
        ("peak_fma", include_str!("../../kernels/peak_fma.wgsl"), &[ELEMENTWISE]),
        ("reduce_sum", include_str!("../../kernels/reduce_sum.wgsl"), &[WORKGROUP_SUM]),
        ("sq_diff_sum", include_str!("../../kernels/sq_diff_sum.wgsl"), &[PARTIAL_SUMS, WORKGROUP_SUM]),
        ("sqrtm_start", include_str!("../../kernels/sqrtm_start.wgsl"), &[ELEMENTWISE]),
        ("style_grad", include_str!("../../kernels/style_grad.wgsl"), &[GEMM_TILED]),
        ("tv_loss_grad", include_str!("../../kernels/tv_loss_grad.wgsl"), &[WORKGROUP_SUM]),
        ("w2_covariance", include_str!("../../kernels/w2_covariance.wgsl"), &[ELEMENTWISE]),
        ("w2_loss", include_str!("../../kernels/w2_loss.wgsl"), &[WORKGROUP_SUM]),
        ("w2_mean_grad", include_str!("../../kernels/w2_mean_grad.wgsl"), &[ELEMENTWISE]),
        ("zero_u32", include_str!("../../kernels/zero_u32.wgsl"), &[ELEMENTWISE]),
    ]
};

/// Kernels whose WGSL is a template (minijinja), rendered with the parameters of a variant: the register
/// blocks of the CPU-adapter kernels are unrolled by the template, so the compiler sees straight-line code.
const TEMPLATES: &[(&str, &str)] = &[
    ("conv3x3_cpu", include_str!("../../kernels/conv3x3_cpu.wgsl")),
    ("gram_cpu", include_str!("../../kernels/gram_cpu.wgsl")),
    ("style_grad_cpu", include_str!("../../kernels/style_grad_cpu.wgsl")),
];

/// Names of all kernels (plain and templates).
pub fn names() -> impl Iterator<Item = &'static str> {
    KERNELS.iter().map(|k| k.0).chain(TEMPLATES.iter().map(|t| t.0))
}

/// A value of a template parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateValue {
    Int(u32),
    Bool(bool),
}

/// Renders template `name` with `params`; the shader's name records them (`conv3x3_cpu/MR=8/ROWS=4/…`), so
/// each rendering is its own cached pipeline. Panics on an unknown template or a template error: both are bugs
/// of the wrapper, and every rendering the wrappers use is rendered in the unit tests.
pub fn render(name: &'static str, params: &[(&str, TemplateValue)]) -> Shader {
    let (_, src) = TEMPLATES.iter().find(|t| t.0 == name).unwrap_or_else(|| panic!("no template named {name}"));
    let wgsl = render_source(src, name, params);
    let mut label = name.to_string();
    for (k, v) in params {
        match v {
            TemplateValue::Int(i) => label.push_str(&format!("/{k}={i}")),
            TemplateValue::Bool(b) => label.push_str(&format!("/{k}={b}")),
        }
    }
    Shader::new(label, wgsl)
}

/// Renders template source `src` (named `name` in errors) with `params`.
pub fn render_source(src: &str, name: &str, params: &[(&str, TemplateValue)]) -> String {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template(name, src).unwrap_or_else(|e| panic!("template {name}: {e}"));
    let ctx: std::collections::BTreeMap<&str, minijinja::Value> = params
        .iter()
        .map(|&(k, v)| {
            let v = match v {
                TemplateValue::Int(i) => minijinja::Value::from(i),
                TemplateValue::Bool(b) => minijinja::Value::from(b),
            };
            (k, v)
        })
        .collect();
    env.get_template(name).and_then(|t| t.render(&ctx)).unwrap_or_else(|e| panic!("template {name}: {e}"))
}

/// Plain kernel `kernel` composed with another GEMM core (`core`: rendered WGSL) in place of
/// `shared/gemm_tiled.wgsl`.
pub fn compose_with_core(kernel: &str, core: &str) -> String {
    let (_, own, pieces) = KERNELS.iter().find(|k| k.0 == kernel).unwrap_or_else(|| panic!("no kernel {kernel}"));
    assert!(pieces.contains(&shared::GEMM_TILED), "{kernel} is not on the GEMM core");
    // WGSL wants its `enable` directives before any declaration: the core's go first.
    let (enables, body): (Vec<&str>, Vec<&str>) = core.lines().partition(|l| l.trim_start().starts_with("enable "));
    let mut s: String = enables.iter().map(|l| format!("{l}\n")).collect();
    s.push_str(own);
    for p in pieces.iter().filter(|p| **p != shared::GEMM_TILED) {
        s.push('\n');
        s.push_str(p);
    }
    s.push('\n');
    s.push_str(&body.join("\n"));
    s
}

/// The composed WGSL of plain kernel `name`: its own file, then the shared pieces it names. `None` for an
/// unknown name or a template.
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
    /// The device type the kernels are chosen for (the adapter's unless forced: [`GpuContext::kernels_for`]).
    pub device_type: wgpu::DeviceType,
    pub backend: wgpu::Backend,
    pub f16: bool,
    pub subgroups: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// Whether modules may skip naga's runtime checks (the driver bounds every access itself).
    pub trusted_modules: bool,
    /// Sides of the square f16 -> f32 cooperative-matrix fragments the device has (tensor cores).
    pub coop_fragments: Vec<u32>,
    /// The GEMM-shaped kernels (convs, Gram, style gradient) run on the tensor-core core with this tiling (and,
    /// with `true`, as its software twin); `None`: the f32 kernels. Not a fact of the adapter but the precision
    /// chosen for a run ([`crate::stylizer::Precision`]); [`AdapterFacts::of`] leaves it `None`.
    pub coop: Option<(coop::CoopConfig, bool)>,
    pub max_workgroups_per_dim: u32,
    pub max_workgroup_storage: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_storage_binding: u64,
}

impl AdapterFacts {
    pub fn of(ctx: &GpuContext) -> Self {
        Self {
            device_type: ctx.kernels_for,
            backend: ctx.info.backend,
            f16: ctx.features.contains(wgpu::Features::SHADER_F16),
            subgroups: ctx.features.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: ctx.info.subgroup_min_size,
            subgroup_max_size: ctx.info.subgroup_max_size,
            trusted_modules: ctx.trusts_modules(),
            coop_fragments: ctx.coop_fragments.clone(),
            coop: None,
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
            coop_fragments: Vec::new(),
            coop: None,
            max_workgroups_per_dim: grid::MAX_GROUPS_PER_DIM,
            max_workgroup_storage: 48 << 10,
            max_invocations_per_workgroup: 1024,
            max_storage_binding: 2 << 30,
        }
    }

    /// A CPU adapter (lavapipe, llvmpipe through GL, SwiftShader, WARP): the CPU-shaped kernel variants.
    pub fn is_cpu(&self) -> bool {
        self.device_type == wgpu::DeviceType::Cpu
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
pub(crate) mod tests {
    use super::*;

    /// Parses, validates and translates WGSL to SPIR-V as wgpu would: a WGSL error shows in unit tests, on any
    /// machine, before any adapter compiles it.
    pub(crate) fn validate(name: &str, src: &str) {
        let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        let caps = naga::valid::Capabilities::all();
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        let opts = naga::back::spv::Options { lang_version: (1, 3), ..Default::default() };
        naga::back::spv::write_vec(&module, &info, &opts, None).unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    #[test]
    fn every_kernel_composes_to_one_entry_point() {
        for name in KERNELS.iter().map(|k| k.0) {
            let s = source(name).unwrap();
            assert_eq!(s.matches("@compute").count(), 1, "{name}: one entry point");
            assert_eq!(s.matches("fn main(").count(), 1, "{name}");
        }
        assert!(source("no_such_kernel").is_none());
        assert!(source("conv3x3_cpu").is_none(), "templates are rendered, not composed");
    }

    #[test]
    fn every_plain_kernel_validates_with_naga() {
        for name in KERNELS.iter().map(|k| k.0) {
            validate(name, &source(name).unwrap());
        }
    }

    #[test]
    fn every_kernel_file_is_registered() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "wgsl") {
                let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
                assert!(names().any(|n| n == stem), "kernels/{stem}.wgsl is not in KERNELS or TEMPLATES");
            }
        }
    }

    /// The kernels' `HEAD` constant is the frame's (src/frame.rs).
    #[test]
    fn kernels_agree_with_the_frame_head() {
        let pieces = [("shared/conv3x3_im2col", shared::CONV3X3_IM2COL), ("shared/pool2x2", shared::POOL2X2)];
        for (name, own) in KERNELS.iter().map(|k| (k.0, k.1)).chain(pieces) {
            if let Some(line) = own.lines().find(|l| l.starts_with("const HEAD: u32")) {
                assert!(line.contains(&format!("= {}u;", crate::frame::Frame::HEAD)), "{name}: {line}");
            }
            if let Some(line) = own.lines().find(|l| l.starts_with("const HEAD4: u32")) {
                assert!(line.contains(&format!("= {}u;", crate::frame::Frame::HEAD / 4)), "{name}: {line}");
            }
        }
        for (name, src) in TEMPLATES {
            let line = src.lines().find(|l| l.starts_with("const HEAD")).unwrap_or_else(|| panic!("{name}: no HEAD"));
            let want =
                if line.starts_with("const HEAD4") { crate::frame::Frame::HEAD / 4 } else { crate::frame::Frame::HEAD };
            assert!(line.contains(&format!("= {want}u;")), "{name}: {line}");
        }
    }
}

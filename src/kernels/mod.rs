//! The kernels: one thin host wrapper per WGSL kernel in `kernels/`, the WGSL each one is composed of, and the
//! choice of variant and tiling.
//!
//! - WGSL: every kernel has its own file in `kernels/` (what is specific to it); what several kernels share lives
//!   once in `kernels/shared/` (the tiled GEMM core, the im2col operands of a 3x3 conv, the elementwise entry
//!   point, the workgroup sum, the pooling passes).
//! - Declared once: each wrapper module registers its kernels ([`Kernel`]: name, WGSL, shared pieces, uniform,
//!   storage buffers in the order the wrapper binds them), and each uniform is one [`uniform::uniform!`]
//!   declaration that gives both the Rust struct and the WGSL `struct Params`. One composition ([`compose`])
//!   puts the frame's `HEAD` constants, the uniform at binding 0, the buffers at 1.., the kernel's own source,
//!   its shared pieces and (tensor cores) the cooperative-matrix core together; the
//!   CPU-adapter kernels are minijinja templates rendered first. Adding a kernel: its WGSL, a line in its
//!   wrapper's `KERNELS` with its wrapper function, and its cases in `src/verify/`.
//! - Variants: each wrapper picks its WGSL variant and tiling with a pure function of the shape and the
//!   [`AdapterFacts`] (unit-tested without a GPU), e.g. [`conv::backward_variant`].
//! - Wrappers build [`Dispatch`]es (pipeline, uniform, bind group, grid) once per plan; the plan records them
//!   every iteration.
//!
//! Binding convention in every kernel: binding 0 is the uniform `params`, bindings 1.. the storage buffers of its
//! registration, in the order the wrapper passes them (a mismatch is a validation error when the dispatch is
//! built).

pub mod adam;
pub mod affine;
pub mod conv;
pub mod coop;
pub mod flow;
pub mod frame_clear;
pub mod gram;
pub mod grid;
pub mod image_average;
pub mod loss;
pub mod mask;
pub mod peak;
pub mod pool;
pub mod region;
pub mod uniform;
pub mod vector;
pub mod w2;
pub mod warp;

use crate::error::{Error, Result};
use crate::frame::Frame;
pub use crate::gpu::Dispatch;
use crate::gpu::{GpuContext, Shader};

/// The pieces in `kernels/shared/`.
pub(crate) mod shared {
    pub const GEMM_TILED: &str = include_str!("../../kernels/shared/gemm_tiled.wgsl");
    /// The 8x8-per-invocation variant of [`GEMM_TILED`], composed in its place ([`super::compose_with_core`]).
    pub const GEMM_TILED_8X8: &str = include_str!("../../kernels/shared/gemm_tiled_8x8.wgsl");
    pub const CONV3X3_IM2COL: &str = include_str!("../../kernels/shared/conv3x3_im2col.wgsl");
    /// The entry point of the kernels whose workgroups are numbered along one line (its own piece, and part of
    /// [`ELEMENTWISE`] and [`PARTIAL_SUMS`]).
    pub const GRID_ENTRY: &str = include_str!("../../kernels/shared/grid_entry.wgsl");
    pub const ELEMENTWISE: &str = concat!(
        include_str!("../../kernels/shared/grid_entry.wgsl"),
        include_str!("../../kernels/shared/elementwise.wgsl")
    );
    pub const WORKGROUP_SUM: &str = include_str!("../../kernels/shared/workgroup_sum.wgsl");
    pub const MATMUL_SCALE: &str = include_str!("../../kernels/shared/matmul_scale.wgsl");
    pub const PARTIAL_SUMS: &str = concat!(
        include_str!("../../kernels/shared/grid_entry.wgsl"),
        include_str!("../../kernels/shared/partial_sums.wgsl")
    );
    /// Clamped bilinear sampling of a dense plane, and the DIS patch grid (the flow and video kernels).
    pub const BILINEAR: &str = include_str!("../../kernels/shared/flow_bilinear.wgsl");
    pub const POOL2X2: &str = include_str!("../../kernels/shared/pool2x2.wgsl");
    pub const POOL2X2_FORWARD: &str = include_str!("../../kernels/shared/pool2x2_forward.wgsl");
    pub const POOL2X2_BACKWARD: &str = include_str!("../../kernels/shared/pool2x2_backward.wgsl");
    /// A template (see [`super::coop`]).
    pub const GEMM_COOP: &str = include_str!("../../kernels/shared/gemm_coop.wgsl");
    /// The GEMM cores composed in place of [`GEMM_TILED`] by a variant rather than listed by a kernel: with the
    /// registry, every WGSL the engine can run (the first-use verdict's fingerprint covers them all).
    pub const ALTERNATIVE_CORES: &[&str] = &[GEMM_TILED_8X8, GEMM_COOP];
}

/// A kernel as its wrapper registers it: its name (the file stem in `kernels/`), its own WGSL, the shared pieces
/// composed with it, whether its WGSL is a template (rendered per variant: the register blocks of the
/// CPU-adapter kernels are unrolled by minijinja, so the compiler sees straight-line code), its uniform
/// ([`uniform::uniform!`], binding 0) and its storage buffers (bindings 1.., in the order the wrapper passes
/// them to [`Dispatch::new`]: `"a; mut b; c: array<vec4<f32>>"`, `mut` for one the kernel writes, `array<f32>`
/// unless a type is given; a template declares its own).
pub struct Kernel {
    pub name: &'static str,
    pub wgsl: &'static str,
    pub shared: &'static [&'static str],
    pub template: bool,
    pub params: fn() -> String,
    pub buffers: &'static str,
}

/// Registers plain kernel `kernels/$name.wgsl`: `kernel!("name", &[shared pieces], Uniform, "buffers")`.
macro_rules! kernel {
    ($name:literal, $shared:expr, $params:ty, $buffers:literal) => {
        $crate::kernels::Kernel {
            name: $name,
            wgsl: include_str!(concat!("../../kernels/", $name, ".wgsl")),
            shared: $shared,
            template: false,
            params: <$params>::wgsl,
            buffers: $buffers,
        }
    };
}
pub(crate) use kernel;

/// Registers template kernel `kernels/$name.wgsl` (it declares its own buffers):
/// `template!("name", &[shared pieces], Uniform)`.
macro_rules! template {
    ($name:literal, $shared:expr, $params:ty) => {
        $crate::kernels::Kernel {
            name: $name,
            wgsl: include_str!(concat!("../../kernels/", $name, ".wgsl")),
            shared: $shared,
            template: true,
            params: <$params>::wgsl,
            buffers: "",
        }
    };
}
pub(crate) use template;

/// The WGSL declarations of `buffers` (see [`Kernel`]) at bindings 1...
fn buffer_bindings(buffers: &str) -> String {
    let declared = buffers.split(';').map(str::trim).filter(|b| !b.is_empty());
    let mut s = String::new();
    for (i, b) in declared.enumerate() {
        let (access, b) = match b.strip_prefix("mut ") {
            Some(b) => ("read_write", b),
            None => ("read", b),
        };
        // A name alone is an array of f32, the most common buffer.
        let declaration = if b.contains(':') { b.to_string() } else { format!("{b}: array<f32>") };
        s.push_str(&format!("@group(0) @binding({}) var<storage, {access}> {declaration};\n", i + 1));
    }
    s
}

/// Every kernel, as each wrapper module registers its own.
pub fn registry() -> impl Iterator<Item = &'static Kernel> {
    const MODULES: &[&[Kernel]] = &[
        adam::KERNELS,
        affine::KERNELS,
        image_average::KERNELS,
        conv::KERNELS,
        coop::KERNELS,
        flow::KERNELS,
        frame_clear::KERNELS,
        gram::KERNELS,
        loss::KERNELS,
        mask::KERNELS,
        peak::KERNELS,
        pool::KERNELS,
        region::KERNELS,
        vector::KERNELS,
        w2::KERNELS,
        warp::KERNELS,
    ];
    MODULES.iter().copied().flatten()
}

fn find(name: &str) -> Option<&'static Kernel> {
    registry().find(|k| k.name == name)
}

/// Names of all kernels (plain and templates).
pub fn names() -> impl Iterator<Item = &'static str> {
    registry().map(|k| k.name)
}

/// A value of a template parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateValue {
    Int(u32),
    Bool(bool),
}

/// The one composition of a kernel's WGSL: its `enable` directives (and the core's) first, the constants every
/// kernel may use, its uniform at binding 0, its own source, the shared pieces, then `core` (the GEMM core that
/// stands in for `shared/gemm_tiled.wgsl` in a tensor-core variant).
fn compose(kernel: &Kernel, own: &str, core: Option<&str>) -> String {
    let is_enable = |l: &&str| l.trim_start().starts_with("enable ");
    let core = core.unwrap_or("");
    let mut s: String = core.lines().chain(own.lines()).filter(is_enable).map(|l| format!("{l}\n")).collect();
    // The frame's leading zeros (src/frame.rs), in floats and in vec4s.
    s.push_str(&format!("const HEAD: u32 = {}u;\nconst HEAD4: u32 = {}u;\n", Frame::HEAD, Frame::HEAD / 4));
    s.push_str(&format!("const TAIL: u32 = {}u;\n", Frame::TAIL));
    s.push_str(&(kernel.params)());
    s.push_str("@group(0) @binding(0) var<uniform> params: Params;\n");
    s.push_str(&buffer_bindings(kernel.buffers));
    s.extend(own.lines().filter(|l| !is_enable(l)).map(|l| format!("{l}\n")));
    let pieces = kernel.shared.iter().filter(|p| core.is_empty() || **p != shared::GEMM_TILED);
    for p in pieces {
        s.push_str(p);
        s.push('\n');
    }
    s.extend(core.lines().filter(|l| !is_enable(l)).map(|l| format!("{l}\n")));
    s
}

/// Renders template `name` with `params`; the shader's name records them (`conv3x3_cpu/MR=8/ROWS=4/…`), so
/// each rendering is its own cached pipeline. An unknown template or a template error is a bug of the wrapper
/// (`name` is a constant there, and every rendering the wrappers use is rendered in the unit tests): an
/// [`Error::Validation`].
pub fn render(name: &'static str, params: &[(&str, TemplateValue)]) -> Result<Shader> {
    let kernel =
        find(name).filter(|k| k.template).ok_or_else(|| Error::Validation(format!("no template named {name}")))?;
    let wgsl = compose(kernel, &render_source(kernel.wgsl, name, params)?, None);
    let mut label = name.to_string();
    for (k, v) in params {
        match v {
            TemplateValue::Int(i) => label.push_str(&format!("/{k}={i}")),
            TemplateValue::Bool(b) => label.push_str(&format!("/{k}={b}")),
        }
    }
    Ok(Shader::new(label, wgsl))
}

/// Renders template source `src` (named `name` in errors) with `params`.
pub fn render_source(src: &str, name: &str, params: &[(&str, TemplateValue)]) -> Result<String> {
    let template_error = |e: minijinja::Error| Error::Validation(format!("template {name}: {e}"));
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template(name, src).map_err(template_error)?;
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
    env.get_template(name).and_then(|t| t.render(&ctx)).map_err(template_error)
}

/// Plain kernel `kernel` composed with another GEMM core (`core`: rendered WGSL) in place of
/// `shared/gemm_tiled.wgsl`; `None` for a kernel not on the GEMM core.
pub fn compose_with_core(kernel: &str, core: &str) -> Option<String> {
    let k = find(kernel).filter(|k| !k.template && k.shared.contains(&shared::GEMM_TILED))?;
    Some(compose(k, k.wgsl, Some(core)))
}

/// The composed WGSL of plain kernel `name`. `None` for an unknown name or a template.
pub fn source(name: &str) -> Option<String> {
    let k = find(name).filter(|k| !k.template)?;
    Some(compose(k, k.wgsl, None))
}

/// The [`Shader`] of kernel `name` (a name from [`names`]; anything else is a bug in a wrapper, whose names are
/// constants, and every one of them is compiled in the tests: an [`Error::Validation`]).
pub fn shader(name: &'static str) -> Result<Shader> {
    let wgsl = source(name).ok_or_else(|| Error::Validation(format!("no kernel named {name}")))?;
    Ok(Shader::new(name, wgsl))
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
    /// An Apple GPU through Metal (its SIMD-group width is 32 whatever wgpu reports; see [`coop::config`]).
    pub apple_gpu: bool,
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
            apple_gpu: ctx.info.backend == wgpu::Backend::Metal && ctx.info.name.starts_with("Apple"),
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
            apple_gpu: false,
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

/// A wrapper's check that `buffer` holds at least `floats` f32 (the sizes come from the caller): a short one would
/// be read or written past its end.
pub(crate) fn check_floats(kernel: &str, what: &str, buffer: &wgpu::Buffer, floats: usize) -> Result<()> {
    let has = buffer.size() as usize / 4;
    if has < floats {
        return Err(Error::Validation(format!("{kernel}: {what} holds {has} floats, needs {floats}")));
    }
    Ok(())
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
        for name in registry().filter(|k| !k.template).map(|k| k.name) {
            let s = source(name).unwrap();
            assert_eq!(s.matches("@compute").count(), 1, "{name}: one entry point");
            assert_eq!(s.matches("fn main(").count(), 1, "{name}");
        }
        assert!(source("no_such_kernel").is_none());
        assert!(source("conv3x3_cpu").is_none(), "templates are rendered, not composed");
    }

    #[test]
    fn every_plain_kernel_validates_with_naga() {
        for name in registry().filter(|k| !k.template).map(|k| k.name) {
            validate(name, &source(name).unwrap());
        }
    }

    /// Every uniform lies at the same offsets in WGSL as in Rust, and is declared in the kernel only once.
    #[test]
    fn every_uniform_is_declared_once_with_a_matching_layout() {
        for k in registry() {
            let params = (k.params)();
            let fields: Vec<(&str, &str)> =
                params.lines().filter_map(|l| l.trim().strip_suffix(',')?.split_once(": ")).collect();
            // WGSL's vec4<T> back to Rust's [T; 4].
            let rust: Vec<(&str, String)> = fields
                .iter()
                .map(|(n, t)| match t.strip_prefix("vec4<").and_then(|t| t.strip_suffix('>')) {
                    Some(scalar) => (*n, format!("[{scalar}; 4]")),
                    None => (*n, t.to_string()),
                })
                .collect();
            let rust: Vec<(&str, &str)> = rust.iter().map(|(n, t)| (*n, t.as_str())).collect();
            uniform::check_layout(&rust).unwrap_or_else(|e| panic!("{}: {e}", k.name));
            assert!(!k.wgsl.contains("struct Params"), "{}: declares its uniform by hand", k.name);
            assert!(!k.wgsl.contains("const HEAD"), "{}: copies the frame's HEAD", k.name);
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
}

//! Kernel conformance checks: each runs one WGSL kernel on seeded random data (outputs poisoned with NaN first)
//! and compares it with the f64 CPU reference in [`reference`]. The test suite runs them over many
//! shapes; `neural-style selftest` runs them at small shapes on every adapter and prints a table.
//!
//! Tolerance: |gpu − ref| ≤ tol · (|ref| + rms(ref)), so NaN (an unwritten element) always fails.

pub mod conv;
pub mod coop;
pub mod flow;
pub mod gram;
pub mod losses;
pub mod network;
pub mod optim;
pub mod pool;
pub mod reference;
pub mod temporal;
pub mod vector;
pub mod w2;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::frame::Frame;
use crate::gpu::GpuContext;
use crate::kernels::conv::{BackwardIo, ConvKernel, ConvShape, ConvVariant, ForwardIo};
use crate::kernels::coop::CoopConfig;
use crate::kernels::gram::GramVariant;
use crate::kernels::loss::{StyleGradIo, StyleGradKernel, StyleGradVariant};
use crate::kernels::w2::MatmulVariant;
use crate::kernels::{self, pool::PoolShape};
use crate::tensor::Tensor;
use reference as r;

/// Default relative tolerance of the f32 kernels against the f64 reference.
pub const RTOL: f64 = 1e-4;
/// Tolerance of the tensor-core kernels and their twin: operands rounded to f16 (11 significant bits, 2^-12
/// relative), products summed in f32; relative to rms(ref) the error of a K-term sum stays near 2^-11.
pub const COOP_TOL: f64 = 5e-3;

/// Outcome of one check: the largest error seen (relative to the tolerance's scale), or the first failure.
pub type Check = std::result::Result<f64, String>;
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
/// Uniform values in [-scale, scale].
pub fn random(rng: &mut ChaCha8Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-scale..=scale)).collect()
}
pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}
pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}
pub fn rms(v: &[f64]) -> f64 {
    (v.iter().map(|x| x * x).sum::<f64>() / v.len().max(1) as f64).sqrt()
}
/// Compares `gpu` with `reference`; on failure names the first failing index.
pub fn compare(what: &str, gpu: &[f32], reference: &[f64], tol: f64) -> Check {
    if gpu.len() != reference.len() {
        return Err(format!("{what}: {} values, expected {}", gpu.len(), reference.len()));
    }
    let scale = rms(reference).max(1e-30);
    let mut worst = 0.0f64;
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        let err = (f64::from(g) - r).abs() / (r.abs() + scale);
        if err.is_nan() || err > tol {
            return Err(format!("{what}: index {i}: gpu {g} vs reference {r} (error {err:.3e} > {tol:.0e})"));
        }
        worst = worst.max(err);
    }
    Ok(worst)
}
/// ‖gpu − ref‖₂ / ‖ref‖₂, failing above `tol` (or on any NaN): the error of a whole gradient where single
/// elements may legitimately move (a max-pool winner or a ReLU that flips under f16 rounding).
pub fn compare_norm(what: &str, gpu: &[f32], reference: &[f64], tol: f64) -> Check {
    if gpu.len() != reference.len() {
        return Err(format!("{what}: {} values, expected {}", gpu.len(), reference.len()));
    }
    let diff: f64 = gpu.iter().zip(reference).map(|(&g, &r)| (f64::from(g) - r).powi(2)).sum();
    let norm: f64 = reference.iter().map(|r| r * r).sum();
    let err = (diff / norm.max(1e-300)).sqrt();
    if err.is_nan() || err > tol {
        return Err(format!("{what}: relative L2 error {err:.3e} > {tol:.0e}"));
    }
    Ok(err)
}
/// The worse of two checks.
pub fn both(a: Check, b: Check) -> Check {
    Ok(a?.max(b?))
}
struct Io<'a> {
    ctx: &'a GpuContext,
}
impl Io<'_> {
    fn buf(&self, data: &[f64]) -> Result<wgpu::Buffer> {
        self.ctx.buffer_from("check input", &to_f32(data))
    }
    fn out(&self, len: usize) -> Result<wgpu::Buffer> {
        let b = self.ctx.storage_buffer("check output", len)?;
        self.ctx.poison(&b);
        Ok(b)
    }
    fn read(&self, b: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        self.ctx.read_f32(b, 0, len)
    }
    /// A framed input: `dense` (channels x H x W) inside a zero frame.
    fn framed(&self, dense: &[f64], channels: usize, frame: Frame) -> Result<wgpu::Buffer> {
        self.ctx.buffer_from("check input", &frame.frame(&to_f32(dense), channels))
    }
    /// A framed output: its data pixels poisoned with NaN (an unwritten one fails), its frame zero (as the
    /// engine's buffers are).
    fn framed_out(&self, channels: usize, frame: Frame) -> Result<wgpu::Buffer> {
        let nan = vec![f32::NAN; channels * frame.height * frame.width];
        self.ctx.buffer_from("check output", &frame.frame(&nan, channels))
    }
    /// A framed buffer's data (dense CHW); an error if the kernel wrote anything but zeros into the frame.
    fn read_framed(&self, b: &wgpu::Buffer, channels: usize, frame: Frame, what: &str) -> Result<Vec<f32>, String> {
        let all = self.ctx.read_all(b).map_err(gpu_err)?;
        if let Some(i) = (0..frame.buffer_floats(channels)).find(|&i| !frame.is_data(i) && all[i] != 0.0) {
            return Err(format!("{what}: wrote {} into the frame at index {i} (must stay zero)", all[i]));
        }
        Ok(frame.unframe(&all, channels))
    }
}
fn gpu_err(e: crate::Error) -> String {
    e.to_string()
}

/// How thorough a run of [`cases`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Small shapes, seconds on a CPU adapter: `neural-style selftest`.
    Quick,
    /// Odd, prime and realistic shapes, every channel count the network has: the test suite.
    Full,
}

/// One named check of one kernel.
pub struct Case {
    /// The kernel (family) it checks, e.g. `conv3x3`; tests group cases by it.
    pub kernel: &'static str,
    /// The WGSL kernels (the stems in `kernels/`) it runs: every kernel must be in some case's list.
    pub checks: Vec<&'static str>,
    pub name: String,
    /// The side of the cooperative-matrix fragments the case needs from the adapter (None: any adapter).
    pub needs_fragment: Option<usize>,
    pub run: Box<dyn Fn(&GpuContext) -> Check + Send + Sync>,
}

impl Case {
    /// Why the case cannot run on `ctx`, if it cannot.
    pub fn unavailable(&self, ctx: &GpuContext) -> Option<String> {
        let f = self.needs_fragment?;
        (!ctx.coop_fragments.contains(&(f as u32)))
            .then(|| format!("{} offers no {f}x{f} f16 cooperative matrices through wgpu", ctx.adapter_name()))
    }
}

/// A case of `kernel` that runs that kernel alone (see [`Case::checking`]).
fn case(kernel: &'static str, name: String, run: impl Fn(&GpuContext) -> Check + Send + Sync + 'static) -> Case {
    Case { kernel, checks: vec![kernel], name, needs_fragment: None, run: Box::new(run) }
}

impl Case {
    /// The WGSL kernels the case runs, where they are not just its `kernel`.
    fn checking(mut self, kernels: &[&'static str]) -> Self {
        self.checks = kernels.to_vec();
        self
    }
}

/// Every kernel check at this scale, every variant of each kernel included, family by family: the one list
/// `neural-style selftest` runs.
pub fn cases(scale: Scale) -> Vec<Case> {
    let full = scale == Scale::Full;
    let families: &[fn(bool) -> Vec<Case>] = &[
        conv::cases,
        pool::cases,
        gram::cases,
        losses::cases,
        vector::cases,
        optim::cases,
        w2::cases,
        coop::cases,
        flow::cases,
        temporal::cases,
    ];
    families.iter().flat_map(|f| f(full)).collect()
}

/// Runs every case of `kernel` at `scale`; the first failure, or the largest error.
pub fn run_kernel(ctx: &GpuContext, scale: Scale, kernel: &str) -> Check {
    let mut worst = 0.0f64;
    let mut any = false;
    for c in cases(scale).into_iter().filter(|c| c.kernel == kernel) {
        if let Some(why) = c.unavailable(ctx) {
            // CI's lavapipe has no cooperative matrices; a machine that must check them says so.
            if ctx.coop_fragments.is_empty() && std::env::var_os("NEURAL_STYLE_REQUIRE_TENSOR_CORES").is_some() {
                return Err(format!("{}: {why} (NEURAL_STYLE_REQUIRE_TENSOR_CORES is set)", c.name));
            }
            eprintln!("not run: {}: {why}", c.name);
            continue;
        }
        any = true;
        worst = worst.max((c.run)(ctx).map_err(|e| format!("{}: {e}", c.name))?);
    }
    if !any && !cases(scale).iter().any(|c| c.kernel == kernel && c.needs_fragment.is_some()) {
        return Err(format!("no conformance case checks {kernel}"));
    }
    Ok(worst)
}

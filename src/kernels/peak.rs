//! Host wrappers of the adapter-peak probes used by the benchmarks: `peak_fma.wgsl` (FMA throughput, a long
//! register-resident chain) and `peak_copy.wgsl` (copy bandwidth). Their ratios to these measured peaks are the
//! "% of peak" the benchmarks report: measured on the adapter at hand, never taken from a datasheet.

use super::shared::ELEMENTWISE;
use super::uniform::uniform;
use super::{kernel, Kernel};

use super::grid::elementwise_grid;
use super::uniform::u32_of;
use super::{max_dim, shader, Dispatch};
use crate::error::Result;
use crate::gpu::GpuContext;
use wgpu::Buffer;

/// FMAs one thread of `peak_fma` runs per loop trip (8 vec4 chains x 4 rounds).
pub const FMA_PER_TRIP: u64 = 128;

uniform! {
    struct FmaParams {
        count: u32,
        iters: u32,
        mul: f32,
        add: f32,
    }
}

uniform! {
    struct CopyParams {
        count: u32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[
    kernel!("peak_fma", &[ELEMENTWISE], FmaParams, "seeds; mut out"),
    kernel!("peak_copy", &[ELEMENTWISE], CopyParams, "src: array<vec4<f32>>; mut dst: array<vec4<f32>>"),
];

/// `out[i]` = the sum of 32 chains `a = fma(a, mul, add)` run `4 * iters` times from `seeds[i] + 0.125 * k`
/// (k = 0..32), over `threads` threads. `seeds` and `out` hold at least `threads` floats.
pub fn peak_fma(
    ctx: &GpuContext,
    threads: usize,
    iters: u32,
    mul: f32,
    add: f32,
    seeds: &Buffer,
    out: &Buffer,
) -> Result<Dispatch> {
    let p = FmaParams { count: u32_of(threads), iters, mul, add, ..Default::default() };
    Dispatch::new(ctx, &shader("peak_fma")?, &p, &[seeds, out], elementwise_grid(threads, max_dim(ctx)))
}

/// Floating-point operations of one [`peak_fma`] dispatch (an FMA counts 2).
pub fn fma_flops(threads: usize, iters: u32) -> f64 {
    2.0 * FMA_PER_TRIP as f64 * threads as f64 * f64::from(iters)
}

/// `dst[0..4 * vec4s] = src[0..4 * vec4s]`, 16 bytes per thread. Both buffers hold at least `4 * vec4s` floats.
pub fn peak_copy(ctx: &GpuContext, vec4s: usize, src: &Buffer, dst: &Buffer) -> Result<Dispatch> {
    let p = CopyParams { count: u32_of(vec4s), ..Default::default() };
    Dispatch::new(ctx, &shader("peak_copy")?, &p, &[src, dst], elementwise_grid(vec4s, max_dim(ctx)))
}

/// Bytes one [`peak_copy`] dispatch moves (read + write).
pub fn copy_bytes(vec4s: usize) -> f64 {
    32.0 * vec4s as f64
}

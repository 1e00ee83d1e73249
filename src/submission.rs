//! How an iteration's dispatches are cut into command buffers. One command buffer per iteration is fastest, but a
//! display's watchdog stops GPU work that runs too long without a break: Windows resets the GPU after 2 s (TDR),
//! and macOS fails a long command buffer without reporting a lost device. At 2048² an iteration is ~4.8 TFLOP,
//! 15–50 s on an integrated GPU, so slow iterations are submitted as one command buffer per VGG block (a cut after
//! each pooling, forward and backward: about a tenth of the work each). Within a block one conv can still run
//! long (conv1_2 at 2048² is ~300 GFLOP: 0.3–3 s on an integrated GPU), so the GEMM convs are built in pieces
//! ([`crate::gpu::Pieces`]) and a slow adapter launches them apart: each launch at most
//! [`LAUNCH_BUDGET_MS`] at the measured rate. The decisions are pure functions, unit-tested without a GPU;
//! [`Recording::encode`] applies one.

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};

/// A measured iteration slower than this is cut per block: an eighth of the shortest watchdog (2 s), so that a
/// block, about a tenth of the iteration, stays well inside it even where the work is unevenly spread.
pub const SPLIT_ABOVE_MS: f64 = 250.0;

/// Before an iteration has been measured: conv GFLOP per iteration above which it is cut per block (a 1024²
/// iteration is ~1,200 GFLOP: 1.2 s on a 1 TFLOP/s integrated GPU). Small images stay in one command buffer.
pub const SPLIT_ABOVE_GFLOP: f64 = 100.0;

/// Whether an iteration of `conv_gflop` is submitted block by block, given the last measured iteration's time.
pub fn split_per_block(conv_gflop: f64, measured_ms: Option<f64>) -> bool {
    match measured_ms {
        Some(ms) => ms > SPLIT_ABOVE_MS,
        None => conv_gflop > SPLIT_ABOVE_GFLOP,
    }
}

/// The longest one launch should run on a slow adapter: a twentieth of the shortest watchdog (2 s), room for
/// a rate measured over a whole iteration to overestimate the speed of its largest conv.
pub const LAUNCH_BUDGET_MS: f64 = 100.0;

/// The rate assumed before an iteration has been measured (GFLOP/s): a slow integrated GPU's, so a large first
/// iteration is launched in small pieces until its speed is known.
pub const ASSUMED_GFLOPS: f64 = 200.0;

/// The most work (GFLOP) one launch of a GEMM built in pieces may hold: none (whole launches) while iterations
/// run under [`SPLIT_ABOVE_MS`]; else what runs in [`LAUNCH_BUDGET_MS`] at the rate of the last measured
/// iteration (`conv_gflop` in `measured_ms`), or before one is measured at [`ASSUMED_GFLOPS`] when the iteration
/// is large.
pub fn launch_gflop_limit(conv_gflop: f64, measured_ms: Option<f64>) -> Option<f64> {
    let gflops = match measured_ms {
        Some(ms) if ms > SPLIT_ABOVE_MS => conv_gflop / (ms / 1e3),
        None if conv_gflop > SPLIT_ABOVE_GFLOP => ASSUMED_GFLOPS,
        _ => return None,
    };
    Some(gflops * LAUNCH_BUDGET_MS / 1e3)
}

/// How an iteration's dispatches are recorded: in one command buffer or one per VGG block, and the most work
/// one launch of a GEMM built in pieces holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recording {
    pub per_block: bool,
    pub launch_gflop: Option<f64>,
}

impl Recording {
    /// One command buffer, whole launches.
    pub const WHOLE: Recording = Recording { per_block: false, launch_gflop: None };

    /// What [`split_per_block`] and [`launch_gflop_limit`] decide for an iteration of `conv_gflop`.
    pub fn for_iteration(conv_gflop: f64, measured_ms: Option<f64>) -> Self {
        Self {
            per_block: split_per_block(conv_gflop, measured_ms),
            launch_gflop: launch_gflop_limit(conv_gflop, measured_ms),
        }
    }

    /// `dispatches` in command encoders as this says: one, or one per VGG block, the GEMMs built in pieces
    /// launched within the work limit.
    pub fn encode<'d>(
        self,
        ctx: &GpuContext,
        dispatches: impl IntoIterator<Item = &'d Dispatch>,
    ) -> Vec<wgpu::CommandEncoder> {
        ctx.encode_cut(dispatches, |d| self.per_block && ends_block(&d.kernel), self.launch_gflop)
    }

    /// Records `dispatches`, submits and waits: a forward pass outside the iterations (the content's and the
    /// style images' targets, at their full size), recorded as an iteration of `conv_gflop` is before one has
    /// been measured.
    pub fn run_unmeasured(ctx: &GpuContext, dispatches: &[&Dispatch], conv_gflop: f64) -> Result<()> {
        let submitted = ctx.submit(Self::for_iteration(conv_gflop, None).encode(ctx, dispatches.iter().copied()));
        ctx.wait(Some(submitted))
    }
}

/// Whether a dispatch of `kernel` ends a VGG block (a 2x2 pooling, forward or backward): where a cut goes.
pub fn ends_block(kernel: &str) -> bool {
    kernel.contains("pool2x2")
}

/// The dispatch counts of the command buffers `kernels` are cut into (in order; every one non-empty).
pub fn block_lengths(kernels: &[&str]) -> Vec<usize> {
    let mut lengths = Vec::new();
    let mut run = 0;
    for k in kernels {
        run += 1;
        if ends_block(k) {
            lengths.push(run);
            run = 0;
        }
    }
    if run > 0 {
        lengths.push(run);
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_or_large_iterations_are_cut_and_a_measurement_decides_once_there() {
        assert!(!split_per_block(5.0, None), "a small image stays whole");
        assert!(split_per_block(1200.0, None), "a 1024² iteration is cut before it is measured");
        assert!(!split_per_block(1200.0, Some(40.0)), "... and whole again on a GPU that runs it in 40 ms");
        assert!(split_per_block(5.0, Some(300.0)), "a slow adapter cuts even a small image");
    }

    #[test]
    fn launches_are_limited_by_the_measured_rate_only_on_slow_adapters() {
        assert_eq!(launch_gflop_limit(5.0, None), None, "a small image: whole launches");
        assert_eq!(launch_gflop_limit(4800.0, Some(40.0)), None, "a 2048² iteration in 40 ms: whole launches");
        // 4,800 GFLOP in 16 s is 300 GFLOP/s: 30 GFLOP per launch (~10 pieces of a 2048² conv).
        let limit = launch_gflop_limit(4800.0, Some(16_000.0)).unwrap();
        assert!((limit - 30.0).abs() < 1e-9, "{limit}");
        assert_eq!(launch_gflop_limit(1200.0, None), Some(ASSUMED_GFLOPS * LAUNCH_BUDGET_MS / 1e3));
        let r = Recording::for_iteration(4800.0, Some(40.0));
        assert_eq!(r, Recording::WHOLE);
        assert!(Recording::for_iteration(4800.0, None).per_block);
    }

    #[test]
    fn cuts_follow_each_pooling_forward_and_backward() {
        let ks = ["conv3x3", "maxpool2x2", "conv3x3", "conv3x3", "avgpool2x2_backward", "adam"];
        assert_eq!(block_lengths(&ks), vec![2, 3, 1]);
        assert_eq!(block_lengths(&["conv3x3", "maxpool2x2"]), vec![2]);
        assert!(block_lengths(&[]).is_empty());
    }
}

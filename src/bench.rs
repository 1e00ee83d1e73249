//! Benchmarks: the timing machinery shared by `neural-style bench` ([`run`]) and the kernel microbenchmarks
//! (`benches/kernels.rs`), the measured adapter peak ([`measure_peak`]), and the memory plan ([`memory_plan`]).
//!
//! Clocks: GPU timestamp queries (`TIMESTAMP_QUERY`, one pair per compute pass) where the adapter has them,
//! wall clock around submit + wait otherwise (or when `NEURAL_STYLE_BENCH_CLOCK=wall`). Every JSON line names
//! the clock it used. Wall-clock times include the submit and wait latency, so they overstate short kernels.
//!
//! `peak_gpu_bytes` is allocation accounting: the bytes of the buffers the stylizer created (weights in both
//! kernel layouts, activations, gradients, targets, Adam moments, scratch), not a driver measurement. Uniforms,
//! query sets and the driver's own overhead are not in it. [`memory_plan`] computes the same number from the
//! shapes alone.

use std::path::PathBuf;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext, GpuOptions};
use crate::kernels::{self, AdapterFacts};
use crate::planar::PlanarImage;
pub use crate::stylizer::{memory_plan, MemoryItem};
use crate::stylizer::{Precision, StyleOptions, Stylizer};
use crate::vgg::{self, conv_flops_per_iteration};
use neural_style_weights::{InputConvention, Vgg16Weights};

/// Side of the microbenchmarks' image (`benches/kernels.rs`); default 512.
pub const SIZE_ENV: &str = "NEURAL_STYLE_BENCH_SIZE";
/// `wall` forces the wall clock even where the adapter has timestamp queries.
pub const CLOCK_ENV: &str = "NEURAL_STYLE_BENCH_CLOCK";
/// Timed runs per microbenchmark case (at least 10).
pub const RUNS_ENV: &str = "NEURAL_STYLE_BENCH_RUNS";
/// Minimum warm-up before timing an iteration or the peak probes: after a pipeline compile, timings on the
/// H200 came out 2–5x slow for about this long.
pub const WARMUP_MS: f64 = 250.0;

/// Arguments of `neural-style bench`.
#[derive(Clone, Debug)]
pub struct BenchArgs {
    /// Side of the square random image.
    pub size: usize,
    /// Timed iterations (the median is reported).
    pub iterations: usize,
    /// Adapter name substring (`None`: `$NEURAL_STYLE_ADAPTER`, else the fastest kind).
    pub adapter: Option<String>,
    /// VGG16 weights file; `None`: random weights, seeded 0 (timing does not depend on the values).
    pub weights: Option<PathBuf>,
    /// Arithmetic of the products (see [`Precision`]).
    pub precision: Precision,
    /// The style distance (W2 adds its square roots to every iteration).
    pub style_loss: crate::StyleLoss,
    /// Free canvas around the image (StyleOptions::margin): 0 times the network at exactly `size`, as the
    /// PyTorch peer runs it; a run's default margin makes each iteration work on a canvas 2·margin px wider.
    pub margin: usize,
    /// The memory budget and the block size of a tiled evaluation (StyleOptions::max_memory, tile_size).
    pub max_memory: Option<u64>,
    pub tile_size: Option<usize>,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            size: 512,
            iterations: 20,
            adapter: None,
            weights: None,
            precision: Precision::Auto,
            style_loss: crate::StyleLoss::Gram,
            margin: 0,
            max_memory: None,
            tile_size: None,
        }
    }
}

/// How times are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// GPU timestamps written at the beginning and end of each compute pass.
    Timestamps,
    /// `Instant` around encode + submit + wait.
    Wall,
}

impl Clock {
    /// Timestamps where the device has them and `NEURAL_STYLE_BENCH_CLOCK` is not `wall`.
    pub fn for_context(ctx: &GpuContext) -> Self {
        let forced_wall = std::env::var(CLOCK_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("wall"));
        if ctx.has_timestamps() && !forced_wall {
            Clock::Timestamps
        } else {
            Clock::Wall
        }
    }

    /// The name every JSON line carries.
    pub fn name(self) -> &'static str {
        match self {
            Clock::Timestamps => "gpu_timestamps",
            Clock::Wall => "wall_clock",
        }
    }
}

/// What one [`Timer::time`] call measured.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Encode + submit + wait, in ms.
    pub wall_ms: f64,
    /// Per pass, from timestamps (`None` with [`Clock::Wall`]).
    pub pass_ms: Option<Vec<f64>>,
}

impl Timing {
    /// Time of the first pass: its timestamps, else the wall clock.
    pub fn first_ms(&self) -> f64 {
        self.pass_ms.as_ref().and_then(|p| p.first().copied()).unwrap_or(self.wall_ms)
    }
}

/// Records lists of dispatches as timed compute passes.
pub struct Timer<'a> {
    ctx: &'a GpuContext,
    clock: Clock,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
    capacity: usize,
    period_ns: f64,
}

impl<'a> Timer<'a> {
    /// A timer for up to `max_passes` passes per [`Timer::time`] call.
    pub fn new(ctx: &'a GpuContext, clock: Clock, max_passes: usize) -> Self {
        let capacity = max_passes.max(1);
        assert!(2 * capacity <= wgpu::QUERY_SET_MAX_QUERIES as usize, "too many timed passes: {capacity}");
        let queries = (clock == Clock::Timestamps).then(|| {
            let n = 2 * capacity as u32;
            let qs = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("bench timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: n,
            });
            let buffer = |label: &str, usage: wgpu::BufferUsages| {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: u64::from(n) * wgpu::QUERY_SIZE as u64,
                    usage,
                    mapped_at_creation: false,
                })
            };
            let resolve = buffer("timestamp resolve", wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
            let staging = buffer("timestamp readback", wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
            (qs, resolve, staging)
        });
        Self { ctx, clock, queries, capacity, period_ns: f64::from(ctx.queue.get_timestamp_period()) }
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Records each list of `passes` into its own compute pass (in order, one submit) and waits.
    pub fn time(&self, passes: &[Vec<&Dispatch>]) -> Result<Timing> {
        assert!(passes.len() <= self.capacity, "{} passes, timer holds {}", passes.len(), self.capacity);
        let start = Instant::now();
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        for (i, list) in passes.iter().enumerate() {
            let timestamp_writes = self.queries.as_ref().map(|(qs, _, _)| wgpu::ComputePassTimestampWrites {
                query_set: qs,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            });
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
            for d in list {
                d.record(&mut pass);
            }
        }
        let n = 2 * passes.len() as u32;
        if let Some((qs, resolve, staging)) = &self.queries {
            if n > 0 {
                enc.resolve_query_set(qs, 0..n, resolve, 0);
                enc.copy_buffer_to_buffer(resolve, 0, staging, 0, u64::from(n) * 8);
            }
        }
        self.ctx.submit_and_wait(enc.finish())?;
        let wall_ms = start.elapsed().as_secs_f64() * 1e3;
        let pass_ms = match &self.queries {
            Some((_, _, staging)) if n > 0 => {
                let ticks = self.read_ticks(staging, n as usize)?;
                Some(ticks.chunks(2).map(|p| p[1].saturating_sub(p[0]) as f64 * self.period_ns * 1e-6).collect())
            }
            Some(_) => Some(Vec::new()),
            None => None,
        };
        Ok(Timing { wall_ms, pass_ms })
    }

    fn read_ticks(&self, staging: &wgpu::Buffer, n: usize) -> Result<Vec<u64>> {
        let slice = staging.slice(..(n * 8) as u64);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.ctx.wait(None)?;
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .map_err(|_| Error::DeviceLost("timestamp readback never completed".into()))?
            .map_err(|e| Error::Gpu(format!("timestamp readback failed: {e}")))?;
        let view = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("timestamp readback failed: {e:?}")))?;
        let ticks = bytemuck::cast_slice::<u8, u64>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(ticks)
    }
}

/// Median (mean of the middle two for an even count); NaN for none.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Median and minimum of timed runs of one case.
#[derive(Clone, Copy, Debug)]
pub struct CaseTiming {
    pub median_ms: f64,
    pub min_ms: f64,
    pub runs: usize,
}

/// Warms up (at least 3 runs and `warmup_ms`), then times `runs` runs of `dispatches` recorded into one pass.
pub fn time_case(timer: &Timer<'_>, dispatches: &[&Dispatch], runs: usize, warmup_ms: f64) -> Result<CaseTiming> {
    let list = vec![dispatches.to_vec()];
    let start = Instant::now();
    let mut warm = 0;
    while warm < 3 || start.elapsed().as_secs_f64() * 1e3 < warmup_ms {
        timer.time(&list)?;
        warm += 1;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        times.push(timer.time(&list)?.first_ms());
    }
    Ok(CaseTiming {
        median_ms: median(&times),
        min_ms: times.iter().copied().fold(f64::INFINITY, f64::min),
        runs: times.len(),
    })
}

/// Uniform values in [-scale, scale] from ChaCha8 seeded with `seed`.
pub fn random_f32(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-scale..=scale)).collect()
}

/// A random RGB image in pixel units (0–255), seeded.
pub fn random_image(seed: u64, width: usize, height: usize) -> PlanarImage {
    let data = random_f32(seed, 3 * width * height, 127.5).into_iter().map(|v| v + 127.5).collect();
    PlanarImage::new(width, height, data)
}

/// The adapter's measured peak.
#[derive(Clone, Copy, Debug)]
pub struct Peak {
    /// f32 FMA throughput of `peak_fma.wgsl`, GFLOP/s (an FMA counts 2).
    pub fma_gflops: f64,
    /// Read + write bandwidth of `peak_copy.wgsl`, GB/s (10^9 bytes).
    pub copy_gbs: f64,
    pub fma_threads: usize,
    pub fma_iters: u32,
    /// Size of each copy buffer, bytes.
    pub copy_buffer_bytes: u64,
}

/// Threads of the FMA probe: enough to fill any current GPU several times over.
const PEAK_FMA_THREADS: usize = 1 << 20;
/// Copy buffers of the bandwidth probe (capped by the adapter's binding limit): far larger than any L2.
const PEAK_COPY_BYTES: u64 = 256 << 20;

/// Measures FMA throughput and copy bandwidth on `timer`'s adapter: the FMA trip count doubles until a run takes
/// ≥ 20 ms, then [`WARMUP_MS`] of warm-up and the median of `runs` runs.
pub fn measure_peak(ctx: &GpuContext, timer: &Timer<'_>, runs: usize) -> Result<Peak> {
    let threads = PEAK_FMA_THREADS;
    let seeds = ctx.buffer_from("peak seeds", &random_f32(0xfa, threads, 1.0))?;
    let out = ctx.storage_buffer("peak out", threads)?;
    let (mul, add) = (0.9999f32, 0.5f32);
    let mut iters = 4u32;
    let fma = loop {
        let d = kernels::peak::peak_fma(ctx, threads, iters, mul, add, &seeds, &out)?;
        timer.time(&[vec![&d]])?; // first run compiles / faults in
        let ms = timer.time(&[vec![&d]])?.first_ms();
        if ms >= 20.0 || iters >= 1 << 20 {
            break d;
        }
        iters *= if ms < 2.0 { 8 } else { 2 };
    };
    let t = time_case(timer, &[&fma], runs, WARMUP_MS)?;
    let fma_gflops = kernels::peak::fma_flops(threads, iters) / (t.median_ms * 1e6);

    let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    let bytes = PEAK_COPY_BYTES.min(limit) / 16 * 16;
    let vec4s = (bytes / 16) as usize;
    let src = ctx.buffer_from("peak copy src", &random_f32(0xc0, 4 * vec4s, 1.0))?;
    let dst = ctx.storage_buffer("peak copy dst", 4 * vec4s)?;
    let copy = kernels::peak::peak_copy(ctx, vec4s, &src, &dst)?;
    let t = time_case(timer, &[&copy], runs, WARMUP_MS)?;
    let copy_gbs = kernels::peak::copy_bytes(vec4s) / (t.median_ms * 1e6);
    Ok(Peak { fma_gflops, copy_gbs, fma_threads: threads, fma_iters: iters, copy_buffer_bytes: bytes })
}

/// The default options' layer indices (content relu4_2; style relu1_1, 2_1, 3_1, 4_1, 5_1).
pub fn default_layers() -> (Vec<usize>, Vec<usize>) {
    let spec = crate::stylizer::loss_spec(&StyleOptions::default()).expect("default layers exist");
    (spec.content_layers, spec.style_layers)
}

/// No budget and no binding limit: every plan at once.
pub const UNLIMITED: crate::layout::MemoryLimits =
    crate::layout::MemoryLimits { budget: u64::MAX, max_binding: u64::MAX };

/// Planned bytes ([`memory_plan`]) for a square image with the default options and Caffe weights on a GPU, with
/// no margin: the network at exactly `side`² (a run paints on a canvas 2·margin wider, docs/MATHS.md).
pub fn planned_bytes_square(side: usize) -> u64 {
    let opts = StyleOptions { margin: Some(0), ..Default::default() };
    let plan = memory_plan(side, side, &opts, false, &AdapterFacts::example_gpu(), UNLIMITED);
    plan.expect("default options are valid").bytes()
}

/// The largest square side (default options, Caffe weights) whose planned bytes fit `budget`, and whose
/// biggest activation (64 x side² floats: conv1's output and the gradient buffers) fits `max_binding` bytes.
/// Returns (side, what limits it: "memory" or "binding").
pub fn largest_square(budget: u64, max_binding: u64) -> (usize, &'static str) {
    let by_memory = {
        let (mut lo, mut hi) = (vgg::MIN_SIDE, 1usize << 18);
        if planned_bytes_square(lo) > budget {
            return (0, "memory");
        }
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if planned_bytes_square(mid) <= budget {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    };
    let by_binding = ((max_binding / 256) as f64).sqrt().floor() as usize;
    if by_binding < by_memory {
        (by_binding, "binding")
    } else {
        (by_memory, "memory")
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

/// One kernel's share of a profiled iteration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelShare {
    pub kernel: String,
    pub ms: f64,
    pub dispatches: usize,
    pub percent: f64,
}

/// The profiled iteration of [`IterationReport`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Profile {
    pub clock: &'static str,
    pub method: &'static str,
    pub total_ms: f64,
    pub kernels: Vec<KernelShare>,
}

/// What `neural-style bench` measures (printed as one JSON line).
#[derive(Clone, Debug, serde::Serialize)]
pub struct IterationReport {
    /// Blocks of a tiled evaluation (0: the canvas at once).
    pub blocks: usize,
    pub bench: &'static str,
    pub size: usize,
    pub width: usize,
    pub height: usize,
    /// The canvas is this much wider on every side (the network runs at width + 2·margin).
    pub margin: usize,
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub weights: String,
    /// The engine's one-line note of the arithmetic chosen (f32, tensor cores, or why not).
    pub precision: String,
    /// "gram" or "w2".
    pub style_loss: &'static str,
    pub clock: &'static str,
    pub iterations: usize,
    pub warmup_iterations: usize,
    pub ms_per_iter: f64,
    pub ms_per_iter_min: f64,
    pub wall_ms_per_iter: f64,
    pub conv_gflop_per_iter: f64,
    pub conv_gflops: f64,
    pub peak_gpu_bytes: u64,
    pub peak_gpu_bytes_note: &'static str,
    pub planned_gpu_bytes: u64,
    pub setup_ms: f64,
    /// Dispatches of an iteration whose losses are not read (the loss scalars are skipped).
    pub dispatches_per_iter: usize,
    /// ... and of one whose losses are read.
    pub dispatches_per_logged_iter: usize,
    /// Wall time per iteration over `iterations` submitted back to back with one wait at the end.
    pub steady_ms_per_iter: f64,
    /// Command buffers an iteration is submitted as after that loop: 1, or one per VGG block when iterations are
    /// slow (a display's watchdog; `neural_style::submission`).
    pub command_buffers_per_iter: usize,
    /// The most GFLOP one launch of a GEMM built in pieces may hold after that loop (`null`: whole launches, the
    /// iterations are fast), and the launches an iteration then makes (`neural_style::submission`).
    pub launch_gflop_limit: Option<f64>,
    pub launches_per_iter: usize,
    /// Times the host blocked on the GPU per iteration in that steady loop (Adam, losses not read).
    pub host_waits_per_iter: f64,
    /// ... and per iteration with the losses read every iteration, one step late (a run with `--log`).
    pub host_waits_per_logged_iter: f64,
    /// Wall time per iteration of that logged loop (beside `steady_ms_per_iter`: what reading the losses costs).
    pub steady_logged_ms_per_iter: f64,
    /// The same count for L-BFGS, from a short run of its own.
    pub lbfgs: LbfgsWaits,
    pub losses_finite: bool,
    pub profile: Profile,
}

/// Host waits of L-BFGS (each evaluation of its line search needs the loss and gᵀd on the host).
#[derive(Clone, Debug, serde::Serialize)]
pub struct LbfgsWaits {
    pub history: usize,
    pub iterations: usize,
    pub evaluations: usize,
    pub host_waits: u64,
    pub host_waits_per_iter: f64,
    /// Waits per iteration beyond one per evaluation (the direction's).
    pub host_waits_per_iter_besides_evaluations: f64,
    pub ms_per_iter: f64,
}

/// L-BFGS iterations after its first, on a stylizer of its own; the first also evaluates x0.
const LBFGS_WAIT_ITERATIONS: usize = 3;

/// Counts the host waits of [`LBFGS_WAIT_ITERATIONS`] L-BFGS iterations (history 5: the count does not depend
/// on it, the memory does), after one iteration to start the history.
fn lbfgs_waits(
    ctx: &GpuContext,
    weights: &Vgg16Weights,
    content: &PlanarImage,
    style: &PlanarImage,
    opts: &StyleOptions,
) -> Result<LbfgsWaits> {
    let history = 5;
    let opts = StyleOptions { optimizer: crate::Optimizer::Lbfgs { history, max_evals: usize::MAX }, ..opts.clone() };
    let mut s = Stylizer::new(ctx, weights, content, std::slice::from_ref(style), &opts)?;
    s.step(false)?;
    let (waits, evals, iterations) = (ctx.host_waits(), s.evaluations().unwrap_or(0), s.iteration());
    let t = Instant::now();
    for _ in 0..LBFGS_WAIT_ITERATIONS {
        s.step(false)?;
    }
    ctx.wait(None)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let iterations = s.iteration() - iterations;
    let evaluations = s.evaluations().unwrap_or(0) - evals;
    // The closing wait above is the bench's, not L-BFGS's.
    let host_waits = ctx.host_waits() - waits - 1;
    let per = |n: f64| if iterations == 0 { 0.0 } else { round(n / iterations as f64, 3) };
    Ok(LbfgsWaits {
        history,
        iterations,
        evaluations,
        host_waits,
        host_waits_per_iter: per(host_waits as f64),
        host_waits_per_iter_besides_evaluations: per(host_waits as f64 - evaluations as f64),
        ms_per_iter: per(ms),
    })
}

/// The adapter and the weights of a bench (random weights unless a file is given: the speed does not depend on
/// the values), after checking the arguments.
fn open(args: &BenchArgs) -> Result<(GpuContext, Vgg16Weights, String)> {
    if args.iterations == 0 {
        return Err(Error::InvalidOption("bench needs at least one iteration".into()));
    }
    let ctx = GpuContext::new(&GpuOptions { adapter: args.adapter.clone(), ..Default::default() })?;
    let (weights, desc) = match &args.weights {
        Some(p) => (Vgg16Weights::load(p)?, p.display().to_string()),
        None => (vgg::random_weights(0), "random (seed 0)".to_string()),
    };
    Ok((ctx, weights, desc))
}

/// The options of a bench run: the defaults, with the bench's precision, style loss, margin and memory.
fn bench_options(args: &BenchArgs) -> StyleOptions {
    StyleOptions {
        precision: args.precision,
        style_loss: args.style_loss,
        style_weight: crate::defaults::style_weight(args.style_loss),
        margin: Some(args.margin),
        max_memory: args.max_memory,
        tile_size: args.tile_size,
        ..Default::default()
    }
}

/// What `neural-style bench --plan-only` prints: the memory plan of a `size`² run (the bench's options) on an
/// adapter, at once or in blocks, without running anything.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PlanReport {
    pub bench: &'static str,
    pub size: usize,
    pub canvas: (usize, usize),
    pub adapter: String,
    pub budget_bytes: u64,
    pub max_binding_bytes: u64,
    /// 0: the canvas at once.
    pub blocks: usize,
    pub block_owned_px: usize,
    pub block_margin_px: usize,
    pub block_px: (usize, usize),
    /// Pixels evaluated per canvas pixel in one pass.
    pub overlap: f64,
    pub planned_bytes: u64,
    pub untiled_bytes: u64,
    pub items: Vec<MemoryItem>,
}

/// The memory plan of the bench's run on its adapter (`max_binding` overrides the adapter's largest binding, to
/// plan for another card).
pub fn plan(args: &BenchArgs, max_binding: Option<u64>) -> Result<PlanReport> {
    let ctx = GpuContext::new(&GpuOptions { adapter: args.adapter.clone(), ..Default::default() })?;
    let opts = bench_options(args);
    let mut limits = opts.memory_limits(&ctx);
    limits.max_binding = max_binding.unwrap_or(limits.max_binding);
    let layout = memory_plan(args.size, args.size, &opts, false, &AdapterFacts::of(&ctx), limits)?;
    let canvas = opts.canvas(args.size, args.size)?.size();
    let g = layout.grid.as_ref();
    Ok(PlanReport {
        bench: "plan",
        size: args.size,
        canvas,
        adapter: ctx.adapter_name().to_string(),
        budget_bytes: limits.budget,
        max_binding_bytes: limits.max_binding,
        blocks: g.map_or(0, |g| g.blocks.len()),
        block_owned_px: g.map_or(0, |g| g.owned_side),
        block_margin_px: g.map_or(0, |g| g.margin),
        block_px: g.map_or(canvas, |g| g.block),
        overlap: g.map_or(1.0, |g| round(g.overlap(), 3)),
        planned_bytes: layout.bytes(),
        untiled_bytes: layout.untiled_bytes,
        items: layout.items,
    })
}

/// `neural-style bench`: full style iterations (content relu4_2 + 5 Gram style losses + TV, backward to the
/// image, Adam) on random `size` x `size` images.
pub fn run(args: &BenchArgs) -> Result<IterationReport> {
    let (ctx, weights, weights_desc) = open(args)?;
    let (w, h) = (args.size, args.size);
    let content = random_image(1, w, h);
    let style = random_image(2, w, h);
    let opts = bench_options(args);
    let setup = Instant::now();
    let mut precision = String::new();
    let mut s = Stylizer::with_progress(&ctx, &weights, &content, std::slice::from_ref(&style), &opts, &mut |stage| {
        if let crate::SetupStage::Precision(note) = stage {
            precision = note.clone();
        }
    })?;
    let setup_ms = setup.elapsed().as_secs_f64() * 1e3;

    let clock = Clock::for_context(&ctx);
    let dispatch_count = s.iteration_dispatches(false).len();
    let logged_dispatch_count = s.iteration_dispatches(true).len();
    let timer = Timer::new(&ctx, clock, 1);
    let iterate = |s: &mut Stylizer<'_>| -> Result<Timing> {
        s.prepare_step();
        timer.time(&[s.iteration_dispatches(false)])
    };

    // Warm-up: ≥ 3 iterations and ≥ WARMUP_MS.
    let start = Instant::now();
    let mut warmup = 0;
    while warmup < 3 || start.elapsed().as_secs_f64() * 1e3 < WARMUP_MS {
        iterate(&mut s)?;
        warmup += 1;
    }
    let mut gpu = Vec::new();
    let mut wall = Vec::new();
    for _ in 0..args.iterations {
        let t = iterate(&mut s)?;
        wall.push(t.wall_ms);
        gpu.push(t.first_ms());
    }
    let ms = median(&gpu);

    // Steady state, as a run goes: every iteration submitted as the engine does (one kept in flight), one wait
    // at the end, divided; includes the gaps between submissions that a per-iteration timer leaves out.
    let (steady, waits) = (Instant::now(), ctx.host_waits());
    for _ in 0..args.iterations {
        s.step(false)?;
    }
    ctx.wait(None)?;
    let steady_ms = steady.elapsed().as_secs_f64() * 1e3 / args.iterations as f64;
    // The closing wait is the bench's: a run's next iteration would take its place.
    let waits_per_iter = (ctx.host_waits() - waits - 1) as f64 / args.iterations as f64;
    let command_buffers_per_iter = s.command_buffers_per_iteration();
    let (launch_gflop_limit, launches_per_iter) = (s.recording().launch_gflop, s.launches_per_iteration());
    // Logged, as a run with --log goes: each iteration's losses read one step late.
    let (logged, waits) = (Instant::now(), ctx.host_waits());
    for _ in 0..args.iterations {
        s.step_pipelined(true)?;
    }
    let logged_waits_per_iter = (ctx.host_waits() - waits) as f64 / args.iterations as f64;
    s.flush_losses()?;
    let logged_ms = logged.elapsed().as_secs_f64() * 1e3 / args.iterations as f64;

    let profile = profile_iteration(&ctx, &mut s, clock, &timer)?;

    let losses = s.losses()?;
    let lbfgs = lbfgs_waits(&ctx, &weights, &content, &style, &opts)?;
    let facts = &s.net().facts;
    let affine = weights.convention != InputConvention::Caffe;
    let planned = memory_plan(w, h, &opts, affine, facts, opts.memory_limits(&ctx))?.bytes();
    let (cw, ch) = s.canvas().size();
    let flops = conv_flops_per_iteration(cw, ch);
    let driver = format!("{} {}", ctx.info.driver, ctx.info.driver_info).trim().to_string();
    Ok(IterationReport {
        bench: "iteration",
        size: args.size,
        width: w,
        height: h,
        margin: args.margin,
        adapter: ctx.adapter_name().to_string(),
        backend: format!("{:?}", ctx.info.backend),
        device_type: format!("{:?}", ctx.info.device_type),
        driver,
        weights: weights_desc,
        precision,
        style_loss: if args.style_loss == crate::StyleLoss::W2 { "w2" } else { "gram" },
        clock: clock.name(),
        iterations: args.iterations,
        warmup_iterations: warmup,
        ms_per_iter: round(ms, 4),
        ms_per_iter_min: round(gpu.iter().copied().fold(f64::INFINITY, f64::min), 4),
        wall_ms_per_iter: round(median(&wall), 4),
        conv_gflop_per_iter: round(flops / 1e9, 2),
        conv_gflops: round(flops / (ms * 1e6), 2),
        blocks: s.grid().map_or(0, |g| g.blocks.len()),
        peak_gpu_bytes: s.gpu_bytes(),
        peak_gpu_bytes_note: "allocation accounting: bytes of the buffers the stylizer created, not a driver \
                              measurement",
        planned_gpu_bytes: planned,
        setup_ms: round(setup_ms, 1),
        dispatches_per_iter: dispatch_count,
        dispatches_per_logged_iter: logged_dispatch_count,
        steady_ms_per_iter: round(steady_ms, 4),
        command_buffers_per_iter,
        launch_gflop_limit: launch_gflop_limit.map(|g| round(g, 2)),
        launches_per_iter,
        host_waits_per_iter: round(waits_per_iter, 3),
        host_waits_per_logged_iter: round(logged_waits_per_iter, 3),
        steady_logged_ms_per_iter: round(logged_ms, 4),
        lbfgs,
        losses_finite: losses.total.is_finite(),
        profile,
    })
}

/// One more iteration, timed dispatch by dispatch (one pass each with timestamps, or one submit each by the wall
/// clock), summed per kernel, largest first.
fn profile_iteration(ctx: &GpuContext, s: &mut Stylizer<'_>, clock: Clock, timer: &Timer) -> Result<Profile> {
    // Profiled iteration: one pass per dispatch (timestamps), or one submit per dispatch (wall clock).
    s.prepare_step();
    let per_dispatch: Vec<(String, f64)> = {
        let list = s.iteration_dispatches(false);
        match clock {
            Clock::Timestamps => {
                let profiler = Timer::new(ctx, clock, list.len());
                let passes: Vec<Vec<&Dispatch>> = list.iter().map(|d| vec![*d]).collect();
                let t = profiler.time(&passes)?;
                list.iter().map(|d| d.kernel.to_string()).zip(t.pass_ms.unwrap_or_default()).collect()
            }
            Clock::Wall => {
                let mut out = Vec::new();
                for d in &list {
                    out.push((d.kernel.to_string(), timer.time(&[vec![*d]])?.wall_ms));
                }
                out
            }
        }
    };
    let profiled_total: f64 = per_dispatch.iter().map(|p| p.1).sum();
    let mut by_kernel: Vec<(String, f64, usize)> = Vec::new();
    for (k, t) in per_dispatch {
        match by_kernel.iter_mut().find(|e| e.0 == k) {
            Some(e) => {
                e.1 += t;
                e.2 += 1;
            }
            None => by_kernel.push((k, t, 1)),
        }
    }
    by_kernel.sort_by(|a, b| b.1.total_cmp(&a.1));
    let kernels = by_kernel
        .into_iter()
        .map(|(kernel, t, dispatches)| KernelShare {
            kernel,
            ms: round(t, 4),
            dispatches,
            percent: round(100.0 * t / profiled_total.max(1e-12), 1),
        })
        .collect();

    Ok(Profile {
        clock: clock.name(),
        method: match clock {
            Clock::Timestamps => "one extra iteration, one compute pass per dispatch with timestamp writes",
            Clock::Wall => "one extra iteration, one submit + wait per dispatch (includes launch latency)",
        },
        total_ms: round(profiled_total, 4),
        kernels,
    })
}

/// One scale of a timed job.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScaleTiming {
    pub side: usize,
    pub width: usize,
    pub height: usize,
    pub iterations: usize,
    /// The scale's setup: the network plan, the style targets, the first image.
    pub setup_ms: f64,
    /// Iterations made (L-BFGS may stop a scale early; Adam makes them all).
    pub iterations_done: usize,
    /// Wall time of the scale's iterations, over the iterations made: until the hand-over to the next scale has
    /// been read back, or at the last scale until its last image has (the final scoring pass left out, unless
    /// L-BFGS stopped the job early).
    pub ms_per_iter: f64,
}

/// `neural-style bench --min-scale`: a whole coarse-to-fine job on random images, as a run paints it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct JobReport {
    pub bench: &'static str,
    pub size: usize,
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub weights: String,
    pub style_loss: &'static str,
    pub iterations: usize,
    pub min_scale: usize,
    /// The margin of every scale's canvas.
    pub margin: usize,
    pub scales: Vec<ScaleTiming>,
    /// Wall time of the whole job, setup of every scale and the final read-back included.
    pub total_ms: f64,
    pub losses_finite: bool,
}

/// Times each scale of a job from the events it reports.
struct ScaleClock {
    scales: Vec<ScaleTiming>,
    /// When the current scale's setup, and then its loop, began.
    setup_start: Instant,
    loop_start: Instant,
    final_losses: Option<crate::loss_terms::Losses>,
    /// The job's iterations: the image after the last one is read back, so its time is known.
    last: usize,
    closed: bool,
}

impl ScaleClock {
    /// Closes the current scale's loop time `ms` after its loop began.
    fn close(&mut self, ms: f64) {
        self.closed = true;
        if let Some(s) = self.scales.last_mut() {
            s.ms_per_iter = round(ms / s.iterations_done.max(1) as f64, 3);
        }
    }
}

impl crate::job::Observer for ScaleClock {
    type Error = std::convert::Infallible;

    fn wants_final_losses(&mut self) -> bool {
        true
    }

    fn wants_image(&mut self, iteration: usize) -> bool {
        iteration == self.last
    }

    fn event(&mut self, event: crate::job::Event<'_>) -> std::result::Result<(), Self::Error> {
        use crate::job::Event;
        match event {
            Event::Scale { scale, .. } => {
                self.close(self.loop_start.elapsed().as_secs_f64() * 1e3);
                self.closed = false;
                self.setup_start = Instant::now();
                let (width, height) = (scale.content.width, scale.content.height);
                let iterations = scale.iterations;
                let side = scale.side;
                let timing = ScaleTiming {
                    side,
                    width,
                    height,
                    iterations,
                    setup_ms: 0.0,
                    iterations_done: 0,
                    ms_per_iter: 0.0,
                };
                self.scales.push(timing);
            }
            Event::Ready { .. } => {
                if let Some(s) = self.scales.last_mut() {
                    s.setup_ms = round(self.setup_start.elapsed().as_secs_f64() * 1e3, 1);
                }
                self.loop_start = Instant::now();
            }
            Event::Iteration { image, .. } => {
                if let Some(s) = self.scales.last_mut() {
                    s.iterations_done += 1;
                }
                if image.is_some() {
                    self.close(self.loop_start.elapsed().as_secs_f64() * 1e3);
                }
            }
            Event::FinalLosses(r) => {
                if !self.closed {
                    self.close(self.loop_start.elapsed().as_secs_f64() * 1e3);
                }
                self.final_losses = Some(*r.losses);
            }
            _ => {}
        }
        Ok(())
    }
}

/// `neural-style bench --min-scale PX`: the whole job, coarse to fine from `min_scale` to `args.size`, with
/// `args.iterations` iterations in all (the scales' shares as a run's), timed scale by scale.
pub fn run_job(args: &BenchArgs, min_scale: usize) -> Result<JobReport> {
    use crate::job::{Job, JobImages, JobOptions, JobSize};
    let (ctx, weights, weights_desc) = open(args)?;
    let (w, h) = (args.size, args.size);
    let images = JobImages::new(random_image(1, w, h), vec![random_image(2, w, h)]);
    let size =
        JobSize { image_size: args.size, iterations: args.iterations, min_scale: Some(min_scale), cpu_defaults: false };
    let mut options = JobOptions::new(size);
    options.style.precision = args.precision;
    options.style.style_loss = args.style_loss;
    options.style.style_weight = crate::defaults::style_weight(args.style_loss);
    options.style.margin = Some(args.margin);
    let job = Job::plan(images, options)?;
    let now = Instant::now();
    let last = args.iterations;
    let mut clock =
        ScaleClock { scales: Vec::new(), setup_start: now, loop_start: now, final_losses: None, last, closed: false };
    let started = Instant::now();
    let painted = job.run(&ctx, &weights, &mut clock, &Default::default()).map_err(|f| f.into_error())?;
    let total_ms = round(started.elapsed().as_secs_f64() * 1e3, 1);
    let finite =
        clock.final_losses.is_some_and(|l| l.total.is_finite()) && painted.image.data.iter().all(|v| v.is_finite());
    Ok(JobReport {
        bench: "job",
        size: args.size,
        adapter: ctx.adapter_name().to_string(),
        backend: format!("{:?}", ctx.info.backend),
        device_type: format!("{:?}", ctx.info.device_type),
        weights: weights_desc,
        style_loss: if args.style_loss == crate::StyleLoss::W2 { "w2" } else { "gram" },
        iterations: args.iterations,
        min_scale,
        margin: args.margin,
        scales: clock.scales,
        total_ms,
        losses_finite: finite,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use neural_style_weights::VGG16_CONV_LAYERS;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn conv_flops_match_the_torch_baseline_formula() {
        // torch_baseline.py's flops_per_iter: 2 x sum over convs of 2 * h * w * cin * cout * 9 (forward +
        // backward-data), the pools halving h and w.
        let mut total = 0.0;
        let (mut h, mut w) = (32usize, 32usize);
        for (i, &(_, cin, cout)) in VGG16_CONV_LAYERS.iter().enumerate() {
            total += 2.0 * (h * w * cin * cout * 9) as f64;
            if vgg::POOL_AFTER.contains(&i) {
                h /= 2;
                w /= 2;
            }
        }
        assert_eq!(conv_flops_per_iteration(32, 32), 2.0 * total);
    }

    #[test]
    fn memory_plan_by_hand_at_64() {
        let (c, s) = default_layers();
        assert_eq!(c, vec![8]);
        assert_eq!(s, vec![0, 2, 4, 7, 10]);
        let no_margin = StyleOptions { margin: Some(0), ..Default::default() };
        let (gpu, unlimited) = (AdapterFacts::example_gpu(), UNLIMITED);
        let plan = memory_plan(64, 64, &no_margin, false, &gpu, unlimited).unwrap().items;
        // The default margin (8 px at 64 px) plans the 80x80 canvas.
        let with_margin = memory_plan(64, 64, &StyleOptions::default(), false, &gpu, unlimited).unwrap();
        assert_eq!(with_margin, memory_plan(80, 80, &no_margin, false, &gpu, unlimited).unwrap());
        let get = |what: &str| plan.iter().find(|i| i.what.starts_with(what)).unwrap().bytes;
        let p = 64 * 64u64;
        // The content target is a framed copy of relu4_2 (8x8: 12 floats per row, 10 rows).
        let relu4_2 = crate::frame::Frame::new(8, 8).buffer_floats(512) as u64;
        assert_eq!(get("content target"), 4 * relu4_2);
        assert_eq!(get("style target"), 4 * (64 * 64 + 128 * 128 + 256 * 256 + 512 * 512 + 512 * 512));
        assert_eq!(get("gram"), get("style target"));
        assert_eq!(get("Adam"), 2 * 4 * crate::frame::Frame::new(64, 64).buffer_floats(3) as u64);
        let _ = p;
        assert_eq!(get("loss slots"), 4 * 7);
        // 14.7 M parameters in the forward and the backward layout, f32; conv1_1's backward (narrow kernel)
        // holds 64 x 9 vec4s instead of 64 x 3 x 9 floats.
        let params: u64 = VGG16_CONV_LAYERS.iter().map(|&(_, i, o)| (i * o * 9) as u64).sum();
        let biases = (64 + 64 + 128 + 128 + 256 * 3 + 512 * 4) as u64;
        assert_eq!(get("weights"), 8 * params + 4 * biases + 4 * (64 * 9 * 4 - 64 * 3 * 9));
        // The network's buffers are the plan's (tested in plan.rs).
        let net = crate::plan::Plan::new(crate::plan::PlanSpec {
            width: 64,
            height: 64,
            convs: VGG16_CONV_LAYERS.iter().map(|&(_, i, o)| (i, o)).collect(),
            pooling: crate::Pooling::Max,
            input_affine: false,
            taps: vec![0, 2, 4, 7, 8, 10],
            backward: true,
        });
        assert_eq!(get("network"), net.bytes());
        // torchvision weights add the network input and its gradient, but both die early enough that their
        // slots grow into ones the plan needs anyway: no extra bytes.
        let affine = memory_plan(64, 64, &no_margin, true, &gpu, unlimited).unwrap();
        assert_eq!(affine.bytes(), plan.iter().map(|i| i.bytes).sum::<u64>());
    }

    /// On a GPU with an 8 GB budget (NVIDIA's 2 GiB bindings), 2048² runs at once; 4096² and 8192² are planned in
    /// blocks under the budget, where at once would need 4 and 16 times the 2048² plan.
    #[test]
    fn large_canvases_are_planned_in_blocks_under_the_budget() {
        let (gpu, opts) = (AdapterFacts::example_gpu(), StyleOptions::default());
        let limits = crate::layout::MemoryLimits { budget: 8_000_000_000, max_binding: 2_147_483_644 };
        let at_once = memory_plan(2048, 2048, &opts, false, &gpu, limits).unwrap();
        assert!(at_once.grid.is_none());
        eprintln!("2048² on its canvas: at once, {:.2} GB", at_once.bytes() as f64 / 1e9);
        for side in [4096, 8192] {
            let plan = memory_plan(side, side, &opts, false, &gpu, limits).unwrap();
            let line = plan.describe().expect("in blocks");
            assert!(plan.bytes() <= limits.budget && plan.untiled_bytes > 2 * limits.budget, "{line}");
            let g = plan.grid.as_ref().unwrap();
            assert_eq!(g.margin, 144);
            assert!(g.overlap() < 2.0, "{line}");
            eprintln!("{line}");
        }
    }

    #[test]
    fn memory_plan_scales_with_pixels_and_fits() {
        // ~1.4 KB per pixel plus the weights: 2048² needs about 6.0 GB, under half of PyTorch's 13.4 GB.
        let b2048 = planned_bytes_square(2048);
        assert!(b2048 > 5_700_000_000 && b2048 < 6_300_000_000, "{b2048}");
        assert!(b2048 < 6_700_000_000);
        let (side, why) = largest_square(16_000_000_000, u64::MAX);
        assert_eq!(why, "memory");
        assert!(planned_bytes_square(side) <= 16_000_000_000);
        assert!(planned_bytes_square(side + 1) > 16_000_000_000);
        // The 2 GiB binding limit of the H100/H200 stops at 2896 (64 x 2896² x 4 bytes < 2 GiB).
        let (side, why) = largest_square(80_000_000_000, 2_147_483_644);
        assert_eq!((side, why), (2896, "binding"));
        assert_eq!(largest_square(1000, u64::MAX).0, 0);
    }
}

/// What `neural-style bench --masks` prints: the cost of spatial control (docs/MATHS.md, "Spatial control"),
/// ms per iteration of the same problem with and without masks, timed in the same run, case by case in turn.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MasksReport {
    pub bench: &'static str,
    pub size: usize,
    pub adapter: String,
    pub clock: &'static str,
    pub iterations: usize,
    pub cases: Vec<MaskCase>,
}

/// One problem of [`MasksReport`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct MaskCase {
    pub what: &'static str,
    pub ms_per_iter: f64,
    /// This case's time over its unmasked peer's (the case before it).
    pub vs_unmasked: f64,
    pub dispatches_per_iter: usize,
    pub peak_gpu_bytes: u64,
}

/// Times, in turn, one style unmasked and on half of the image (the masks' own cost: one multiply per tapped
/// activation), then two styles blended and on two complementary halves with a content mask (two regions: two
/// Grams per layer).
pub fn masks(args: &BenchArgs) -> Result<MasksReport> {
    use crate::masks::{Mask, Masks};
    let (ctx, weights, _) = open(args)?;
    let (w, h) = (args.size, args.size);
    let content = random_image(1, w, h);
    let styles = [random_image(2, w, h), random_image(3, w, h)];
    let left =
        Mask { width: w, height: h, values: (0..w * h).map(|i| if i % w < w / 2 { 1.0 } else { 0.0 }).collect() };
    let right = Mask { values: left.values.iter().map(|v| 1.0 - v).collect(), ..left.clone() };
    let base = bench_options(args);
    let with = |masks: Masks| StyleOptions { masks, ..base.clone() };
    let cases: [(&'static str, usize, StyleOptions); 4] = [
        ("one style, unmasked", 1, base.clone()),
        ("one style on half the image", 1, with(Masks { style: vec![left.clone()], ..Default::default() })),
        ("two styles blended", 2, base.clone()),
        (
            "two styles on two halves, content mask",
            2,
            with(Masks { style: vec![left.clone(), right], content: Some(left), ..Default::default() }),
        ),
    ];
    let mut stylizers = Vec::new();
    for (_, n, opts) in &cases {
        stylizers.push(Stylizer::new(&ctx, &weights, &content, &styles[..*n], opts)?);
    }
    let clock = Clock::for_context(&ctx);
    let timer = Timer::new(&ctx, clock, 1);
    let mut times = vec![Vec::new(); cases.len()];
    // Warm-up rounds, then the timed ones: every case once per round, so drift hits them alike.
    for round in 0..args.iterations + 3 {
        for (s, t) in stylizers.iter_mut().zip(&mut times) {
            s.prepare_step();
            let ms = timer.time(&[s.iteration_dispatches(false)])?.first_ms();
            if round >= 3 {
                t.push(ms);
            }
        }
    }
    let medians: Vec<f64> = times.iter().map(|t| median(t)).collect();
    let cases = cases
        .iter()
        .zip(&stylizers)
        .enumerate()
        .map(|(i, ((what, _, _), s))| MaskCase {
            what,
            ms_per_iter: round(medians[i], 4),
            vs_unmasked: round(medians[i] / medians[i - i % 2], 4),
            dispatches_per_iter: s.iteration_dispatches(false).len(),
            peak_gpu_bytes: s.gpu_bytes(),
        })
        .collect();
    Ok(MasksReport {
        bench: "masks",
        size: args.size,
        adapter: ctx.adapter_name().to_string(),
        clock: clock.name(),
        iterations: args.iterations,
        cases,
    })
}

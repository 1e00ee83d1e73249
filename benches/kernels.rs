//! Kernel microbenchmarks: every VGG16 conv (forward and backward-data), the Gram (split-K + reduce) at each
//! style layer, max pool forward/backward, the loss kernels and Adam, at the layer shapes of a square image
//! (`NEURAL_STYLE_BENCH_SIZE`, default 512), plus the adapter's measured peak (FMA throughput, copy bandwidth).
//!
//! `cargo bench --bench kernels [-- FILTER]` prints one JSON line per case: kernel, layer, shape, median ms,
//! GFLOP/s, GB/s, % of the measured peak, adapter and clock. FILTER keeps cases whose kernel or layer contains
//! it. Environment: `NEURAL_STYLE_BENCH_SIZE` (image side), `NEURAL_STYLE_BENCH_RUNS` (timed runs, ≥ 10),
//! `NEURAL_STYLE_BENCH_WARMUP_MS` (per case, default 100), `NEURAL_STYLE_BENCH_CLOCK=wall`,
//! `NEURAL_STYLE_ADAPTER`. Inputs are fresh seeded random data per case.
//!
//! FLOP counts: 2 per multiply-add for the GEMM-shaped kernels; the elementwise kernels count their arithmetic
//! roughly (they are memory-bound and judged by GB/s). Bytes: the minimum traffic (every input read once, every
//! output written once), so GB/s is a lower bound on the traffic the kernel really causes.

use std::time::Instant;

use neural_style::bench::{self, Clock, Peak, Timer};
use neural_style::frame::Frame;
use neural_style::gpu::{GpuContext, GpuOptions};
use neural_style::kernels::conv::ConvShape;
use neural_style::kernels::gram::GramVariant;
use neural_style::kernels::loss::StyleGradVariant;
use neural_style::kernels::{self, pool::PoolShape, AdapterFacts, Dispatch};
use neural_style::tensor::Tensor;
use neural_style::vgg::{self, POOL_AFTER, RELU_NAMES};
use neural_style::weights::VGG16_CONV_LAYERS;
use serde_json::{json, Value};

/// One kernel to report: which of the case's dispatches it times, and its work.
struct Measure {
    kernel: &'static str,
    which: Vec<usize>,
    flops: f64,
    bytes: f64,
}

/// Buffers and dispatches at one shape; each measure times a subset of the dispatches (in order).
struct Case {
    layer: String,
    shape: Value,
    dispatches: Vec<Dispatch>,
    measures: Vec<Measure>,
    _buffers: Vec<wgpu::Buffer>,
}

/// Fresh seeded random buffers.
struct Data<'a> {
    ctx: &'a GpuContext,
    seed: u64,
}

impl Data<'_> {
    fn random(&mut self, len: usize, scale: f32) -> wgpu::Buffer {
        self.seed += 1;
        self.ctx.buffer_from("bench input", &bench::random_f32(self.seed, len, scale)).unwrap()
    }
    /// Non-negative values (Adam's second moment).
    fn positive(&mut self, len: usize) -> wgpu::Buffer {
        self.seed += 1;
        let v: Vec<f32> = bench::random_f32(self.seed, len, 1.0).iter().map(|x| x.abs()).collect();
        self.ctx.buffer_from("bench input", &v).unwrap()
    }
    fn output(&self, len: usize) -> wgpu::Buffer {
        self.ctx.storage_buffer("bench output", len).unwrap()
    }
    /// A framed feature map of random values (its frame zero, as in the engine).
    fn framed(&mut self, channels: usize, frame: Frame, scale: f32) -> wgpu::Buffer {
        self.seed += 1;
        let dense = bench::random_f32(self.seed, channels * frame.height * frame.width, scale);
        self.ctx.buffer_from("bench input", &frame.frame(&dense, channels)).unwrap()
    }
    /// OIHW weights (host side, to lay out per variant).
    fn weights(&mut self, len: usize) -> Vec<f32> {
        self.seed += 1;
        bench::random_f32(self.seed, len, 0.05)
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn measure(kernel: &'static str, which: &[usize], flops: f64, bytes: f64) -> Measure {
    Measure { kernel, which: which.to_vec(), flops, bytes }
}

/// The variants to time: the ones this adapter uses, plus (with `NEURAL_STYLE_BENCH_ALL_VARIANTS=1`) the others,
/// marked "not used", as the evidence behind the choice.
fn all_variants() -> bool {
    std::env::var_os("NEURAL_STYLE_BENCH_ALL_VARIANTS").is_some()
}

fn variant_label(kernel: &str, v: impl std::fmt::Debug, used: bool) -> &'static str {
    let label = format!("{kernel} ({v:?}){}", if used { "" } else { ", not used" });
    Box::leak(label.into_boxed_str())
}

fn conv_case(ctx: &GpuContext, data: &mut Data<'_>, layer: usize, s: ConvShape) -> Case {
    let facts = AdapterFacts::of(ctx);
    let frame = s.frame();
    let wlen = s.cin * s.cout * 9;
    let x = data.framed(s.cin, frame, 1.0);
    let b = data.random(s.cout, 0.1);
    // Backward-data: the (already masked) output gradient, and the input's forward values whose sign is the
    // fused ReLU mask of the result (as for every conv but conv1_1 in the engine).
    let gy = data.framed(s.cout, frame, 1.0);
    let fwd = data.framed(s.cin, frame, 1.0);
    let flops = 2.0 * s.macs() as f64;
    let fwd_bytes = 4.0 * (s.cin * frame.plane() + wlen + s.cout + s.cout * frame.plane()) as f64;
    let bwd_bytes = 4.0 * (s.cout * frame.plane() + wlen + 2 * s.cin * frame.plane()) as f64;
    let mut dispatches = Vec::new();
    let mut measures = Vec::new();
    let mut buffers = vec![];
    let chosen = kernels::conv::forward_variant(s, &facts);
    for v in kernels::conv::forward_variant_list() {
        if v != chosen && !all_variants() {
            continue;
        }
        let w = data
            .ctx
            .buffer_from("bench weights", &kernels::conv::forward_weights(v, &data.weights(wlen), s.cin, s.cout))
            .unwrap();
        let y = data.output(frame.buffer_floats(s.cout));
        let kernel = kernels::conv::ConvKernel::f32(v).unwrap();
        let io = kernels::conv::ForwardIo { input: &x, weights: &w, bias: &b, output: &y };
        dispatches.push(kernels::conv::conv3x3(ctx, kernel, s, true, io).unwrap());
        measures.push(measure(variant_label("conv3x3", v, v == chosen), &[dispatches.len() - 1], flops, fwd_bytes));
        buffers.extend([w, y]);
    }
    let chosen = kernels::conv::backward_variant(s, &facts);
    for v in kernels::conv::backward_variant_list(s.cin) {
        if v != chosen && !all_variants() {
            continue;
        }
        let w = data
            .ctx
            .buffer_from("bench weights", &kernels::conv::backward_weights(v, &data.weights(wlen), s.cin, s.cout))
            .unwrap();
        let gx = data.output(frame.buffer_floats(s.cin));
        let mask = (layer > 0).then_some(&fwd);
        let kernel = kernels::conv::ConvKernel::f32(v).unwrap();
        let io = kernels::conv::BackwardIo { grad_out: &gy, weights: &w, mask_src: mask, grad_in: &gx };
        dispatches.push(kernels::conv::conv3x3_backward_data(ctx, kernel, s, io).unwrap());
        let label = variant_label("conv3x3_backward_data", v, v == chosen);
        measures.push(measure(label, &[dispatches.len() - 1], flops, bwd_bytes));
        buffers.extend([w, gx]);
    }
    buffers.extend([x, b, gy, fwd]);
    Case {
        layer: VGG16_CONV_LAYERS[layer].0.to_string(),
        shape: json!({"cin": s.cin, "cout": s.cout, "height": s.height, "width": s.width}),
        dispatches,
        measures,
        _buffers: buffers,
    }
}

fn gram_case(ctx: &GpuContext, data: &mut Data<'_>, layer: usize, (c, h, w): (usize, usize, usize)) -> Case {
    let facts = AdapterFacts::of(ctx);
    let frame = Frame::new(h, w);
    let n = h * w;
    let f = data.framed(c, frame, 1.0);
    let target = data.random(c * c, 1.0);
    let mut dispatches = Vec::new();
    let mut measures = Vec::new();
    let mut buffers = vec![];
    let chosen = kernels::gram::variant(&facts);
    let tile = kernels::grid::GEMM_TILE;
    let t = c.div_ceil(tile);
    for v in [GramVariant::Tiled, GramVariant::Cpu] {
        if v != chosen && !all_variants() {
            continue;
        }
        let partial = data.output(kernels::gram::partial_len(v, c, frame));
        let g = data.output(c * c);
        let kernel = kernels::gram::GramKernel::f32(v).unwrap();
        let ds = kernels::gram::gram(ctx, kernel, Tensor::new(&f, c, frame), &partial, &g).unwrap();
        let first = dispatches.len();
        let count = ds.len();
        dispatches.extend(ds);
        // The tiled kernel computes the upper-triangle tiles only, over the frame's K; the CPU kernel all of G.
        let macs = match v {
            GramVariant::Tiled | GramVariant::Coop { .. } => {
                (t * (t + 1) / 2 * tile * tile).min(c * c) as f64 * (h * frame.stride) as f64
            }
            GramVariant::Cpu => (c * c * h * frame.width.next_multiple_of(4)) as f64,
        };
        let which: Vec<usize> = (first..first + count).collect();
        let label = variant_label("gram", v, v == chosen);
        measures.push(measure(label, &which, 2.0 * macs, 4.0 * (c * frame.plane() + c * c) as f64));
        buffers.extend([partial, g]);
    }
    let chosen = kernels::loss::style_grad_variant(&facts);
    for v in [StyleGradVariant::Tiled, StyleGradVariant::Cpu] {
        if v != chosen && !all_variants() {
            continue;
        }
        let g = data.random(c * c, 1.0);
        let grad = data.output(frame.buffer_floats(c));
        let kernel = kernels::loss::StyleGradKernel::f32(v).unwrap();
        let io =
            kernels::loss::StyleGradIo { gram: &g, target: &target, features: Tensor::new(&f, c, frame), grad: &grad };
        dispatches.extend(kernels::loss::style_grad(ctx, kernel, 1e-3, false, io).unwrap());
        let label = variant_label("style_grad", v, v == chosen);
        let bytes = 4.0 * (2 * c * c + 2 * c * frame.plane()) as f64;
        measures.push(measure(label, &[dispatches.len() - 1], 2.0 * (c * c * n) as f64, bytes));
        buffers.extend([g, grad]);
    }
    buffers.extend([f, target]);
    Case {
        layer: RELU_NAMES[layer].to_string(),
        shape: json!({"channels": c, "height": h, "width": w}),
        dispatches,
        measures,
        _buffers: buffers,
    }
}

fn pool_case(ctx: &GpuContext, data: &mut Data<'_>, layer: usize, (c, h, w): (usize, usize, usize)) -> Case {
    let s = PoolShape { channels: c, height: h, width: w };
    let out_len = c * s.out_height() * s.out_width();
    let (fin, fout) = (Frame::new(h, w), Frame::new(s.out_height(), s.out_width()));
    let x = data.framed(c, fin, 1.0);
    let y = data.output(fout.buffer_floats(c));
    let gy = data.framed(c, fout, 1.0);
    let gx = data.output(fin.buffer_floats(c));
    let d_fwd = kernels::pool::pool2x2(ctx, neural_style::Pooling::Max, s, &x, &y).unwrap();
    let d_bwd = kernels::pool::pool2x2_backward(ctx, neural_style::Pooling::Max, s, &x, (&gy, &gx)).unwrap();
    Case {
        layer: RELU_NAMES[layer].to_string(),
        shape: json!({"channels": c, "height": h, "width": w}),
        dispatches: vec![d_fwd, d_bwd],
        measures: vec![
            measure("maxpool2x2", &[0], 3.0 * out_len as f64, 4.0 * (c * h * w + out_len) as f64),
            measure("maxpool2x2_backward", &[1], 3.0 * (c * h * w) as f64, 4.0 * (2 * c * h * w + out_len) as f64),
        ],
        _buffers: vec![x, y, gy, gx],
    }
}

fn content_case(ctx: &GpuContext, data: &mut Data<'_>, layer: usize, (c, h, w): (usize, usize, usize)) -> Case {
    // The engine runs these over whole framed buffers.
    let n = Frame::new(h, w).buffer_floats(c);
    let parts = kernels::loss::sq_diff_partials(n);
    let f = data.random(n, 1.0);
    let p = data.random(n, 1.0);
    let partials = data.output(parts);
    let losses = data.output(8);
    let grad = data.output(n);
    let d_sq = kernels::loss::sq_diff_sum(ctx, n, &f, &p, &partials).unwrap();
    let d_red = kernels::loss::reduce_sum(ctx, parts, 0, 1.0 / n as f64, &partials, &losses).unwrap();
    let d_grad = kernels::loss::content_grad(ctx, n, 2.0 / n as f64, false, &f, &p, &grad).unwrap();
    Case {
        layer: RELU_NAMES[layer].to_string(),
        shape: json!({"channels": c, "height": h, "width": w, "partials": parts}),
        dispatches: vec![d_sq, d_red, d_grad],
        measures: vec![
            measure("sq_diff_sum", &[0], 3.0 * n as f64, 4.0 * (2 * n + parts) as f64),
            measure("reduce_sum", &[1], parts as f64, 4.0 * (parts + 1) as f64),
            measure("content_grad", &[2], 2.0 * n as f64, 12.0 * n as f64),
        ],
        _buffers: vec![f, p, partials, losses, grad],
    }
}

fn image_case(ctx: &GpuContext, data: &mut Data<'_>, side: usize) -> Case {
    // The image and its gradient are framed; Adam runs over the whole buffer.
    let n = Frame::new(side, side).buffer_floats(3);
    let parts = kernels::loss::tv_partials(side, side);
    let x = data.framed(3, Frame::new(side, side), 100.0);
    let grad = data.framed(3, Frame::new(side, side), 1.0);
    let partials = data.output(parts);
    let m = data.random(n, 1.0);
    let v = data.positive(n);
    let d_tv = kernels::loss::tv_loss_grad(ctx, (side, side), 1e-3, true, &x, &grad, &partials).unwrap();
    let d_adam = kernels::adam::adam(ctx, n, 10.0, &x, &m, &v, &grad).unwrap();
    Case {
        layer: "image".to_string(),
        shape: json!({"channels": 3, "height": side, "width": side}),
        dispatches: vec![d_tv, d_adam],
        measures: vec![
            // Per element: two differences in, three terms of the gradient, the loss terms.
            measure("tv_loss_grad", &[0], 12.0 * n as f64, 4.0 * (3 * n + parts) as f64),
            measure("adam", &[1], 12.0 * n as f64, 28.0 * n as f64),
        ],
        _buffers: vec![x, grad, partials, m, v],
    }
}

fn report(case: &Case, m: &Measure, t: bench::CaseTiming, peak: &Peak, common: &Value) -> Value {
    let gflops = m.flops / (t.median_ms * 1e6);
    let gbs = m.bytes / (t.median_ms * 1e6);
    let (pf, pb) = (100.0 * gflops / peak.fma_gflops, 100.0 * gbs / peak.copy_gbs);
    let compute_bound = m.flops / m.bytes.max(1.0) > peak.fma_gflops / peak.copy_gbs;
    let r = |v: f64, d: i32| (v * 10f64.powi(d)).round() / 10f64.powi(d);
    let mut line = json!({
        "bench": "kernel",
        "kernel": m.kernel,
        "layer": case.layer,
        "shape": case.shape,
        "ms": r(t.median_ms, 4),
        "ms_min": r(t.min_ms, 4),
        "gflops": r(gflops, 2),
        "gbs": r(gbs, 2),
        "bound": if compute_bound { "compute" } else { "memory" },
        "pct_of_peak": r(if compute_bound { pf } else { pb }, 1),
        "pct_peak_flops": r(pf, 1),
        "pct_peak_bw": r(pb, 1),
        "runs": t.runs,
    });
    if let (Some(obj), Some(extra)) = (line.as_object_mut(), common.as_object()) {
        obj.extend(extra.clone());
    }
    line
}

fn main() -> anyhow::Result<()> {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let side = env_usize(bench::SIZE_ENV, 512);
    let runs = env_usize(bench::RUNS_ENV, 10).max(10);
    let warmup_ms = env_usize("NEURAL_STYLE_BENCH_WARMUP_MS", 100) as f64;
    vgg::check_size(side, side)?;

    let ctx = GpuContext::new(&GpuOptions::default())?;
    let clock = Clock::for_context(&ctx);
    let timer = Timer::new(&ctx, clock, 1);
    let common = json!({
        "size": side,
        "adapter": ctx.adapter_name(),
        "device_type": format!("{:?}", ctx.info.device_type),
        "clock": clock.name(),
    });
    if clock == Clock::Wall {
        eprintln!("note: no GPU timestamps on {}: wall clock (includes submit + wait latency)", ctx.adapter_name());
    }
    let start = Instant::now();

    let peak = bench::measure_peak(&ctx, &timer, runs)?;
    let mut line = json!({
        "bench": "peak",
        "fma_gflops": (peak.fma_gflops * 100.0).round() / 100.0,
        "copy_gbs": (peak.copy_gbs * 100.0).round() / 100.0,
        "fma_threads": peak.fma_threads,
        "fma_iters": peak.fma_iters,
        "copy_buffer_bytes": peak.copy_buffer_bytes,
        "runs": runs,
    });
    if let (Some(obj), Some(extra)) = (line.as_object_mut(), common.as_object()) {
        obj.extend(extra.clone());
    }
    println!("{line}");

    let couts: Vec<usize> = VGG16_CONV_LAYERS.iter().map(|l| l.2).collect();
    let shapes = vgg::layer_shapes(&couts, side, side);
    let (content_layers, style_layers) = bench::default_layers();
    let mut data = Data { ctx: &ctx, seed: 1000 };

    // Built one at a time (the buffers of a case are dropped before the next): at 2048² a conv case holds
    // ~2 GiB.
    type Build<'a> = Box<dyn Fn(&mut Data<'_>) -> Case + 'a>;
    let mut builders: Vec<(String, Build<'_>)> = Vec::new();
    let ctx_ref = &ctx;
    for (i, &(c, h, w)) in shapes.iter().enumerate() {
        let cin = VGG16_CONV_LAYERS[i].1;
        let s = ConvShape { cin, cout: c, height: h, width: w };
        builders.push((
            format!("conv3x3 conv3x3_backward_data {}", VGG16_CONV_LAYERS[i].0),
            Box::new(move |d| conv_case(ctx_ref, d, i, s)),
        ));
    }
    for &l in &style_layers {
        let sh = shapes[l];
        builders.push((
            format!("gram gram_reduce style_grad {}", RELU_NAMES[l]),
            Box::new(move |d| gram_case(ctx_ref, d, l, sh)),
        ));
    }
    for &l in &POOL_AFTER {
        let sh = shapes[l];
        builders.push((
            format!("maxpool2x2 maxpool2x2_backward {}", RELU_NAMES[l]),
            Box::new(move |d| pool_case(ctx_ref, d, l, sh)),
        ));
    }
    for &l in &content_layers {
        let sh = shapes[l];
        builders.push((
            format!("sq_diff_sum reduce_sum content_grad {}", RELU_NAMES[l]),
            Box::new(move |d| content_case(ctx_ref, d, l, sh)),
        ));
    }
    builders.push(("tv_loss_grad adam image".to_string(), Box::new(move |d| image_case(ctx_ref, d, side))));

    for (names, build) in &builders {
        if filter.as_ref().is_some_and(|f| !names.contains(f.as_str())) {
            continue;
        }
        let case = build(&mut data);
        for m in &case.measures {
            let list: Vec<&Dispatch> = m.which.iter().map(|&i| &case.dispatches[i]).collect();
            let t = bench::time_case(&timer, &list, runs, warmup_ms)?;
            println!("{}", report(&case, m, t, &peak, &common));
        }
    }
    eprintln!("kernel benches done in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

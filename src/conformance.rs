//! Kernel conformance checks: each runs one WGSL kernel on seeded random data (outputs poisoned with NaN first)
//! and compares it with the f64 CPU reference in [`crate::reference`]. The test suite runs them over many
//! shapes; `neural-style selftest` runs them at small shapes on every adapter and prints a table.
//!
//! Tolerance: |gpu − ref| ≤ tol · (|ref| + rms(ref)), so NaN (an unwritten element) always fails.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::frame::Frame;
use crate::gpu::GpuContext;
use crate::kernels::conv::{ConvShape, ConvVariant};
use crate::kernels::coop::{self, CoopConfig};
use crate::kernels::gram::GramVariant;
use crate::kernels::loss::StyleGradVariant;
use crate::kernels::w2::MatmulVariant;
use crate::kernels::{self, pool::PoolShape};
use crate::reference as r;

/// Default relative tolerance of the f32 kernels against the f64 reference.
pub const RTOL: f64 = 1e-4;

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

/// conv3x3 forward (+ bias, ± ReLU) with `variant`'s kernel.
pub fn conv3x3(ctx: &GpuContext, s: ConvShape, relu: bool, variant: ConvVariant, seed: u64) -> Check {
    let io = Io { ctx };
    let (cin, cout, h, w) = (s.cin, s.cout, s.height, s.width);
    let frame = s.frame();
    let mut g = rng(seed);
    let x = random(&mut g, cin * h * w, 1.0);
    let wt = random(&mut g, cout * cin * 9, (3.0 / (cin as f64 * 9.0)).sqrt());
    let b = random(&mut g, cout, 0.5);
    let expect = r::conv3x3(&x, cin, h, w, &wt, &b, cout, relu);
    let what = format!("conv3x3 ({variant:?}) {cin}->{cout} {h}x{w} relu={relu}");
    let run = || -> Result<wgpu::Buffer> {
        let wf = kernels::conv::forward_weights(variant, &to_f32(&wt), cin, cout);
        let (xb, wb, bb, ob) =
            (io.framed(&x, cin, frame)?, ctx.buffer_from("w", &wf)?, io.buf(&b)?, io.framed_out(cout, frame)?);
        match variant {
            ConvVariant::Coop { config, twin } => {
                let ranges = ctx.storage_buffer("ranges", 1)?;
                let measure = kernels::coop::max_abs(ctx, frame.buffer_floats(cin), 0, &xb, &ranges)?;
                let ops = coop_operands(&ranges, &wt);
                let d = kernels::conv::conv3x3_coop(ctx, config, twin, s, relu, &xb, &wb, &bb, &ob, &ops)?;
                ctx.run(&[&measure, &d])?;
            }
            _ => ctx.run(&[&kernels::conv::conv3x3(ctx, variant, s, relu, &xb, &wb, &bb, &ob)?])?,
        }
        Ok(ob)
    };
    let out = run().map_err(gpu_err)?;
    compare(&what, &io.read_framed(&out, cout, frame, &what)?, &expect, conv_tolerance(variant))
}

/// Tolerance of the tensor-core kernels and their twin: operands rounded to f16 (11 significant bits, 2^-12
/// relative), products summed in f32; relative to rms(ref) the error of a K-term sum stays near 2^-11.
pub const COOP_TOL: f64 = 5e-3;

fn conv_tolerance(variant: ConvVariant) -> f64 {
    match variant {
        ConvVariant::Coop { .. } => COOP_TOL,
        _ => RTOL,
    }
}

/// The tensor-core operand ranges of a conv check: the weights' largest magnitude known on the host, the
/// activations' measured into entry 0 of `ranges`.
fn coop_operands<'a>(ranges: &'a wgpu::Buffer, weights: &[f64]) -> kernels::conv::CoopOperands<'a> {
    let largest = weights.iter().fold(0.0f64, |m, v| m.max(v.abs())) as f32;
    kernels::conv::CoopOperands {
        ranges,
        weights: kernels::coop::OperandRange::fixed(largest),
        input: kernels::coop::OperandRange::measured(0),
    }
}

/// conv3x3 backward-data with `variant`'s kernel against the reference, with and without the fused ReLU mask of
/// its input (the kernel is given the already-masked output gradient, as every writer of a gradient in the
/// engine leaves it); when `finite_differences`, the unmasked result against central differences of
/// L(x) = Σ r · relu(conv(x)).
pub fn conv3x3_backward_data(
    ctx: &GpuContext,
    s: ConvShape,
    variant: ConvVariant,
    finite_differences: bool,
    seed: u64,
) -> Check {
    let io = Io { ctx };
    let (cin, cout, h, w) = (s.cin, s.cout, s.height, s.width);
    let frame = s.frame();
    let mut g = rng(seed);
    let x = random(&mut g, cin * h * w, 1.0);
    let wt = random(&mut g, cout * cin * 9, (3.0 / (cin as f64 * 9.0)).sqrt());
    let b = random(&mut g, cout, 0.5);
    let y = r::conv3x3(&x, cin, h, w, &wt, &b, cout, true);
    let gy = random(&mut g, cout * h * w, 1.0);
    // The input's own forward values (as if it were a ReLU output) for the fused mask.
    let mask = random(&mut g, cin * h * w, 1.0);
    let expect = r::conv3x3_backward_data(&gy, &y, cin, cout, h, w, &wt);
    let expect_masked = r::relu_mask(&expect, &mask);
    let what = format!("conv3x3_backward_data ({variant:?}) {cin}->{cout} {h}x{w}");
    let run = || -> Result<(wgpu::Buffer, wgpu::Buffer)> {
        let wbk = kernels::conv::backward_weights(variant, &to_f32(&wt), cin, cout);
        let gyb = io.framed(&r::relu_mask(&gy, &y), cout, frame)?;
        let (wb, mb) = (ctx.buffer_from("w", &wbk)?, io.framed(&mask, cin, frame)?);
        let (o1, o2) = (io.framed_out(cin, frame)?, io.framed_out(cin, frame)?);
        let ds = match variant {
            ConvVariant::Coop { config, twin } => {
                let ranges = ctx.storage_buffer("ranges", 1)?;
                let measure = kernels::coop::max_abs(ctx, frame.buffer_floats(cout), 0, &gyb, &ranges)?;
                let ops = coop_operands(&ranges, &wt);
                let d1 = kernels::conv::conv3x3_backward_data_coop(ctx, config, twin, s, &gyb, &wb, None, &o1, &ops)?;
                let d2 =
                    kernels::conv::conv3x3_backward_data_coop(ctx, config, twin, s, &gyb, &wb, Some(&mb), &o2, &ops)?;
                vec![measure, d1, d2]
            }
            _ => vec![
                kernels::conv::conv3x3_backward_data(ctx, variant, s, &gyb, &wb, None, &o1)?,
                kernels::conv::conv3x3_backward_data(ctx, variant, s, &gyb, &wb, Some(&mb), &o2)?,
            ],
        };
        ctx.run(&ds.iter().collect::<Vec<_>>())?;
        Ok((o1, o2))
    };
    let (o1, o2) = run().map_err(gpu_err)?;
    let plain = io.read_framed(&o1, cin, frame, &what)?;
    let masked = io.read_framed(&o2, cin, frame, &what)?;
    let tol = conv_tolerance(variant);
    let vs_ref =
        both(compare(&what, &plain, &expect, tol), compare(&format!("{what} masked"), &masked, &expect_masked, tol));
    if !finite_differences {
        return vs_ref;
    }
    let loss =
        |x: &[f64]| -> f64 { r::conv3x3(x, cin, h, w, &wt, &b, cout, true).iter().zip(&gy).map(|(a, b)| a * b).sum() };
    let eps = 1e-5;
    let fd: Vec<f64> = (0..x.len())
        .map(|i| {
            let (mut p, mut m) = (x.clone(), x.clone());
            p[i] += eps;
            m[i] -= eps;
            (loss(&p) - loss(&m)) / (2.0 * eps)
        })
        .collect();
    both(vs_ref, compare(&format!("{what} vs finite differences"), &plain, &fd, tol.max(1e-3)))
}

/// Max or average pooling, forward and backward (with the input ReLU's mask fused: no gradient where the input
/// is ≤ 0). With `ties`, values come from a small set so the first-in-row-major arg-max rule is exercised. Max
/// pooling must match exactly (tolerance 0).
pub fn pool(ctx: &GpuContext, s: PoolShape, avg: bool, ties: bool, seed: u64) -> Check {
    let io = Io { ctx };
    let (c, h, w) = (s.channels, s.height, s.width);
    let (oh, ow) = (h / 2, w / 2);
    let (fin, fout) = (Frame::new(h, w), Frame::new(oh, ow));
    let mut g = rng(seed);
    // Values exactly representable in f32, so max and routing can be compared exactly.
    let raw = random(&mut g, c * h * w, 1.0);
    let x: Vec<f64> = if ties { raw.iter().map(|v| (v * 2.0).round()).collect() } else { to_f64(&to_f32(&raw)) };
    let gy = to_f64(&to_f32(&random(&mut g, c * oh * ow, 1.0)));
    let name = if avg { "avgpool2x2" } else { "maxpool2x2" };
    let what = format!("{name} {c}x{h}x{w} ties={ties}");
    let run = || -> Result<(wgpu::Buffer, wgpu::Buffer)> {
        let (xb, ob, gyb, gxb) =
            (io.framed(&x, c, fin)?, io.framed_out(c, fout)?, io.framed(&gy, c, fout)?, io.framed_out(c, fin)?);
        let (f, b) = if avg {
            (kernels::pool::avgpool2x2(ctx, s, &xb, &ob)?, kernels::pool::avgpool2x2_backward(ctx, s, &xb, &gyb, &gxb)?)
        } else {
            (kernels::pool::maxpool2x2(ctx, s, &xb, &ob)?, kernels::pool::maxpool2x2_backward(ctx, s, &xb, &gyb, &gxb)?)
        };
        ctx.run(&[&f, &b])?;
        Ok((ob, gxb))
    };
    let (ob, gxb) = run().map_err(gpu_err)?;
    let (fwd, bwd) = (io.read_framed(&ob, c, fout, &what)?, io.read_framed(&gxb, c, fin, &what)?);
    let (ef, eb, tol) = if avg {
        (r::avgpool2x2(&x, c, h, w), r::relu_mask(&r::avgpool2x2_backward(&gy, c, h, w), &x), RTOL)
    } else {
        (r::maxpool2x2(&x, c, h, w), r::relu_mask(&r::maxpool2x2_backward(&x, &gy, c, h, w), &x), 0.0)
    };
    both(compare(&what, &fwd, &ef, tol), compare(&format!("{what} backward"), &bwd, &eb, tol))
}

/// Runs `variant`'s Gram dispatches on `features` (C framed planes at `frame`) and reads G back.
pub fn run_gram(
    ctx: &GpuContext,
    variant: GramVariant,
    c: usize,
    frame: Frame,
    features: &wgpu::Buffer,
) -> Result<Vec<f32>> {
    let io = Io { ctx };
    let partial = io.out(kernels::gram::partial_len(variant, c, frame))?;
    let gb = io.out(c * c)?;
    let d = match variant {
        GramVariant::Coop { config, twin } => {
            let ranges = ctx.storage_buffer("ranges", 1)?;
            kernels::gram::gram_coop(ctx, config, twin, c, frame, features, &partial, &gb, &ranges, 0)?
        }
        _ => kernels::gram::gram(ctx, variant, c, frame, features, &partial, &gb)?,
    };
    ctx.run(&d.iter().collect::<Vec<_>>())?;
    io.read(&gb, c * c)
}

/// Gram of a non-negative C x (h x w) feature map with `variant`'s kernel; also requires a rerun to be
/// bit-identical.
pub fn gram(ctx: &GpuContext, c: usize, h: usize, w: usize, variant: GramVariant, seed: u64) -> Check {
    let frame = Frame::new(h, w);
    let mut g = rng(seed);
    let f: Vec<f64> = random(&mut g, c * h * w, 1.0).iter().map(|v| v.max(0.0)).collect();
    let run = || -> Result<(Vec<f32>, Vec<f32>)> {
        let fb = Io { ctx }.framed(&f, c, frame)?;
        Ok((run_gram(ctx, variant, c, frame, &fb)?, run_gram(ctx, variant, c, frame, &fb)?))
    };
    let (first, again) = run().map_err(gpu_err)?;
    if first.iter().zip(&again).any(|(a, b)| a.to_bits() != b.to_bits()) {
        return Err(format!("gram ({variant:?}) {c}x{h}x{w}: rerun not bit-identical"));
    }
    let tol = match variant {
        GramVariant::Coop { .. } => COOP_TOL,
        _ => RTOL,
    };
    compare(&format!("gram ({variant:?}) {c}x{h}x{w}"), &first, &r::gram(&f, c, h * w), tol)
}

/// sq_diff_sum + reduce_sum into slot 1 of a 3-slot buffer (slots 0 and 2 must stay poisoned).
pub fn sq_diff_reduce(ctx: &GpuContext, n: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let a = random(&mut g, n, 2.0);
    let b = random(&mut g, n, 2.0);
    let groups = kernels::loss::sq_diff_partials(n);
    let run = || -> Result<Vec<f32>> {
        let (ab, bb, pb, lb) = (io.buf(&a)?, io.buf(&b)?, io.out(groups)?, io.out(3)?);
        let d = kernels::loss::sq_diff_sum(ctx, n, &ab, &bb, &pb)?;
        let red = kernels::loss::reduce_sum(ctx, groups, 1, 0.5, &pb, &lb)?;
        ctx.run(&[&d, &red])?;
        io.read(&lb, 3)
    };
    let got = run().map_err(gpu_err)?;
    if !(got[0].is_nan() && got[2].is_nan()) {
        return Err(format!("reduce_sum n={n} wrote outside its slot"));
    }
    compare(&format!("sq_diff_sum+reduce_sum n={n}"), &got[1..2], &[0.5 * r::sum_sq_diff(&a, &b)], RTOL)
}

/// content_grad (with F's ReLU mask fused), overwriting a poisoned gradient and accumulating onto a prior one.
pub fn content_grad(ctx: &GpuContext, n: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let f = random(&mut g, n, 1.0);
    let p = random(&mut g, n, 1.0);
    let prior = random(&mut g, n, 1.0);
    let grad = r::relu_mask(&r::content_loss(&f, &p, 5.0).1, &f);
    let scale = 2.0 * 5.0 / n as f64;
    let run = || -> Result<(Vec<f32>, Vec<f32>)> {
        let (fb, pb, g1, g2) = (io.buf(&f)?, io.buf(&p)?, io.out(n)?, io.buf(&prior)?);
        let d1 = kernels::loss::content_grad(ctx, n, scale, false, &fb, &pb, &g1)?;
        let d2 = kernels::loss::content_grad(ctx, n, scale, true, &fb, &pb, &g2)?;
        ctx.run(&[&d1, &d2])?;
        Ok((io.read(&g1, n)?, io.read(&g2, n)?))
    };
    let (over, acc) = run().map_err(gpu_err)?;
    let expect_acc: Vec<f64> = grad.iter().zip(&prior).map(|(a, b)| a + b).collect();
    both(compare("content_grad", &over, &grad, RTOL), compare("content_grad accumulate", &acc, &expect_acc, RTOL))
}

/// style_grad with `variant`'s kernel, fed the GPU Gram, against the reference dL/dF (with F's ReLU mask fused),
/// overwriting and accumulating. (G − A) is a difference of nearly equal numbers, so the tolerance is 2e-3.
pub fn style_grad(ctx: &GpuContext, c: usize, h: usize, w: usize, variant: StyleGradVariant, seed: u64) -> Check {
    let io = Io { ctx };
    let frame = Frame::new(h, w);
    let n = h * w;
    let mut g = rng(seed);
    let f: Vec<f64> = random(&mut g, c * n, 1.0).iter().map(|v| v.max(0.0)).collect();
    let fs: Vec<f64> = random(&mut g, c * n, 1.0).iter().map(|v| v.max(0.0)).collect();
    let prior = r::relu_mask(&random(&mut g, c * n, 1.0), &f);
    let a = r::gram(&fs, c, n);
    let w_s = 100.0;
    let grad = r::relu_mask(&r::style_loss(&f, &a, c, n, w_s).1, &f);
    let what = format!("style_grad ({variant:?}) {c}x{h}x{w}");
    let run = || -> Result<(wgpu::Buffer, wgpu::Buffer)> {
        let fb = io.framed(&f, c, frame)?;
        let gram_gpu = run_gram(ctx, kernels::gram::GramVariant::Tiled, c, frame, &fb)?;
        let (gramb, ab, ob, accb) =
            (ctx.buffer_from("g", &gram_gpu)?, io.buf(&a)?, io.framed_out(c, frame)?, io.framed(&prior, c, frame)?);
        let scale = 4.0 * w_s / ((c * c) as f64 * (c * n) as f64);
        let ds = match variant {
            StyleGradVariant::Coop { config, twin } => {
                // Entry 0: F's range; entry 1: G's (measured by style_grad_coop's own first dispatch).
                let ranges = ctx.storage_buffer("ranges", 2)?;
                let measure = kernels::coop::max_abs(ctx, frame.buffer_floats(c), 0, &fb, &ranges)?;
                let largest = a.iter().fold(0.0f64, |m, v| m.max(v.abs())) as f32;
                let slots = (1, largest, 0);
                let mut ds = vec![measure];
                let (f, t) = (&fb, &ab);
                ds.extend(kernels::loss::style_grad_coop(
                    ctx, config, twin, c, frame, scale, false, &gramb, t, f, &ob, &ranges, slots,
                )?);
                ds.extend(kernels::loss::style_grad_coop(
                    ctx, config, twin, c, frame, scale, true, &gramb, t, f, &accb, &ranges, slots,
                )?);
                ds
            }
            _ => vec![
                kernels::loss::style_grad(ctx, variant, c, frame, scale, false, &gramb, &ab, &fb, &ob)?,
                kernels::loss::style_grad(ctx, variant, c, frame, scale, true, &gramb, &ab, &fb, &accb)?,
            ],
        };
        ctx.run(&ds.iter().collect::<Vec<_>>())?;
        Ok((ob, accb))
    };
    let (ob, accb) = run().map_err(gpu_err)?;
    let expect_acc: Vec<f64> = grad.iter().zip(&prior).map(|(a, b)| a + b).collect();
    let tol = match variant {
        StyleGradVariant::Coop { .. } => COOP_TOL,
        _ => 2e-3,
    };
    both(
        compare(&what, &io.read_framed(&ob, c, frame, &what)?, &grad, tol),
        compare(&format!("{what} accumulate"), &io.read_framed(&accb, c, frame, &what)?, &expect_acc, tol),
    )
}

/// tv_loss_grad (accumulating and overwriting) and its loss through reduce_sum.
pub fn tv(ctx: &GpuContext, h: usize, w: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let frame = Frame::new(h, w);
    let mut g = rng(seed);
    let x = random(&mut g, 3 * h * w, 100.0);
    let prior = random(&mut g, 3 * h * w, 1.0);
    let wt = 1e-3;
    let (loss, grad) = r::tv_loss(&x, h, w, wt);
    let parts = kernels::loss::tv_partials(h, w);
    let what = format!("tv_loss_grad {h}x{w}");
    let run = || -> Result<(wgpu::Buffer, wgpu::Buffer, Vec<f32>)> {
        let (xb, gacc, gover) = (io.framed(&x, 3, frame)?, io.framed(&prior, 3, frame)?, io.framed_out(3, frame)?);
        let (pb, lb) = (io.out(parts)?, io.out(1)?);
        let d1 = kernels::loss::tv_loss_grad(ctx, h, w, wt, true, &xb, &gacc, &pb)?;
        let red = kernels::loss::reduce_sum(ctx, parts, 0, 1.0, &pb, &lb)?;
        let d2 = kernels::loss::tv_loss_grad(ctx, h, w, wt, false, &xb, &gover, &pb)?;
        ctx.run(&[&d1, &red, &d2])?;
        Ok((gacc, gover, io.read(&lb, 1)?))
    };
    let (gacc, gover, l) = run().map_err(gpu_err)?;
    let expect_acc: Vec<f64> = grad.iter().zip(&prior).map(|(a, b)| a + b).collect();
    both(
        both(
            compare(&what, &io.read_framed(&gacc, 3, frame, &what)?, &expect_acc, RTOL),
            compare(&format!("{what} overwrite"), &io.read_framed(&gover, 3, frame, &what)?, &grad, RTOL),
        ),
        compare(&format!("{what} loss"), &l, &[loss], RTOL),
    )
}

/// dot_sum + reduce_sum (Σ a·b and Σ |a|) into one slot of a poisoned array: neighbours stay untouched, a rerun
/// is bit-identical, and |gpu − ref| ≤ 1e-5 · Σ |a_i·b_i| (the sum's own f32 rounding scale: a dot product of
/// random vectors cancels, so its value can be far smaller than its terms).
pub fn dot(ctx: &GpuContext, n: usize, seed: u64) -> Check {
    use kernels::vector::{dot_partials, Reduction};
    let io = Io { ctx };
    let mut g = rng(seed);
    let a = random(&mut g, n, 3.0);
    let b = random(&mut g, n, 3.0);
    let mut worst = 0.0f64;
    for reduction in [Reduction::Dot, Reduction::AbsSum] {
        let run = || -> Result<(Vec<f32>, Vec<f32>)> {
            let (ab, bb, pb, sb) = (io.buf(&a)?, io.buf(&b)?, io.out(dot_partials(n))?, io.out(4)?);
            let [d0, d1] = kernels::vector::dot(ctx, reduction, n, (&ab, &bb), &pb, (&sb, 2))?;
            ctx.run(&[&d0, &d1])?;
            let first = io.read(&sb, 4)?;
            ctx.run(&[&d0, &d1])?;
            Ok((first, io.read(&sb, 4)?))
        };
        let (got, again) = run().map_err(gpu_err)?;
        let what = format!("dot_sum ({reduction:?}) n={n}");
        if !(got[0].is_nan() && got[1].is_nan() && got[3].is_nan()) {
            return Err(format!("{what}: wrote outside its slot"));
        }
        if got[2].to_bits() != again[2].to_bits() {
            return Err(format!("{what}: rerun differs ({} vs {})", got[2], again[2]));
        }
        let (expect, scale): (f64, f64) = match reduction {
            Reduction::Dot => {
                (a.iter().zip(&b).map(|(x, y)| x * y).sum(), a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum())
            }
            Reduction::AbsSum => (a.iter().map(|x| x.abs()).sum(), a.iter().map(|x| x.abs()).sum()),
        };
        let err = (f64::from(got[2]) - expect).abs() / scale.max(1e-300);
        if err.is_nan() || err > 1e-5 {
            return Err(format!("{what}: gpu {} vs reference {expect} (error {err:.2e} of Σ|terms| > 1e-5)", got[2]));
        }
        worst = worst.max(err);
    }
    Ok(worst)
}

/// axpy_slots: y = c·x over a poisoned y (keep = 0) and y += c·x (keep = 1), with c a constant and
/// c = scale · (slots[a] − slots[b]) / slots[d] as L-BFGS's two-loop recursion forms it.
pub fn axpy(ctx: &GpuContext, n: usize, seed: u64) -> Check {
    use kernels::vector::Coefficient;
    let io = Io { ctx };
    let mut g = rng(seed);
    let x = random(&mut g, n, 5.0);
    let y0 = random(&mut g, n, 5.0);
    let slots = [0.75, -2.5, 1.25, 40.0];
    let cases = [
        ("constant, overwrite", false, Coefficient::constant(-1.5), -1.5),
        (
            "slots (a − b) / d, accumulate",
            true,
            Coefficient::slots(-1.0, Some(1), Some(2), Some(0)),
            -((-2.5 - 1.25) / 0.75),
        ),
        ("slot a / d, overwrite", false, Coefficient::slots(2.0, Some(3), None, Some(2)), 2.0 * 40.0 / 1.25),
        ("1 − slot b, accumulate", true, Coefficient::slots(1.0, None, Some(0), None), 1.0 - 0.75),
    ];
    let mut worst = 0.0f64;
    for (what, keep, c, coef) in cases {
        let run = || -> Result<Vec<f32>> {
            let (xb, sb) = (io.buf(&x)?, io.buf(&slots)?);
            let yb = if keep { io.buf(&y0)? } else { io.out(n)? };
            let d = kernels::vector::axpy(ctx, n, keep, c, &xb, &yb, &sb)?;
            ctx.run(&[&d])?;
            io.read(&yb, n)
        };
        let got = run().map_err(gpu_err)?;
        let expect: Vec<f64> = x.iter().zip(&y0).map(|(xi, yi)| coef * xi + if keep { *yi } else { 0.0 }).collect();
        worst = worst.max(compare(&format!("axpy_slots ({what}) n={n}"), &got, &expect, RTOL)?);
    }
    Ok(worst)
}

/// Three fused Adam steps against torch.optim.Adam's formula.
pub fn adam(ctx: &GpuContext, n: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let mut x = random(&mut g, n, 100.0);
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    let lr = 10.0;
    let grads: Vec<Vec<f64>> = (0..3).map(|_| random(&mut g, n, 10.0)).collect();
    let run = |x: &[f64]| -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let (xb, mb, vb, gb) = (io.buf(x)?, io.buf(&vec![0.0; n])?, io.buf(&vec![0.0; n])?, io.out(n)?);
        let d = kernels::adam::adam(ctx, n, lr, &xb, &mb, &vb, &gb)?;
        for (t, grad) in grads.iter().enumerate() {
            ctx.queue.write_buffer(&gb, 0, bytemuck::cast_slice(&to_f32(grad)));
            kernels::adam::set_step(ctx, &d, n, lr, t as u64 + 1);
            ctx.run(&[&d])?;
        }
        Ok((io.read(&xb, n)?, io.read(&mb, n)?, io.read(&vb, n)?))
    };
    let (gx, gm, gv) = run(&x).map_err(gpu_err)?;
    for (t, grad) in grads.iter().enumerate() {
        r::adam_step(&mut x, &mut m, &mut v, grad, lr, t as u64 + 1);
    }
    both(both(compare("adam x", &gx, &x, RTOL), compare("adam m", &gm, &m, RTOL)), compare("adam v", &gv, &v, RTOL))
}

/// Four image_average updates (the first restarting over a poisoned b) against the f64 recurrence: b and the
/// average after each.
pub fn image_average(ctx: &GpuContext, n: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let decay = 0.99;
    let images: Vec<Vec<f64>> = (0..4).map(|_| random(&mut g, n, 120.0)).collect();
    let run = || -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let (xb, bb, ab) = (io.out(n)?, io.out(n)?, io.out(n)?);
        let d = kernels::average::image_average(ctx, n, decay, &xb, &bb, &ab)?;
        let mut out = Vec::new();
        for (t, x) in images.iter().enumerate() {
            ctx.queue.write_buffer(&xb, 0, bytemuck::cast_slice(&to_f32(x)));
            kernels::average::set_update(ctx, &d, n, decay, t as u64);
            ctx.run(&[&d])?;
            out.push((io.read(&bb, n)?, io.read(&ab, n)?));
        }
        Ok(out)
    };
    let got = run().map_err(gpu_err)?;
    let mut biased = vec![f64::NAN; n];
    let mut worst = 0.0f64;
    for (t, (x, (gb, ga))) in images.iter().zip(&got).enumerate() {
        let average = r::image_average(&mut biased, x, decay, t as u64);
        worst = worst.max(compare(&format!("image_average b, update {t}"), gb, &biased, RTOL)?);
        worst = worst.max(compare(&format!("image_average a, update {t}"), ga, &average, RTOL)?);
    }
    Ok(worst)
}

/// channel_mean over a framed ReLU-like feature map (output poisoned).
pub fn channel_mean(ctx: &GpuContext, c: usize, h: usize, w: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let frame = Frame::new(h, w);
    let mut g = rng(seed);
    let f: Vec<f64> = random(&mut g, c * h * w, 3.0).iter().map(|v| v.max(0.0)).collect();
    let run = || -> Result<Vec<f32>> {
        let (fb, mb) = (io.framed(&f, c, frame)?, io.out(c)?);
        ctx.run(&[&kernels::w2::channel_mean(ctx, c, frame, &fb, &mb)?])?;
        io.read(&mb, c)
    };
    compare(&format!("channel_mean {c}x{h}x{w}"), &run().map_err(gpu_err)?, &r::moments(&f, c, h * w).0, RTOL)
}

/// w2_covariance: C·G − μ·μᵀ + ridge·I (output poisoned).
pub fn w2_covariance(ctx: &GpuContext, c: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let (gram, mean) = (random(&mut g, c * c, 4.0), random(&mut g, c, 3.0));
    let ridge = 0.75;
    let run = || -> Result<Vec<f32>> {
        let (gb, mb, ob) = (io.buf(&gram)?, io.buf(&mean)?, io.out(c * c)?);
        ctx.run(&[&kernels::w2::covariance(ctx, c, ridge, &gb, &mb, &ob)?])?;
        io.read(&ob, c * c)
    };
    let expect: Vec<f64> = (0..c * c)
        .map(|k| c as f64 * gram[k] - mean[k / c] * mean[k % c] + if k / c == k % c { ridge } else { 0.0 })
        .collect();
    compare(&format!("w2_covariance C={c}"), &run().map_err(gpu_err)?, &expect, RTOL)
}

/// matmul (`variant`): alpha·A·B + beta·I with a constant alpha, then with alpha = scale·slots[1]^power
/// (outputs poisoned).
pub fn matmul(ctx: &GpuContext, variant: MatmulVariant, c: usize, seed: u64) -> Check {
    use kernels::w2::Alpha;
    let io = Io { ctx };
    let mut g = rng(seed);
    let (a, b) = (random(&mut g, c * c, 2.0), random(&mut g, c * c, 2.0));
    let slots = [f64::NAN, 6.25, f64::NAN];
    let cases = [
        ("constant alpha", Alpha::constant(-0.5), 1.5f32, -0.5),
        ("alpha from a slot", Alpha { scale: 0.25, slot: 1, power: -0.25 }, -0.75, 0.25 * 6.25f64.powf(-0.25)),
    ];
    let product = r::matmul(&a, &b, c);
    let mut worst = 0.0f64;
    for (what, alpha, beta, alpha_value) in cases {
        let run = || -> Result<Vec<f32>> {
            let (ab, bb, ob, sb) = (io.buf(&a)?, io.buf(&b)?, io.out(c * c)?, io.buf(&slots)?);
            ctx.run(&[&kernels::w2::matmul(ctx, variant, c, alpha, beta, (&ab, &bb), &ob, &sb)?])?;
            io.read(&ob, c * c)
        };
        let expect: Vec<f64> =
            (0..c * c).map(|k| alpha_value * product[k] + if k / c == k % c { f64::from(beta) } else { 0.0 }).collect();
        let name = format!("matmul ({variant:?}, {what}) C={c}");
        worst = worst.max(compare(&name, &run().map_err(gpu_err)?, &expect, RTOL)?);
    }
    Ok(worst)
}

/// sqrtm_start: Y = M / ‖M‖_F from the squared norm in a slot, Z = I (outputs poisoned).
pub fn sqrtm_start(ctx: &GpuContext, c: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let m = random(&mut g, c * c, 50.0);
    let norm2: f64 = m.iter().map(|v| v * v).sum();
    let slots = [f64::NAN, norm2];
    let run = || -> Result<(Vec<f32>, Vec<f32>)> {
        let (mb, sb, yb, zb) = (io.buf(&m)?, io.buf(&slots)?, io.out(c * c)?, io.out(c * c)?);
        ctx.run(&[&kernels::w2::sqrtm_start(ctx, c, &mb, (&sb, 1), (&yb, &zb))?])?;
        Ok((io.read(&yb, c * c)?, io.read(&zb, c * c)?))
    };
    let (y, z) = run().map_err(gpu_err)?;
    let expect_y: Vec<f64> = m.iter().map(|v| v / norm2.sqrt()).collect();
    let eye: Vec<f64> = (0..c * c).map(|k| if k / c == k % c { 1.0 } else { 0.0 }).collect();
    both(compare(&format!("sqrtm_start Y C={c}"), &y, &expect_y, RTOL), compare("sqrtm_start Z", &z, &eye, 0.0))
}

/// The whole Newton–Schulz square root as the W2 term runs it (dot_sum for ‖M‖_F², sqrtm_start, then the
/// iterations on matmul) on a covariance-like M with the ridge's conditioning: tr √M and M^−½ against the f64
/// eigendecomposition.
pub fn newton_schulz(ctx: &GpuContext, variant: MatmulVariant, c: usize, seed: u64) -> Check {
    use kernels::w2::Alpha;
    let io = Io { ctx };
    let mut g = rng(seed);
    let f: Vec<f64> = random(&mut g, c * 3 * c, 10.0).iter().map(|v| v.max(0.0)).collect();
    let (mean, srm) = r::moments(&f, c, 3 * c);
    let target = r::w2_target(&mean, &srm, c);
    let m = r::matmul(&target.sqrt, &r::matmul(&target.cov, &target.sqrt, c), c);
    let iterations = crate::loss_terms::W2_NEWTON_SCHULZ_ITERATIONS;
    let run = || -> Result<(Vec<f32>, Vec<f32>, f32)> {
        let (mb, slots) = (io.buf(&m)?, io.out(2)?);
        let partials = io.out(kernels::vector::dot_partials(c * c))?;
        let [y, y2, z, z2, p] = [(); 5].map(|_| io.out(c * c));
        let (mut y, mut y2, mut z, mut z2, p) = (y?, y2?, z?, z2?, p?);
        let norm =
            kernels::vector::dot(ctx, kernels::vector::Reduction::Dot, c * c, (&mb, &mb), &partials, (&slots, 0))?;
        let start = kernels::w2::sqrtm_start(ctx, c, &mb, (&slots, 0), (&y, &z))?;
        ctx.run(&[&norm[0], &norm[1], &start])?;
        for _ in 0..iterations {
            let mm = |alpha, beta, a, b, out| kernels::w2::matmul(ctx, variant, c, alpha, beta, (a, b), out, &slots);
            let step = [
                mm(Alpha::constant(-0.5), 1.5, &z, &y, &p)?,
                mm(Alpha::constant(1.0), 0.0, &y, &p, &y2)?,
                mm(Alpha::constant(1.0), 0.0, &p, &z, &z2)?,
            ];
            ctx.run(&step.iter().collect::<Vec<_>>())?;
            std::mem::swap(&mut y, &mut y2);
            std::mem::swap(&mut z, &mut z2);
        }
        let norm2 = io.read(&slots, 1)?[0];
        Ok((io.read(&y, c * c)?, io.read(&z, c * c)?, norm2))
    };
    let (y, z, norm2) = run().map_err(gpu_err)?;
    let root = f64::from(norm2).sqrt().sqrt();
    let trace_y: f64 = (0..c).map(|i| f64::from(y[i * c + i])).sum();
    let exact_sqrt = r::sym_fn(&m, c, |l| l.max(0.0).sqrt());
    let exact_trace: f64 = (0..c).map(|i| exact_sqrt[i * c + i]).sum();
    let tr_err = (root * trace_y - exact_trace).abs() / exact_trace;
    if tr_err.is_nan() || tr_err > 1e-4 {
        return Err(format!(
            "Newton–Schulz ({variant:?}) C={c}: tr √M {} vs {exact_trace} (error {tr_err:.2e} > 1e-4)",
            root * trace_y
        ));
    }
    let inv_sqrt: Vec<f32> = z.iter().map(|v| (f64::from(*v) / root) as f32).collect();
    let exact_inv = r::sym_fn(&m, c, |l| 1.0 / l.sqrt());
    Ok(tr_err.max(compare_norm(&format!("Newton–Schulz ({variant:?}) M^−½ C={c}"), &inv_sqrt, &exact_inv, 1e-2)?))
}

/// w2_loss into slot 1 of a 3-slot buffer (slots 0 and 2 must stay poisoned).
pub fn w2_loss(ctx: &GpuContext, c: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let (mean, target_mean) = (random(&mut g, c, 3.0), random(&mut g, c, 3.0));
    let (cov, y) = (random(&mut g, c * c, 40.0), random(&mut g, c * c, 0.2));
    let (norm2, weight, target_trace) = (1.0e4, 200.0, 321.0);
    let scalars = [f64::NAN, f64::NAN, norm2];
    let run = || -> Result<Vec<f32>> {
        let (mb, tb, cb, yb, sb, lb) =
            (io.buf(&mean)?, io.buf(&target_mean)?, io.buf(&cov)?, io.buf(&y)?, io.buf(&scalars)?, io.out(3)?);
        let inputs = kernels::w2::LossInputs { mean: &mb, target_mean: &tb, cov: &cb, y: &yb, scalars: (&sb, 2) };
        ctx.run(&[&kernels::w2::w2_loss(ctx, c, (weight, target_trace), inputs, (&lb, 1))?])?;
        io.read(&lb, 3)
    };
    let got = run().map_err(gpu_err)?;
    if !(got[0].is_nan() && got[2].is_nan()) {
        return Err(format!("w2_loss C={c} wrote outside its slot"));
    }
    let root = f64::sqrt(f64::sqrt(norm2));
    let sum: f64 =
        (0..c).map(|i| (mean[i] - target_mean[i]).powi(2) + cov[i * c + i] - 2.0 * root * y[i * c + i]).sum();
    compare(&format!("w2_loss C={c}"), &got[1..2], &[weight / c as f64 * (sum + target_trace)], RTOL)
}

/// w2_mean_grad: w/N·(2(μ − μ_t)/C − 2K·μ) (output poisoned).
pub fn w2_mean_grad(ctx: &GpuContext, c: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let (k, mean, target_mean) = (random(&mut g, c * c, 0.1), random(&mut g, c, 3.0), random(&mut g, c, 3.0));
    let w_over_n = 0.37;
    let run = || -> Result<Vec<f32>> {
        let (kb, mb, tb, ob) = (io.buf(&k)?, io.buf(&mean)?, io.buf(&target_mean)?, io.out(c)?);
        ctx.run(&[&kernels::w2::mean_grad(ctx, c, w_over_n, &kb, (&mb, &tb), &ob)?])?;
        io.read(&ob, c)
    };
    let expect: Vec<f64> = (0..c)
        .map(|i| {
            let km: f64 = (0..c).map(|j| k[i * c + j] * mean[j]).sum();
            w_over_n * (2.0 * (mean[i] - target_mean[i]) / c as f64 - 2.0 * km)
        })
        .collect();
    compare(&format!("w2_mean_grad C={c}"), &run().map_err(gpu_err)?, &expect, RTOL)
}

/// channel_bias_grad onto a prior gradient, masked by F > 0; the frame must stay zero.
pub fn channel_bias_grad(ctx: &GpuContext, c: usize, h: usize, w: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let frame = Frame::new(h, w);
    let n = h * w;
    let mut g = rng(seed);
    let f: Vec<f64> = random(&mut g, c * n, 1.0).iter().map(|v| v.max(0.0)).collect();
    let prior = r::relu_mask(&random(&mut g, c * n, 1.0), &f);
    let bias = random(&mut g, c, 2.0);
    let what = format!("channel_bias_grad {c}x{h}x{w}");
    let run = || -> Result<wgpu::Buffer> {
        let (bb, fb, gb) = (io.buf(&bias)?, io.framed(&f, c, frame)?, io.framed(&prior, c, frame)?);
        ctx.run(&[&kernels::w2::channel_bias_grad(ctx, c, frame, &bb, &fb, &gb)?])?;
        Ok(gb)
    };
    let gb = run().map_err(gpu_err)?;
    let got = io.read_framed(&gb, c, frame, &what)?;
    let expect: Vec<f64> = (0..c * n).map(|k| prior[k] + if f[k] > 0.0 { bias[k / n] } else { 0.0 }).collect();
    compare(&what, &got, &expect, RTOL)
}

/// channel_affine with arbitrary per-channel scale and offset (the frame must stay zero: the offset is not
/// written there).
pub fn channel_affine(ctx: &GpuContext, h: usize, w: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let frame = Frame::new(h, w);
    let mut g = rng(seed);
    let x = random(&mut g, 3 * h * w, 100.0);
    let (s, o) = ([0.5f32, 2.0, -1.0], [1.0f32, -3.0, 0.25]);
    let p = h * w;
    let expect: Vec<f64> = x.iter().enumerate().map(|(i, v)| v * f64::from(s[i / p]) + f64::from(o[i / p])).collect();
    let run = || -> Result<wgpu::Buffer> {
        let (xb, ob) = (io.framed(&x, 3, frame)?, io.framed_out(3, frame)?);
        let d = kernels::affine::channel_affine(ctx, frame, s, o, &xb, &ob)?;
        ctx.run(&[&d])?;
        Ok(ob)
    };
    let ob = run().map_err(gpu_err)?;
    compare("channel_affine", &io.read_framed(&ob, 3, frame, "channel_affine")?, &expect, RTOL)
}

/// The first-use check of the tensor-core path ([`kernels::conv::coop_against_f32`]) as a check.
pub fn coop_against_f32(ctx: &GpuContext, config: kernels::coop::CoopConfig, tol: f64) -> Check {
    kernels::conv::coop_against_f32(ctx, config, tol).map_err(gpu_err)?
}

/// frame_clear on a buffer whose every element holds a value: afterwards the frame is zero and every data pixel
/// is untouched.
pub fn frame_clear(ctx: &GpuContext, c: usize, h: usize, w: usize, seed: u64) -> Check {
    let frame = Frame::new(h, w);
    let mut g = rng(seed);
    let dirty = to_f32(&random(&mut g, frame.buffer_floats(c), 1.0));
    let run = || -> Result<Vec<f32>> {
        let b = ctx.buffer_from("dirty", &dirty)?;
        let d = kernels::frame::clear_frame(ctx, c, frame, &b)?;
        ctx.run(&[&d])?;
        ctx.read_all(&b)
    };
    let got = run().map_err(gpu_err)?;
    for (i, (&v, &before)) in got.iter().zip(&dirty).enumerate().take(Frame::HEAD + c * frame.plane()).skip(Frame::HEAD)
    {
        let want = if frame.is_data(i) { before } else { 0.0 };
        if v.to_bits() != want.to_bits() {
            return Err(format!("frame_clear {c}x{h}x{w}: index {i} is {v}, expected {want}"));
        }
    }
    Ok(0.0)
}

/// zero_u32 then max_abs (twice, into one entry, from two buffers of `n` values): the entry holds exactly the
/// bits of the largest magnitude of both, the other zeroed entries stay zero, and the word past the zeroed
/// range keeps its poison.
pub fn max_abs(ctx: &GpuContext, n: usize, seed: u64) -> Check {
    let mut g = rng(seed);
    let (a, b) = (random(&mut g, n, 3.0), random(&mut g, n, 2.0));
    let largest = a.iter().chain(&b).map(|&v| (v as f32).abs()).fold(0.0f32, f32::max);
    let poison = f32::from_bits(0x7fc0_dead);
    let run = || -> Result<Vec<f32>> {
        let (ab, bb, ranges) = (
            ctx.buffer_from("a", &to_f32(&a))?,
            ctx.buffer_from("b", &to_f32(&b))?,
            ctx.buffer_from("ranges", &[poison; 4])?,
        );
        let zero = kernels::coop::zero_ranges(ctx, 3, &ranges)?;
        let (ma, mb) =
            (kernels::coop::max_abs(ctx, n, 1, &ab, &ranges)?, kernels::coop::max_abs(ctx, n, 1, &bb, &ranges)?);
        ctx.run(&[&zero, &ma, &mb])?;
        ctx.read_all(&ranges)
    };
    let got = run().map_err(gpu_err)?;
    let want = [0.0, largest, 0.0, poison];
    if got.iter().zip(&want).any(|(g, w)| g.to_bits() != w.to_bits()) {
        return Err(format!("max_abs n={n}: ranges {got:?}, expected {want:?}"));
    }
    Ok(0.0)
}

/// VGG16-shaped weights with He-scaled uniform values, seeded (tests, selftest, benchmarks).
pub fn random_vgg(seed: u64) -> crate::weights::Vgg16Weights {
    use crate::weights::{ConvWeights, InputConvention, Vgg16Weights, VGG16_CONV_LAYERS};
    let mut g = rng(seed);
    let layers = VGG16_CONV_LAYERS
        .iter()
        .map(|&(name, cin, cout)| {
            let s = (6.0 / (cin as f64 * 9.0)).sqrt();
            ConvWeights {
                name: name.to_string(),
                cin,
                cout,
                weight: to_f32(&random(&mut g, cout * cin * 9, s)),
                bias: to_f32(&random(&mut g, cout, 0.1)),
            }
        })
        .collect();
    Vgg16Weights { layers, convention: InputConvention::Caffe, metadata: Default::default() }
}

/// The reference network for the same weights.
pub fn ref_net(w: &crate::weights::Vgg16Weights, avg_pool: bool) -> r::RefNet {
    let (s, o) = w.convention.input_affine();
    let identity = s == [1.0; 3] && o == [0.0; 3];
    r::RefNet {
        convs: w.layers.iter().map(|l| (l.name.clone(), l.cin, l.cout, to_f64(&l.weight), to_f64(&l.bias))).collect(),
        pool_after: crate::vgg::POOL_AFTER.to_vec(),
        avg_pool,
        input_affine: (!identity).then(|| (s.map(f64::from), o.map(f64::from))),
    }
}

/// A seeded random image in pixel units.
pub fn random_image(seed: u64, w: usize, h: usize) -> crate::PlanarImage {
    let mut g = rng(seed);
    let data = random(&mut g, 3 * w * h, 127.5).iter().map(|v| (v + 127.5) as f32).collect();
    crate::PlanarImage::new(w, h, data)
}

/// A complete style problem on random weights and images: two styles (one at another size, blended 3:1),
/// initialised away from the content so every loss term and its gradient are non-zero.
pub struct Problem {
    pub weights: crate::weights::Vgg16Weights,
    pub content: crate::PlanarImage,
    pub styles: Vec<crate::PlanarImage>,
    pub opts: crate::StyleOptions,
    pub pooling_avg: bool,
}

impl Problem {
    pub fn new(w: usize, h: usize, seed: u64) -> Self {
        let opts = crate::StyleOptions {
            style_blend_weights: vec![3.0, 1.0],
            init: crate::Init::Image(random_image(seed + 3, w, h)),
            // The f32 kernels: the tensor-core path is checked with its own tolerance (full_iterations_f16).
            precision: crate::Precision::F32,
            ..Default::default()
        };
        Self {
            weights: random_vgg(seed),
            content: random_image(seed + 1, w, h),
            styles: vec![random_image(seed + 2, w, h), random_image(seed + 4, h + 2, w + 3)],
            opts,
            pooling_avg: false,
        }
    }

    /// (content targets, style targets) computed by the reference, in f64.
    #[allow(clippy::type_complexity)]
    pub fn reference_targets(&self, net: &r::RefNet) -> (Vec<(usize, Vec<f64>)>, Vec<(usize, Vec<f64>)>) {
        let idx =
            |names: &[String]| -> Vec<usize> { names.iter().map(|n| crate::vgg::relu_index(n).unwrap()).collect() };
        let sub = |img: &crate::PlanarImage| to_f64(&crate::stylizer::subtract_mean(img));
        let (w, h) = (self.content.width, self.content.height);
        let fwd = net.forward(&sub(&self.content), h, w, 10);
        let content = idx(&self.opts.content_layers).into_iter().map(|l| (l, fwd.relu[l].clone())).collect();
        let blend = crate::stylizer::blend_weights(&self.opts.style_blend_weights, self.styles.len()).unwrap();
        let mut style = Vec::new();
        for l in idx(&self.opts.style_layers) {
            let mut a: Vec<f64> = Vec::new();
            for (k, s) in self.styles.iter().enumerate() {
                let f = net.forward(&sub(s), s.height, s.width, l);
                let (c, hh, ww) = f.shapes[l];
                let g = r::gram(&f.relu[l], c, hh * ww);
                a.resize(g.len(), 0.0);
                a.iter_mut().zip(g).for_each(|(t, v)| *t += blend[k] * v);
            }
            style.push((l, a));
        }
        (content, style)
    }

    /// The W2 style targets computed by the reference, in f64: the blended means and second moments of the
    /// style images' features at each style layer.
    pub fn reference_w2_targets(&self, net: &r::RefNet) -> Vec<(usize, r::W2Target)> {
        let blend = crate::stylizer::blend_weights(&self.opts.style_blend_weights, self.styles.len()).unwrap();
        let sub = |img: &crate::PlanarImage| to_f64(&crate::stylizer::subtract_mean(img));
        let mut out = Vec::new();
        for name in &self.opts.style_layers {
            let l = crate::vgg::relu_index(name).unwrap();
            let (mut mean, mut srm): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
            let mut c = 0;
            for (k, s) in self.styles.iter().enumerate() {
                let f = net.forward(&sub(s), s.height, s.width, l);
                let (cc, hh, ww) = f.shapes[l];
                c = cc;
                let (m, s2) = r::moments(&f.relu[l], c, hh * ww);
                mean.resize(c, 0.0);
                srm.resize(c * c, 0.0);
                mean.iter_mut().zip(m).for_each(|(t, v)| *t += blend[k] * v);
                srm.iter_mut().zip(s2).for_each(|(t, v)| *t += blend[k] * v);
            }
            out.push((l, r::w2_target(&mean, &srm, c)));
        }
        out
    }

    pub fn loss_weights(&self) -> (f64, f64, f64) {
        let o = &self.opts;
        (f64::from(o.content_weight), f64::from(o.style_weight), f64::from(o.tv_weight))
    }
}

/// A whole style iteration against the reference: the losses and the full gradient at the initial image, then
/// `steps` Adam iterations whose logged losses must follow the reference's own trajectory (losses, not pixels:
/// Adam's first steps are ±lr wherever the gradient's sign is close to a tie, so single pixels may differ).
pub fn full_iterations(ctx: &GpuContext, w: usize, h: usize, steps: usize, seed: u64) -> Check {
    full_iterations_of(ctx, Problem::new(w, h, seed), steps, F32_NETWORK_TOL)
}

/// Tolerances of a whole iteration, relative as in [`compare`]: dL/dx per element (None: only as a whole,
/// by [`compare_norm`] at `gradient_norm`) and each loss.
#[derive(Clone, Copy, Debug)]
pub struct NetworkTolerance {
    pub gradient: Option<f64>,
    pub gradient_norm: f64,
    pub loss: f64,
}

/// The f32 kernels through the whole network.
pub const F32_NETWORK_TOL: NetworkTolerance =
    NetworkTolerance { gradient: Some(1e-3), gradient_norm: 1e-4, loss: 1e-3 };
/// f16 operands through thirteen convolutions and back. The features stay within ~1e-3 (relative L2 at relu4_2:
/// 8e-4), but every ReLU whose input lies within that error of zero, and every max-pool window whose two largest
/// values do, may route its gradient the other way: a fraction δ of units moves by its whole size, an L2 error
/// near sqrt(δ) per layer. Measured on the random problems: 1e-2 to 4.5e-2 for the whole loss, up to 7.5e-2 for
/// the content term alone (avg pooling halves it). So dL/dx is held as a whole at 1e-1 and the losses, which
/// average over every unit, at 3e-3 (measured ≤ 4.3e-4).
pub const F16_NETWORK_TOL: NetworkTolerance = NetworkTolerance { gradient: None, gradient_norm: 1e-1, loss: 3e-3 };

/// As [`full_iterations`] on the tensor-core kernels (`precision` F16 or F16Twin), at [`F16_NETWORK_TOL`], for
/// one step only: Adam's first step is ±lr per pixel by the gradient's sign, so each near-zero gradient element
/// whose sign f16 flips moves its pixel 2·lr off the reference's trajectory.
pub fn full_iterations_f16(ctx: &GpuContext, w: usize, h: usize, seed: u64, precision: crate::Precision) -> Check {
    let mut p = Problem::new(w, h, seed);
    p.opts.precision = precision;
    full_iterations_of(ctx, p, 1, F16_NETWORK_TOL)
}

/// As [`full_iterations`] with average pooling and torchvision-convention weights (the input affine map).
pub fn full_iterations_avg_torchvision(ctx: &GpuContext, w: usize, h: usize, steps: usize, seed: u64) -> Check {
    let mut p = Problem::new(w, h, seed);
    p.pooling_avg = true;
    p.opts.pooling = crate::Pooling::Avg;
    p.weights.convention = crate::weights::InputConvention::Torchvision;
    full_iterations_of(ctx, p, steps, F32_NETWORK_TOL)
}

fn full_iterations_of(ctx: &GpuContext, p: Problem, steps: usize, tol: NetworkTolerance) -> Check {
    let (w, h) = (p.content.width, p.content.height);
    let net = ref_net(&p.weights, p.pooling_avg);
    let (content, style) = p.reference_targets(&net);
    let lw = p.loss_weights();
    let mut s = crate::Stylizer::new(ctx, &p.weights, &p.content, &p.styles, &p.opts).map_err(gpu_err)?;
    let mut x = to_f64(&s.x().map_err(gpu_err)?);
    let gpu_grad = s.gradient().map_err(gpu_err)?;
    let (_, ref_grad) = net.loss_and_gradient(&x, h, w, &content, &style, lw);
    let what = "dL/dx of the whole network";
    let mut worst = compare_norm(what, &gpu_grad, &ref_grad, tol.gradient_norm)?;
    if let Some(t) = tol.gradient {
        worst = worst.max(compare(what, &gpu_grad, &ref_grad, t)?);
    }
    let (mut m, mut v) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    for t in 1..=steps {
        let got = s.step(true).map_err(gpu_err)?.expect("losses");
        let ((lc, ls, lt), g) = net.loss_and_gradient(&x, h, w, &content, &style, lw);
        for (what, gv, rv) in [("content", got.content, lc), ("style", got.style, ls), ("tv", got.tv, lt)] {
            if rv <= 0.0 {
                return Err(format!(
                    "iteration {}: reference {what} loss is zero: the check would prove nothing",
                    t - 1
                ));
            }
            let err = (gv - rv).abs() / rv;
            if err.is_nan() || err > tol.loss {
                return Err(format!(
                    "iteration {}: {what} loss gpu {gv} vs reference {rv} (error {err:.2e} > {:.0e})",
                    t - 1,
                    tol.loss
                ));
            }
            worst = worst.max(err);
        }
        r::adam_step(&mut x, &mut m, &mut v, &g, f64::from(p.opts.learning_rate), t as u64);
    }
    Ok(worst)
}

/// L-BFGS on the GPU against the f64 reference ([`r::lbfgs`] on the reference network): `iterations`
/// iterations with `history` pairs (fewer than the iterations, so the history wraps). The reference replays the
/// GPU's accepted steps t (the line search's choices hang on the losses' last bits where its cubic fit is
/// ill-conditioned: f32 and f64 runs may branch apart; the search has its own unit tests), so this checks what
/// the GPU computes: every iterate's loss within 1e-3 relative, x at the end within 1e-3 relative L2 (the
/// pairs, the two-loop direction and the steps agree), and each iterate lower than the one before.
pub fn lbfgs_iterations(ctx: &GpuContext, w: usize, h: usize, iterations: usize, history: usize, seed: u64) -> Check {
    let mut p = Problem::new(w, h, seed);
    p.opts.optimizer = crate::Optimizer::Lbfgs { history, max_evals: 10 * iterations };
    let net = ref_net(&p.weights, p.pooling_avg);
    let (content, style) = p.reference_targets(&net);
    let lw = p.loss_weights();
    let mut s = crate::Stylizer::new(ctx, &p.weights, &p.content, &p.styles, &p.opts).map_err(gpu_err)?;
    let mut x = to_f64(&s.x().map_err(gpu_err)?);
    let mut got = Vec::new();
    for _ in 0..iterations {
        match s.step(true).map_err(gpu_err)? {
            Some(l) => got.push(l.total),
            None => break,
        }
        if s.stopped().is_some() {
            break;
        }
    }
    got.push(s.losses().map_err(gpu_err)?.total);
    let steps = s.line_steps().expect("L-BFGS").to_vec();
    if steps.len() < iterations {
        return Err(format!("L-BFGS stopped after {} of {iterations} iterations: {:?}", steps.len(), s.stopped()));
    }
    let expect = r::lbfgs(&mut x, iterations, history, r::LbfgsSteps::Given(&steps), |x| {
        let ((lc, ls, lt), g) = net.loss_and_gradient(x, h, w, &content, &style, lw);
        (lc + ls + lt, g)
    });
    if expect.len() != got.len() {
        return Err(format!("L-BFGS: the GPU made {} iterates, the reference {}", got.len(), expect.len()));
    }
    let mut worst = 0.0f64;
    for (i, (e, &loss)) in expect.iter().zip(&got).enumerate() {
        let err = (loss - e.loss).abs() / e.loss.abs();
        if err.is_nan() || err > 1e-3 {
            return Err(format!("L-BFGS iterate {i}: gpu loss {loss} vs reference {} (error {err:.2e})", e.loss));
        }
        if i > 0 && loss >= got[i - 1] {
            return Err(format!("L-BFGS iterate {i}: the loss did not fall ({} then {loss})", got[i - 1]));
        }
        worst = worst.max(err);
    }
    let gpu_x = s.x().map_err(gpu_err)?;
    Ok(worst.max(compare_norm("x after L-BFGS", &gpu_x, &x, 1e-3)?))
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

fn case(kernel: &'static str, name: String, run: impl Fn(&GpuContext) -> Check + Send + Sync + 'static) -> Case {
    Case { kernel, name, needs_fragment: None, run: Box::new(run) }
}

/// The tensor-core kernels checked: for each tiling, the software twin (any adapter) and, where the adapter has
/// the fragments, the cooperative matrices themselves.
fn coop_variants(full: bool) -> Vec<(&'static str, CoopConfig, bool)> {
    let tilings = if full { vec![coop::tiling(16, 32), coop::tiling(8, 8)] } else { vec![coop::tiling(16, 32)] };
    let mut v: Vec<_> = tilings.iter().map(|&c| ("gemm_coop twin", c, true)).collect();
    v.extend([coop::tiling(16, 32), coop::tiling(8, 8)].map(|c| ("gemm_coop", c, false)));
    v
}

/// The tensor-core kernels (conv forward and backward-data, Gram, style gradient) against the f64 reference,
/// grouped as kernel `gemm_coop twin` (runs anywhere) and `gemm_coop` (needs the cooperative matrices).
fn coop_cases(full: bool) -> Vec<Case> {
    let conv_shapes: Vec<(usize, usize, usize, usize)> = if full {
        vec![(3, 64, 33, 31), (64, 128, 17, 9), (1, 7, 7, 13), (128, 64, 5, 11), (512, 512, 3, 5), (4, 130, 19, 23)]
    } else {
        vec![(64, 128, 9, 7)]
    };
    let gram_shapes: Vec<(usize, usize, usize)> = if full {
        vec![(64, 17, 9), (3, 33, 31), (65, 12, 25), (128, 4099, 1), (512, 7, 13)]
    } else {
        vec![(64, 17, 9)]
    };
    let style_shapes: Vec<(usize, usize, usize)> =
        if full { vec![(64, 17, 9), (3, 7, 13), (128, 5, 7), (512, 3, 2), (65, 31, 1)] } else { vec![(64, 17, 9)] };
    let mut v = Vec::new();
    for (kernel, config, twin) in coop_variants(full) {
        let needs_fragment = (!twin).then_some(config.fragment);
        let mut push = |name: String, run: Box<dyn Fn(&GpuContext) -> Check + Send + Sync>| {
            v.push(Case { kernel, name, needs_fragment, run })
        };
        let conv_variant = ConvVariant::Coop { config, twin };
        for (i, &(cin, cout, height, width)) in conv_shapes.iter().enumerate() {
            let s = ConvShape { cin, cout, height, width };
            let name = format!("conv3x3 ({conv_variant:?}) {cin}->{cout} {height}x{width}");
            push(name, Box::new(move |ctx| conv3x3(ctx, s, true, conv_variant, 1600 + i as u64)));
            let name = format!("conv3x3_backward_data ({conv_variant:?}) {cin}->{cout} {height}x{width}");
            push(name, Box::new(move |ctx| conv3x3_backward_data(ctx, s, conv_variant, false, 1700 + i as u64)));
        }
        for (i, &(c, h, w)) in gram_shapes.iter().enumerate() {
            let variant = GramVariant::Coop { config, twin };
            let name = format!("gram ({variant:?}) {c}x{h}x{w} (+rerun bit-identical)");
            push(name, Box::new(move |ctx| gram(ctx, c, h, w, variant, 1800 + i as u64)));
        }
        for (i, &(c, h, w)) in style_shapes.iter().enumerate() {
            let variant = StyleGradVariant::Coop { config, twin };
            let name = format!("style_grad ({variant:?}) {c}x{h}x{w}");
            push(name, Box::new(move |ctx| style_grad(ctx, c, h, w, variant, 1900 + i as u64)));
        }
    }
    v
}

/// Every kernel check at this scale, every variant of each kernel included: the one list
/// `neural-style selftest` and `tests/kernels.rs` run.
pub fn cases(scale: Scale) -> Vec<Case> {
    let full = scale == Scale::Full;
    let conv = |(cin, cout, height, width): (usize, usize, usize, usize)| ConvShape { cin, cout, height, width };
    let mut v = Vec::new();
    // (cin, cout, h, w): odd, prime and realistic; a 3-channel side for conv1_1 both ways; more channels than
    // one CPU block (8) and than one tile (64), and not a multiple of either.
    let conv_shapes: Vec<(usize, usize, usize, usize)> = if full {
        vec![
            (3, 64, 33, 31),
            (64, 128, 17, 9),
            (1, 7, 7, 13),
            (128, 64, 5, 11),
            (512, 512, 3, 5),
            (64, 3, 16, 16),
            (4, 130, 19, 23),
            (16, 20, 1, 1),
        ]
    } else {
        vec![(3, 64, 17, 13), (64, 128, 9, 7), (512, 512, 3, 5)]
    };
    for (i, &s) in conv_shapes.iter().enumerate() {
        let s = conv(s);
        for variant in kernels::conv::forward_variant_list() {
            for relu in if full { vec![true, false] } else { vec![true] } {
                let name = format!("conv3x3 ({variant:?}) {}->{} {}x{} relu={relu}", s.cin, s.cout, s.height, s.width);
                v.push(case("conv3x3", name, move |ctx| conv3x3(ctx, s, relu, variant, 100 + i as u64)));
            }
        }
    }
    let bwd_shapes: Vec<(usize, usize, usize, usize)> =
        if full { conv_shapes.clone() } else { vec![(3, 64, 16, 16), (128, 64, 7, 9)] };
    for (i, &s) in bwd_shapes.iter().enumerate() {
        let s = conv(s);
        for variant in kernels::conv::backward_variant_list(s.cin) {
            let name = format!("conv3x3_backward_data ({variant:?}) {}->{} {}x{}", s.cin, s.cout, s.height, s.width);
            v.push(case("conv3x3_backward_data", name, move |ctx| {
                conv3x3_backward_data(ctx, s, variant, false, 200 + i as u64)
            }));
        }
    }
    // Central finite differences of L(x) = Σ r · relu(conv(x)), also for a 3-channel result (conv1_1's image
    // gradient).
    let fd_shapes: Vec<(usize, usize, usize, usize)> =
        if full { vec![(5, 6, 7, 9), (3, 70, 9, 7)] } else { vec![(5, 6, 7, 9)] };
    for (i, &s) in fd_shapes.iter().enumerate() {
        let s = conv(s);
        for variant in kernels::conv::backward_variant_list(s.cin) {
            let name = format!(
                "conv3x3_backward_data ({variant:?}) {}->{} {}x{} vs finite differences",
                s.cin, s.cout, s.height, s.width
            );
            v.push(case("conv3x3_backward_data", name, move |ctx| {
                conv3x3_backward_data(ctx, s, variant, true, 300 + i as u64)
            }));
        }
    }
    let pool_shapes: Vec<(usize, usize, usize)> = if full {
        vec![(3, 33, 31), (64, 17, 9), (1, 7, 13), (128, 16, 16), (512, 5, 3)]
    } else {
        vec![(64, 17, 9), (3, 33, 31)]
    };
    for (i, &(channels, height, width)) in pool_shapes.iter().enumerate() {
        let s = PoolShape { channels, height, width };
        for ties in [false, true] {
            let name = format!("maxpool2x2 (+backward) {channels}x{height}x{width} ties={ties}");
            v.push(case("maxpool2x2", name, move |ctx| pool(ctx, s, false, ties, 400 + i as u64)));
        }
        let name = format!("avgpool2x2 (+backward) {channels}x{height}x{width}");
        v.push(case("avgpool2x2", name, move |ctx| pool(ctx, s, true, false, 500 + i as u64)));
    }
    let gram_shapes: Vec<(usize, usize, usize)> = if full {
        vec![
            (3, 33, 31),
            (64, 17, 9),
            (1, 7, 13),
            (128, 4099, 1),
            (512, 7, 13),
            (65, 12, 25),
            (64, 200, 200),
            (17, 1, 1),
        ]
    } else {
        vec![(64, 17, 9), (512, 7, 13)]
    };
    for (i, &(c, h, w)) in gram_shapes.iter().enumerate() {
        for variant in [GramVariant::Tiled, GramVariant::Cpu] {
            let name = format!("gram ({variant:?}) {c}x{h}x{w} (+rerun bit-identical)");
            v.push(case("gram", name, move |ctx| gram(ctx, c, h, w, variant, 700 + i as u64)));
        }
    }
    let sq: Vec<usize> = if full { vec![1, 255, 4097, 33 * 31 * 3, 100_003] } else { vec![4097] };
    for (i, &n) in sq.iter().enumerate() {
        v.push(case("sq_diff_sum", format!("sq_diff_sum + reduce_sum n={n}"), move |ctx| {
            sq_diff_reduce(ctx, n, 800 + i as u64)
        }));
    }
    let content: Vec<usize> = if full { vec![64 * 17 * 9, 7, 512 * 3 * 5] } else { vec![64 * 17 * 9] };
    for (i, &n) in content.iter().enumerate() {
        v.push(case("content_grad", format!("content_grad n={n}"), move |ctx| content_grad(ctx, n, 900 + i as u64)));
    }
    let style: Vec<(usize, usize, usize)> = if full {
        vec![(64, 17, 9), (3, 7, 13), (128, 5, 7), (512, 3, 2), (65, 31, 1), (9, 16, 16)]
    } else {
        vec![(64, 17, 9)]
    };
    for (i, &(c, h, w)) in style.iter().enumerate() {
        for variant in [StyleGradVariant::Tiled, StyleGradVariant::Cpu] {
            let name = format!("style_grad ({variant:?}) {c}x{h}x{w}");
            v.push(case("style_grad", name, move |ctx| style_grad(ctx, c, h, w, variant, 1000 + i as u64)));
        }
    }
    let tv_shapes: Vec<(usize, usize)> =
        if full { vec![(33, 31), (7, 13), (16, 16), (1, 5), (20, 17)] } else { vec![(17, 13)] };
    for (i, &(h, w)) in tv_shapes.iter().enumerate() {
        v.push(case("tv_loss_grad", format!("tv_loss_grad {h}x{w}"), move |ctx| tv(ctx, h, w, 1200 + i as u64)));
    }
    let clears: Vec<(usize, usize, usize)> =
        if full { vec![(3, 5, 7), (64, 16, 16), (2, 13, 9), (1, 1, 1)] } else { vec![(3, 13, 9)] };
    for (i, &(c, h, w)) in clears.iter().enumerate() {
        v.push(case("frame_clear", format!("frame_clear {c}x{h}x{w}"), move |ctx| {
            frame_clear(ctx, c, h, w, 1500 + i as u64)
        }));
    }
    let sizes: Vec<usize> = if full { vec![1, 255, 4096, 4097, 100_003, 3 * 33 * 31] } else { vec![4097] };
    for (i, &n) in sizes.iter().enumerate() {
        v.push(case("max_abs", format!("zero_u32 + max_abs n={n}"), move |ctx| max_abs(ctx, n, 1550 + i as u64)));
    }
    let vectors: Vec<usize> = if full { vec![1, 255, 4096, 4097, 100_003, 3 * 35 * 33] } else { vec![4097] };
    for (i, &n) in vectors.iter().enumerate() {
        v.push(case("dot_sum", format!("dot_sum + reduce_sum n={n}"), move |ctx| dot(ctx, n, 1560 + i as u64)));
        v.push(case("axpy_slots", format!("axpy_slots n={n}"), move |ctx| axpy(ctx, n, 1570 + i as u64)));
    }
    let n = if full { 3 * 33 * 31 } else { 999 };
    v.push(case("adam", format!("adam (3 steps) n={n}"), move |ctx| adam(ctx, n, 1300)));
    let w2_features: Vec<(usize, usize, usize)> =
        if full { vec![(64, 17, 9), (3, 7, 13), (130, 5, 3), (5, 1, 1)] } else { vec![(64, 17, 9)] };
    for (i, &(c, h, w)) in w2_features.iter().enumerate() {
        v.push(case("channel_mean", format!("channel_mean {c}x{h}x{w}"), move |ctx| {
            channel_mean(ctx, c, h, w, 1600 + i as u64)
        }));
        v.push(case("channel_bias_grad", format!("channel_bias_grad {c}x{h}x{w}"), move |ctx| {
            channel_bias_grad(ctx, c, h, w, 1610 + i as u64)
        }));
    }
    let w2_sizes: Vec<usize> = if full { vec![1, 7, 64, 65, 130] } else { vec![65] };
    for (i, &c) in w2_sizes.iter().enumerate() {
        let seed = 1620 + 10 * i as u64;
        v.push(case("w2_covariance", format!("w2_covariance C={c}"), move |ctx| w2_covariance(ctx, c, seed)));
        v.push(case("matmul", format!("matmul (Tiled) C={c}"), move |ctx| {
            matmul(ctx, MatmulVariant::Tiled, c, seed + 1)
        }));
        v.push(case("sqrtm_start", format!("sqrtm_start C={c}"), move |ctx| sqrtm_start(ctx, c, seed + 2)));
        v.push(case("w2_loss", format!("w2_loss C={c}"), move |ctx| w2_loss(ctx, c, seed + 3)));
        v.push(case("w2_mean_grad", format!("w2_mean_grad C={c}"), move |ctx| w2_mean_grad(ctx, c, seed + 4)));
    }
    let cpu_sizes: Vec<usize> = if full { vec![8, 64, 136] } else { vec![64] };
    for (i, &c) in cpu_sizes.iter().enumerate() {
        v.push(case("matmul", format!("matmul (Cpu) C={c}"), move |ctx| {
            matmul(ctx, MatmulVariant::Cpu, c, 1690 + i as u64)
        }));
    }
    let ns_sizes: Vec<(usize, MatmulVariant)> = if full {
        vec![
            (8, MatmulVariant::Tiled),
            (64, MatmulVariant::Tiled),
            (130, MatmulVariant::Tiled),
            (136, MatmulVariant::Cpu),
        ]
    } else {
        vec![(64, MatmulVariant::Tiled), (64, MatmulVariant::Cpu)]
    };
    for (i, &(c, variant)) in ns_sizes.iter().enumerate() {
        v.push(case("matmul", format!("Newton–Schulz square root ({variant:?}) C={c}"), move |ctx| {
            newton_schulz(ctx, variant, c, 1700 + i as u64)
        }));
    }
    let averaged: Vec<usize> = if full { vec![1, 4097, 3 * 33 * 31] } else { vec![999] };
    for (i, &n) in averaged.iter().enumerate() {
        v.push(case("image_average", format!("image_average (4 updates) n={n}"), move |ctx| {
            image_average(ctx, n, 1320 + i as u64)
        }));
    }
    v.push(case("channel_affine", "channel_affine 7x13".into(), |ctx| channel_affine(ctx, 7, 13, 1400)));
    v.extend(coop_cases(full));
    v
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

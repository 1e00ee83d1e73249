//! The video's image-space kernels against their f64 references (docs/MATHS.md, "Video"): `warp_bilinear`,
//! `flow_reliability`, `reliability_smooth` and `temporal_loss_grad` (also against central finite differences of
//! its own loss). Outputs are poisoned with NaN first.

use super::{both, case, compare, gpu_err, random, reference, rng, to_f32, to_f64, Case, Check, Io};
use crate::error::Result;
use crate::frame::Frame;
use crate::gpu::GpuContext;
use crate::kernels::loss::{temporal_loss_grad, temporal_partials, TemporalIo};
use crate::kernels::warp;

/// Plane `plane` (H x W, dense) sampled at real position (px, py): clamped into the image, bilinear (the flow's
/// reference does the same).
fn sample(plane: &[f64], (h, w): (usize, usize), px: f64, py: f64) -> f64 {
    super::flow::bilinear(plane, (w, h), px, py)
}

/// `image` (`c` dense planes) warped by `flow` (x plane, y plane).
pub fn warp_ref(image: &[f64], flow: &[f64], (c, h, w): (usize, usize, usize)) -> Vec<f64> {
    let n = h * w;
    let mut out = Vec::with_capacity(c * n);
    for plane in image.chunks_exact(n).take(c) {
        out.extend((0..n).map(|p| sample(plane, (h, w), (p % w) as f64 + flow[p], (p / w) as f64 + flow[n + p])));
    }
    out
}

/// The reliability tests' statistics at each pixel, as (value, threshold) pairs: occlusion, motion boundary;
/// and whether the moved position lies outside.
fn reliability_tests(backward: &[f64], forward: &[f64], (h, w): (usize, usize), p: usize) -> ([(f64, f64); 2], bool) {
    let n = h * w;
    let (x, y) = (p % w, p / w);
    let b = (backward[p], backward[n + p]);
    let (px, py) = (x as f64 + b.0, y as f64 + b.1);
    let outside = px < 0.0 || py < 0.0 || px > (w - 1) as f64 || py > (h - 1) as f64;
    let f = (sample(&forward[..n], (h, w), px, py), sample(&forward[n..], (h, w), px, py));
    let s = (f.0 + b.0, f.1 + b.1);
    let sq = |v: (f64, f64)| v.0 * v.0 + v.1 * v.1;
    let occlusion = (sq(s), 0.01 * (sq(f) + sq(b)) + 0.5);
    let (left, right) = (y * w + x.saturating_sub(1), y * w + (x + 1).min(w - 1));
    let (up, down) = (y.saturating_sub(1) * w + x, (y + 1).min(h - 1) * w + x);
    let d = |plane: usize, a: usize, b: usize| 0.5 * (backward[plane * n + b] - backward[plane * n + a]);
    let gradient =
        d(0, left, right).powi(2) + d(0, up, down).powi(2) + d(1, left, right).powi(2) + d(1, up, down).powi(2);
    ([occlusion, (gradient, 0.01 * sq(b) + 0.002)], outside)
}

/// The unsmoothed reliability: 0 outside, occluded or on a motion boundary, else 1.
pub fn reliability_ref(backward: &[f64], forward: &[f64], (h, w): (usize, usize)) -> Vec<f64> {
    (0..h * w)
        .map(|p| {
            let (tests, outside) = reliability_tests(backward, forward, (h, w), p);
            if outside || tests.iter().any(|(v, t)| v > t) {
                0.0
            } else {
                1.0
            }
        })
        .collect()
}

/// One pass of the σ = 0.8 Gaussian (taps −2 … 2, normalised over those inside), along rows or columns.
pub fn smooth_ref(map: &[f64], (h, w): (usize, usize), vertical: bool) -> Vec<f64> {
    (0..h * w)
        .map(|p| {
            let (x, y) = ((p % w) as isize, (p / w) as isize);
            let (mut sum, mut norm) = (0.0, 0.0);
            for k in -2isize..=2 {
                let (qx, qy) = if vertical { (x, y + k) } else { (x + k, y) };
                if qx >= 0 && qy >= 0 && qx < w as isize && qy < h as isize {
                    let weight = (-(k * k) as f64 / (2.0 * 0.8 * 0.8)).exp();
                    sum += weight * map[qy as usize * w + qx as usize];
                    norm += weight;
                }
            }
            sum / norm
        })
        .collect()
}

/// The temporal loss and its gradient (3 dense planes of H x W; `weights` one plane; `pixels` the normaliser's H·W):
/// the masked content loss's form, w·Σ c·(x − ω)² / (3·H·W).
pub fn temporal_ref(x: &[f64], target: &[f64], weights: &[f64], (weight, pixels): (f64, usize)) -> (f64, Vec<f64>) {
    reference::masked_content_loss(x, target, weights, weight * x.len() as f64 / (3.0 * pixels as f64))
}

/// A smooth random flow: a random affine motion plus a few sinusoids, up to about `amplitude` px.
fn smooth_flow(seed: u64, (h, w): (usize, usize), amplitude: f64) -> Vec<f64> {
    let mut g = rng(seed);
    let k = random(&mut g, 12, 1.0);
    let mut flow = vec![0.0; 2 * h * w];
    for (c, plane) in flow.chunks_exact_mut(h * w).enumerate() {
        let k = &k[6 * c..];
        for (p, v) in plane.iter_mut().enumerate() {
            let (x, y) = ((p % w) as f64 / w as f64, (p / w) as f64 / h as f64);
            *v = amplitude
                * (k[0] + 0.5 * k[1] * x + 0.5 * k[2] * y + 0.3 * (6.0 * x + 3.0 * k[3]).sin() * (5.0 * y).cos());
        }
    }
    flow
}

fn warp_case(ctx: &GpuContext, (c, h, w): (usize, usize, usize), seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let image = to_f64(&to_f32(&random(&mut g, c * h * w, 128.0)));
    let flow = to_f64(&to_f32(&smooth_flow(seed + 1, (h, w), 4.0)));
    let expect = warp_ref(&image, &flow, (c, h, w));
    let run = || -> Result<Vec<f32>> {
        let (ib, fb, ob) = (io.buf(&image)?, io.buf(&flow)?, io.out(c * h * w)?);
        ctx.run(&[&warp::warp_bilinear(ctx, (c, h, w), &ib, &fb, &ob)?])?;
        io.read(&ob, c * h * w)
    };
    // 1e-4: the sample position x + u is an f32 near 128 (8e-6 px of rounding), and this random image changes by up
    // to 256 per px, so the sample may move by 2e-3, 3e-5 of the values' rms.
    compare("warp_bilinear", &run().map_err(gpu_err)?, &expect, 1e-4)
}

/// The backward flow is the negated forward flow plus noise, so some pixels pass and some fail every test. A
/// pixel whose f64 statistic lies within 1e-4 (relative) of its threshold may go either way in f32: it is not
/// compared; at most 1 % of pixels may be such (stated, and counted).
fn reliability_case(ctx: &GpuContext, (h, w): (usize, usize), seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let forward = to_f64(&to_f32(&smooth_flow(seed, (h, w), 6.0)));
    let noise = random(&mut g, 2 * h * w, 1.2);
    let backward: Vec<f64> = to_f64(&to_f32(&forward.iter().zip(&noise).map(|(f, n)| -f + n).collect::<Vec<_>>()));
    let expect = reliability_ref(&backward, &forward, (h, w));
    let run = || -> Result<Vec<f32>> {
        let (bb, fb, ob) = (io.buf(&backward)?, io.buf(&forward)?, io.out(h * w)?);
        ctx.run(&[&warp::flow_reliability(ctx, (h, w), &bb, &fb, &ob)?])?;
        io.read(&ob, h * w)
    };
    let got = run().map_err(gpu_err)?;
    let (mut close, mut zeros) = (0, 0);
    for (p, (&gv, &e)) in got.iter().zip(&expect).enumerate() {
        let (tests, _) = reliability_tests(&backward, &forward, (h, w), p);
        if tests.iter().any(|(v, t)| (v - t).abs() <= 1e-4 * t.abs()) {
            close += 1;
            continue;
        }
        zeros += usize::from(e == 0.0);
        if f64::from(gv) != e {
            return Err(format!("flow_reliability: pixel {p}: gpu {gv} vs reference {e}"));
        }
    }
    if close * 100 > h * w || zeros == 0 || zeros == h * w {
        return Err(format!("flow_reliability: {close} pixels at a threshold, {zeros} of {} unreliable", h * w));
    }
    Ok(0.0)
}

fn smooth_case(ctx: &GpuContext, (h, w): (usize, usize), seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let map: Vec<f64> = random(&mut g, h * w, 1.0).iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect();
    let rows = smooth_ref(&map, (h, w), false);
    let expect = smooth_ref(&rows, (h, w), true);
    let run = || -> Result<(Vec<f32>, Vec<f32>)> {
        let (src, mid, dst) = (io.buf(&map)?, io.out(h * w)?, io.out(h * w)?);
        let a = warp::reliability_smooth(ctx, (h, w), false, &src, &mid)?;
        let b = warp::reliability_smooth(ctx, (h, w), true, &mid, &dst)?;
        ctx.run(&[&a, &b])?;
        Ok((io.read(&mid, h * w)?, io.read(&dst, h * w)?))
    };
    let (mid, dst) = run().map_err(gpu_err)?;
    both(compare("reliability_smooth rows", &mid, &rows, 1e-6), compare("reliability_smooth", &dst, &expect, 1e-6))
}

/// The kernel's loss (the sum of its partials, in f64) and gradient at `x`.
fn temporal_gpu(
    ctx: &GpuContext,
    (h, w): (usize, usize),
    (x, target, weights): (&[f64], &[f64], &[f64]),
    (weight, pixels): (f64, usize),
    before: Option<&[f64]>,
) -> Result<(f64, Vec<f32>), String> {
    let io = Io { ctx };
    let frame = Frame::new(h, w);
    let count = temporal_partials(h, w);
    let run = || -> Result<(wgpu::Buffer, wgpu::Buffer)> {
        let (xb, tb, wb) = (io.framed(x, 3, frame)?, io.framed(target, 3, frame)?, io.framed(weights, 1, frame)?);
        let grad = match before {
            Some(b) => io.framed(b, 3, frame)?,
            None => io.framed_out(3, frame)?,
        };
        let partials = io.out(count)?;
        let tio = TemporalIo { x: &xb, target: &tb, weights: &wb, grad: &grad, partials: &partials };
        ctx.run(&[&temporal_loss_grad(ctx, (h, w), (weight, pixels), before.is_some(), tio)?])?;
        Ok((grad, partials))
    };
    let (grad, partials) = run().map_err(gpu_err)?;
    let loss = to_f64(&io.read(&partials, count).map_err(gpu_err)?).iter().sum();
    Ok((loss, io.read_framed(&grad, 3, frame, "temporal_loss_grad")?))
}

fn temporal_case(ctx: &GpuContext, (h, w): (usize, usize), accumulate: bool, seed: u64) -> Check {
    let mut g = rng(seed);
    let x = to_f64(&to_f32(&random(&mut g, 3 * h * w, 100.0)));
    let target = to_f64(&to_f32(&random(&mut g, 3 * h * w, 100.0)));
    let weights: Vec<f64> = to_f64(&to_f32(&random(&mut g, h * w, 1.0))).iter().map(|v| v.abs()).collect();
    let before = accumulate.then(|| to_f64(&to_f32(&random(&mut g, 3 * h * w, 1.0))));
    let scale = (1e3, h * w + 7); // the normaliser is the image's H·W, not the canvas's
    let (loss, grad) = temporal_ref(&x, &target, &weights, scale);
    let expect: Vec<f64> = match &before {
        Some(b) => grad.iter().zip(b).map(|(g, b)| g + b).collect(),
        None => grad.clone(),
    };
    let (gpu_loss, gpu_grad) = temporal_gpu(ctx, (h, w), (&x, &target, &weights), scale, before.as_deref())?;
    let loss_err = (gpu_loss - loss).abs() / loss.abs();
    if loss_err.is_nan() || loss_err > 1e-5 {
        return Err(format!("temporal_loss_grad: loss {gpu_loss} vs reference {loss} (error {loss_err:.3e} > 1e-5)"));
    }
    let grad_err = compare("temporal_loss_grad gradient", &gpu_grad, &expect, 1e-5)?;
    if accumulate {
        return Ok(grad_err.max(loss_err));
    }
    // Central differences of the kernel's own loss at a few elements (the loss is quadratic: exact up to f32
    // rounding of the sums, so 1e-3 relative).
    let mut worst = 0.0f64;
    for i in [0, 3 * h * w / 2 + 1, 3 * h * w - 1] {
        let step = 0.5;
        let mut xp = x.clone();
        xp[i] += step;
        let (lp, _) = temporal_gpu(ctx, (h, w), (&xp, &target, &weights), scale, None)?;
        xp[i] -= 2.0 * step;
        let (lm, _) = temporal_gpu(ctx, (h, w), (&xp, &target, &weights), scale, None)?;
        let fd = (lp - lm) / (2.0 * step);
        let err = (fd - grad[i]).abs() / (grad[i].abs() + 1e-3 * loss / (3 * h * w) as f64);
        if err.is_nan() || err > 1e-2 {
            return Err(format!(
                "temporal_loss_grad: element {i}: finite difference {fd} vs gradient {} ({err:.2e})",
                grad[i]
            ));
        }
        worst = worst.max(err * 1e-3);
    }
    Ok(grad_err.max(loss_err).max(worst))
}

/// The cases of this family at `full` or quick scale.
pub fn cases(full: bool) -> Vec<Case> {
    let mut v = Vec::new();
    let shapes: Vec<(usize, usize, usize)> =
        if full { vec![(3, 13, 9), (3, 96, 128), (1, 1, 7), (2, 37, 29)] } else { vec![(3, 13, 9)] };
    for (i, &s) in shapes.iter().enumerate() {
        v.push(case("warp_bilinear", format!("warp_bilinear {s:?}"), move |ctx| warp_case(ctx, s, 1700 + i as u64)));
    }
    let sizes: Vec<(usize, usize)> = if full { vec![(13, 9), (96, 128), (37, 29)] } else { vec![(13, 9)] };
    for (i, &s) in sizes.iter().enumerate() {
        v.push(case("flow_reliability", format!("flow_reliability {s:?}"), move |ctx| {
            reliability_case(ctx, s, 1710 + i as u64)
        }));
        v.push(case("reliability_smooth", format!("reliability_smooth {s:?}"), move |ctx| {
            smooth_case(ctx, s, 1720 + i as u64)
        }));
    }
    let temporal: Vec<((usize, usize), bool)> = if full {
        vec![((13, 9), false), ((13, 9), true), ((96, 128), false), ((1, 1), false)]
    } else {
        vec![((13, 9), false)]
    };
    for (i, &(s, accumulate)) in temporal.iter().enumerate() {
        let run = move |ctx: &GpuContext| temporal_case(ctx, s, accumulate, 1730 + i as u64);
        v.push(case("temporal_loss_grad", format!("temporal_loss_grad {s:?} accumulate={accumulate}"), run));
    }
    v
}

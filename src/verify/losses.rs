//! The loss kernels: the squared-difference reduction, the content and style gradients (every variant), TV.

use super::gram::run_gram;
use super::*;

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
        // Entry 0: F's range; entry 1: G's (measured by the tensor-core kernel's own first dispatch).
        let ranges = ctx.storage_buffer("ranges", 2)?;
        let mut ds = Vec::new();
        let kernel = match variant {
            StyleGradVariant::Coop { config, twin } => {
                ds.push(kernels::coop::max_abs(ctx, frame.buffer_floats(c), 0, &fb, &ranges)?);
                let target_largest = a.iter().fold(0.0f64, |m, v| m.max(v.abs())) as f32;
                let ranges = &ranges;
                StyleGradKernel::Coop { config, twin, ranges, gram_slot: 1, target_largest, features_slot: 0 }
            }
            _ => StyleGradKernel::f32(variant)?,
        };
        for (accumulate, grad) in [(false, &ob), (true, &accb)] {
            let sio = StyleGradIo { gram: &gramb, target: &ab, features: Tensor::new(&fb, c, frame), grad };
            ds.extend(kernels::loss::style_grad(ctx, kernel, scale, accumulate, sio)?);
        }
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
        let d1 = kernels::loss::tv_loss_grad(ctx, (h, w), wt, true, &xb, &gacc, &pb)?;
        let red = kernels::loss::reduce_sum(ctx, parts, 0, 1.0, &pb, &lb)?;
        let d2 = kernels::loss::tv_loss_grad(ctx, (h, w), wt, false, &xb, &gover, &pb)?;
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

/// The cases of this family at `full` or quick scale.
pub fn cases(full: bool) -> Vec<Case> {
    let mut v = Vec::new();
    let sq: Vec<usize> = if full { vec![1, 255, 4097, 33 * 31 * 3, 100_003] } else { vec![4097] };
    for (i, &n) in sq.iter().enumerate() {
        let run = move |ctx: &GpuContext| sq_diff_reduce(ctx, n, 800 + i as u64);
        v.push(
            case("sq_diff_sum", format!("sq_diff_sum + reduce_sum n={n}"), run)
                .checking(&["sq_diff_sum", "reduce_sum"]),
        );
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
            let kernel = if variant == StyleGradVariant::Cpu { "style_grad_cpu" } else { "style_grad" };
            let run = move |ctx: &GpuContext| style_grad(ctx, c, h, w, variant, 1000 + i as u64);
            v.push(case("style_grad", name, run).checking(&[kernel]));
        }
    }
    let tv_shapes: Vec<(usize, usize)> =
        if full { vec![(33, 31), (7, 13), (16, 16), (1, 5), (20, 17)] } else { vec![(17, 13)] };
    for (i, &(h, w)) in tv_shapes.iter().enumerate() {
        let run = move |ctx: &GpuContext| tv(ctx, h, w, 1200 + i as u64);
        v.push(case("tv_loss_grad", format!("tv_loss_grad {h}x{w}"), run).checking(&["tv_loss_grad", "reduce_sum"]));
    }
    v
}

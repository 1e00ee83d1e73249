//! The Wasserstein-2 style loss's kernels: means, covariance, matmul (every variant), the Newton–Schulz square
//! root, the loss scalar and the gradient's parts.

use super::*;

/// channel_mean over a framed ReLU-like feature map (output poisoned).
pub fn channel_mean(ctx: &GpuContext, c: usize, h: usize, w: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let frame = Frame::new(h, w);
    let mut g = rng(seed);
    let f: Vec<f64> = random(&mut g, c * h * w, 3.0).iter().map(|v| v.max(0.0)).collect();
    let run = || -> Result<Vec<f32>> {
        let (fb, mb) = (io.framed(&f, c, frame)?, io.out(c)?);
        ctx.run(&[&kernels::w2::channel_mean(ctx, Tensor::new(&fb, c, frame), &mb)?])?;
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
            ctx.run(&[&kernels::w2::matmul(ctx, variant, c, (alpha, beta), (&ab, &bb), &ob, &sb)?])?;
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
            let mm = |alpha, beta, a, b, out| kernels::w2::matmul(ctx, variant, c, (alpha, beta), (a, b), out, &slots);
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
        ctx.run(&[&kernels::w2::channel_bias_grad(ctx, &bb, Tensor::new(&fb, c, frame), &gb)?])?;
        Ok(gb)
    };
    let gb = run().map_err(gpu_err)?;
    let got = io.read_framed(&gb, c, frame, &what)?;
    let expect: Vec<f64> = (0..c * n).map(|k| prior[k] + if f[k] > 0.0 { bias[k / n] } else { 0.0 }).collect();
    compare(&what, &got, &expect, RTOL)
}

/// The cases of this family at `full` or quick scale.
pub fn cases(full: bool) -> Vec<Case> {
    let mut v = Vec::new();
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
        let run = move |ctx: &GpuContext| matmul(ctx, MatmulVariant::Cpu, c, 1690 + i as u64);
        v.push(case("matmul", format!("matmul (Cpu) C={c}"), run).checking(&["matmul_cpu"]));
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
        let kernel = if variant == MatmulVariant::Cpu { "matmul_cpu" } else { "matmul" };
        let run = move |ctx: &GpuContext| newton_schulz(ctx, variant, c, 1700 + i as u64);
        let name = format!("Newton–Schulz square root ({variant:?}) C={c}");
        v.push(case("matmul", name, run).checking(&[kernel, "dot_sum", "reduce_sum", "sqrtm_start"]));
    }
    v
}

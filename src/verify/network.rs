//! Whole style problems against the reference network: losses, gradients, Adam and L-BFGS iterations.

use super::*;

/// The reference network for the same weights.
pub fn ref_net(w: &neural_style_weights::Vgg16Weights, avg_pool: bool) -> r::RefNet {
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
#[derive(Clone)]
pub struct Problem {
    pub weights: neural_style_weights::Vgg16Weights,
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
            // The image itself: the canvas has its own check (full_iterations_with_margin).
            margin: Some(0),
            ..Default::default()
        };
        Self {
            weights: crate::vgg::random_weights(seed),
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

    /// The same problem on its canvas with `margin`: the content and the init image reflected into it by the
    /// reference ([`r::reflect_pad`]), painted with no further margin.
    pub fn on_canvas(&self, margin: usize) -> Problem {
        let pad = |img: &crate::PlanarImage| {
            let (w, h) = (img.width, img.height);
            let data = r::reflect_pad(&to_f64(&img.data), 3, h, w, margin).iter().map(|&v| v as f32).collect();
            crate::PlanarImage::new(w + 2 * margin, h + 2 * margin, data)
        };
        let mut opts = self.opts.clone();
        if let crate::Init::Image(img) = &opts.init {
            opts.init = crate::Init::Image(pad(img));
        }
        opts.margin = Some(0);
        Problem {
            weights: self.weights.clone(),
            content: pad(&self.content),
            styles: self.styles.clone(),
            opts,
            pooling_avg: self.pooling_avg,
        }
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
    let p = Problem::new(w, h, seed);
    Ok(full_iterations_of(ctx, p.clone(), p, steps, F32_NETWORK_TOL)?.0)
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
    Ok(full_iterations_of(ctx, p.clone(), p, 1, F16_NETWORK_TOL)?.0)
}

/// As [`full_iterations`] with average pooling and torchvision-convention weights (the input affine map).
pub fn full_iterations_avg_torchvision(ctx: &GpuContext, w: usize, h: usize, steps: usize, seed: u64) -> Check {
    let mut p = Problem::new(w, h, seed);
    p.pooling_avg = true;
    p.opts.pooling = crate::Pooling::Avg;
    p.weights.convention = neural_style_weights::InputConvention::Torchvision;
    Ok(full_iterations_of(ctx, p.clone(), p, steps, F32_NETWORK_TOL)?.0)
}

/// As [`full_iterations`] on a canvas with `margin` (docs/MATHS.md, "Edges: the margin"): the GPU paints the
/// problem with the margin; the reference paints [`Problem::on_canvas`], the same problem reflected by its own
/// code, with none. The losses and dL/dx of the whole canvas, then `steps` Adam iterations, must agree; and what
/// the stylizer hands out (x, the image, the optimiser's state) must be the canvas's inner part.
pub fn full_iterations_with_margin(
    ctx: &GpuContext,
    (w, h): (usize, usize),
    margin: usize,
    steps: usize,
    seed: u64,
) -> Check {
    let mut p = Problem::new(w, h, seed);
    p.opts.margin = Some(margin);
    let on_canvas = p.on_canvas(margin);
    // The stylizer after its steps (it started from the reference's reflected init: checked there).
    let (worst, mut s) = full_iterations_of(ctx, p, on_canvas, steps, F32_NETWORK_TOL)?;
    let canvas = to_f64(&s.canvas_x().map_err(gpu_err)?);
    let (cw, ch) = (w + 2 * margin, h + 2 * margin);
    let inner: Vec<f64> =
        (0..3 * h * w).map(|i| canvas[((i / (h * w)) * ch + margin + (i / w) % h) * cw + margin + i % w]).collect();
    if to_f64(&s.x().map_err(gpu_err)?) != inner || s.size() != (w, h) {
        return Err("the stylizer's x is not the inner part of its canvas".into());
    }
    let image = s.image().map_err(gpu_err)?;
    if (image.width, image.height) != (w, h) {
        return Err(format!("the image is {}x{}, not the content's {w}x{h}", image.width, image.height));
    }
    let handover = s.handover().map_err(gpu_err)?;
    if handover.planes.iter().any(|p| p.values.len() != 3 * w * h) {
        return Err("the optimiser's handover is not image-sized".into());
    }
    Ok(worst)
}

/// The GPU paints `p`, the reference paints `reference` (the same problem, or `p` on its canvas); the stylizer is
/// handed back after its steps with the worst error.
fn full_iterations_of(
    ctx: &GpuContext,
    p: Problem,
    reference: Problem,
    steps: usize,
    tol: NetworkTolerance,
) -> Result<(f64, crate::Stylizer<'_>), String> {
    let (w, h) = (reference.content.width, reference.content.height);
    let net = ref_net(&reference.weights, reference.pooling_avg);
    let (content, style) = reference.reference_targets(&net);
    let lw = reference.loss_weights();
    let mut s = crate::Stylizer::new(ctx, &p.weights, &p.content, &p.styles, &p.opts).map_err(gpu_err)?;
    let x0 = s.canvas_x().map_err(gpu_err)?;
    let crate::Init::Image(init) = &reference.opts.init else { unreachable!("a Problem starts from an image") };
    if x0 != crate::stylizer::subtract_mean(init) {
        return Err("the GPU's x does not start as the reference's initial image (on its canvas)".into());
    }
    let mut x = to_f64(&x0);
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
    Ok((worst, s))
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

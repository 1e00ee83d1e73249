//! The VGG16 executor and the Stylizer against the f64 CPU reference on seeded random weights: the forward to
//! relu5_1, the losses, the gradient of the total loss w.r.t. the image (the reference's chain rule everywhere,
//! central finite differences of the reference loss at random pixels), whole iterations, bit-identical reruns.

mod common;

use common::*;
use neural_style::network::{GpuNet, Network};
use neural_style::stylizer::choose_precision;
use neural_style::submission::Recording;
use neural_style::verify::{self, network::Problem};
use neural_style::vgg;
use neural_style::weights::InputConvention;
use neural_style::{Init, Pooling, Precision, StyleOptions, Stylizer};

fn mean_subtracted(img: &neural_style::PlanarImage) -> Vec<f64> {
    to_f64(&neural_style::stylizer::subtract_mean(img))
}

#[test]
fn forward_to_relu5_1_matches_reference() {
    for (convention, pooling) in [(InputConvention::Caffe, Pooling::Max), (InputConvention::Torchvision, Pooling::Avg)]
    {
        let mut weights = random_vgg(1);
        weights.convention = convention;
        let (w, h) = (37, 23);
        let img = random_image(2, w, h);
        let net = GpuNet::new(ctx(), &weights, pooling).unwrap();
        // Every layer tapped, so each keeps its own buffer until the end of the forward pass.
        let all: Vec<usize> = (0..=10).collect();
        let network = Network::new(ctx(), &net, net.plan_spec(w, h, &all, false)).unwrap();
        for l in 0..=10 {
            // NaN in the data pixels (an unwritten one fails), the frame zero as the plan keeps it.
            let s = network.plan.layers[l];
            let nan = vec![f32::NAN; s.floats()];
            ctx().queue.write_buffer(network.relu(l), 0, bytemuck::cast_slice(&s.frame().frame(&nan, s.channels)));
        }
        network.run_forward(ctx(), &neural_style::stylizer::subtract_mean(&img)).unwrap();
        let reference = ref_net(&weights, pooling == Pooling::Avg).forward(&mean_subtracted(&img), h, w, 10);
        for (i, name) in vgg::RELU_NAMES.iter().enumerate() {
            let s = network.plan.layers[i];
            let (c, hh, ww) = (s.channels, s.height, s.width);
            assert_eq!((c, hh, ww), reference.shapes[i], "{name} shape");
            let gpu = s.frame().unframe(&ctx().read_all(network.relu(i)).unwrap(), c);
            // Errors grow a little with depth (11 f32 GEMMs deep).
            assert_close(&format!("{name} ({convention:?}, {pooling:?})"), &gpu, &reference.relu[i], 5e-4);
        }
    }
}

#[test]
fn losses_match_reference_and_step_logs_the_pre_update_image() {
    let p = Problem::new(29, 21, 10);
    let mut s = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &p.opts).unwrap();
    let got = s.losses().unwrap();
    let net = ref_net(&p.weights, false);
    let (content, style) = p.reference_targets(&net);
    let Init::Image(init) = &p.opts.init else { unreachable!() };
    let (lc, ls, lt) = net.losses(&mean_subtracted(init), 21, 29, &content, &style, p.loss_weights());
    for (what, g, r) in [("content", got.content, lc), ("style", got.style, ls), ("tv", got.tv, lt)] {
        assert!(r > 0.0, "{what}: reference loss is zero, the test would prove nothing");
        assert!((g - r).abs() <= 1e-3 * r, "{what} loss: gpu {g} vs reference {r}");
    }
    assert!((got.total - (lc + ls + lt)).abs() <= 1e-3 * (lc + ls + lt));
    let before = s.step(true).unwrap().unwrap();
    assert_eq!(before, got, "step(true) must report the pre-update losses");
    assert_ne!(s.losses().unwrap(), got, "the step did not change the image");
}

/// The whole gradient against the reference's chain rule, then 3 iterations against the reference trajectory.
#[test]
fn full_iterations_match_reference() {
    let worst = verify::network::full_iterations(ctx(), 21, 18, 3, 20).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("full iterations: max error {worst:.2e}");
}

/// The same with the GPU kernel variants (tiled GEMMs, narrow backward), chosen as for a discrete GPU.
#[test]
fn full_iterations_with_the_gpu_kernels_match_reference() {
    let worst = verify::network::full_iterations(ctx_gpu_kernels(), 21, 18, 2, 21).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("full iterations (GPU kernels): max error {worst:.2e}");
}

/// The whole network on the tensor-core kernels' software twin (f16 operands, f32 sums): dL/dx within 1e-1
/// relative L2 of the f64 reference (ReLU and max-pool routing flips under f16: see F16_NETWORK_TOL), losses
/// within 3e-3.
#[test]
fn full_iterations_on_the_tensor_core_twin_match_reference() {
    let worst =
        verify::network::full_iterations_f16(ctx(), 21, 18, 22, Precision::F16Twin).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("full iterations (tensor-core twin): max error {worst:.2e}");
}

/// The same on the cooperative matrices, where the adapter has them (`NEURAL_STYLE_REQUIRE_TENSOR_CORES=1`
/// makes their absence a failure).
#[test]
fn full_iterations_on_cooperative_matrices_match_reference() {
    if ctx().coop_fragments.is_empty() {
        assert!(
            std::env::var_os("NEURAL_STYLE_REQUIRE_TENSOR_CORES").is_none(),
            "{} has no cooperative matrices",
            ctx().adapter_name()
        );
        eprintln!("not run: {} has no cooperative matrices", ctx().adapter_name());
        return;
    }
    let worst =
        verify::network::full_iterations_f16(ctx(), 21, 18, 22, Precision::F16).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("full iterations (tensor cores): max error {worst:.2e}");
}

/// Asking for f16 where there are no tensor cores is a clear error; Auto falls back to f32 and says why.
#[test]
fn precision_choice_is_said_and_never_silent() {
    let (facts, note) = choose_precision(ctx(), Precision::Auto).unwrap();
    assert!(note.starts_with("precision: "), "{note}");
    if ctx().coop_fragments.is_empty() {
        assert!(facts.coop.is_none() && note.contains("no tensor cores"), "{note}");
        let err = choose_precision(ctx(), Precision::F16).unwrap_err().to_string();
        assert!(err.contains("--precision f16 needs tensor cores"), "{err}");
    } else {
        assert!(facts.coop.is_some() == note.contains("tensor cores, f16"), "{note}");
        assert!(!facts.is_cpu() || facts.coop.is_none(), "Auto must not pick a CPU adapter's emulation: {note}");
    }
    let (facts, note) = choose_precision(ctx(), Precision::F32).unwrap();
    assert!(facts.coop.is_none() && note.contains("as asked"), "{note}");
    let (facts, _) = choose_precision(ctx(), Precision::F16Twin).unwrap();
    assert!(matches!(facts.coop, Some((_, true))));
}

#[test]
fn full_iterations_with_avg_pooling_and_torchvision_weights_match_reference() {
    verify::network::full_iterations_avg_torchvision(ctx(), 19, 22, 2, 50).unwrap_or_else(|e| panic!("{e}"));
}

/// Central finite differences of the reference total loss (f64) at random pixels of a 20x17 image.
#[test]
fn total_gradient_matches_finite_differences() {
    let (w, h) = (20, 17);
    let p = Problem::new(w, h, 10);
    let mut s = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &p.opts).unwrap();
    let gpu = s.gradient().unwrap();
    let x0 = to_f64(&s.x().unwrap());
    let net = ref_net(&p.weights, false);
    let (content, style) = p.reference_targets(&net);
    let total = |x: &[f64]| {
        let (a, b, t) = net.losses(x, h, w, &content, &style, p.loss_weights());
        a + b + t
    };
    assert_finite_differences(&gpu, &x0, total, 24, 99);
}

/// The canvas (docs/MATHS.md, "Edges: the margin"): the engine's margin against the reference's own reflection,
/// the losses and dL/dx of the whole canvas and three Adam iterations, at an odd size and a margin that is
/// neither a power of two nor small against the image.
#[test]
fn the_canvas_with_a_margin_matches_reference() {
    let worst =
        verify::network::full_iterations_with_margin(ctx(), (21, 17), 5, 3, 30).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("canvas with margin 5: max error {worst:.2e}");
}

/// dL/dx on the canvas, margin pixels included, against finite differences of the reference loss.
#[test]
fn the_canvas_gradient_matches_finite_differences() {
    let (w, h, margin) = (18, 16, 3);
    let mut p = Problem::new(w, h, 11);
    p.opts.margin = Some(margin);
    let mut s = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &p.opts).unwrap();
    let gpu = s.gradient().unwrap();
    let x0 = to_f64(&s.canvas_x().unwrap());
    let q = p.on_canvas(margin);
    let net = ref_net(&q.weights, false);
    let (content, style) = q.reference_targets(&net);
    let (cw, ch) = (w + 2 * margin, h + 2 * margin);
    let total = |x: &[f64]| {
        let (a, b, t) = net.losses(x, ch, cw, &content, &style, q.loss_weights());
        a + b + t
    };
    assert_finite_differences(&gpu, &x0, total, 24, 98);
}

/// The GPU's dL/dx at `samples` random pixels of `x0` against central finite differences (step 1e-3) of the
/// reference loss `total`: within 1e-2 of the difference plus 1e-3 of the gradient's rms.
fn assert_finite_differences(gpu: &[f32], x0: &[f64], total: impl Fn(&[f64]) -> f64, samples: usize, seed: u64) {
    let scale = rms(&to_f64(gpu));
    assert!(scale > 0.0);
    let mut g = rng(seed);
    let eps = 1e-3;
    for _ in 0..samples {
        let i = rand::Rng::random_range(&mut g, 0..x0.len());
        let (mut a, mut b) = (x0.to_vec(), x0.to_vec());
        a[i] += eps;
        b[i] -= eps;
        let fd = (total(&a) - total(&b)) / (2.0 * eps);
        let gi = f64::from(gpu[i]);
        assert!(
            (gi - fd).abs() <= 1e-2 * fd.abs() + 1e-3 * scale,
            "dL/dx[{i}]: gpu {gi} vs finite difference {fd} (gradient rms {scale})"
        );
    }
}

/// The Wasserstein-2 style loss through the whole network (f32, 20 Newton–Schulz iterations on the GPU) against
/// the f64 reference (exact matrix square roots by eigendecomposition): the losses, dL/dx, and dL/dx against
/// central finite differences of the reference loss; then two Adam steps whose losses follow the reference.
#[test]
fn w2_style_loss_and_gradient_match_reference() {
    let (w, h) = (27, 19);
    let mut p = Problem::new(w, h, 60);
    // Up to 256 channels: the two 512-channel square roots cost ~15 s per evaluation on lavapipe (the kernels
    // are size-generic; `tests/kernels.rs` runs them on several tile counts).
    p.opts.style_layers = vec!["relu1_1".into(), "relu2_1".into(), "relu3_1".into()];
    let opts = StyleOptions { style_loss: neural_style::StyleLoss::W2, style_weight: 200.0, ..p.opts.clone() };
    let mut s = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &opts).unwrap();
    let limits = opts.memory_limits(ctx());
    let planned = neural_style::stylizer::memory_plan(w, h, &opts, false, &s.net().facts, limits).unwrap();
    assert_eq!(s.gpu_bytes(), planned.bytes(), "W2 buffers vs the memory plan");
    let net = ref_net(&p.weights, false);
    let (content, _) = p.reference_targets(&net);
    let style = p.reference_w2_targets(&net);
    let weights = (f64::from(opts.content_weight), f64::from(opts.style_weight), f64::from(opts.tv_weight));
    let x0 = to_f64(&s.x().unwrap());
    let ((lc, ls, lt), ref_grad) = net.loss_and_gradient(&x0, h, w, &content, &style, weights);
    let got = s.losses().unwrap();
    for (what, g, r) in [("content", got.content, lc), ("W2 style", got.style, ls), ("tv", got.tv, lt)] {
        assert!(r > 0.0, "{what}: reference loss is zero, the test would prove nothing");
        let err = (g - r).abs() / r;
        assert!(err < W2_LOSS_TOL, "{what}: gpu {g} vs reference {r} (error {err:.2e})");
    }
    let gpu = s.gradient().unwrap();
    let err = verify::compare_norm("W2 dL/dx", &gpu, &ref_grad, W2_GRADIENT_TOL).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("W2: style loss error {:.2e}, dL/dx relative L2 error {err:.2e}", (got.style - ls).abs() / ls);
    let total = |x: &[f64]| {
        let (a, b, t) = net.losses(x, h, w, &content, &style, weights);
        a + b + t
    };
    assert_finite_differences(&gpu, &x0, total, 10, 61);
    let mut x = x0;
    let (mut m, mut v) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    for t in 1..=2u64 {
        let got = s.step(true).unwrap().unwrap();
        let ((_, ls, _), g) = net.loss_and_gradient(&x, h, w, &content, &style, weights);
        let err = (got.style - ls).abs() / ls;
        assert!(err < W2_LOSS_TOL, "step {t}: W2 style loss gpu {} vs reference {ls} (error {err:.2e})", got.style);
        neural_style::verify::reference::adam_step(&mut x, &mut m, &mut v, &g, f64::from(opts.learning_rate), t);
    }
}

/// Stated tolerances of the W2 path (docs/MATHS.md): f32 Newton–Schulz against exact square roots.
const W2_LOSS_TOL: f64 = 1e-3;
const W2_GRADIENT_TOL: f64 = 1e-2;

#[test]
fn two_runs_are_bit_identical() {
    let p = Problem::new(23, 18, 30);
    let opts = StyleOptions { init: Init::Random, seed: 7, ..p.opts.clone() };
    let run = || {
        let mut s = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &opts).unwrap();
        let losses: Vec<_> = (0..3).map(|_| s.step(true).unwrap().unwrap()).collect();
        (s.x().unwrap(), losses)
    };
    let (x1, l1) = run();
    let (x2, l2) = run();
    assert!(x1.iter().zip(&x2).all(|(a, b)| a.to_bits() == b.to_bits()), "images differ between runs");
    assert_eq!(l1, l2);
    assert!(l1[2].total < l1[0].total, "loss did not decrease: {l1:?}");
}

/// Image averaging (Adam, then L-BFGS): the iterates are bit-identical to a run without it (the optimiser never
/// sees the average), the image written is the f64 bias-corrected average of the iterates read after each update,
/// and its losses are those of a fresh run started at that image, with x left as it was.
#[test]
fn image_average_follows_the_iterates_and_is_what_is_written() {
    use neural_style::Optimizer;
    let p = Problem::new(23, 18, 50);
    let decay = 0.9; // fast enough that four updates move the average far from the first image
    for optimizer in [Optimizer::Adam, Optimizer::Lbfgs { history: 3, max_evals: 20 }] {
        let plain = StyleOptions { optimizer, ..p.opts.clone() };
        let averaged = StyleOptions { average_decay: Some(decay), ..plain.clone() };
        let mut a = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &averaged).unwrap();
        let mut b = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &plain).unwrap();
        let first = to_f64(&a.x().unwrap());
        assert_close("average of the first image alone", &a.output_x().unwrap(), &first, 1e-6);
        let mut biased = vec![f64::NAN; first.len()];
        let mut expect = neural_style::verify::reference::image_average(&mut biased, &first, decay, 0);
        for t in 1..=4u64 {
            a.step(false).unwrap();
            b.step(false).unwrap();
            let x = a.x().unwrap();
            let same = x.iter().zip(&b.x().unwrap()).all(|(u, v)| u.to_bits() == v.to_bits());
            assert!(same, "{optimizer:?}: averaging changed the iterate at update {t}");
            expect = neural_style::verify::reference::image_average(&mut biased, &to_f64(&x), decay, t);
        }
        let out = a.output_x().unwrap();
        assert_close(&format!("{optimizer:?}: average after 4 updates"), &out, &expect, 1e-5);
        let moved = out.iter().zip(&a.x().unwrap()).map(|(u, v)| (u - v).abs()).fold(0.0f32, f32::max);
        assert!(moved > 1e-3, "{optimizer:?}: the average equals the last iterate; the test would prove nothing");
        let img = a.image().unwrap();
        let x_before = a.x().unwrap();
        let got = a.output_losses().unwrap();
        assert_eq!(a.x().unwrap(), x_before, "{optimizer:?}: scoring the average left x changed");
        let fresh = StyleOptions { init: Init::Image(img), optimizer: Optimizer::Adam, ..p.opts.clone() };
        let want = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &fresh).unwrap().losses().unwrap();
        let err = (got.total - want.total).abs() / want.total;
        assert!(err < 1e-4, "{optimizer:?}: losses of the average {got:?} vs a run started there {want:?}");
    }
    let bad = StyleOptions { average_decay: Some(1.0), ..p.opts.clone() };
    assert!(Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &bad).is_err());
}

#[test]
fn too_small_and_bad_options_are_refused() {
    let p = Problem::new(20, 17, 40);
    let small = random_image(1, 15, 40);
    let e = Stylizer::new(ctx(), &p.weights, &small, &p.styles, &p.opts).err().unwrap().to_string();
    assert!(e.contains("16"), "{e}");
    let e = Stylizer::new(ctx(), &p.weights, &p.content, &[small], &p.opts).err().unwrap().to_string();
    assert!(e.contains("15x40"), "{e}");
    let bad = StyleOptions { style_layers: vec!["relu5_2".into()], ..p.opts.clone() };
    let e = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &bad).err().unwrap().to_string();
    assert!(e.contains("relu5_2"), "{e}");
    let bad = StyleOptions { style_blend_weights: vec![1.0], ..p.opts.clone() };
    assert!(Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &bad).is_err());
    let bad = StyleOptions { learning_rate: 0.0, ..p.opts.clone() };
    assert!(Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &bad).is_err());
}

/// L-BFGS (history 3, so it wraps) against the f64 reference for 6 iterations: every iterate's loss, the
/// evaluation counts and the final x.
#[test]
fn lbfgs_iterations_match_reference() {
    let worst = verify::network::lbfgs_iterations(ctx(), 20, 17, 6, 3, 30).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("L-BFGS iterations: max error {worst:.2e}");
}

/// The host blocks on the GPU at most once per Adam iteration (the previous iteration, with this one queued; the
/// losses' read when they are asked for), and L-BFGS once per evaluation plus once for its direction. Counted on
/// a context of its own: other tests share `ctx()`.
#[test]
fn host_waits_per_iteration_are_bounded() {
    let ctx = neural_style::gpu::GpuContext::new(&Default::default()).unwrap();
    let p = Problem::new(23, 18, 30);
    let mut s = Stylizer::new(&ctx, &p.weights, &p.content, &p.styles, &p.opts).unwrap();
    s.step(false).unwrap();
    let waits = ctx.host_waits();
    for _ in 0..5 {
        s.step(false).unwrap();
    }
    assert_eq!(ctx.host_waits() - waits, 5, "Adam without reads");
    let waits = ctx.host_waits();
    for _ in 0..3 {
        s.step(true).unwrap();
    }
    assert_eq!(ctx.host_waits() - waits, 3, "Adam reading its losses");
    let waits = ctx.host_waits();
    for _ in 0..3 {
        s.step_pipelined(true).unwrap();
    }
    // Each waits for the previous iteration only (this one queued), which also completes the earlier read; the
    // first finds nothing in flight (the read at once before it waited for everything).
    assert_eq!(ctx.host_waits() - waits, 2, "Adam reading its losses one step late");
    s.flush_losses().unwrap().expect("the last read");

    let opts = StyleOptions { optimizer: neural_style::Optimizer::Lbfgs { history: 3, max_evals: 100 }, ..p.opts };
    let mut s = Stylizer::new(&ctx, &p.weights, &p.content, &p.styles, &opts).unwrap();
    let waits = ctx.host_waits();
    s.step(false).unwrap();
    // The first iteration evaluates x0 too.
    let first = s.evaluations().unwrap() + 1;
    assert_eq!(ctx.host_waits() - waits, first as u64, "L-BFGS's first iteration");
    let (waits, evaluations) = (ctx.host_waits(), s.evaluations().unwrap());
    for _ in 0..4 {
        s.step(false).unwrap();
    }
    let (iterations, evaluations) = (4, s.evaluations().unwrap() - evaluations);
    assert_eq!(ctx.host_waits() - waits, (evaluations + iterations) as u64, "L-BFGS: {evaluations} evaluations");
}

/// An iteration submitted as one command buffer per VGG block (what a slow adapter gets, for display watchdogs)
/// computes exactly what one command buffer does: Adam with its losses read and not, and L-BFGS.
#[test]
fn submitting_block_by_block_changes_no_bit() {
    let p = Problem::new(23, 18, 30);
    let lbfgs =
        StyleOptions { optimizer: neural_style::Optimizer::Lbfgs { history: 3, max_evals: 100 }, ..p.opts.clone() };
    for opts in [&p.opts, &lbfgs] {
        let run = |cut: bool| {
            let mut s = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, opts).unwrap();
            s.set_recording(Some(Recording { per_block: cut, launch_gflop: None }));
            assert_eq!(s.cuts_per_block(), cut);
            // Four poolings forward, four backward, and what follows the last.
            assert_eq!(s.command_buffers_per_iteration(), if cut { 9 } else { 1 });
            let losses: Vec<_> = (0..3).map(|i| s.step(i == 1).unwrap()).collect();
            (s.x().unwrap(), losses, s.losses().unwrap())
        };
        let (x1, l1, f1) = run(false);
        let (x2, l2, f2) = run(true);
        assert!(x1.iter().zip(&x2).all(|(a, b)| a.to_bits() == b.to_bits()), "images differ");
        assert_eq!((l1, f1), (l2, f2));
    }
}

/// A loss that is not finite stops the run with a clear error at the read that sees it (Adam's logged step,
/// L-BFGS's first evaluation, the losses of the image), never a painting of garbage.
#[test]
fn a_loss_that_is_not_finite_is_an_error() {
    let p = Problem::new(23, 18, 30);
    let mut bad = p.content.clone();
    bad.data[5] = f32::NAN;
    let adam = StyleOptions { init: Init::Image(bad), ..p.opts.clone() };
    let lbfgs =
        StyleOptions { optimizer: neural_style::Optimizer::Lbfgs { history: 3, max_evals: 100 }, ..adam.clone() };
    for opts in [&adam, &lbfgs] {
        let mut s = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, opts).unwrap();
        let e = s.step(true).unwrap_err();
        assert!(matches!(e, neural_style::Error::NotFinite(_)), "{e}");
        assert!(e.to_string().contains("not finite"), "{e}");
        assert!(s.losses().is_err());
    }
}

/// Losses read one step late (what a run with --log does with Adam) are exactly the losses read at once, each
/// delivered with its own iteration; L-BFGS delivers at once.
#[test]
fn pipelined_losses_are_the_losses_of_their_iteration() {
    let p = Problem::new(23, 18, 30);
    let lbfgs =
        StyleOptions { optimizer: neural_style::Optimizer::Lbfgs { history: 3, max_evals: 100 }, ..p.opts.clone() };
    // L-BFGS reads its losses in its line search, so it delivers them even when not asked.
    for (opts, delivered) in [(&p.opts, vec![0, 1, 3]), (&lbfgs, vec![0, 1, 2, 3])] {
        let mut now = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, opts).unwrap();
        let at_once: Vec<_> = (0..4).map(|_| now.step(true).unwrap().unwrap()).collect();
        let mut late = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, opts).unwrap();
        let mut got = Vec::new();
        for i in 0..4 {
            // Iteration 2 is not read: the others still arrive, each with its number.
            got.extend(late.step_pipelined(i != 2).unwrap());
        }
        got.extend(late.flush_losses().unwrap());
        let iterations: Vec<usize> = got.iter().map(|l| l.iteration).collect();
        assert_eq!(iterations, delivered);
        for l in &got {
            assert_eq!(l.losses, at_once[l.iteration], "iteration {}", l.iteration);
        }
        assert!(late.flush_losses().unwrap().is_none());
    }
}

/// Stated tolerances of tiled evaluation against the canvas at once (docs/MATHS.md, "Tiled evaluation"): the same
/// f32 kernels on the same inputs, only the Gram and loss sums added in another order. W2's covariance and
/// Newton–Schulz iterations amplify that rounding (measured 5e-5 on its loss), hence its own pair.
/// `steps`: x after two Adam steps, relative L2 (Adam's step is ±lr wherever |g| is far below sqrt(v)'s floor,
/// so an element whose tiny gradient differs in its last bits may move by the whole step either way).
const TILED: Tolerance = Tolerance { loss: 1e-5, gradient: 1e-4, steps: 1e-3 };
const TILED_W2: Tolerance = Tolerance { loss: 2e-4, gradient: 1e-3, steps: 1e-2 };

#[derive(Clone, Copy)]
struct Tolerance {
    loss: f64,
    gradient: f64,
    steps: f64,
}

/// Evaluates `p` at once and in blocks owning `tile` px: the losses, dL/dx, two Adam steps' losses and the images
/// after them agree within `tol`; the blocks split both directions (or, `across_only`, the width); each stylizer
/// allocated what its memory plan says. Returns the worst (loss, gradient) errors.
fn assert_tiled_matches_untiled(
    p: &Problem,
    opts: &StyleOptions,
    (tile, across_only): (usize, bool),
    tol: Tolerance,
) -> (f64, f64) {
    let (w, h) = (p.content.width, p.content.height);
    let tiled_opts = StyleOptions { tile_size: Some(tile), ..opts.clone() };
    let mut whole = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, opts).unwrap();
    let mut tiled = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &tiled_opts).unwrap();
    assert!(whole.grid().is_none(), "{w}x{h} fits at once");
    let grid = tiled.grid().expect("--tile-size asks for blocks").clone();
    let columns: std::collections::BTreeSet<usize> = grid.blocks.iter().map(|b| b.outer.x).collect();
    let rows: std::collections::BTreeSet<usize> = grid.blocks.iter().map(|b| b.outer.y).collect();
    assert!(columns.len() > 1 && (across_only || rows.len() > 1), "blocks in both directions: {grid:?}");
    for (s, o) in [(&whole, opts), (&tiled, &tiled_opts)] {
        let planned = neural_style::stylizer::memory_plan(w, h, o, false, &s.net().facts, o.memory_limits(ctx()));
        assert_eq!(s.gpu_bytes(), planned.unwrap().bytes(), "allocated vs planned (tile {:?})", o.tile_size);
    }
    let close = |what: &str, a: f64, b: f64| {
        assert!(b > 0.0, "{what}: zero at once, the test would prove nothing");
        let err = (a - b).abs() / b;
        assert!(err <= tol.loss, "{what}: tiled {a} vs at once {b} (error {err:.2e})");
        err
    };
    let mut worst_loss = 0.0f64;
    let (lt, lw) = (tiled.losses().unwrap(), whole.losses().unwrap());
    for (what, a, b) in [("content", lt.content, lw.content), ("style", lt.style, lw.style), ("tv", lt.tv, lw.tv)] {
        worst_loss = worst_loss.max(close(what, a, b));
    }
    let (gt, gw) = (tiled.gradient().unwrap(), whole.gradient().unwrap());
    let worst_grad = verify::compare("tiled dL/dx", &gt, &to_f64(&gw), tol.gradient).unwrap_or_else(|e| panic!("{e}"));
    for step in 0..2 {
        let (a, b) = (tiled.step(true).unwrap().unwrap(), whole.step(true).unwrap().unwrap());
        worst_loss = worst_loss.max(close(&format!("total at step {step}"), a.total, b.total));
    }
    verify::compare_norm("x after two steps", &tiled.x().unwrap(), &to_f64(&whole.x().unwrap()), tol.steps)
        .unwrap_or_else(|e| panic!("{e}"));
    (worst_loss, worst_grad)
}

/// Exact tiled evaluation (Gram, two styles, max pooling; avg pooling; W2): an odd-sized image in blocks smaller
/// than it in both directions, with blocks at its edges and corners. Shallow layers keep the image small: the
/// deepest is relu3_1, whose margin is 24 px.
#[test]
fn tiled_evaluation_matches_the_canvas_at_once() {
    let mut p = Problem::new(91, 77, 70);
    p.opts.style_layers = vec!["relu1_1".into(), "relu2_1".into(), "relu3_1".into()];
    p.opts.content_layers = vec!["relu2_2".into()];
    let (l, g) = assert_tiled_matches_untiled(&p, &p.opts, (16, false), TILED);
    eprintln!("tiled (Gram, max pooling): losses {l:.2e}, dL/dx {g:.2e}");
    let avg = StyleOptions { pooling: Pooling::Avg, ..p.opts.clone() };
    let (l, g) = assert_tiled_matches_untiled(&p, &avg, (20, false), TILED);
    eprintln!("tiled (Gram, avg pooling): losses {l:.2e}, dL/dx {g:.2e}");
    let w2 = StyleOptions { style_loss: neural_style::StyleLoss::W2, style_weight: 200.0, ..p.opts.clone() };
    let (l, g) = assert_tiled_matches_untiled(&p, &w2, (24, false), TILED_W2);
    eprintln!("tiled (W2): losses {l:.2e}, dL/dx {g:.2e}");
}

/// Spatial control in blocks (docs/MATHS.md, "Spatial control": masked sums are sums): two styles on
/// complementary soft masks, the second from part of its image, a content mask; Gram and W2, against the canvas at
/// once.
#[test]
fn tiled_masked_evaluation_matches_the_canvas_at_once() {
    use neural_style::masks::{Mask, Masks};
    let mut p = Problem::new(91, 77, 75);
    p.opts.style_layers = vec!["relu1_1".into(), "relu2_1".into(), "relu3_1".into()];
    p.opts.content_layers = vec!["relu2_2".into()];
    let soft = |seed: u64, width: usize, height: usize| {
        let v = random(&mut rng(seed), width * height, 1.0);
        // Black on the left third, the rest soft: blocks see all of it, some none of it.
        let values = (0..width * height).map(|i| if i % width < width / 3 { 0.0 } else { v[i].abs() as f32 }).collect();
        Mask { width, height, values }
    };
    let region = soft(76, 91, 77);
    let other = Mask { values: region.values.iter().map(|v| 1.0 - v).collect(), ..region.clone() };
    let second = &p.styles[1];
    p.opts.masks = Masks {
        style: vec![region, other],
        style_image: vec![None, Some(soft(77, second.width, second.height))],
        content: Some(soft(78, 60, 50)),
    };
    let (l, g) = assert_tiled_matches_untiled(&p, &p.opts, (16, false), TILED);
    eprintln!("tiled masked (Gram): losses {l:.2e}, dL/dx {g:.2e}");
    let w2 = StyleOptions { style_loss: neural_style::StyleLoss::W2, style_weight: 200.0, ..p.opts.clone() };
    let (l, g) = assert_tiled_matches_untiled(&p, &w2, (24, false), TILED_W2);
    eprintln!("tiled masked (W2): losses {l:.2e}, dL/dx {g:.2e}");
}

/// The default layers (relu5_1's 144 px margin) and the canvas's own margin (20 px): blocks split the 680 px wide
/// canvas in two (the height, 340 px, is within one block's margins).
#[test]
fn tiled_evaluation_with_every_default_layer_matches_the_canvas_at_once() {
    let mut p = Problem::new(640, 300, 71);
    p.opts.margin = None;
    let (l, g) = assert_tiled_matches_untiled(&p, &p.opts, (352, true), TILED);
    eprintln!("tiled (default layers, 640x300 on its canvas): losses {l:.2e}, dL/dx {g:.2e}");
}

/// The style images' Gram matrices and means in blocks (a style image beyond the budget) equal those at once.
#[test]
fn style_statistics_in_blocks_match_those_at_once() {
    let p = Problem::new(83, 61, 72);
    let net = GpuNet::new(ctx(), &p.weights, Pooling::Max).unwrap();
    let x = neural_style::stylizer::subtract_mean(&p.content);
    let layers = [0, 2, 4];
    let grid = neural_style::tiling::BlockGrid::new(83, 61, 8, neural_style::tiling::Reach::of(4));
    assert!(grid.blocks.len() > 4, "{grid:?}");
    let variant = neural_style::kernels::gram::variant(&net.facts);
    let at_once = neural_style::network::grams(ctx(), &net, (&x, 83, 61), &layers, variant, true).unwrap();
    let mut reported = 0;
    let mut on_stage = |_: neural_style::SetupStage| reported += 1;
    let blocks =
        neural_style::tiled::grams(ctx(), &net, (&x, 83, 61), &layers, (variant, true), (&grid, None), &mut on_stage);
    let blocks = blocks.unwrap();
    assert_eq!(reported, grid.blocks.len(), "each block reported");
    for (i, (a, b)) in at_once.0.iter().zip(&blocks.0).chain(at_once.1.iter().zip(&blocks.1)).enumerate() {
        verify::compare(&format!("statistic {i}"), b, &to_f64(a), TILED.gradient).unwrap_or_else(|e| panic!("{e}"));
    }
    // And weighted by a mask (--style-image-masks): soft, black on its top rows (docs/MATHS.md, "Spatial
    // control"), against the masked statistics at once.
    let v = random(&mut rng(73), 83 * 61, 1.0);
    let values = (0..83 * 61).map(|i| if i < 83 * 20 { 0.0 } else { v[i].abs() as f32 }).collect();
    let mask = neural_style::masks::Mask { width: 83, height: 61, values };
    let image = (&x[..], 83, 61);
    let at_once = neural_style::network::masked_grams(ctx(), &net, image, &layers, variant, true, Some(&mask)).unwrap();
    let blocks =
        neural_style::tiled::grams(ctx(), &net, image, &layers, (variant, true), (&grid, Some(&mask)), &mut |_| {});
    let blocks = blocks.unwrap();
    for (i, (a, b)) in at_once.0.iter().zip(&blocks.0).chain(at_once.1.iter().zip(&blocks.1)).enumerate() {
        verify::compare(&format!("masked statistic {i}"), b, &to_f64(a), TILED.gradient)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Tiled, L-BFGS's line search and the image average follow the canvas at once: the same losses, iteration by
/// iteration, and the same average.
#[test]
fn tiled_lbfgs_and_averaging_follow_the_canvas_at_once() {
    let mut p = Problem::new(61, 53, 73);
    p.opts.style_layers = vec!["relu1_1".into(), "relu2_1".into()];
    p.opts.content_layers = vec!["relu2_2".into()];
    let opts = StyleOptions {
        optimizer: neural_style::Optimizer::Lbfgs { history: 4, max_evals: 20 },
        average_decay: Some(0.9),
        ..p.opts.clone()
    };
    let tiled_opts = StyleOptions { tile_size: Some(12), ..opts.clone() };
    let mut whole = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &opts).unwrap();
    let mut tiled = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &tiled_opts).unwrap();
    assert!(tiled.grid().unwrap().blocks.len() > 4);
    // The first losses are of the same x; after that the two-loop recursion and the line search carry the
    // gradients' last-bit differences into x (Adam's steps' tolerance).
    for i in 0..3 {
        let (a, b) = (tiled.step(true).unwrap().unwrap(), whole.step(true).unwrap().unwrap());
        let err = (a.total - b.total).abs() / b.total;
        let tol = if i == 0 { TILED.loss } else { TILED.steps };
        assert!(err <= tol, "L-BFGS iteration {i}: tiled {} vs at once {} ({err:.2e})", a.total, b.total);
    }
    assert_eq!(tiled.evaluations(), whole.evaluations(), "the same line search");
    let (a, b) = (tiled.output_losses().unwrap(), whole.output_losses().unwrap());
    assert!((a.total - b.total).abs() / b.total <= TILED.steps, "the average's losses: {a:?} vs {b:?}");
    let (ia, ib) = (tiled.image().unwrap(), whole.image().unwrap());
    verify::compare_norm("the average", &ia.data, &to_f64(&ib.data), TILED.steps).unwrap_or_else(|e| panic!("{e}"));
}

/// A stop asked for between the blocks of a tiled Adam iteration ends it there: an error the job treats as a stop,
/// no update made (x, the iteration count and the image average as before), and the next step goes on as if
/// nothing happened.
#[test]
fn a_stop_between_blocks_leaves_the_iteration_undone() {
    let mut p = Problem::new(61, 53, 74);
    p.opts.style_layers = vec!["relu1_1".into(), "relu2_1".into()];
    p.opts.content_layers = vec!["relu2_2".into()];
    let opts = StyleOptions { tile_size: Some(12), average_decay: Some(0.9), ..p.opts.clone() };
    let mut s = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &opts).unwrap();
    let blocks = s.grid().unwrap().blocks.len();
    let x0 = s.x().unwrap();
    let mut seen = Vec::new();
    let stopped = s.step_watched(false, &mut |done, of| {
        seen.push((done, of));
        done < 3
    });
    assert!(matches!(stopped, Err(neural_style::Error::Stopped)), "{stopped:?}");
    assert_eq!(seen.last(), Some(&(3, 2 * blocks)), "told after each block pass: {seen:?}");
    assert_eq!((s.iteration(), s.x().unwrap()), (0, x0.clone()), "nothing updated");
    let mut fresh = Stylizer::new(ctx(), &p.weights, &p.content, &p.styles, &opts).unwrap();
    let (a, b) = (s.step(true).unwrap().unwrap(), fresh.step(true).unwrap().unwrap());
    assert_eq!(a, b, "the stopped iteration left no trace");
    assert_eq!((s.x().unwrap(), s.iteration()), (fresh.x().unwrap(), 1));
    assert_eq!(s.image().unwrap(), fresh.image().unwrap(), "the image average took in no iterate");
}

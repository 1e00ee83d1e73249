//! Every WGSL kernel against the f64 CPU reference on seeded random data, with odd and prime shapes and channel
//! counts 3/64/128/512, outputs poisoned with NaN first (`neural_style::verify` does the work; it is the
//! same code `neural-style selftest` runs). Tolerance: |gpu − ref| ≤ 1e-4 · (|ref| + rms(ref)) unless stated;
//! max pooling must match exactly. Backward kernels are also checked against central finite differences.

mod common;

use common::*;
use neural_style::frame::Frame;
use neural_style::kernels::{self, pool::PoolShape};
use neural_style::verify as check;
use neural_style::verify::reference as r;

/// Every case of `kernel` in the shared list (`verify::cases`, the list `neural-style selftest` runs at its
/// quick scale).
fn all_cases(kernel: &str) {
    let worst = check::run_kernel(ctx(), check::Scale::Full, kernel).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{kernel}: max error {worst:.2e}");
}

#[test]
fn conv3x3_forward_matches_reference() {
    all_cases("conv3x3");
}

/// Against the reference and against central finite differences of L(x) = Σ r · relu(conv(x)).
#[test]
fn conv3x3_backward_data_matches_reference_and_finite_differences() {
    all_cases("conv3x3_backward_data");
}

#[test]
fn maxpool2x2_forward_and_backward_match_reference_exactly() {
    all_cases("maxpool2x2");
}

#[test]
fn avgpool2x2_forward_and_backward_match_reference() {
    all_cases("avgpool2x2");
}

/// Finite differences of Σ r · pool(relu(x)) for both pooling kinds (continuous data: no ties); the kernels fuse
/// the backward of the ReLU that produced their input.
#[test]
fn pool_backward_matches_finite_differences() {
    let (c, h, w) = (3, 7, 9);
    let mut g = rng(600);
    let x = random(&mut g, c * h * w, 1.0);
    let rr = random(&mut g, c * (h / 2) * (w / 2), 1.0);
    let s = PoolShape { channels: c, height: h, width: w };
    let (fin, fout) = (Frame::new(h, w), Frame::new(h / 2, w / 2));
    let xb = ctx().buffer_from("x", &fin.frame(&to_f32(&x), c)).unwrap();
    let gyb = ctx().buffer_from("r", &fout.frame(&to_f32(&rr), c)).unwrap();
    for avg in [false, true] {
        let gxb = ctx().buffer_from("gx", &fin.frame(&vec![f32::NAN; c * h * w], c)).unwrap();
        let d = if avg {
            kernels::pool::pool2x2_backward(ctx(), neural_style::Pooling::Avg, s, &xb, (&gyb, &gxb)).unwrap()
        } else {
            kernels::pool::pool2x2_backward(ctx(), neural_style::Pooling::Max, s, &xb, (&gyb, &gxb)).unwrap()
        };
        ctx().run(&[&d]).unwrap();
        let loss = |x: &[f64]| -> f64 {
            let x: Vec<f64> = x.iter().map(|v| v.max(0.0)).collect();
            let p = if avg { r::avgpool2x2(&x, c, h, w) } else { r::maxpool2x2(&x, c, h, w) };
            p.iter().zip(&rr).map(|(a, b)| a * b).sum()
        };
        let fd = r::central_differences(&x, 1e-6, loss);
        let gpu = fin.unframe(&ctx().read_all(&gxb).unwrap(), c);
        assert_close(&format!("pool backward avg={avg} vs finite differences"), &gpu, &fd, 1e-4);
    }
}

#[test]
fn gram_matches_reference_and_is_bit_identical_on_rerun() {
    all_cases("gram");
}

#[test]
fn sq_diff_sum_and_reduce_match_reference() {
    all_cases("sq_diff_sum");
}

#[test]
fn content_grad_matches_reference() {
    all_cases("content_grad");
}

#[test]
fn style_grad_matches_reference() {
    all_cases("style_grad");
}

/// The derivation of dL/dF in the reference, against finite differences of the reference loss.
#[test]
fn reference_style_gradient_matches_finite_differences() {
    let (c, n) = (5, 11);
    let mut g = rng(1100);
    let f = random(&mut g, c * n, 1.0);
    let a = r::gram(&random(&mut g, c * n, 1.0), c, n);
    let (_, grad) = r::style_loss(&f, &a, c, n, 3.0);
    let eps = 1e-6;
    for i in 0..c * n {
        let (mut p, mut m) = (f.clone(), f.clone());
        p[i] += eps;
        m[i] -= eps;
        let fd = (r::style_loss(&p, &a, c, n, 3.0).0 - r::style_loss(&m, &a, c, n, 3.0).0) / (2.0 * eps);
        assert!((fd - grad[i]).abs() <= 1e-6 + 1e-5 * fd.abs(), "style dL/dF[{i}]: {} vs fd {fd}", grad[i]);
    }
}

#[test]
fn tv_loss_grad_matches_reference() {
    all_cases("tv_loss_grad");
}

/// The reference TV gradient against finite differences (the loss is quadratic: central differences are exact
/// up to rounding).
#[test]
fn reference_tv_gradient_matches_finite_differences() {
    let (h, w) = (7, 9);
    let x = random(&mut rng(1250), 3 * h * w, 100.0);
    let (_, grad) = r::tv_loss(&x, h, w, 1e-3);
    let eps = 1e-3;
    for j in 0..x.len() {
        let (mut p, mut m) = (x.clone(), x.clone());
        p[j] += eps;
        m[j] -= eps;
        let fd = (r::tv_loss(&p, h, w, 1e-3).0 - r::tv_loss(&m, h, w, 1e-3).0) / (2.0 * eps);
        assert!((fd - grad[j]).abs() <= 1e-9 + 1e-6 * fd.abs(), "tv dL/dx[{j}]: {} vs fd {fd}", grad[j]);
    }
}

#[test]
fn frame_clear_zeroes_exactly_the_frame() {
    all_cases("frame_clear");
}

#[test]
fn adam_three_steps_match_torch_formula() {
    all_cases("adam");
}

/// The Wasserstein-2 style loss's kernels: channel means, covariance, the Newton–Schulz pieces (`matmul` with
/// its CPU variant, and the whole square root against the f64 eigendecomposition on both), the loss scalar,
/// the gradient's parts.
#[test]
fn w2_kernels_match_reference() {
    for kernel in
        ["channel_mean", "w2_covariance", "matmul", "sqrtm_start", "w2_loss", "w2_mean_grad", "channel_bias_grad"]
    {
        all_cases(kernel);
    }
}

/// The image average's first update restarts it over a poisoned b; three more take in new images.
#[test]
fn image_average_matches_reference() {
    all_cases("image_average");
}

#[test]
fn channel_affine_matches_reference() {
    all_cases("channel_affine");
}

/// Spatial control's per-position weighting (written and added), against the f64 reference.
#[test]
fn mask_weight_matches_reference() {
    all_cases("mask_weight");
}

/// Tiled evaluation's cut and paste (a rectangle between tensors of different frames) and its owned-region mask:
/// exact, the untouched pixels kept, the frame zero.
#[test]
fn region_kernels_match_reference() {
    all_cases("region_copy");
    all_cases("region_keep");
}

/// zero_u32 + max_abs: the tensor cores' operand ranges, exact bits, neighbours untouched.
#[test]
fn max_abs_writes_exactly_the_largest_magnitude() {
    all_cases("max_abs");
}

/// Every kernel is run by some case (each case lists the WGSL kernels it runs); the benchmark probes are
/// checked in tests/peak_kernels.rs.
#[test]
fn every_kernel_has_conformance_cases() {
    let cases = check::cases(check::Scale::Full);
    for name in kernels::names().filter(|n| !n.starts_with("peak_")) {
        assert!(cases.iter().any(|c| c.checks.contains(&name)), "no conformance case runs {name}");
    }
}

#[test]
fn a_wrong_kernel_fails_the_comparison() {
    // The comparison itself must be able to fail: NaN (an unwritten element) and a small error both fail.
    assert!(check::compare("nan", &[f32::NAN], &[1.0], 1e-4).is_err());
    assert!(check::compare("off", &[1.001], &[1.0], 1e-4).is_err());
    assert!(check::compare("ok", &[1.00001], &[1.0], 1e-4).is_ok());
}

#[test]
fn every_kernel_compiles_on_this_adapter() {
    for name in kernels::names().filter(|n| !n.ends_with("_cpu")) {
        ctx().pipeline(&kernels::shader(name).unwrap(), &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The templates, at every rendering the variant choices use.
    let mut templates = kernels::conv::cpu_renderings().unwrap();
    templates.push(kernels::gram::cpu_shader().unwrap());
    templates.push(kernels::loss::style_grad_cpu_shader(64).unwrap());
    templates.push(kernels::loss::style_grad_cpu_shader(65).unwrap());
    for shader in templates {
        ctx().pipeline(&shader, &[]).unwrap_or_else(|e| panic!("{}: {e}", shader.name));
    }
}

/// The tensor-core kernels' software twin (f16-rounded operands, the same staging, tiling and epilogue, scalar
/// products) for both tilings, conv forward and backward-data, Gram and style gradient: runs on any adapter, so
/// CI checks everything but the hardware's own fragment loads and products. Tolerance 5e-3.
#[test]
fn tensor_core_twin_kernels_match_reference() {
    all_cases("gemm_coop twin");
}

/// The same cases on the cooperative matrices themselves, where the adapter has them (an H100/H200, or Mesa
/// 26 lavapipe's 8x8); `NEURAL_STYLE_REQUIRE_TENSOR_CORES=1` makes their absence a failure.
#[test]
fn tensor_core_kernels_match_reference_on_cooperative_matrices() {
    all_cases("gemm_coop");
}

/// L-BFGS's dot products (Σ a·b, Σ |a|) into one slot: neighbours untouched, reruns bit-identical, within
/// 1e-5 of Σ |terms|.
#[test]
fn dot_sum_matches_reference_and_is_bit_identical_on_rerun() {
    all_cases("dot_sum");
}

/// L-BFGS's axpys with constant and slot-formed coefficients, overwriting a poisoned y and accumulating.
#[test]
fn axpy_slots_matches_reference() {
    all_cases("axpy_slots");
}

/// The first-use set of each kernel family (the adapter's own and the other, its fallback) passes here, every
/// check run (none stops the set early).
#[test]
fn first_use_f32_sets_pass_for_both_families() {
    use neural_style::first_use;
    let own = kernels::AdapterFacts::of(ctx());
    let other = kernels::AdapterFacts {
        device_type: if own.is_cpu() { wgpu::DeviceType::DiscreteGpu } else { wgpu::DeviceType::Cpu },
        ..own.clone()
    };
    for facts in [own, other] {
        let checks = first_use::f32_checks(&facts);
        let t = std::time::Instant::now();
        let outcomes = first_use::run(ctx(), &checks);
        eprintln!(
            "first-use f32 set ({:?}): {} checks, {:.2} s",
            facts.device_type,
            outcomes.len(),
            t.elapsed().as_secs_f64()
        );
        assert_eq!(outcomes.len(), checks.len());
        for o in &outcomes {
            assert!(o.result.is_ok(), "{}: {:?}", o.kernel, o.result);
        }
        assert_eq!(first_use::decide(&outcomes, None, None), first_use::Decision::F32 { why_not_tensor_cores: None });
    }
}

/// The tensor-core set (conv forward and backward-data, Gram, style gradient at whole and ragged tiles) passes on
/// the tensor-core kernels' software twin, for both tilings; on the cooperative matrices where the adapter has them.
#[test]
fn first_use_tensor_core_set_passes_on_the_twin() {
    use neural_style::first_use;
    use neural_style::kernels::coop;
    let good = [first_use::Outcome { kernel: "conv3x3 Tiled".into(), result: Ok(0.0) }];
    for (config, twin) in [(coop::tiling(16, 32), true), (coop::tiling(8, 8), true)]
        .into_iter()
        .chain(ctx().coop_fragments.iter().map(|&f| (coop::tiling(f as usize, 32), false)))
    {
        let checks = first_use::tensor_core_checks(config, twin);
        let outcomes = first_use::run(ctx(), &checks);
        // 16x16 fragments: the 128 tile's four and the 64 tile's two convs.
        assert_eq!(outcomes.len(), if config.fragment == 16 { 6 } else { checks.len() });
        assert_eq!(outcomes.len(), checks.len());
        for o in &outcomes {
            assert!(o.result.is_ok(), "{}: {:?}", o.kernel, o.result);
        }
        assert_eq!(first_use::decide(&good, None, Some(&outcomes)), first_use::Decision::TensorCores);
    }
}

/// A wrong result in the set is caught, names the kernel, and stops the rest: through `run` and `decide`, as the
/// engine's own check goes.
#[test]
fn first_use_catches_a_wrong_result() {
    use neural_style::first_use;
    let mut checks = first_use::f32_checks(&kernels::AdapterFacts::of(ctx()));
    let n = checks.len();
    // A check whose result is wrong, second in the set.
    checks
        .insert(1, ("conv3x3 (judged wrongly)".into(), Box::new(|_| check::compare("conv3x3", &[1.0], &[-5.0], 1e-4))));
    let outcomes = first_use::run(ctx(), &checks);
    assert_eq!(outcomes.len(), 2, "the set stops at the first failure");
    let d = first_use::decide(&outcomes, None, None);
    let first_use::Decision::Stop { failed } = d else { panic!("{d:?}") };
    assert!(failed.starts_with("conv3x3 (judged wrongly)"), "{failed}");
    assert!(n > 5);
}

/// The video's warp (bilinear, clamped) against the f64 reference, 1e-4 (the f32 sample position: see
/// `verify::temporal`).
#[test]
fn warp_bilinear_matches_reference() {
    all_cases("warp_bilinear");
}

/// The reliability map: exact 0/1 agreement away from the thresholds (pixels within 1e-4 of one, at most 1 %, are
/// not compared), with both reliable and unreliable pixels present; its Gaussian, 1e-6.
#[test]
fn flow_reliability_and_its_smoothing_match_reference() {
    all_cases("flow_reliability");
    all_cases("reliability_smooth");
}

/// The temporal loss (1e-5) and its gradient (1e-5, and against central finite differences of the kernel's own
/// loss, 1e-2), written and accumulated.
#[test]
fn temporal_loss_grad_matches_reference_and_finite_differences() {
    all_cases("temporal_loss_grad");
}

/// Optical flow's grey conversion against the f64 reference (relative 1e-5).
#[test]
fn flow_grey_matches_reference() {
    all_cases("flow_grey");
}

/// The flow pyramid's 2x2 means, odd sizes rounded down (relative 1e-5).
#[test]
fn flow_downsample_matches_reference() {
    all_cases("flow_downsample");
}

/// A coarse flow to the next finer level, clamped at the last row and column (relative 1e-5).
#[test]
fn flow_upsample_matches_reference() {
    all_cases("flow_upsample");
}

/// DIS densification from given patch flows (relative 1e-4: see `verify::flow::dis_densify`).
#[test]
fn dis_densify_matches_reference() {
    all_cases("dis_densify");
}

/// DIS inverse search given the same inputs: ≥ 99% of patches within 1e-3 px of the f64 search and all within
/// 0.05 px (see `verify::flow::dis_patch_search` for why not elementwise).
#[test]
fn dis_patch_search_matches_reference() {
    all_cases("dis_patch_search");
}

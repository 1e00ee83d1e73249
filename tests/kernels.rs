//! Every WGSL kernel against the f64 CPU reference on seeded random data, with odd and prime shapes and channel
//! counts 3/64/128/512, outputs poisoned with NaN first (`neural_style::conformance` does the work; it is the
//! same code `neural-style selftest` runs). Tolerance: |gpu − ref| ≤ 1e-4 · (|ref| + rms(ref)) unless stated;
//! max pooling must match exactly. Backward kernels are also checked against central finite differences.

mod common;

use common::*;
use neural_style::conformance as check;
use neural_style::kernels::{self, conv::ConvShape, pool::PoolShape};
use neural_style::reference as r;

fn ok(c: check::Check) {
    c.unwrap_or_else(|e| panic!("{e}"));
}

const CONV_SHAPES: &[(usize, usize, usize, usize)] = &[
    // (cin, cout, h, w)
    (3, 64, 33, 31),
    (64, 128, 17, 9),
    (1, 7, 7, 13),
    (128, 64, 5, 11),
    (512, 512, 3, 5),
    (64, 3, 16, 16),
    (4, 130, 19, 23),
];

fn conv_shape(&(cin, cout, height, width): &(usize, usize, usize, usize)) -> ConvShape {
    ConvShape { cin, cout, height, width }
}

#[test]
fn conv3x3_forward_matches_reference() {
    for (i, s) in CONV_SHAPES.iter().enumerate() {
        for relu in [true, false] {
            ok(check::conv3x3(ctx(), conv_shape(s), relu, 100 + i as u64));
        }
    }
}

#[test]
fn conv3x3_backward_data_matches_reference() {
    for (i, s) in CONV_SHAPES.iter().enumerate() {
        ok(check::conv3x3_backward_data(ctx(), conv_shape(s), false, 200 + i as u64));
    }
}

/// Central finite differences of L(x) = Σ r · relu(conv(x)) against the backward-data kernel.
#[test]
fn conv3x3_backward_data_matches_finite_differences() {
    ok(check::conv3x3_backward_data(ctx(), ConvShape { cin: 5, cout: 6, height: 7, width: 9 }, true, 300));
    // A 3-channel result: the narrow kernel (as for conv1_1's image gradient).
    ok(check::conv3x3_backward_data(ctx(), ConvShape { cin: 3, cout: 70, height: 9, width: 7 }, true, 301));
}

const POOL_SHAPES: &[(usize, usize, usize)] = &[(3, 33, 31), (64, 17, 9), (1, 7, 13), (128, 16, 16), (512, 5, 3)];

#[test]
fn maxpool2x2_forward_and_backward_match_reference_exactly() {
    for (i, &(channels, height, width)) in POOL_SHAPES.iter().enumerate() {
        for ties in [false, true] {
            ok(check::pool(ctx(), PoolShape { channels, height, width }, false, ties, 400 + i as u64));
        }
    }
}

#[test]
fn avgpool2x2_forward_and_backward_match_reference() {
    for (i, &(channels, height, width)) in POOL_SHAPES.iter().enumerate() {
        ok(check::pool(ctx(), PoolShape { channels, height, width }, true, false, 500 + i as u64));
    }
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
    let xb = ctx().buffer_from("x", &to_f32(&x)).unwrap();
    let gyb = ctx().buffer_from("r", &to_f32(&rr)).unwrap();
    for avg in [false, true] {
        let gxb = ctx().storage_buffer("gx", c * h * w).unwrap();
        ctx().poison(&gxb);
        let d = if avg {
            kernels::pool::avgpool2x2_backward(ctx(), s, &xb, &gyb, &gxb).unwrap()
        } else {
            kernels::pool::maxpool2x2_backward(ctx(), s, &xb, &gyb, &gxb).unwrap()
        };
        ctx().run(&[&d]).unwrap();
        let loss = |x: &[f64]| -> f64 {
            let x: Vec<f64> = x.iter().map(|v| v.max(0.0)).collect();
            let p = if avg { r::avgpool2x2(&x, c, h, w) } else { r::maxpool2x2(&x, c, h, w) };
            p.iter().zip(&rr).map(|(a, b)| a * b).sum()
        };
        let eps = 1e-6;
        let fd: Vec<f64> = (0..x.len())
            .map(|i| {
                let (mut p, mut m) = (x.clone(), x.clone());
                p[i] += eps;
                m[i] -= eps;
                (loss(&p) - loss(&m)) / (2.0 * eps)
            })
            .collect();
        let gpu = ctx().read_f32(&gxb, 0, c * h * w).unwrap();
        assert_close(&format!("pool backward avg={avg} vs finite differences"), &gpu, &fd, 1e-4);
    }
}

#[test]
fn gram_matches_reference_and_is_bit_identical_on_rerun() {
    let shapes = [(3, 33 * 31), (64, 17 * 9), (1, 7 * 13), (128, 4099), (512, 7 * 13), (65, 300), (64, 40_000)];
    for (i, &(c, n)) in shapes.iter().enumerate() {
        ok(check::gram(ctx(), c, n, 700 + i as u64));
    }
}

#[test]
fn sq_diff_sum_and_reduce_match_reference() {
    for (i, &n) in [1usize, 255, 4097, 33 * 31 * 3, 100_003].iter().enumerate() {
        ok(check::sq_diff_reduce(ctx(), n, 800 + i as u64));
    }
}

#[test]
fn content_grad_matches_reference() {
    for (i, &n) in [64 * 17 * 9, 7, 512 * 3 * 5].iter().enumerate() {
        ok(check::content_grad(ctx(), n, 900 + i as u64));
    }
}

#[test]
fn style_grad_matches_reference() {
    for (i, &(c, n)) in [(64usize, 17 * 9), (3, 7 * 13), (128, 5 * 7), (512, 3 * 2), (65, 31)].iter().enumerate() {
        ok(check::style_grad(ctx(), c, n, 1000 + i as u64));
    }
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
    for (i, &(h, w)) in [(33usize, 31usize), (7, 13), (16, 16), (1, 5), (20, 17)].iter().enumerate() {
        ok(check::tv(ctx(), h, w, 1200 + i as u64));
    }
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
fn adam_three_steps_match_torch_formula() {
    ok(check::adam(ctx(), 3 * 33 * 31, 1300));
}

#[test]
fn channel_affine_matches_reference() {
    ok(check::channel_affine(ctx(), 7, 13, 1400));
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
    for name in kernels::names() {
        ctx()
            .pipeline(&neural_style::gpu::PipelineKey { kernel: name, constants: Vec::new() })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

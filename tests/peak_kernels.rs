//! The adapter-peak probes (`peak_fma.wgsl`, `peak_copy.wgsl`) against CPU references on seeded data, outputs
//! poisoned with NaN first. The benchmarks divide by what these kernels measure, so they must compute what
//! they claim (all the FMAs, every byte).

#[allow(unused_imports)] // common re-exports helpers this binary does not use
mod common;

use common::*;
use neural_style::kernels::peak;

/// f64 model of `peak_fma.wgsl`: 32 chains `a = a * mul + add` run `4 * iters` times, summed chain by chain
/// (vec4 adds, in order), then the lanes x + y + z + w.
fn fma_reference(seed: f32, iters: u32, mul: f32, add: f32) -> f64 {
    let (m, c) = (f64::from(mul), f64::from(add));
    let mut lanes = [0.0f64; 4];
    for chain in 0..8 {
        for (l, lane) in lanes.iter_mut().enumerate() {
            let mut a = f64::from(seed) + 0.125 * (4 * chain + l) as f64;
            for _ in 0..4 * iters {
                a = a * m + c;
            }
            *lane += a;
        }
    }
    lanes.iter().sum()
}

#[test]
fn peak_fma_matches_reference() {
    // Thread counts that are not multiples of the workgroup (256); mul/add chosen so the chains have not
    // converged to add / (1 - mul): a wrong trip count changes the result.
    for (case, &(threads, iters, mul, add)) in
        [(1usize, 1u32, 0.9f32, 0.25f32), (257, 7, 0.9, 0.25), (1000, 50, 0.99, -0.5), (4099, 3, -0.75, 1.5)]
            .iter()
            .enumerate()
    {
        let mut g = rng(1500 + case as u64);
        let seeds = random(&mut g, threads, 2.0);
        let seeds32 = to_f32(&seeds);
        let sb = ctx().buffer_from("seeds", &seeds32).unwrap();
        // One extra element: it must stay NaN (no thread past `threads` writes).
        let ob = ctx().storage_buffer("fma out", threads + 1).unwrap();
        ctx().poison(&ob);
        let d = peak::peak_fma(ctx(), threads, iters, mul, add, &sb, &ob).unwrap();
        ctx().run(&[&d]).unwrap();
        let got = ctx().read_f32(&ob, 0, threads + 1).unwrap();
        let expect: Vec<f64> = seeds32.iter().map(|&s| fma_reference(s, iters, mul, add)).collect();
        assert_close(&format!("peak_fma threads={threads} iters={iters}"), &got[..threads], &expect, 1e-5);
        assert!(got[threads].is_nan(), "peak_fma wrote past its {threads} threads");
    }
    assert_eq!(peak::fma_flops(1000, 50), 2.0 * 128.0 * 1000.0 * 50.0);
}

#[test]
fn peak_copy_copies_exactly() {
    for (case, &vec4s) in [1usize, 255, 1237, 70_001].iter().enumerate() {
        let mut g = rng(1600 + case as u64);
        let src = to_f32(&random(&mut g, 4 * vec4s, 1e3));
        let sb = ctx().buffer_from("copy src", &src).unwrap();
        let db = ctx().storage_buffer("copy dst", 4 * vec4s + 4).unwrap();
        ctx().poison(&db);
        let d = peak::peak_copy(ctx(), vec4s, &sb, &db).unwrap();
        ctx().run(&[&d]).unwrap();
        let got = ctx().read_f32(&db, 0, 4 * vec4s + 4).unwrap();
        for (i, (&a, &b)) in got.iter().zip(&src).enumerate() {
            assert!(a.to_bits() == b.to_bits(), "peak_copy {vec4s} vec4s: index {i}: {a} vs {b}");
        }
        assert!(got[4 * vec4s..].iter().all(|v| v.is_nan()), "peak_copy wrote past {vec4s} vec4s");
    }
    assert_eq!(peak::copy_bytes(10), 320.0);
}

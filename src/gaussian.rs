//! Gaussian fits of a layer's features for the Wasserstein-2 style loss (docs/MATHS.md, "Style loss:
//! Wasserstein-2"): the target's covariance with its ridge and its symmetric square root T, computed once per
//! run in f64 on the host (a C x C eigendecomposition, C ≤ 512) from the blended means and second moments.

/// f(A) for a symmetric C x C matrix A by its eigendecomposition: V·diag(f(λ))·Vᵀ.
pub fn sym_fn(a: &[f64], c: usize, f: impl Fn(f64) -> f64) -> Vec<f64> {
    let m = nalgebra::DMatrix::from_row_slice(c, c, a);
    let e = nalgebra::SymmetricEigen::new(m);
    let d = nalgebra::DMatrix::from_diagonal(&e.eigenvalues.map(f));
    let r = &e.eigenvectors * d * e.eigenvectors.transpose();
    (0..c * c).map(|k| r[(k / c, k % c)]).collect()
}

/// The largest eigenvalue of a symmetric C x C matrix.
pub fn sym_max_eigenvalue(a: &[f64], c: usize) -> f64 {
    let e = nalgebra::SymmetricEigen::new(nalgebra::DMatrix::from_row_slice(c, c, a));
    e.eigenvalues.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The Wasserstein-2 style target of one layer (docs/MATHS.md, "Style loss: Wasserstein-2").
#[derive(Clone, Debug)]
pub struct W2Target {
    pub mean: Vec<f64>,
    /// Σ̂_t = S_t − μ_t·μ_tᵀ + ε·I.
    pub cov: Vec<f64>,
    /// T = Σ̂_t^½.
    pub sqrt: Vec<f64>,
    pub ridge: f64,
}

/// Relative ridge of the W2 covariances: ε = W2_RIDGE · λmax(Σ_t) (at least W2_RIDGE_FLOOR).
pub const W2_RIDGE: f64 = 1e-3;
pub const W2_RIDGE_FLOOR: f64 = 1e-6;

/// The W2 target from the blended mean μ_t and second raw moment S_t of the style images at one layer.
pub fn w2_target(mean: &[f64], srm: &[f64], c: usize) -> W2Target {
    let mut cov: Vec<f64> = (0..c * c).map(|k| srm[k] - mean[k / c] * mean[k % c]).collect();
    let ridge = (W2_RIDGE * sym_max_eigenvalue(&cov, c)).max(W2_RIDGE_FLOOR);
    (0..c).for_each(|i| cov[i * c + i] += ridge);
    let sqrt = sym_fn(&cov, c, |l| l.max(0.0).sqrt());
    W2Target { mean: mean.to_vec(), cov, sqrt, ridge }
}

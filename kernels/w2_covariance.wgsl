// The covariance of a layer's features plus the ridge (docs/MATHS.md, "Style loss: Wasserstein-2"), C x C:
//   cov[i, j] = C·G[i, j] − mean[i]·mean[j] + ridge·δ_ij
// from the Gram G = F·Fᵀ / (C·N) (so C·G is the second raw moment F·Fᵀ / N) and the channel means.

fn element_count() -> u32 {
    return params.channels * params.channels;
}

fn element(idx: u32) {
    let i = idx / params.channels;
    let j = idx % params.channels;
    cov[idx] = params.gram_scale * gram[idx] - mean[i] * mean[j] + select(0.0, params.ridge, i == j);
}

// The per-channel part of a layer's Wasserstein-2 style gradient (docs/MATHS.md, "Style loss: Wasserstein-2"):
//   bias[i] = w / N · ( 2 (mean[i] − target_mean[i]) / C − 2 Σ_j K[i, j] · mean[j] )
// dL/dF = 2w/N · K·F (style_grad with K) + bias·1ᵀ (channel_bias_grad), K = (I − T·M^−½·T) / C.

fn element_count() -> u32 {
    return params.channels;
}

fn element(i: u32) {
    let c = params.channels;
    var km = 0.0;
    for (var j = 0u; j < c; j++) {
        km = fma(k[i * c + j], mean[j], km);
    }
    bias[i] = params.w_over_n * (2.0 * (mean[i] - target_mean[i]) / f32(c) - 2.0 * km);
}

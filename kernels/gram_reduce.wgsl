// Sums the K-splits of gram.wgsl in a fixed order and scales: G[i, j] = scale * sum_s partial[s, i, j],
// scale = 1 / (C*H*W). Elements in tiles below the diagonal (never computed) are read mirrored, so G is exactly
// symmetric. One thread per element of G.

fn element_count() -> u32 {
    return params.channels * params.channels;
}

fn element(idx: u32) {
    let c = params.channels;
    var i = idx / c;
    var j = idx % c;
    if (j / params.tile < i / params.tile) {
        let t = i;
        i = j;
        j = t;
    }
    var sum = 0.0;
    for (var s = 0u; s < params.splits; s++) {
        sum += partial[s * c * c + i * c + j];
    }
    gram[idx] = params.scale * sum;
}

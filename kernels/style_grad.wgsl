// Gradient of one layer's style loss L = w_s * mean over C^2 of (G - A)^2 w.r.t. its features F (C x N):
//   grad[k, n] (+)= scale * sum_j (G - A)[k, j] * F[j, n],   scale = 4 * w_s / (C^2 * C*H*W)
// (G = F Fᵀ / (C*H*W) and G - A are symmetric, so dL/dF = 2/(CHW) * dL/dG * F with dL/dG = 2 w_s (G-A)/C^2.)
// A GEMM (M = C, N = H*W, K = C) on shared/gemm_tiled.wgsl; (G - A) is formed while loading the tile, and read
// as its transpose (same matrix) so the loads are contiguous. F is a ReLU output and the ReLU's backward is
// fused in the epilogue: nothing passes where F = 0 (the gradient buffer holds dL/d(pre-ReLU)). F and grad are
// framed CHW (src/frame.rs); N runs over the data rows as they lie in the frame, whose zero columns give zero
// gradients, so the frame stays zero.

// Index of element n of channel c's data rows.
fn at(c: u32, n: u32) -> u32 {
    return HEAD + c * params.plane + params.stride + n;
}

const LOADS_ALONG_K: bool = false;

fn gemm_tile(wg: vec3<u32>, nwg: vec3<u32>) -> GemmTile {
    let tile_n = wg.x + wg.y * nwg.x;
    return GemmTile(wg.z * TILE, tile_n * TILE, 0u, params.channels, 0u, tile_n < params.pixel_tiles);
}

struct AColumn {
    m: u32,
}

fn a_column(m: u32) -> AColumn {
    return AColumn(m);
}

// (G - A)[k, m], read at [k, m] (the transpose, equal) so consecutive invocations read consecutive elements.
fn load_a(col: AColumn, k: u32) -> f32 {
    let c = params.channels;
    if (col.m < c) {
        let gi = k * c + col.m;
        return gram[gi] - target_gram[gi];
    }
    return 0.0;
}

struct BColumn {
    n: u32,
}

fn b_column(n: u32) -> BColumn {
    return BColumn(n);
}

fn load_b(col: BColumn, k: u32) -> f32 {
    if (col.n < params.pixels) {
        return features[at(k, col.n)];
    }
    return 0.0;
}

fn store_c(tile: GemmTile, m: u32, n: u32, value: f32) {
    if (m < params.channels && n < params.pixels) {
        let idx = at(m, n);
        let g = select(0.0, params.scale * value, features[idx] > 0.0);
        grad[idx] = select(g, grad[idx] + g, params.accumulate != 0u);
    }
}

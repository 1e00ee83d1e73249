// Square matrix product with a scaled identity (row-major C x C), for the Newton–Schulz matrix square root of
// the Wasserstein-2 style loss (docs/MATHS.md):
//   out = alpha · A·B + beta · I,    alpha = scale · slots[alpha_slot]^alpha_power (scale alone when NONE)
// so a scalar measured on the GPU (a Frobenius norm) scales the product without a read-back. out must be
// neither A nor B. The tiled loop is shared/gemm_tiled.wgsl with its A operand = this A transposed; Params,
// the scalars' binding and the scale are shared/matmul_scale.wgsl.

// 64 invocations read 64 consecutive columns of B's row k (A's reads are strided: the matrices are small).
const LOADS_ALONG_K: bool = false;

fn gemm_tile(wg: vec3<u32>, nwg: vec3<u32>) -> GemmTile {
    return GemmTile(wg.y * TILE, wg.x * TILE, 0u, params.size, 0u, true);
}

struct AColumn {
    row: u32,
}

fn a_column(m: u32) -> AColumn {
    return AColumn(m);
}

// The core's A[k, m] is this A[m, k].
fn load_a(col: AColumn, k: u32) -> f32 {
    if (col.row < params.size) {
        return a[col.row * params.size + k];
    }
    return 0.0;
}

struct BColumn {
    column: u32,
}

fn b_column(n: u32) -> BColumn {
    return BColumn(n);
}

fn load_b(col: BColumn, k: u32) -> f32 {
    if (col.column < params.size) {
        return b[k * params.size + col.column];
    }
    return 0.0;
}

fn store_c(tile: GemmTile, m: u32, n: u32, value: f32) {
    if (m < params.size && n < params.size) {
        out[m * params.size + n] = product_scale() * value + select(0.0, params.beta, m == n);
    }
}

// The operands of a 3x3 convolution (stride 1, zero padding 1) as an implicit GEMM, for gemm_tiled.wgsl:
//   A[k, m] = weights[k * cout + m]             weights pre-transposed at load to K x Cout, k = ci*9 + tap
//   B[k, n] = im2col(input)[k, n]               = input[ci, y + ky - 1, x + kx - 1] for pixel n = (y, x), 0 outside
// Tensors are CHW (batch 1): a channel's pixels are contiguous, so one GEMM column (a pixel) is read with unit
// stride across invocations. The kernel file declares `params` (cin, cout, height, width, pixel_tiles), `input`
// and `weights`; the forward conv and the backward-data conv (the same convolution with flipped, transposed
// weights, from Cout to Cin channels) both use these loaders.

const LOADS_ALONG_K: bool = false;

fn gemm_tile(wg: vec3<u32>, nwg: vec3<u32>) -> GemmTile {
    // The pixel tiles may spread over x and y (≤ 65,535 groups per dimension); z is the output-channel tile.
    let tile_n = wg.x + wg.y * nwg.x;
    return GemmTile(wg.z * TILE, tile_n * TILE, 0u, params.cin * 9u, 0u, tile_n < params.pixel_tiles);
}

struct AColumn {
    m: u32,
}

fn a_column(m: u32) -> AColumn {
    return AColumn(m);
}

fn load_a(col: AColumn, k: u32) -> f32 {
    if (col.m < params.cout) {
        return weights[k * params.cout + col.m];
    }
    return 0.0;
}

struct BColumn {
    n: u32,
    y: i32,
    x: i32,
}

fn b_column(n: u32) -> BColumn {
    return BColumn(n, i32(n / params.width), i32(n % params.width));
}

fn load_b(col: BColumn, k: u32) -> f32 {
    let height = params.height;
    let width = params.width;
    if (col.n >= height * width) {
        return 0.0;
    }
    let ci = k / 9u;
    let tap = k - ci * 9u;
    let iy = col.y + i32(tap / 3u) - 1;
    let ix = col.x + i32(tap % 3u) - 1;
    if (iy >= 0 && iy < i32(height) && ix >= 0 && ix < i32(width)) {
        return input[ci * height * width + u32(iy) * width + u32(ix)];
    }
    return 0.0;
}

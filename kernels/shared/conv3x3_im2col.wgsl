// The operands of a 3x3 convolution (stride 1, zero padding 1) as an implicit GEMM, for gemm_tiled.wgsl:
//   A[k, m] = weights[k * cout + m]             weights pre-transposed at load to K x Cout, k = ci*9 + tap
//   B[k, n] = im2col(input)[k, n]               = input[ci, y + ky - 1, x + kx - 1] for pixel n = (y, x)
// Tensors are framed CHW (src/frame.rs): the zero frame around each channel supplies the padding, so no tap is
// bounds-checked, and consecutive pixels of a row are read with unit stride across invocations. The kernel file
// declares `params` (cin, cout, height, width, stride, plane, pixel_groups, tile_offset), `input` and `weights`;
// the forward conv and the backward-data conv (the same convolution with flipped, transposed weights, from Cout
// to Cin channels) both use these loaders.

const LOADS_ALONG_K: bool = false;

fn gemm_tile(wg: vec3<u32>, nwg: vec3<u32>) -> GemmTile {
    // The pixel tiles may spread over x and y (≤ 65,535 groups per dimension); z is the output-channel tile.
    // A GEMM built in pieces launches a run of pieces from its first tile along x alone (src/gpu/pipeline.rs,
    // Pieces), so tile_offset + x covers exactly those pieces' tiles.
    let tile_n = params.tile_offset + wg.x + wg.y * nwg.x;
    return GemmTile(wg.z * TILE, tile_n * TILE, 0u, params.cin * 9u, 0u, tile_n < params.pixel_groups);
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
    valid: bool,
    // Index of the pixel's top-left tap (row y - 1, column x - 1) in channel 0's frame.
    corner: u32,
}

fn b_column(n: u32) -> BColumn {
    let y = n / params.width;
    let x = n % params.width;
    // Frame row y is the data row above pixel row y; the column left of x = 0 is the previous row's padding.
    return BColumn(n < params.height * params.width, HEAD + y * params.stride + x - 1u);
}

fn load_b(col: BColumn, k: u32) -> f32 {
    if (!col.valid) {
        return 0.0;
    }
    let ci = k / 9u;
    let tap = k - ci * 9u;
    return input[ci * params.plane + col.corner + (tap / 3u) * params.stride + tap % 3u];
}

// Index of pixel n's output in channel m's frame.
fn frame_index(m: u32, n: u32) -> u32 {
    return HEAD + m * params.plane + (n / params.width + 1u) * params.stride + n % params.width;
}

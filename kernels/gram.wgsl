// Partial Gram matrices for one split of the pixel (K) dimension:
//   partial[s, i, j] = sum_{n in split s} F[i, n] * F[j, n]          F: C x N, framed CHW (src/frame.rs)
// The K dimension is each channel's data rows as they lie in the frame (H rows of `stride` floats): the frame's
// zero columns add nothing, and the K range is contiguous.
// N reaches millions, so K is split over workgroups (z = split) and gram_reduce.wgsl adds the splits in a fixed
// order: no float atomics, so reruns are bit-identical. Only tiles with tile_j >= tile_i are computed (G is
// symmetric); gram_reduce mirrors the rest. The tiled loop is shared/gemm_tiled.wgsl with A = B = Fᵀ, staged
// 16 consecutive pixels of one channel per 16 invocations.

const LOADS_ALONG_K: bool = true;

fn gemm_tile(wg: vec3<u32>, nwg: vec3<u32>) -> GemmTile {
    let k_begin = wg.z * params.chunk;
    let k_end = min(k_begin + params.chunk, params.pixels);
    // Lower-triangle tiles are mirrored by gram_reduce.
    return GemmTile(wg.x * TILE, wg.y * TILE, k_begin, k_end, wg.z, wg.y >= wg.x);
}

struct AColumn {
    channel: u32,
}

fn a_column(m: u32) -> AColumn {
    return AColumn(m);
}

fn load_a(col: AColumn, k: u32) -> f32 {
    if (col.channel < params.channels) {
        return features[HEAD + col.channel * params.plane + params.stride + k];
    }
    return 0.0;
}

alias BColumn = AColumn;

fn b_column(n: u32) -> BColumn {
    return AColumn(n);
}

fn load_b(col: BColumn, k: u32) -> f32 {
    return load_a(col, k);
}

fn store_c(tile: GemmTile, i: u32, j: u32, value: f32) {
    let c = params.channels;
    if (i < c && j < c) {
        partial[tile.split * c * c + i * c + j] = value;
    }
}

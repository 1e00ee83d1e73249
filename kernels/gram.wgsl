// Partial Gram matrices for one split of the pixel (K) dimension:
//   partial[s, i, j] = sum_{n in split s} F[i, n] * F[j, n]          F: C x N, CHW (row i = channel i)
// N reaches millions, so K is split over workgroups (z = split) and gram_reduce.wgsl adds the splits in a fixed
// order: no float atomics, so reruns are bit-identical. Only tiles with tile_j >= tile_i are computed (G is
// symmetric); gram_reduce mirrors the rest. 64x64 tile per 16x16 workgroup, 4x4 per thread, K step 16.

struct Params {
    channels: u32,
    pixels: u32,
    chunk: u32,   // pixels per split
    splits: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> features: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> tile_a: array<f32, 1024>; // [TK][TILE]
var<workgroup> tile_b: array<f32, 1024>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    if (wg.y < wg.x) {
        return; // lower triangle: mirrored by gram_reduce
    }
    let c = params.channels;
    let n = params.pixels;
    let i0 = wg.x * TILE;
    let j0 = wg.y * TILE;
    let k_begin = wg.z * params.chunk;
    let k_end = min(k_begin + params.chunk, n);

    // Loads: 16 consecutive pixels of one channel per 16 threads.
    let kk = li % TK;
    let row0 = li / TK;

    var acc: array<f32, 16>;
    for (var t = 0u; t < 16u; t++) {
        acc[t] = 0.0;
    }
    for (var k0 = k_begin; k0 < k_end; k0 += TK) {
        let k = k0 + kk;
        for (var r = 0u; r < 4u; r++) {
            let mm = row0 + 16u * r;
            var a = 0.0;
            var b = 0.0;
            if (k < k_end) {
                if (i0 + mm < c) {
                    a = features[(i0 + mm) * n + k];
                }
                if (j0 + mm < c) {
                    b = features[(j0 + mm) * n + k];
                }
            }
            tile_a[kk * TILE + mm] = a;
            tile_b[kk * TILE + mm] = b;
        }
        workgroupBarrier();
        for (var q = 0u; q < TK; q++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var t = 0u; t < 4u; t++) {
                a[t] = tile_a[q * TILE + lid.y + 16u * t];
                b[t] = tile_b[q * TILE + lid.x + 16u * t];
            }
            for (var s = 0u; s < 4u; s++) {
                for (var t = 0u; t < 4u; t++) {
                    acc[s * 4u + t] = fma(a[s], b[t], acc[s * 4u + t]);
                }
            }
        }
        workgroupBarrier();
    }
    let base = wg.z * c * c;
    for (var s = 0u; s < 4u; s++) {
        let i = i0 + lid.y + 16u * s;
        for (var t = 0u; t < 4u; t++) {
            let j = j0 + lid.x + 16u * t;
            if (i < c && j < c) {
                partial[base + i * c + j] = acc[s * 4u + t];
            }
        }
    }
}

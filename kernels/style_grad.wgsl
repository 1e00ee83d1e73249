// Gradient of one layer's style loss L = w_s * mean over C^2 of (G - A)^2 w.r.t. its features F (C x N):
//   grad[k, n] (+)= scale * sum_j (G - A)[k, j] * F[j, n],   scale = 4 * w_s / (C^2 * C*H*W)
// (G = F Fᵀ / (C*H*W) and G - A are symmetric, so dL/dF = 2/(CHW) * dL/dG * F with dL/dG = 2 w_s (G-A)/C^2.)
// A GEMM (M = C, N = H*W, K = C) tiled like conv3x3.wgsl; (G - A) is formed while loading the tile, and read
// as its transpose (same matrix) so the loads are contiguous. F is a ReLU output and the ReLU's backward is
// fused in the epilogue: nothing passes where F = 0 (the gradient buffer holds dL/d(pre-ReLU)).

struct Params {
    channels: u32,
    pixels: u32,
    pixel_tiles: u32,
    accumulate: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gram: array<f32>;
@group(0) @binding(2) var<storage, read> target_gram: array<f32>;
@group(0) @binding(3) var<storage, read> features: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> tile_e: array<f32, 1024>; // [TK][TILE] of (G - A)
var<workgroup> tile_f: array<f32, 1024>; // [TK][TILE] of F

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tile_n = wg.x + wg.y * nwg.x;
    if (tile_n >= params.pixel_tiles) {
        return;
    }
    let c = params.channels;
    let npix = params.pixels;
    let n0 = tile_n * TILE;
    let m0 = wg.z * TILE;
    let col = li % TILE;
    let row0 = li / TILE;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < c; k0 += TK) {
        for (var r = 0u; r < 4u; r++) {
            let kk = row0 + 4u * r;
            let k = k0 + kk;
            var e = 0.0;
            var f = 0.0;
            if (k < c) {
                if (m0 + col < c) {
                    let gi = k * c + m0 + col;
                    e = gram[gi] - target_gram[gi];
                }
                if (n0 + col < npix) {
                    f = features[k * npix + n0 + col];
                }
            }
            tile_e[kk * TILE + col] = e;
            tile_f[kk * TILE + col] = f;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = tile_e[kk * TILE + lid.y + 16u * i];
                b[i] = tile_f[kk * TILE + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + lid.y + 16u * i;
        if (m >= c) {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + 16u * j;
            if (n < npix) {
                let idx = m * npix + n;
                let g = select(0.0, params.scale * acc[i * 4u + j], features[idx] > 0.0);
                grad[idx] = select(g, grad[idx] + g, params.accumulate != 0u);
            }
        }
    }
}

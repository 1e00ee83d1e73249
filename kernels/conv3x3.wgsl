// 3x3 convolution, stride 1, zero padding 1, + bias, optional ReLU, as an implicit GEMM:
//   out[co, p] = act( bias[co] + sum_k weights[k, co] * im2col(input)[k, p] ),   k = ci*9 + ky*3 + kx.
// Tensors are CHW (batch 1): a channel's pixels are contiguous, so one GEMM column (a pixel) is read with
// unit stride across threads and Gram matrices (F·Fᵀ) read rows of F directly.
// Weights are pre-transposed at load to K x Cout ("KM") so a tile of them is one contiguous row per k.
// A 64 (Cout) x 64 (pixels) output tile per 16x16 workgroup, 4x4 outputs per thread, K staged 16 at a time.

struct Params {
    cin: u32,
    cout: u32,
    height: u32,
    width: u32,
    pixel_tiles: u32, // ceil(H*W / 64): the grid may be 2-D to stay under 65,535 groups per dimension
    relu: u32,        // 1 = apply ReLU in the epilogue
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> tile_w: array<f32, 1024>; // [TK][TILE] weights
var<workgroup> tile_x: array<f32, 1024>; // [TK][TILE] im2col columns

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
    let width = params.width;
    let height = params.height;
    let npix = height * width;
    let kdim = params.cin * 9u;
    let n0 = tile_n * TILE;
    let m0 = wg.z * TILE;

    // Each thread always loads the same tile column (li % 64) and rows li/64 + 4r: the pixel's (y, x) is
    // computed once, not per K step.
    let col = li % TILE;
    let row0 = li / TILE;
    let load_n = n0 + col;
    let load_y = i32(load_n / width);
    let load_x = i32(load_n % width);
    let load_m = m0 + col;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }

    for (var k0 = 0u; k0 < kdim; k0 += TK) {
        for (var r = 0u; r < 4u; r++) {
            let kk = row0 + 4u * r;
            let k = k0 + kk;
            var w = 0.0;
            if (k < kdim && load_m < params.cout) {
                w = weights[k * params.cout + load_m];
            }
            tile_w[kk * TILE + col] = w;
            var v = 0.0;
            if (k < kdim && load_n < npix) {
                let ci = k / 9u;
                let tap = k - ci * 9u;
                let ky = i32(tap / 3u);
                let kx = i32(tap % 3u);
                let iy = load_y + ky - 1;
                let ix = load_x + kx - 1;
                if (iy >= 0 && iy < i32(height) && ix >= 0 && ix < i32(width)) {
                    v = input[ci * npix + u32(iy) * width + u32(ix)];
                }
            }
            tile_x[kk * TILE + col] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = tile_w[kk * TILE + lid.y + 16u * i];
                b[i] = tile_x[kk * TILE + lid.x + 16u * i];
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
        if (m >= params.cout) {
            continue;
        }
        let b = bias[m];
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + 16u * j;
            if (n < npix) {
                var v = acc[i * 4u + j] + b;
                if (params.relu != 0u) {
                    v = max(v, 0.0);
                }
                output[m * npix + n] = v;
            }
        }
    }
}

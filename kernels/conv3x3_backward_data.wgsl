// Backward-data of conv3x3: the gradient w.r.t. the conv's input from `grad_out`, the gradient w.r.t. its
// pre-ReLU output (every writer of a post-ReLU gradient already multiplied it by the ReLU mask y > 0, so this
// kernel never reads the layer's own activations):
//   grad_in[ci, p] = (mask_src[ci, p] > 0 if mask_output) * sum_k weights_t[k, ci] * im2col(grad_out)[k, p]
// with k = co*9 + tap. It is a 3x3 convolution with the weights flipped (tap -> 8 - tap) and Cin/Cout swapped;
// that transform is done once at load (frozen weights), so this is the forward kernel's implicit GEMM without
// bias. When the input is itself a ReLU output, the epilogue applies that ReLU's mask (one read per output, at
// the output's own index), so the result is ready for the next backward step. Layout CHW, tiling as conv3x3.wgsl.

struct Params {
    cin: u32,   // channels of grad_out (the forward conv's Cout)
    cout: u32,  // channels of grad_in (the forward conv's Cin)
    height: u32,
    width: u32,
    pixel_tiles: u32,
    mask_output: u32, // 1 = multiply by (mask_src > 0): the input was a ReLU output
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> grad_out: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> mask_src: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_in: array<f32>;

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> tile_w: array<f32, 1024>;
var<workgroup> tile_x: array<f32, 1024>;

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
                let c = k / 9u;
                let tap = k - c * 9u;
                let iy = load_y + i32(tap / 3u) - 1;
                let ix = load_x + i32(tap % 3u) - 1;
                if (iy >= 0 && iy < i32(height) && ix >= 0 && ix < i32(width)) {
                    v = grad_out[c * npix + u32(iy) * width + u32(ix)];
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
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + 16u * j;
            if (n < npix) {
                let idx = m * npix + n;
                var g = acc[i * 4u + j];
                if (params.mask_output != 0u && !(mask_src[idx] > 0.0)) {
                    g = 0.0;
                }
                grad_in[idx] = g;
            }
        }
    }
}

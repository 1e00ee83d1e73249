// 3x3 convolution, stride 1, zero padding 1, + bias, optional ReLU:
//   out[co, p] = act( bias[co] + sum_k weights[k, co] * im2col(input)[k, p] ),   k = ci*9 + ky*3 + kx.
// An implicit GEMM: composed with shared/conv3x3_im2col.wgsl (the operands) and shared/gemm_tiled.wgsl (the
// tiled loop); this file is the epilogue. Weights are pre-transposed at load to K x Cout so a tile of them is
// one contiguous row per k. Tensors are framed CHW (src/frame.rs).

fn store_c(tile: GemmTile, m: u32, n: u32, value: f32) {
    if (m < params.cout && n < params.height * params.width) {
        var v = value + bias[m];
        if (params.epilogue != 0u) {
            v = max(v, 0.0);
        }
        output[frame_index(m, n)] = v;
    }
}

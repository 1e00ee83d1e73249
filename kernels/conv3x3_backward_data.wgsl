// Backward-data of conv3x3: the gradient w.r.t. the conv's input from the gradient w.r.t. its pre-ReLU output
// (every writer of a post-ReLU gradient already multiplied it by the ReLU mask y > 0, so this kernel never reads
// the layer's own activations):
//   grad_in[ci, p] = (mask_src[ci, p] > 0 if epilogue) * sum_k weights_t[k, ci] * im2col(grad_out)[k, p]
// with k = co*9 + tap. It is a 3x3 convolution with the weights flipped (tap -> 8 - tap) and Cin/Cout swapped;
// that transform is done once at load (frozen weights), so this is the forward kernel's implicit GEMM
// (shared/conv3x3_im2col.wgsl + shared/gemm_tiled.wgsl) without bias. When the conv's input is itself a ReLU
// output, the epilogue applies that ReLU's mask (one read per output, at the output's own index), so the result
// is ready for the next backward step.

// The convolution's input here is grad_out; the shared im2col loader calls it `input`.

fn store_c(tile: GemmTile, m: u32, n: u32, value: f32) {
    if (m < params.cout && n < params.height * params.width) {
        let idx = frame_index(m, n);
        var g = value;
        if (params.epilogue != 0u && !(mask_src[idx] > 0.0)) {
            g = 0.0;
        }
        grad_in[idx] = g;
    }
}

// matmul.wgsl for CPU adapters (lavapipe): the same product, out = alpha · A·B + beta · I (row-major C x C,
// alpha = scale · slots[alpha_slot]^alpha_power, or scale alone when NONE), with no workgroup memory or barriers.
// Each invocation computes a block of 8 rows x 8 columns: per k, the eight rows' A[m, k] (one vec4 load per row
// covers 4 k) times B's row k (two vec4 loads), 64 multiply-adds per 4 loads. C is a multiple of 8 (every VGG
// layer; the wrapper uses matmul.wgsl otherwise). k runs in ascending order, one fma per k: reruns are
// bit-identical. The scalars' binding and the scale are shared/matmul_scale.wgsl.

const GROUP_SIZE: u32 = 64u;

fn workgroup_main(group: u32, li: u32, z: u32) {
    let c4 = params.size / 4u;
    let col_blocks = params.size / 8u;
    let id = group * GROUP_SIZE + li;
    if (id >= col_blocks * col_blocks) {
        return;
    }
    let m0 = (id / col_blocks) * 8u; // first of 8 rows
    let n4 = (id % col_blocks) * 2u; // first of 2 vec4 columns
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var k4 = 0u; k4 < c4; k4++) {
        var rows: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) {
            rows[i] = a[(m0 + i) * c4 + k4];
        }
        for (var kk = 0u; kk < 4u; kk++) {
            let k = k4 * 4u + kk;
            let b0 = b[k * c4 + n4];
            let b1 = b[k * c4 + n4 + 1u];
            for (var i = 0u; i < 8u; i++) {
                acc[2u * i] = fma(vec4<f32>(rows[i][kk]), b0, acc[2u * i]);
                acc[2u * i + 1u] = fma(vec4<f32>(rows[i][kk]), b1, acc[2u * i + 1u]);
            }
        }
    }
    let alpha = product_scale();
    for (var i = 0u; i < 8u; i++) {
        let m = m0 + i;
        for (var j = 0u; j < 2u; j++) {
            // The identity's entry in this vec4: column m, if it falls here.
            let n_first = (n4 + j) * 4u;
            var eye = vec4<f32>(0.0);
            if (m >= n_first && m < n_first + 4u) {
                eye[m - n_first] = params.beta;
            }
            out[m * c4 + n4 + j] = alpha * acc[2u * i + j] + eye;
        }
    }
}

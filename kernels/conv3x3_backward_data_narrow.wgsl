// Backward-data of conv3x3 for a NARROW result (at most 4 channels: conv1_1's image gradient, 3 channels).
// Same maths as conv3x3_backward_data.wgsl,
//   grad_in[ci, p] = (mask_src[ci, p] > 0 if epilogue) * sum_{c, tap} w[c*9 + tap, ci] * grad_out[c, p + off(tap)]
// but the tiled kernel pads the result's channels to a 64-row tile: with 3 rows, 95% of its work is padding.
// Here one thread owns one pixel and all (≤ 4) result channels as a vec4; the weights (vec4 per (c, tap), zero
// padded) are staged in workgroup memory 64 input channels at a time, and neighbouring threads read
// neighbouring pixels of grad_out, which the cache shares across the 9 taps. Framed CHW (src/frame.rs): the
// zero frame supplies the padding, no tap is bounds-checked.

const CHUNK: u32 = 64u; // input channels staged per round
// Not zeroed by the pipeline: each round writes the n = chunk·9 entries it then reads (c < chunk), before a
// barrier.
var<workgroup> w_tile: array<vec4<f32>, 576>; // CHUNK * 9

const GROUP_SIZE: u32 = 256u;

fn workgroup_main(group: u32, li: u32, z: u32) {
    if (group >= params.pixel_groups) {
        return;
    }
    let p = group * GROUP_SIZE + li;
    let inside = p < params.height * params.width;
    let y = p / params.width;
    let x = p % params.width;
    // The pixel's top-left tap in channel 0's frame (row y is the data row above y; column x - 1).
    let corner = HEAD + y * params.stride + x - 1u;
    var acc = vec4<f32>(0.0);
    for (var c0 = 0u; c0 < params.cin; c0 += CHUNK) {
        let n = min(CHUNK, params.cin - c0) * 9u;
        for (var i = li; i < n; i += 256u) {
            w_tile[i] = weights[c0 * 9u + i];
        }
        workgroupBarrier();
        if (inside) {
            for (var c = 0u; c < min(CHUNK, params.cin - c0); c++) {
                let at = (c0 + c) * params.plane + corner;
                for (var tap = 0u; tap < 9u; tap++) {
                    let g = grad_out[at + (tap / 3u) * params.stride + tap % 3u];
                    acc = fma(w_tile[c * 9u + tap], vec4<f32>(g), acc);
                }
            }
        }
        workgroupBarrier();
    }
    if (inside) {
        for (var m = 0u; m < params.cout; m++) {
            let idx = HEAD + m * params.plane + (y + 1u) * params.stride + x;
            var g = acc[m];
            if (params.epilogue != 0u && !(mask_src[idx] > 0.0)) {
                g = 0.0;
            }
            grad_in[idx] = g;
        }
    }
}

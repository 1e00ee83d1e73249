// 3x3 convolution (stride 1, zero padding 1) shaped for CPU adapters such as Mesa's lavapipe: the forward conv
// (+ bias + ReLU) or, with BACKWARD, the backward-data conv (flipped, transposed weights; the input ReLU's mask
// fused). Framed CHW layout (see src/plan.rs, `Frame`): every channel plane has a zero border row above and
// below and zero columns to the right of each row, so no tap needs a bounds check.
//
// This file is a template (minijinja), rendered by src/kernels/conv.rs with
//   MR    output channels per invocation (a multiple of 4), ROWS output rows per invocation,
//   WG    invocations per workgroup, BACKWARD  the backward-data epilogue instead of bias + ReLU.
// Why this shape: lavapipe runs 8 invocations as the lanes of one 256-bit register, one workgroup per call on
// one thread, and (Mesa 22.3) splits every storage load whose address is not a compile-time constant into one
// load per lane — each costs about as much as a dozen multiply-adds. So each invocation keeps a large register
// block: 8 consecutive pixels x ROWS rows x MR channels, and each of its vec4 input loads (4 per input row: the
// 8 pixels and one neighbour on each side) feeds 3 taps x MR channels x up to 3 output rows, each weight load
// (a vec4 of 4 channels) 8 pixels x ROWS rows. Invocations are numbered over (channel block, pixel chunk), so
// small images with many channels (the deep layers) still fill every lane. No workgroup memory, no barriers.
// Measured on lavapipe (Mesa 22.3, 2 cores; docs/PERFORMANCE.md): MR 8, ROWS 4, WG 16 ran a 64->64 conv at
// 128x128 at 31-39 GFLOP/s.

@group(0) @binding(1) var<storage, read> input: array<vec4<f32>>;
// [ceil(cout / MR)][cin][9][MR]: the MR channels of one block for one (input channel, tap) are one row.
@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;
{% if BACKWARD %}
// The conv's input's forward values (a ReLU output): the gradient passes only where they are > 0.
@group(0) @binding(3) var<storage, read> mask_src: array<vec4<f32>>;
{% else %}
@group(0) @binding(3) var<storage, read> bias: array<f32>;
{% endif %}
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;

const GROUP_SIZE: u32 = {{ WG }}u;

fn workgroup_main(group: u32, li: u32, z: u32) {
    let invocation = group * GROUP_SIZE + li;
    let block = invocation / params.chunks; // output channels block * MR ..
    let chunk = invocation % params.chunks;
    if (block * {{ MR }}u >= params.cout) {
        return;
    }
    let y = (chunk / params.chunks_per_row) * {{ ROWS }}u; // first output row (data coordinates)
    let x = (chunk % params.chunks_per_row) * 8u;          // first output column
    let s = params.stride;
    let co0 = block * {{ MR }}u;
    {% for m in range(MR) %}{% for r in range(ROWS) %}
    var acc{{ m }}_{{ r }}_0 = vec4<f32>(0.0);
    var acc{{ m }}_{{ r }}_1 = vec4<f32>(0.0);{% endfor %}{% endfor %}

    let wblock = block * params.cin * 9u * {{ MR // 4 }}u;
    for (var ci = 0u; ci < params.cin; ci++) {
        // Frame rows y .. y + ROWS + 1 hold the input rows y - 1 .. y + ROWS of data.
        {% for i in range(ROWS + 2) %}
        let at{{ i }} = (HEAD + ci * params.plane + (y + {{ i }}u) * s + x) / 4u;
        let prev{{ i }} = input[at{{ i }} - 1u];
        let lo{{ i }} = input[at{{ i }}];
        let hi{{ i }} = input[at{{ i }} + 1u];
        let next{{ i }} = input[at{{ i }} + 2u];
        // The row shifted one pixel left (tap kx = 0) and right (kx = 2), 8 pixels as two vec4.
        let left{{ i }}_0 = vec4<f32>(prev{{ i }}.w, lo{{ i }}.xyz);
        let left{{ i }}_1 = vec4<f32>(lo{{ i }}.w, hi{{ i }}.xyz);
        let right{{ i }}_0 = vec4<f32>(lo{{ i }}.yzw, hi{{ i }}.x);
        let right{{ i }}_1 = vec4<f32>(hi{{ i }}.yzw, next{{ i }}.x);{% endfor %}
        let wrow = wblock + ci * 9u * {{ MR // 4 }}u;
        {% for ky in range(3) %}{% for kx in range(3) %}{% for q in range(MR // 4) %}
        let w{{ ky }}{{ kx }}_{{ q }} = weights[wrow + {{ (ky * 3 + kx) * (MR // 4) + q }}u];{% endfor %}{% endfor %}{% endfor %}
        {% for r in range(ROWS) %}{% for ky in range(3) %}{% for m in range(MR) %}{% set w = "w" ~ ky %}{% set c = "xyzw"[m % 4] %}{% set q = m // 4 %}{% set i = r + ky %}
        acc{{ m }}_{{ r }}_0 = fma(left{{ i }}_0, vec4<f32>({{ w }}0_{{ q }}.{{ c }}), fma(lo{{ i }}, vec4<f32>({{ w }}1_{{ q }}.{{ c }}), fma(right{{ i }}_0, vec4<f32>({{ w }}2_{{ q }}.{{ c }}), acc{{ m }}_{{ r }}_0)));
        acc{{ m }}_{{ r }}_1 = fma(left{{ i }}_1, vec4<f32>({{ w }}0_{{ q }}.{{ c }}), fma(hi{{ i }}, vec4<f32>({{ w }}1_{{ q }}.{{ c }}), fma(right{{ i }}_1, vec4<f32>({{ w }}2_{{ q }}.{{ c }}), acc{{ m }}_{{ r }}_1)));{% endfor %}{% endfor %}{% endfor %}
    }

    // Columns past the image are frame padding: written as zeros, so the frame stays zero there.
    let keep0 = select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(x) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(params.width));
    let keep1 = select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(x) + vec4<u32>(4u, 5u, 6u, 7u) < vec4<u32>(params.width));
    {% for r in range(ROWS) %}
    if (y + {{ r }}u < params.height) {
        let row{{ r }} = (HEAD + (y + {{ r + 1 }}u) * s + x) / 4u;{% for m in range(MR) %}
        if (co0 + {{ m }}u < params.cout) {
            let o = row{{ r }} + (co0 + {{ m }}u) * (params.plane / 4u);{% if BACKWARD %}
            var v0 = acc{{ m }}_{{ r }}_0;
            var v1 = acc{{ m }}_{{ r }}_1;
            if (params.epilogue != 0u) {
                v0 = select(vec4<f32>(0.0), v0, mask_src[o] > vec4<f32>(0.0));
                v1 = select(vec4<f32>(0.0), v1, mask_src[o + 1u] > vec4<f32>(0.0));
            }{% else %}
            let b = bias[co0 + {{ m }}u];
            var v0 = acc{{ m }}_{{ r }}_0 + b;
            var v1 = acc{{ m }}_{{ r }}_1 + b;
            if (params.epilogue != 0u) {
                v0 = max(v0, vec4<f32>(0.0));
                v1 = max(v1, vec4<f32>(0.0));
            }{% endif %}
            output[o] = v0 * keep0;
            output[o + 1u] = v1 * keep1;
        }{% endfor %}
    }{% endfor %}
}

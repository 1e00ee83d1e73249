// Gradient of one layer's style loss w.r.t. its features, for CPU adapters (lavapipe): the same maths as
// style_grad.wgsl,
//   grad[m, n] (+)= scale * sum_j (G - A)[m, j] * F[j, n]      (F's ReLU mask fused: nothing passes where F = 0)
// over framed CHW tensors (src/frame.rs), n running over each channel's data rows as they lie in the frame (the
// frame's zero columns give zero gradients, so the frame stays zero).
//
// This file is a template (minijinja), rendered by src/kernels/loss.rs with MR (channels per invocation), NV
// (vec4s of pixels per invocation), WG, and QUAD: C is a multiple of 4, so (G - A) is read 4 columns per load.
// On lavapipe every load an invocation makes costs about as much as a dozen multiply-adds (it is split into one
// load per lane), so each invocation blocks MR channels x 4·NV pixels: per 4 j, 2·MR loads of G and A and 4·NV
// of F feed MR x 16·NV multiply-adds.

{% if QUAD %}
@group(0) @binding(1) var<storage, read> gram: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> target_gram: array<vec4<f32>>;
{% else %}
@group(0) @binding(1) var<storage, read> gram: array<f32>;
@group(0) @binding(2) var<storage, read> target_gram: array<f32>;
{% endif %}
@group(0) @binding(3) var<storage, read> features: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> grad: array<vec4<f32>>;

const GROUP_SIZE: u32 = {{ WG }}u;

fn workgroup_main(group: u32, li: u32, z: u32) {
    let chunk = group * GROUP_SIZE + li;
    if (chunk >= params.chunks) {
        return;
    }
    let c = params.channels;
    let m0 = z * {{ MR }}u;
    // The first of the lane's NV vec4s, within a channel's data rows (which start one frame row down).
    let n = chunk * {{ NV }}u;
    let data = HEAD4 + params.stride4 + n;
    {% for m in range(MR) %}{% for v in range(NV) %}
    var acc{{ m }}_{{ v }} = vec4<f32>(0.0);{% endfor %}
    let e_row{{ m }} = min(m0 + {{ m }}u, c - 1u) * c;{% endfor %}
{% if QUAD %}
    for (var j = 0u; j < c; j += 4u) {
        {% for q in range(4) %}
        let f{{ q }} = data + (j + {{ q }}u) * params.plane4;{% for v in range(NV) %}
        let f{{ q }}_{{ v }} = features[f{{ q }} + {{ v }}u];{% endfor %}{% endfor %}{% for m in range(MR) %}
        let e{{ m }} = gram[(e_row{{ m }} + j) / 4u] - target_gram[(e_row{{ m }} + j) / 4u];{% for q in range(4) %}{% for v in range(NV) %}
        acc{{ m }}_{{ v }} = fma(vec4<f32>(e{{ m }}[{{ q }}]), f{{ q }}_{{ v }}, acc{{ m }}_{{ v }});{% endfor %}{% endfor %}{% endfor %}
    }
{% else %}
    for (var j = 0u; j < c; j++) {
        let f = data + j * params.plane4;{% for v in range(NV) %}
        let f{{ v }} = features[f + {{ v }}u];{% endfor %}{% for m in range(MR) %}
        let e{{ m }} = vec4<f32>(gram[e_row{{ m }} + j] - target_gram[e_row{{ m }} + j]);{% for v in range(NV) %}
        acc{{ m }}_{{ v }} = fma(e{{ m }}, f{{ v }}, acc{{ m }}_{{ v }});{% endfor %}{% endfor %}
    }
{% endif %}
    {% for m in range(MR) %}
    if (m0 + {{ m }}u < c) {
        let out = data + (m0 + {{ m }}u) * params.plane4;{% for v in range(NV) %}
        if (n + {{ v }}u < params.pixels4) {
            let fm = features[out + {{ v }}u];
            let g = select(vec4<f32>(0.0), params.scale * acc{{ m }}_{{ v }}, fm > vec4<f32>(0.0));
            grad[out + {{ v }}u] = select(g, grad[out + {{ v }}u] + g, params.accumulate != 0u);
        }{% endfor %}
    }{% endfor %}
}

// Gram matrix G = F Fᵀ / (C·H·W) for CPU adapters (lavapipe), written directly (no split-K: the CPU has few
// cores, and one accumulation order per element keeps reruns bit-identical). F is framed CHW (src/frame.rs);
// the sum runs over each channel's data rows, 4 pixels at a time (the frame's zero columns add nothing).
//
// This file is a template (minijinja), rendered by src/kernels/gram.rs with B (the block side) and WG
// (invocations per workgroup). Each invocation owns one B x B block (bi, bj) of the upper triangle of blocks
// and writes it and its mirror image. On lavapipe every load an invocation makes costs about as much as a
// dozen multiply-adds (it is split into one load per lane), so the block is square: per 4 pixels, 2·B vec4
// loads feed B·B·4 multiply-adds.

@group(0) @binding(1) var<storage, read> features: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> gram: array<f32>;

const GROUP_SIZE: u32 = {{ WG }}u;

fn workgroup_main(group: u32, li: u32, z: u32) {
    let p = group * GROUP_SIZE + li;
    if (p >= params.pairs) {
        return;
    }
    // Pairs are numbered column by column: p = bj (bj + 1) / 2 + bi with bi ≤ bj.
    var bj = u32((sqrt(8.0 * f32(p) + 1.0) - 1.0) * 0.5);
    if ((bj + 1u) * (bj + 2u) / 2u <= p) {
        bj += 1u;
    }
    if (bj * (bj + 1u) / 2u > p) {
        bj -= 1u;
    }
    let bi = p - bj * (bj + 1u) / 2u;
    let c = params.channels;
    // Rows past the last channel read the last channel (their sums are not written).
    {% for m in range(B) %}
    let ri{{ m }} = HEAD4 + min(bi * {{ B }}u + {{ m }}u, c - 1u) * params.plane4;
    let rj{{ m }} = HEAD4 + min(bj * {{ B }}u + {{ m }}u, c - 1u) * params.plane4;{% endfor %}
    {% for m in range(B) %}{% for n in range(B) %}
    var acc{{ m }}_{{ n }} = 0.0;{% endfor %}{% endfor %}
    for (var y = 1u; y <= params.height; y++) {
        let r = y * params.stride4;
        for (var x = 0u; x < params.width4; x++) {
            let k = r + x;{% for m in range(B) %}
            let fi{{ m }} = features[ri{{ m }} + k];{% endfor %}{% for n in range(B) %}
            let fj{{ n }} = features[rj{{ n }} + k];{% endfor %}{% for m in range(B) %}{% for n in range(B) %}
            acc{{ m }}_{{ n }} = fma(fi{{ m }}.x, fj{{ n }}.x, fma(fi{{ m }}.y, fj{{ n }}.y, fma(fi{{ m }}.z, fj{{ n }}.z, fma(fi{{ m }}.w, fj{{ n }}.w, acc{{ m }}_{{ n }}))));{% endfor %}{% endfor %}
        }
    }
    {% for m in range(B) %}{% for n in range(B) %}
    {
        let i = bi * {{ B }}u + {{ m }}u;
        let j = bj * {{ B }}u + {{ n }}u;
        if (i < c && j < c) {
            let g = params.scale * acc{{ m }}_{{ n }};
            gram[i * c + j] = g;
            gram[j * c + i] = g;
        }
    }{% endfor %}{% endfor %}
}

// Shared GEMM core on cooperative matrices (tensor cores): C[m, n] = sum_k A[k, m] * B[k, n] with f16 operands
// and f32 accumulation, for one TILE x TILE output tile per workgroup. It plugs into the same operand and
// epilogue hooks as shared/gemm_tiled.wgsl (gemm_tile, a_column/load_a, b_column/load_b, store_c,
// LOADS_ALONG_K), so conv3x3, conv3x3_backward_data, gram and style_grad each get it by composition.
//
// This file is a template (minijinja), rendered by src/kernels/coop.rs with
//   F      fragment side (16: NVIDIA's 16x16x16 f16 -> f32; 8: lavapipe's 8x8x8 in Mesa 26)
//   SG     subgroup size; SM x SN subgroups per workgroup, each owning RM x RN fragments (TILE = SM·RM·F)
//   KS     K step staged per round; PAD  f16 padding per staged row (against bank conflicts)
//   B0     the first binding after the kernel's own (the operand ranges, then the scale slots)
//   TWIN   render the software twin instead: the same staging, tiling, indexing and epilogue in plain f32
//          WGSL, operands rounded to f16, the three cooperative-matrix operations done by scalar loops. It runs
//          on any adapter (lavapipe, GL) and checks everything but the hardware's own loads and products.
//
// f16 range: every operand tensor is multiplied by a power of two on its way into f16 staging, chosen on the GPU
// from the tensor's largest magnitude (max_abs.wgsl wrote it into `coop_ranges`, no read-back) so that it lands
// near 2^14: small gradients do not flush to zero, large activations do not overflow; the f32 sum is divided by
// both factors in the epilogue. Static operands (the weights) bring their factor in the uniform.
//
// Staging layouts: tile_a holds A as [k][m] (m contiguous), read as the column-major M x K fragment (coopLoad);
// tile_b holds B as [k][n], read as the row-major K x N fragment (coopLoadT); a C fragment is stored row-major
// (coopStoreT) into its subgroup's scratch for the epilogue. Each invocation stages pairs of neighbouring
// elements (m, m+1 or n, n+1): the twin keeps them as one packed word, so its staging takes the f16 tiles' size.
{% if not TWIN %}
enable f16;
enable wgpu_cooperative_matrix;
{% endif %}

struct GemmTile {
    m0: u32,
    n0: u32,
    k_begin: u32,
    k_end: u32,
    split: u32,
    runs: bool, // false: this workgroup has nothing to do
}

const TILE: u32 = {{ SM * RM * F }}u;
const KS: u32 = {{ KS }}u;
const F: u32 = {{ F }}u;
const SG: u32 = {{ SG }}u;
const WG: u32 = {{ SM * SN * SG }}u;
const LD: u32 = TILE + {{ PAD }}u; // staged row length
const NO_SLOT: u32 = 0xffffffffu;

// Each operand's largest magnitude: max(the entry `slot` of coop_ranges (NO_SLOT: none), `largest`) · `bound`.
// (The weights are static: largest only. G − A is bounded by 2 · max(max|G|, max|A|).) `CoopScales` is
// src/kernels/coop.rs's ScaleParams, composed after this core.
@group(0) @binding({{ B0 }}) var<storage, read> coop_ranges: array<u32>;
@group(0) @binding({{ B0 + 1 }}) var<uniform> coop_scales: CoopScales;

// Workgroup memory is not zeroed (the pipelines opt out). Every K round stages KS·TILE/2 pairs, all (k, m/n)
// of tile_a and tile_b inside the TILE columns (the PAD columns are never read), before the barrier that precedes
// any read; each subgroup writes its whole F x F scratch of tile_c before reading it.
{% if TWIN %}
// Two f16 per word (element e in word e / 2, the low half for even e), as pack2x16float rounds them.
var<workgroup> tile_a: array<u32, {{ KS * (SM * RM * F + PAD) // 2 }}>;
var<workgroup> tile_b: array<u32, {{ KS * (SM * RM * F + PAD) // 2 }}>;

fn stage_a(at: u32, v0: f32, v1: f32) {
    tile_a[at / 2u] = pack2x16float(vec2<f32>(v0, v1));
}

fn stage_b(at: u32, v0: f32, v1: f32) {
    tile_b[at / 2u] = pack2x16float(vec2<f32>(v0, v1));
}

fn staged_a(at: u32) -> f32 {
    return unpack2x16float(tile_a[at / 2u])[at % 2u];
}

fn staged_b(at: u32) -> f32 {
    return unpack2x16float(tile_b[at / 2u])[at % 2u];
}
{% else %}
var<workgroup> tile_a: array<f16, {{ KS * (SM * RM * F + PAD) }}>;
var<workgroup> tile_b: array<f16, {{ KS * (SM * RM * F + PAD) }}>;

fn stage_a(at: u32, v0: f32, v1: f32) {
    tile_a[at] = f16(v0);
    tile_a[at + 1u] = f16(v1);
}

fn stage_b(at: u32, v0: f32, v1: f32) {
    tile_b[at] = f16(v0);
    tile_b[at + 1u] = f16(v1);
}
{% endif %}
// One F x F fragment of C per subgroup at a time, for the epilogue.
var<workgroup> tile_c: array<f32, {{ SM * SN * F * F }}>;

// The power of two that brings a tensor whose largest magnitude is `largest` to about 2^14 in f16.
fn range_factor(largest: f32) -> f32 {
    if (!(largest > 0.0) || largest > 3.0e38) {
        return 1.0;
    }
    return exp2(14.0 - ceil(log2(largest)));
}

fn operand_factor(slot: u32, largest: f32, bound: f32) -> f32 {
    var m = largest;
    if (slot != NO_SLOT) {
        m = max(m, bitcast<f32>(coop_ranges[slot]));
    }
    return range_factor(m * bound);
}

@compute @workgroup_size({{ SM * SN * SG }}, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
{% if not TWIN %}
    @builtin(subgroup_id) subgroup: u32,
    @builtin(subgroup_invocation_id) lane: u32,
{% endif %}
) {
    // No early return for a workgroup with nothing to do: the cooperative operations need uniform control
    // flow, so it runs an empty K loop and stores nothing.
    let tile = gemm_tile(wg, nwg);
    let k_end = select(tile.k_begin, tile.k_end, tile.runs);
{% if TWIN %}
    // The twin's subgroups are consecutive blocks of SG invocations.
    let subgroup = li / SG;
    let lane = li % SG;
{% endif %}
    let sm = subgroup / {{ SN }}u; // this subgroup's fragment block: rows sm·RM·F .., columns sn·RN·F ..
    let sn = subgroup % {{ SN }}u;
    let fa = operand_factor(coop_scales.slot_a, coop_scales.largest_a, coop_scales.bound_a);
    let fb = operand_factor(coop_scales.slot_b, coop_scales.largest_b, coop_scales.bound_b);

{% for i in range(RM) %}{% for j in range(RN) %}
{% if TWIN %}
    var acc{{ i }}_{{ j }}: array<f32, {{ F * F // SG }}>;
    for (var e = 0u; e < {{ F * F // SG }}u; e++) {
        acc{{ i }}_{{ j }}[e] = 0.0;
    }
{% else %}
    var acc{{ i }}_{{ j }} = coop_mat{{ F }}x{{ F }}<f32, C>();
{% endif %}{% endfor %}{% endfor %}

    // Staging: each invocation stores KS·TILE / (2·WG) pairs of each operand per round. With the operands'
    // m/n contiguous (LOADS_ALONG_K false) an invocation always stages the same two columns, so their load state
    // is computed once; with k contiguous (the Gram) consecutive invocations read consecutive k.
    let own_mn = 2u * (li % (TILE / 2u));
    let own_a0 = a_column(tile.m0 + own_mn);
    let own_a1 = a_column(tile.m0 + own_mn + 1u);
    let own_b0 = b_column(tile.n0 + own_mn);
    let own_b1 = b_column(tile.n0 + own_mn + 1u);
    for (var k0 = tile.k_begin; k0 < k_end; k0 += KS) {
        for (var r = 0u; r < KS * TILE / (2u * WG); r++) {
            let pair = li + WG * r;
            var kk: u32;
            var mn: u32;
            var a0 = 0.0;
            var a1 = 0.0;
            var b0 = 0.0;
            var b1 = 0.0;
            if (LOADS_ALONG_K) {
                kk = pair % KS;
                mn = 2u * (pair / KS);
                if (k0 + kk < tile.k_end) {
                    a0 = load_a(a_column(tile.m0 + mn), k0 + kk);
                    a1 = load_a(a_column(tile.m0 + mn + 1u), k0 + kk);
                    b0 = load_b(b_column(tile.n0 + mn), k0 + kk);
                    b1 = load_b(b_column(tile.n0 + mn + 1u), k0 + kk);
                }
            } else {
                kk = pair / (TILE / 2u);
                mn = own_mn;
                if (k0 + kk < tile.k_end) {
                    a0 = load_a(own_a0, k0 + kk);
                    a1 = load_a(own_a1, k0 + kk);
                    b0 = load_b(own_b0, k0 + kk);
                    b1 = load_b(own_b1, k0 + kk);
                }
            }
            stage_a(kk * LD + mn, a0 * fa, a1 * fa);
            stage_b(kk * LD + mn, b0 * fb, b1 * fb);
        }
        workgroupBarrier();
        for (var kf = 0u; kf < KS; kf += F) {
{% if TWIN %}
            // coopLoad / coopLoadT / coopMultiplyAdd by hand: lane holds elements lane·E .. of each fragment,
            // row-major. A(m, k) of fragment i is tile_a[(kf + k)·LD + (sm·RM + i)·F + m] (column-major, as
            // coopLoad reads it); B(k, n) of fragment j is tile_b[(kf + k)·LD + (sn·RN + j)·F + n] (row-major).
            for (var e = 0u; e < {{ F * F // SG }}u; e++) {
                let idx = lane * {{ F * F // SG }}u + e;
                let row = idx / F;
                let col = idx % F;
                for (var q = 0u; q < F; q++) {
                    let at = (kf + q) * LD;
{% for i in range(RM) %}{% for j in range(RN) %}
                    acc{{ i }}_{{ j }}[e] = fma(staged_a(at + (sm * {{ RM }}u + {{ i }}u) * F + row), staged_b(at + (sn * {{ RN }}u + {{ j }}u) * F + col), acc{{ i }}_{{ j }}[e]);{% endfor %}{% endfor %}
                }
            }
{% else %}
{% for i in range(RM) %}
            let a{{ i }} = coopLoad<coop_mat{{ F }}x{{ F }}<f16, A>>(&tile_a[kf * LD + (sm * {{ RM }}u + {{ i }}u) * F], LD);{% endfor %}
{% for j in range(RN) %}
            let b{{ j }} = coopLoadT<coop_mat{{ F }}x{{ F }}<f16, B>>(&tile_b[kf * LD + (sn * {{ RN }}u + {{ j }}u) * F], LD);{% endfor %}
{% for i in range(RM) %}{% for j in range(RN) %}
            acc{{ i }}_{{ j }} = coopMultiplyAdd(a{{ i }}, b{{ j }}, acc{{ i }}_{{ j }});{% endfor %}{% endfor %}
{% endif %}
        }
        workgroupBarrier();
    }

    // Epilogue, one fragment at a time: to the subgroup's scratch (row-major), then each lane hands its share of
    // the elements, unscaled, to the kernel's store_c.
    let unscale = 1.0 / (fa * fb);
    let scratch = subgroup * F * F;
{% for i in range(RM) %}{% for j in range(RN) %}
{% if TWIN %}
    for (var e = 0u; e < {{ F * F // SG }}u; e++) {
        tile_c[scratch + lane * {{ F * F // SG }}u + e] = acc{{ i }}_{{ j }}[e];
    }
{% else %}
    coopStoreT(acc{{ i }}_{{ j }}, &tile_c[scratch], F);
{% endif %}
    workgroupBarrier();
    for (var e = 0u; e < {{ F * F // SG }}u; e++) {
        let idx = lane * {{ F * F // SG }}u + e;
        let m = tile.m0 + (sm * {{ RM }}u + {{ i }}u) * F + idx / F;
        let n = tile.n0 + (sn * {{ RN }}u + {{ j }}u) * F + idx % F;
        if (tile.runs) {
            store_c(tile, m, n, tile_c[scratch + idx] * unscale);
        }
    }
    workgroupBarrier();
{% endfor %}{% endfor %}
}

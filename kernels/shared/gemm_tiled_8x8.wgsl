// Shared GEMM core, the 8x8 variant of shared/gemm_tiled.wgsl (same contract, same hooks, same 64x64 output
// tile, same K step of 16): 8x8 workgroups of 64 invocations, each computing 8x8 outputs, the staged tiles read
// back as vec4s: per k, 4 vec4 loads feed 64 FMAs (4 FMAs per float read from workgroup memory; the 4x4 core's
// 256 invocations do 2). Which is faster is a GPU's to say (scripts/gpu-bench.sh, kernel microbenchmarks): the
// network takes the 4x4 core until then (src/kernels/conv.rs).
// The host composes it after a kernel file that defines the operands and the epilogue (see gemm_tiled.wgsl):
// gemm_tile, AColumn/a_column/load_a, BColumn/b_column/load_b, store_c, LOADS_ALONG_K.
// The accumulation order (k ascending, one fma per k) is the 4x4 core's: results are bit-identical to it.

struct GemmTile {
    m0: u32,
    n0: u32,
    k_begin: u32,
    k_end: u32,
    split: u32, // which K split this is (split-K kernels), else 0
    runs: bool, // false: this workgroup has nothing to do
}

const TILE: u32 = 64u;
const TK: u32 = 16u;
// Invocations per workgroup (8x8), and the (k, m/n) slots each stages per K step: TK * TILE / INVOCATIONS.
const INVOCATIONS: u32 = 64u;
const SLOTS: u32 = 16u;
// A staged row is TILE / 4 vec4s plus one: with LOADS_ALONG_K, 16 invocations store 16 consecutive k of one m/n,
// 68 words apart: banks 4k mod 32, a 2-way conflict; at 64 words apart they would all hit one (16-way).
const ROW: u32 = TILE / 4u + 1u;

// Workgroup memory is not zeroed (the pipelines opt out): every K step writes all 1,024 (k, m/n) slots of both
// tiles (64 invocations x 16 slots cover [TK][TILE] exactly; the pad vec4 of each row is never read) before the
// barrier that precedes any read.
var<workgroup> tile_a: array<vec4<f32>, 272>; // [TK][ROW]
var<workgroup> tile_b: array<vec4<f32>, 272>; // [TK][ROW]

// The (k, m/n) slot staged by invocation li as its r-th.
fn slot_k(li: u32, r: u32) -> u32 {
    if (LOADS_ALONG_K) {
        return li % TK;
    }
    return r;
}

fn slot_mn(li: u32, r: u32) -> u32 {
    if (LOADS_ALONG_K) {
        return li / TK + (INVOCATIONS / TK) * r;
    }
    return li;
}

// Row i (0..8) of an invocation's outputs at position t (0..8) along one side: two runs of 4, 32 apart, so that
// the 8 invocations along a side read 8 consecutive vec4s of a staged row.
fn side(t: u32, i: u32) -> u32 {
    return 4u * t + i % 4u + 32u * (i / 4u);
}

@compute @workgroup_size(8, 8, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tile = gemm_tile(wg, nwg);
    if (!tile.runs) {
        return;
    }
    // Each invocation stages the same 16 (k, m/n) slots every K step, so its load state (a pixel's row and
    // column, say) is computed once, not per K step.
    var a_cols: array<AColumn, SLOTS>;
    var b_cols: array<BColumn, SLOTS>;
    for (var r = 0u; r < SLOTS; r++) {
        a_cols[r] = a_column(tile.m0 + slot_mn(li, r));
        b_cols[r] = b_column(tile.n0 + slot_mn(li, r));
    }

    var acc: array<f32, 64>;
    for (var i = 0u; i < 64u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = tile.k_begin; k0 < tile.k_end; k0 += TK) {
        for (var r = 0u; r < SLOTS; r++) {
            let kk = slot_k(li, r);
            let mn = slot_mn(li, r);
            let k = k0 + kk;
            var a = 0.0;
            var b = 0.0;
            if (k < tile.k_end) {
                a = load_a(a_cols[r], k);
                b = load_b(b_cols[r], k);
            }
            tile_a[kk * ROW + mn / 4u][mn % 4u] = a;
            tile_b[kk * ROW + mn / 4u][mn % 4u] = b;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a0 = tile_a[kk * ROW + lid.y];
            let a1 = tile_a[kk * ROW + 8u + lid.y];
            let b0 = tile_b[kk * ROW + lid.x];
            let b1 = tile_b[kk * ROW + 8u + lid.x];
            var a = array<f32, 8>(a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w);
            var b = array<f32, 8>(b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w);
            for (var i = 0u; i < 8u; i++) {
                for (var j = 0u; j < 8u; j++) {
                    acc[i * 8u + j] = fma(a[i], b[j], acc[i * 8u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 8u; i++) {
        for (var j = 0u; j < 8u; j++) {
            store_c(tile, tile.m0 + side(lid.y, i), tile.n0 + side(lid.x, j), acc[i * 8u + j]);
        }
    }
}

// Shared GEMM core, the 8x8 variant of shared/gemm_tiled.wgsl (same contract, same hooks, same 64x64 output
// tile, same K step of 16): 8x8 workgroups of 64 invocations, each computing 8x8 outputs, the staged tiles read
// back as vec4s: per k, 4 vec4 loads feed 64 FMAs (4 FMAs per float read from workgroup memory; the 4x4 core's
// 256 invocations do 2). Which is faster is a GPU's to say (scripts/gpu-bench.sh, kernel microbenchmarks): the
// network takes the 4x4 core until then (src/kernels/conv.rs).
// The host composes it after a kernel file that defines the operands and the epilogue (see gemm_tiled.wgsl):
// gemm_tile, AColumn/a_column/load_a, BColumn/b_column/load_b, store_c; LOADS_ALONG_K must be false (below).
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
// A staged row: TILE / 4 vec4s. No pad: 16 invocations store one row's 16 consecutive vec4s, and reads take
// consecutive vec4s of one row, so neither piles up on a bank.
const ROW: u32 = TILE / 4u;

// Workgroup memory is not zeroed (the pipelines opt out): every K step writes all 256 vec4s of [TK][TILE] in
// both tiles (64 invocations x 4 whole vec4s each) before the barrier that precedes any read. Whole vec4s only:
// a store to one component of a vec4 is a read-modify-write of all four on some back ends (Metal, HLSL), which
// would race with the invocations staging the other three.
var<workgroup> tile_a: array<vec4<f32>, 256>; // [TK][ROW]
var<workgroup> tile_b: array<vec4<f32>, 256>; // [TK][ROW]

// The k row and the vec4 (columns 4v .. 4v+3) invocation li stages as its q-th (q < 4) each K step: 16
// invocations take one k's 64 consecutive columns. This core serves the kernels that stage along m/n (the convs:
// LOADS_ALONG_K false); the Gram, which stages along k, stays on the 4x4 core.
fn slot_k(li: u32, q: u32) -> u32 {
    return li / 16u + 4u * q;
}

fn slot_v(li: u32) -> u32 {
    return li % 16u;
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
    // Each invocation stages the same 4 columns every K step, so their load state (a pixel's row and column,
    // say) is computed once, not per K step.
    var a_cols: array<AColumn, 4>;
    var b_cols: array<BColumn, 4>;
    for (var c = 0u; c < 4u; c++) {
        let mn = 4u * slot_v(li) + c;
        a_cols[c] = a_column(tile.m0 + mn);
        b_cols[c] = b_column(tile.n0 + mn);
    }

    var acc: array<f32, 64>;
    for (var i = 0u; i < 64u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = tile.k_begin; k0 < tile.k_end; k0 += TK) {
        for (var q = 0u; q < 4u; q++) {
            let kk = slot_k(li, q);
            let k = k0 + kk;
            var a = vec4<f32>(0.0);
            var b = vec4<f32>(0.0);
            if (k < tile.k_end) {
                for (var c = 0u; c < 4u; c++) {
                    a[c] = load_a(a_cols[c], k);
                    b[c] = load_b(b_cols[c], k);
                }
            }
            tile_a[kk * ROW + slot_v(li)] = a;
            tile_b[kk * ROW + slot_v(li)] = b;
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

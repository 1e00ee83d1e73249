// Shared GEMM core (workgroup-tiled, f32): C[m, n] = sum_k A[k, m] * B[k, n] for one 64 (m) x 64 (n) output tile
// per 16x16 workgroup, 4x4 outputs per invocation, K staged 16 at a time through workgroup memory.
// The host composes it after a kernel file that defines the operands and the epilogue:
//   fn gemm_tile(wg: vec3<u32>, nwg: vec3<u32>) -> GemmTile    the tile this workgroup computes (or inactive)
//   struct AColumn; fn a_column(m: u32) -> AColumn             per-invocation load state, computed once
//   fn load_a(col: AColumn, k: u32) -> f32                      A[k, m]; 0 outside the matrix
//   struct BColumn; fn b_column(n: u32) -> BColumn
//   fn load_b(col: BColumn, k: u32) -> f32                      B[k, n]; 0 outside the matrix
//   fn store_c(tile: GemmTile, m: u32, n: u32, value: f32)     the epilogue (bounds, bias, ReLU, masks, ...)
//   const LOADS_ALONG_K: bool    true: 16 invocations read 16 consecutive k of one m/n (operands stored with k
//                                contiguous, as F in F·Fᵀ); false: 64 invocations read 64 consecutive m/n.
// The accumulation order (k ascending, one fma per k) is part of the contract: results are bit-identical for a
// given k range.

struct GemmTile {
    m0: u32,
    n0: u32,
    k_begin: u32,
    k_end: u32,
    split: u32, // which K split this is (split-K kernels), else 0
    runs: bool, // false: this workgroup has nothing to do
}

const TILE: u32 = 64u;
// Staged row length: one word past the tile, so that the 16 invocations storing 16 consecutive k of one m/n
// (LOADS_ALONG_K) hit 16 different banks; at 64 words they would all hit one (a 16-way conflict per store).
const LD: u32 = TILE + 1u;
const TK: u32 = 16u;

// Workgroup memory is not zeroed (the pipelines opt out): every K step writes all 1,024 slots of both tiles
// (the 256 invocations x 4 (k, m/n) slots cover [TK][TILE] exactly; the pad word of each row is never read)
// before the barrier that precedes any read.
var<workgroup> tile_a: array<f32, 1040>; // [TK][LD]
var<workgroup> tile_b: array<f32, 1040>; // [TK][LD]

@compute @workgroup_size(16, 16, 1)
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
    // Each invocation stages 4 elements of each operand per K step, always at the same (k row, m/n column)
    // slots, so its load state (a pixel's row and column, say) is computed once, not per K step.
    var slot_k: array<u32, 4>;
    var slot_mn: array<u32, 4>;
    var a_cols: array<AColumn, 4>;
    var b_cols: array<BColumn, 4>;
    for (var r = 0u; r < 4u; r++) {
        if (LOADS_ALONG_K) {
            slot_k[r] = li % TK;
            slot_mn[r] = li / TK + 16u * r;
        } else {
            slot_k[r] = li / TILE + 4u * r;
            slot_mn[r] = li % TILE;
        }
        a_cols[r] = a_column(tile.m0 + slot_mn[r]);
        b_cols[r] = b_column(tile.n0 + slot_mn[r]);
    }

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = tile.k_begin; k0 < tile.k_end; k0 += TK) {
        for (var r = 0u; r < 4u; r++) {
            let k = k0 + slot_k[r];
            var a = 0.0;
            var b = 0.0;
            if (k < tile.k_end) {
                a = load_a(a_cols[r], k);
                b = load_b(b_cols[r], k);
            }
            tile_a[slot_k[r] * LD + slot_mn[r]] = a;
            tile_b[slot_k[r] * LD + slot_mn[r]] = b;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = tile_a[kk * LD + lid.y + 16u * i];
                b[i] = tile_b[kk * LD + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            store_c(tile, tile.m0 + lid.y + 16u * i, tile.n0 + lid.x + 16u * j, acc[i * 4u + j]);
        }
    }
}

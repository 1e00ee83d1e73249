//! The cooperative-matrix (tensor core) GEMM core, `kernels/shared/gemm_coop.wgsl`: its tiling, chosen by a
//! pure function of the adapter, its composition with the kernels' operand hooks (conv3x3,
//! conv3x3_backward_data, gram, style_grad — the same hooks as the f32 tiled core), its software twin, and the
//! two small kernels it needs: `max_abs.wgsl` (an operand's largest magnitude, for the f16 scaling) and
//! `zero_u32.wgsl` (the ranges reset once per iteration).

use super::shared::{ELEMENTWISE, GRID_ENTRY};
use super::uniform::uniform;
use super::{kernel, Kernel};

use super::grid::{elementwise_grid, grid_2d};
use super::uniform::u32_of;
use super::{compose_with_core, max_dim, shader, shared, AdapterFacts, Dispatch, TemplateValue};
use crate::error::Result;
use crate::gpu::{GpuContext, Shader};
use wgpu::Buffer;

/// The tiling of the cooperative-matrix core.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CoopConfig {
    /// Side of a fragment (16: NVIDIA's 16x16x16; 8: Mesa 26 lavapipe's 8x8x8).
    pub fragment: usize,
    /// Invocations per subgroup.
    pub subgroup: usize,
    /// Subgroups per workgroup along m and n.
    pub subgroups_m: usize,
    pub subgroups_n: usize,
    /// Fragments per subgroup along m and n.
    pub fragments_m: usize,
    pub fragments_n: usize,
    /// K staged per round.
    pub k_step: usize,
    /// f16 padding per staged row.
    pub pad: usize,
}

/// Short and complete (it names shaders, whose pipelines are cached by name): `16x16 sg32 2x2x4x4 k32 pad8`
/// (fragment, subgroup size, subgroups m x n, fragments per subgroup m x n, K step, padding).
impl std::fmt::Debug for CoopConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (frag, sg, k, pad) = (self.fragment, self.subgroup, self.k_step, self.pad);
        let (sm, sn, rm, rn) = (self.subgroups_m, self.subgroups_n, self.fragments_m, self.fragments_n);
        write!(f, "{frag}x{frag} sg{sg} {sm}x{sn}x{rm}x{rn} k{k} pad{pad}")
    }
}

impl CoopConfig {
    /// Side of the square output tile of a workgroup.
    pub fn tile(&self) -> usize {
        self.subgroups_m * self.fragments_m * self.fragment
    }

    pub fn workgroup(&self) -> usize {
        self.subgroups_m * self.subgroups_n * self.subgroup
    }

    /// Workgroup memory the core uses (bytes): two f16 staging tiles and one f32 fragment per subgroup.
    pub fn workgroup_bytes(&self) -> usize {
        2 * self.k_step * (self.tile() + self.pad) * 2 + self.subgroups_m * self.subgroups_n * self.fragment.pow(2) * 4
    }

    /// The constraints the core's index arithmetic relies on.
    pub fn check(&self) -> std::result::Result<(), String> {
        let (t, wg, f) = (self.tile(), self.workgroup(), self.fragment);
        let ok = [
            (self.subgroups_n * self.fragments_n * f == t, "square tiles"),
            ((f * f).is_multiple_of(self.subgroup), "fragment elements split evenly over a subgroup"),
            (wg.is_multiple_of(t / 2), "each invocation stages fixed column pairs"),
            ((self.k_step * t / 2).is_multiple_of(wg), "staged pairs split evenly over the workgroup"),
            (self.k_step.is_multiple_of(f) && self.k_step.is_multiple_of(2), "whole fragments per K step"),
            ((t + self.pad).is_multiple_of(2), "pairs stay in one word"),
        ];
        match ok.iter().find(|c| !c.0) {
            Some((_, what)) => Err(format!("{self:?}: not {what}")),
            None => Ok(()),
        }
    }

    /// The tiling for a GEMM whose output has `rows` rows (the conv's output channels; backward-data: its input
    /// channels): half the fragments per subgroup, a tile half as wide both ways, when the rows fit in half a
    /// tile. A 128-row tile on conv1_2 (64 output channels) or on conv1_2/conv2_1's backward-data (64 result
    /// channels), the costliest GEMMs at full resolution, would compute zeros for half of every tile.
    pub fn for_rows(&self, rows: usize) -> CoopConfig {
        if rows > self.tile() / 2 || !self.fragments_m.is_multiple_of(2) || !self.fragments_n.is_multiple_of(2) {
            return *self;
        }
        let half = CoopConfig { fragments_m: self.fragments_m / 2, fragments_n: self.fragments_n / 2, ..*self };
        if half.check().is_ok() {
            half
        } else {
            *self
        }
    }

    fn template_params(&self, first_binding: u32, twin: bool) -> Vec<(&'static str, TemplateValue)> {
        let int = |v: usize| TemplateValue::Int(u32_of(v));
        vec![
            ("F", int(self.fragment)),
            ("SG", int(self.subgroup)),
            ("SM", int(self.subgroups_m)),
            ("SN", int(self.subgroups_n)),
            ("RM", int(self.fragments_m)),
            ("RN", int(self.fragments_n)),
            ("KS", int(self.k_step)),
            ("PAD", int(self.pad)),
            ("B0", TemplateValue::Int(first_binding)),
            ("TWIN", TemplateValue::Bool(twin)),
        ]
    }
}

/// The tiling for fragments of side `fragment` with subgroups of `subgroup` invocations: 4 subgroups (2 x 2),
/// each 4 x 4 fragments for 16x16 fragments (a 128 x 128 tile, K step 32: the shape that ran a plain GEMM at 274
/// TFLOP/s on the H200) or 2 x 2 for 8x8 ones (a 32 x 32 tile).
pub fn tiling(fragment: usize, subgroup: usize) -> CoopConfig {
    let per = if fragment >= 16 { 4 } else { 2 };
    CoopConfig {
        fragment,
        subgroup,
        subgroups_m: 2,
        subgroups_n: 2,
        fragments_m: per,
        fragments_n: per,
        k_step: if fragment >= 16 { 32 } else { 16 },
        pad: 8,
    }
}

/// The subgroup size every invocation of a kernel gets on this adapter, if it is fixed: the core splits its
/// fragments over subgroups of exactly this size, and wgpu 30 has no way to require one for a pipeline. Vulkan and
/// DX12 report the driver's range (NVIDIA: 32..32; AMD and Intel: a range, so no tensor cores there until wgpu
/// can pin the size). Metal's back end reports a hardcoded 4..64 (wgpu-hal 30, `metal/mod.rs`), not a reading;
/// every Apple GPU runs SIMD-groups of 32, and the first-use check would catch it if one did not.
pub fn fixed_subgroup(adapter: &AdapterFacts) -> Option<usize> {
    if adapter.apple_gpu {
        return Some(32);
    }
    (adapter.subgroup_min_size == adapter.subgroup_max_size && adapter.subgroup_max_size > 0)
        .then_some(adapter.subgroup_max_size as usize)
}

/// The tensor-core tiling for this adapter, if it has square f16 -> f32 cooperative matrices (NVIDIA on Vulkan:
/// 16x16; Apple on Metal: 8x8 simdgroup matrices), a fixed subgroup size the fragments split over
/// ([`fixed_subgroup`]), and the workgroup memory: the largest fragment wins.
pub fn config(adapter: &AdapterFacts) -> Option<CoopConfig> {
    let fragment = *adapter.coop_fragments.iter().max()? as usize;
    let subgroup = fixed_subgroup(adapter)?;
    if !adapter.f16 || !adapter.subgroups {
        return None;
    }
    let c = tiling(fragment, subgroup);
    let fits = c.check().is_ok()
        && c.workgroup_bytes() <= adapter.max_workgroup_storage as usize
        && c.workgroup() <= adapter.max_invocations_per_workgroup as usize;
    fits.then_some(c)
}

/// The first binding after `wgsl`'s own (the core adds the ranges and the scale uniform there): read off the
/// kernel's declarations, so it follows the kernel's source.
pub fn first_free_binding(wgsl: &str) -> u32 {
    let bindings = wgsl.match_indices("@binding(").filter_map(|(i, m)| {
        let rest = &wgsl[i + m.len()..];
        rest[..rest.find(')')?].trim().parse::<u32>().ok()
    });
    bindings.max().map_or(0, |b| b + 1)
}

/// `kernel` (conv3x3, conv3x3_backward_data, gram, style_grad) on the cooperative-matrix core, or on its twin.
pub fn gemm_shader(kernel: &'static str, config: CoopConfig, twin: bool) -> Result<Shader> {
    let not_gemm = || crate::error::Error::Validation(format!("{kernel} has no cooperative-matrix variant"));
    let own = super::source(kernel).ok_or_else(not_gemm)?;
    let params = config.template_params(first_free_binding(&own), twin);
    // The core's scale uniform is ScaleParams, declared once (below) like every kernel's.
    let core = super::render_source(shared::GEMM_COOP, "gemm_coop", &params)? + &ScaleParams::wgsl_named("CoopScales");
    let name = format!("{kernel}/{}/{config:?}", if twin { "coop-twin" } else { "coop" });
    Ok(Shader::new(name, compose_with_core(kernel, &core).ok_or_else(not_gemm)?))
}

/// Where an operand's scale comes from: the largest magnitude in entry `slot` of the ranges (written on the GPU
/// by [`max_abs`] this iteration), at least `largest`, times `bound`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OperandRange {
    pub slot: Option<u32>,
    pub largest: f32,
    pub bound: f32,
}

impl OperandRange {
    /// A static operand (the weights): its largest magnitude, known on the host.
    pub fn fixed(largest: f32) -> Self {
        Self { slot: None, largest, bound: 1.0 }
    }

    /// A tensor whose range [`max_abs`] writes into `slot` this iteration.
    pub fn measured(slot: u32) -> Self {
        Self { slot: Some(slot), largest: 0.0, bound: 1.0 }
    }
}

uniform! {
    struct ScaleParams {
        slot_a: u32,
        slot_b: u32,
        largest_a: f32,
        largest_b: f32,
        bound_a: f32,
        bound_b: f32,
    }
}

/// The uniform of the core's operand scales (the binding after `coop_ranges`).
pub fn scale_uniform(ctx: &GpuContext, a: OperandRange, b: OperandRange) -> wgpu::Buffer {
    const NO_SLOT: u32 = u32::MAX;
    let p = ScaleParams {
        slot_a: a.slot.unwrap_or(NO_SLOT),
        slot_b: b.slot.unwrap_or(NO_SLOT),
        largest_a: a.largest,
        largest_b: b.largest,
        bound_a: a.bound,
        bound_b: b.bound,
        ..Default::default()
    };
    ctx.uniform("coop scales", &p)
}

/// The largest power of two the core multiplies an operand whose largest magnitude is `largest` by (the
/// shader's `range_factor`, in Rust for the tests).
pub fn range_factor(largest: f32) -> f32 {
    // Zero, NaN and infinities keep the operand as it is (NaN fails every comparison).
    if largest.is_nan() || largest <= 0.0 || largest > 3.0e38 {
        return 1.0;
    }
    (14.0 - largest.log2().ceil()).exp2()
}

uniform! {
    struct MaxAbsParams {
        count: u32,
        slot: u32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[
    kernel!("max_abs", &[GRID_ENTRY], MaxAbsParams, "values; mut ranges: array<atomic<u32>>"),
    kernel!("zero_u32", &[ELEMENTWISE], MaxAbsParams, "mut words: array<u32>"),
];

/// Values one `max_abs` workgroup reads.
const MAX_ABS_GROUP: usize = 256 * 16;

/// `ranges[slot] = max(ranges[slot], max |values[0..count]|)` (as f32 bits).
pub fn max_abs(ctx: &GpuContext, count: usize, slot: u32, values: &Buffer, ranges: &Buffer) -> Result<Dispatch> {
    let p = MaxAbsParams { count: u32_of(count), slot, ..Default::default() };
    let (x, y) = grid_2d(count.div_ceil(MAX_ABS_GROUP), max_dim(ctx));
    Dispatch::new(ctx, &shader("max_abs")?, &p, &[values, ranges], [x, y, 1])
}

/// Zeroes the first `count` words of `ranges`.
pub fn zero_ranges(ctx: &GpuContext, count: usize, ranges: &Buffer) -> Result<Dispatch> {
    let p = MaxAbsParams { count: u32_of(count), slot: 0, ..Default::default() };
    Dispatch::new(ctx, &shader("zero_u32")?, &p, &[ranges], elementwise_grid(count, max_dim(ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilings_keep_the_cores_invariants() {
        for (fragment, subgroup) in [(16, 32), (8, 8), (16, 16), (8, 32)] {
            let c = tiling(fragment, subgroup);
            c.check().unwrap_or_else(|e| panic!("{e}"));
        }
        let h200 = tiling(16, 32);
        assert_eq!((h200.tile(), h200.workgroup(), h200.k_step), (128, 128, 32));
        assert!(h200.workgroup_bytes() <= 48 << 10);
        let lavapipe = tiling(8, 8);
        assert_eq!((lavapipe.tile(), lavapipe.workgroup()), (32, 32));
        // lavapipe's 32 KiB of workgroup memory holds the twin of the H200 tiling (packed f16 staging).
        assert!(h200.workgroup_bytes() <= 32 << 10);
    }

    #[test]
    fn narrow_gemms_get_half_tiles_that_keep_the_invariants() {
        for full in [tiling(16, 32), tiling(8, 32), tiling(8, 8)] {
            let t = full.tile();
            assert_eq!(full.for_rows(t / 2 + 1), full, "{full:?}");
            assert_eq!(full.for_rows(4 * t), full);
            let half = full.for_rows(t / 2);
            if half != full {
                assert_eq!(half.tile(), t / 2, "{half:?}");
                assert_eq!(half.check(), Ok(()));
                assert_eq!(half.workgroup(), full.workgroup(), "same subgroups, fewer fragments each");
            }
        }
        // NVIDIA: conv1_2's 64 output channels take 64x64 tiles; conv2_1's 128 keep 128x128.
        assert_eq!(tiling(16, 32).for_rows(64).tile(), 64);
        assert_eq!(tiling(16, 32).for_rows(128).tile(), 128);
    }

    #[test]
    fn config_needs_fragments_f16_subgroups_and_room() {
        let mut gpu = AdapterFacts::example_gpu();
        assert_eq!(config(&gpu), None, "no cooperative matrices");
        gpu.coop_fragments = vec![8, 16];
        assert_eq!(config(&gpu), Some(tiling(16, 32)));
        let mut lvp = AdapterFacts::example_lavapipe();
        lvp.coop_fragments = vec![8];
        assert_eq!(config(&lvp), Some(tiling(8, 8)));
        let varying = AdapterFacts { subgroup_min_size: 16, ..gpu.clone() };
        assert_eq!(config(&varying), None, "the fragment split needs one subgroup size");
        let small = AdapterFacts { max_workgroup_storage: 8 << 10, ..gpu.clone() };
        assert_eq!(config(&small), None);
        // An Apple GPU through Metal: 8x8 simdgroup matrices, wgpu's hardcoded 4..64 range, SIMD width 32.
        let apple = AdapterFacts {
            backend: wgpu::Backend::Metal,
            apple_gpu: true,
            coop_fragments: vec![8],
            subgroup_min_size: 4,
            subgroup_max_size: 64,
            max_workgroup_storage: 32 << 10,
            ..gpu.clone()
        };
        assert_eq!(config(&apple), Some(tiling(8, 32)));
        assert_eq!(config(&AdapterFacts { apple_gpu: false, ..apple }), None, "a Mac's AMD GPU through Metal");
    }

    #[test]
    fn range_factors_bring_the_largest_value_near_2_14() {
        for &m in &[1e-9f32, 5e-6, 0.3, 1.0, 1.5, 255.0, 4e4, 1e7] {
            let scaled = m * range_factor(m);
            assert!((8192.0..=16384.0).contains(&scaled), "{m}: {scaled}");
        }
        assert_eq!(range_factor(0.0), 1.0);
        assert_eq!(range_factor(f32::NAN), 1.0);
    }

    /// Every cooperative-matrix shader (each GEMM kernel, both fragment sizes) and its twin parse, validate
    /// and translate to SPIR-V with naga, on any machine.
    #[test]
    fn cooperative_shaders_and_twins_validate_with_naga() {
        let bindings: Vec<u32> = ["conv3x3", "conv3x3_backward_data", "gram", "style_grad"]
            .iter()
            .map(|k| first_free_binding(&crate::kernels::source(k).unwrap()))
            .collect();
        assert_eq!(bindings, [5, 5, 3, 5], "the core's bindings follow each kernel's own");
        assert!(gemm_shader("adam", tiling(16, 32), true).is_err());
        for config in [tiling(16, 32), tiling(8, 8)] {
            for kernel in ["conv3x3", "conv3x3_backward_data", "gram", "style_grad"] {
                for twin in [false, true] {
                    let s = gemm_shader(kernel, config, twin).unwrap();
                    assert_eq!(s.wgsl.contains("enable wgpu_cooperative_matrix;"), !twin, "{}", s.name);
                    crate::kernels::tests::validate(&s.name, &s.wgsl);
                }
            }
        }
    }
}

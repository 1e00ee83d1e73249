//! Host wrappers of the Gram matrix `G = F Fᵀ / (C·H·W)` of a framed feature map, its variants and the choice:
//!
//! | variant | WGSL | for |
//! |---|---|---|
//! | [`GramVariant::Tiled`] | `gram.wgsl` (split-K partials on `shared/gemm_tiled.wgsl`) + `gram_reduce.wgsl` (fixed-order sum) | GPUs |
//! | [`GramVariant::Cpu`] | `gram_cpu.wgsl` (template), one dispatch, no split | CPU adapters |
//!
//! Both sum in a fixed order (no float atomics), so reruns are bit-identical.

use super::shared::{ELEMENTWISE, GEMM_TILED, GRID_ENTRY};
use super::uniform::uniform;
use super::{kernel, template, Kernel};

use super::coop::{self, CoopConfig, OperandRange};
use super::grid::{elementwise_grid, grid_2d, GEMM_TILE, MAX_GROUPS_PER_DIM};
use super::uniform::u32_of;
use super::{max_dim, render, shader, AdapterFacts, Dispatch, TemplateValue};
use crate::error::Result;
use crate::frame::Frame;
use crate::gpu::GpuContext;
use crate::tensor::Tensor;
use wgpu::Buffer;

/// Which kernel computes a Gram matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GramVariant {
    Tiled,
    Cpu,
    /// `gram.wgsl` on the tensor-core core (f16 operands, f32 sums; `twin`: its software twin), + `gram_reduce`.
    Coop {
        config: CoopConfig,
        twin: bool,
    },
}

/// The side of the block of G one invocation of the CPU kernel owns, and invocations per workgroup.
pub const CPU_BLOCK: usize = 4;
pub const CPU_WORKGROUP: usize = 16;

impl GramVariant {
    /// The variant for the Gram of `channels` channels: with tensor cores, the half tile when the channels fit
    /// it (relu1_1's 64 would leave 3/4 of a 128x128 tile zeros; [`CoopConfig::for_rows`]).
    pub fn for_channels(self, channels: usize) -> GramVariant {
        match self {
            GramVariant::Coop { config, twin } => GramVariant::Coop { config: config.for_rows(channels), twin },
            other => other,
        }
    }
}

pub fn variant(adapter: &AdapterFacts) -> GramVariant {
    if let Some((config, twin)) = adapter.coop {
        GramVariant::Coop { config, twin }
    } else if adapter.is_cpu() {
        GramVariant::Cpu
    } else {
        GramVariant::Tiled
    }
}

uniform! {
    struct GramParams {
        channels: u32,
        pixels: u32,
        chunk: u32,
        splits: u32,
        plane: u32,
        stride: u32,
    }
}

uniform! {
    struct ReduceParams {
        channels: u32,
        splits: u32,
        scale: f32,
        /// Side of the partial kernel's tiles (gram_reduce mirrors the tiles below the diagonal).
        tile: u32,
    }
}

uniform! {
    struct CpuParams {
        channels: u32,
        blocks: u32,
        pairs: u32,
        height: u32,
        width4: u32,
        stride4: u32,
        plane4: u32,
        scale: f32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[
    kernel!("gram", &[GEMM_TILED], GramParams, "features; mut partial"),
    kernel!("gram_reduce", &[ELEMENTWISE], ReduceParams, "partial; mut gram"),
    template!("gram_cpu", &[GRID_ENTRY], CpuParams),
];

/// How `gram.wgsl` splits the K dimension (`k` = the data rows as they lie in the frame): (splits, K per split).
///
/// Enough splits to give the GPU ~1024 workgroups (counting only the upper-triangle tiles that run), but each
/// split keeps ≥ 256 pixels so the fixed per-group cost stays small, and the partial buffer
/// (splits x C x C floats) stays ≤ 64 MiB. The chunk is a multiple of the kernel's K step (16).
pub fn gram_splits(channels: usize, k: usize) -> (usize, usize) {
    let t = channels.div_ceil(GEMM_TILE);
    let tiles = t * (t + 1) / 2;
    let wanted = 1024usize.div_ceil(tiles);
    let by_work = k.div_ceil(256).max(1);
    let by_memory = ((64usize << 20) / (4 * channels * channels).max(1)).max(1);
    let splits = wanted.min(by_work).min(by_memory).clamp(1, MAX_GROUPS_PER_DIM as usize);
    let chunk = k.div_ceil(splits).next_multiple_of(16).max(16);
    // Recompute so no split is empty.
    (k.div_ceil(chunk).max(1), chunk)
}

/// The K dimension of the tiled kernel: the data rows of one channel as they lie in the frame.
fn k_len(frame: Frame) -> usize {
    frame.height * frame.stride
}

/// Floats of scratch `variant` needs for the Gram of `channels` channels at `frame`.
pub fn partial_len(variant: GramVariant, channels: usize, frame: Frame) -> usize {
    match variant {
        GramVariant::Tiled | GramVariant::Coop { .. } => gram_splits(channels, k_len(frame)).0 * channels * channels,
        GramVariant::Cpu => 1,
    }
}

/// A Gram kernel ready to record: the tensor-core arm carries the entry of `ranges` its operand's largest
/// magnitude is measured into (a [`coop::max_abs`] recorded first).
#[derive(Clone, Copy, Debug)]
pub enum GramKernel<'a> {
    Tiled,
    Cpu,
    Coop { config: CoopConfig, twin: bool, ranges: &'a Buffer, slot: u32 },
}

impl<'a> GramKernel<'a> {
    /// `variant` as a kernel; a tensor-core variant takes (ranges, entry) from `range` (called only for it).
    pub fn of(variant: GramVariant, range: impl FnOnce() -> Result<(&'a Buffer, u32)>) -> Result<Self> {
        Ok(match variant {
            GramVariant::Tiled => GramKernel::Tiled,
            GramVariant::Cpu => GramKernel::Cpu,
            GramVariant::Coop { config, twin } => {
                let (ranges, slot) = range()?;
                GramKernel::Coop { config, twin, ranges, slot }
            }
        })
    }

    /// The kernel of an f32 variant (a tensor-core variant needs its ranges: an error here).
    pub fn f32(variant: GramVariant) -> Result<Self> {
        Self::of(variant, || {
            Err(crate::error::Error::Validation("the tensor-core Gram needs its operand range".into()))
        })
    }
}

/// The dispatches computing `gram = F Fᵀ / (C·H·W)` for `features` with `kernel`,
/// using `partial` (at least [`partial_len`] floats) as scratch.
pub fn gram(
    ctx: &GpuContext,
    kernel: GramKernel<'_>,
    features: Tensor<'_>,
    partial: &Buffer,
    gram: &Buffer,
) -> Result<Vec<Dispatch>> {
    let (channels, frame) = (features.channels, features.frame);
    let features = features.buffer;
    let scale = (1.0 / (channels as f64 * (frame.height * frame.width) as f64)) as f32;
    match kernel {
        GramKernel::Cpu => {
            let blocks = channels.div_ceil(CPU_BLOCK);
            let pairs = blocks * (blocks + 1) / 2;
            let p = CpuParams {
                channels: u32_of(channels),
                blocks: u32_of(blocks),
                pairs: u32_of(pairs),
                height: u32_of(frame.height),
                width4: u32_of(frame.width.div_ceil(4)),
                stride4: u32_of(frame.stride / 4),
                plane4: u32_of(frame.plane() / 4),
                scale,
                ..Default::default()
            };
            let (x, y) = grid_2d(pairs.div_ceil(CPU_WORKGROUP), max_dim(ctx));
            Ok(vec![Dispatch::new(ctx, &cpu_shader()?, &p, &[features, gram], [x, y, 1])?])
        }
        GramKernel::Tiled | GramKernel::Coop { .. } => {
            let k = k_len(frame);
            let (splits, chunk) = gram_splits(channels, k);
            let tile = if let GramKernel::Coop { config, .. } = kernel { config.tile() } else { GEMM_TILE };
            let t = u32_of(channels.div_ceil(tile));
            let p = GramParams {
                channels: u32_of(channels),
                pixels: u32_of(k),
                chunk: u32_of(chunk),
                splits: u32_of(splits),
                plane: u32_of(frame.plane()),
                stride: u32_of(frame.stride),
                ..Default::default()
            };
            let grid = [t, t, u32_of(splits)];
            let mut out = Vec::with_capacity(3);
            match kernel {
                GramKernel::Coop { config, twin, ranges, slot } => {
                    out.push(coop::max_abs(ctx, frame.buffer_floats(channels), slot, features, ranges)?);
                    let uniform = coop::scale_uniform(ctx, OperandRange::measured(slot), OperandRange::measured(slot));
                    let core = coop::gemm_shader("gram", config, twin)?;
                    out.push(Dispatch::new(ctx, &core, &p, &[features, partial, ranges, &uniform], grid)?);
                }
                _ => out.push(Dispatch::new(ctx, &shader("gram")?, &p, &[features, partial], grid)?),
            }
            let r = ReduceParams {
                channels: u32_of(channels),
                splits: u32_of(splits),
                scale,
                tile: u32_of(tile),
                ..Default::default()
            };
            let groups = elementwise_grid(channels * channels, max_dim(ctx));
            out.push(Dispatch::new(ctx, &shader("gram_reduce")?, &r, &[partial, gram], groups)?);
            Ok(out)
        }
    }
}

/// The CPU kernel's WGSL.
pub fn cpu_shader() -> Result<crate::gpu::Shader> {
    render(
        "gram_cpu",
        &[("B", TemplateValue::Int(u32_of(CPU_BLOCK))), ("WG", TemplateValue::Int(u32_of(CPU_WORKGROUP)))],
    )
    .map(|s| s.trusted(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_splits_cover_the_pixels_without_empty_splits() {
        for &(c, n) in &[(64usize, 512 * 512), (512, 32 * 32), (512, 1), (3, 7 * 13), (128, 4096 * 4096), (64, 17)] {
            let (s, chunk) = gram_splits(c, n);
            assert!(s >= 1 && chunk % 16 == 0, "{c} {n}");
            assert!(s * chunk >= n, "{c} {n}: {s} x {chunk}");
            assert!((s - 1) * chunk < n.max(1), "{c} {n}: empty split");
            assert!(s * c * c * 4 <= (64 << 20) || s == 1);
        }
        // Small layers get many splits, big ones few.
        assert!(gram_splits(64, 512 * 512).0 >= 512);
        assert!(gram_splits(512, 32 * 32).0 <= 4);
    }

    /// The CPU kernel's pair numbering (its float square root and the two corrections) names every upper-triangle
    /// block pair exactly once, up to 4096 channels.
    #[test]
    fn cpu_pairs_enumerate_the_upper_triangle() {
        for blocks in [1usize, 2, 8, 64, 512] {
            let mut seen = vec![false; blocks * blocks];
            for p in 0..blocks * (blocks + 1) / 2 {
                let mut bj = (((8.0 * p as f32 + 1.0).sqrt() - 1.0) * 0.5) as usize;
                if (bj + 1) * (bj + 2) / 2 <= p {
                    bj += 1;
                }
                if bj * (bj + 1) / 2 > p {
                    bj -= 1;
                }
                let bi = p - bj * (bj + 1) / 2;
                assert!(bi <= bj && bj < blocks, "{blocks}: pair {p} → ({bi}, {bj})");
                assert!(!seen[bi * blocks + bj]);
                seen[bi * blocks + bj] = true;
            }
        }
    }

    #[test]
    fn cpu_rendering_validates_with_naga() {
        let s = cpu_shader().unwrap();
        crate::kernels::tests::validate(&s.name, &s.wgsl);
        assert_eq!(variant(&AdapterFacts::example_lavapipe()), GramVariant::Cpu);
        assert_eq!(variant(&AdapterFacts::example_gpu()), GramVariant::Tiled);
    }
}

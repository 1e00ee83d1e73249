//! Vector kernels for L-BFGS (`dot_sum.wgsl`, `axpy_slots.wgsl`): dot products reduced in a fixed order into a
//! slot of a GPU array, and `y = keep·y + c·x` whose coefficient c is read from that array, so the two-loop
//! recursion needs no read-back.

use super::shared::{ELEMENTWISE, PARTIAL_SUMS, WORKGROUP_SUM};
use super::uniform::uniform;
use super::{kernel, Kernel};

use super::grid::{elementwise_grid, grid_2d};
use super::uniform::u32_of;
use super::{loss, max_dim, shader, Dispatch};
use crate::error::Result;
use crate::gpu::GpuContext;
use wgpu::Buffer;

/// Partials a dot product of `count` elements writes (the length the partials buffer needs): `dot_sum` and
/// `sq_diff_sum` share their entry point (shared/partial_sums.wgsl), so this is the same count.
pub fn dot_partials(count: usize) -> usize {
    loss::sq_diff_partials(count)
}

uniform! {
    struct DotParams {
        count: u32,
        abs_a: u32,
    }
}

/// What a [`dot`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Σ a·b.
    Dot,
    /// Σ |a| (b is bound but not read).
    AbsSum,
}

/// `slots[slot] = Σ a·b` (or Σ |a|) over `count` elements: two dispatches (the workgroups' partials, then one
/// workgroup adds them in order).
pub fn dot(
    ctx: &GpuContext,
    reduction: Reduction,
    count: usize,
    (a, b): (&Buffer, &Buffer),
    partials: &Buffer,
    (slots, slot): (&Buffer, usize),
) -> Result<[Dispatch; 2]> {
    let p = DotParams { count: u32_of(count), abs_a: u32::from(reduction == Reduction::AbsSum), ..Default::default() };
    let (x, y) = grid_2d(dot_partials(count), max_dim(ctx));
    let partial = Dispatch::new(ctx, &shader("dot_sum")?, &p, &[a, b, partials], [x, y, 1])?;
    let reduce = loss::reduce_sum(ctx, dot_partials(count), slot, 1.0, partials, slots)?;
    Ok([partial, reduce])
}

/// A slot of the scalars array, or none (1 in a numerator's first term and in the denominator, 0 in the
/// numerator's second term).
pub const NONE: u32 = u32::MAX;

/// The coefficient of [`axpy`]: `scale · (slots[num_add] − slots[num_sub]) / slots[den]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coefficient {
    pub scale: f32,
    pub num_add: u32,
    pub num_sub: u32,
    pub den: u32,
}

impl Coefficient {
    /// A constant known on the host.
    pub fn constant(scale: f32) -> Self {
        Self { scale, num_add: NONE, num_sub: NONE, den: NONE }
    }

    /// `scale · (slots[add] − slots[sub]) / slots[den]` (`None`: the term is left out).
    pub fn slots(scale: f32, add: Option<usize>, sub: Option<usize>, den: Option<usize>) -> Self {
        let idx = |s: Option<usize>| s.map_or(NONE, |s| u32_of(s));
        Self { scale, num_add: idx(add), num_sub: idx(sub), den: idx(den) }
    }
}

uniform! {
    struct AxpyParams {
        count: u32,
        keep: u32,
        num_add: u32,
        num_sub: u32,
        den: u32,
        scale: f32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[
    kernel!("dot_sum", &[PARTIAL_SUMS, WORKGROUP_SUM], DotParams, "a; b; mut partials"),
    kernel!("axpy_slots", &[ELEMENTWISE], AxpyParams, "x; mut y; slots"),
];

fn axpy_params(count: usize, keep: bool, c: Coefficient) -> AxpyParams {
    AxpyParams {
        count: u32_of(count),
        keep: u32::from(keep),
        num_add: c.num_add,
        num_sub: c.num_sub,
        den: c.den,
        scale: c.scale,
        ..Default::default()
    }
}

/// `y = c·x`, or `y += c·x` with `keep` (x and y must be different buffers).
pub fn axpy(
    ctx: &GpuContext,
    count: usize,
    keep: bool,
    c: Coefficient,
    x: &Buffer,
    y: &Buffer,
    slots: &Buffer,
) -> Result<Dispatch> {
    let p = axpy_params(count, keep, c);
    Dispatch::new(ctx, &shader("axpy_slots")?, &p, &[x, y, slots], elementwise_grid(count, max_dim(ctx)))
}

/// Rewrites the coefficient of an [`axpy`] dispatch (before the submit that runs it).
pub fn set_coefficient(ctx: &GpuContext, dispatch: &Dispatch, count: usize, keep: bool, c: Coefficient) {
    ctx.queue.write_buffer(&dispatch.params, 0, bytemuck::bytes_of(&axpy_params(count, keep, c)));
}

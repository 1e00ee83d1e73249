//! L-BFGS on the GPU (docs/MATHS.md, "Optimiser: L-BFGS"), as torch.optim.LBFGS with the strong-Wolfe line
//! search. The vectors — x, g, the direction, the history pairs (s, y) — never leave the GPU: dot products land
//! in a small array of scalars (`dot_sum` + `reduce_sum`) and the two-loop recursion's axpys read their
//! coefficients from it (`axpy_slots`). The CPU reads only scalars (losses, gᵀd, yᵀs, norms) and runs the line
//! search's logic ([`super::line_search`]).

use std::collections::VecDeque;

use super::line_search::{self, LineObjective};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext, Read};
use crate::kernels::coop::{max_abs, zero_ranges};
use crate::kernels::vector::{axpy, dot, dot_partials, set_coefficient, Coefficient, Reduction};
use crate::loss_terms::Losses;
use wgpu::Buffer;

/// Pairs with yᵀs at or below this are not kept.
pub const CURVATURE_EPS: f64 = 1e-10;
/// Stop when max|g| falls to this.
pub const TOLERANCE_GRAD: f64 = 1e-7;
/// Stop when a step or the loss changes by less than this.
pub const TOLERANCE_CHANGE: f64 = 1e-9;

/// Vectors of `count` floats L-BFGS keeps on the GPU with `history` pairs: the pairs (one spare for the
/// candidate), x at the start of the line search, g, the previous g, q, the direction and three gradients the
/// line search may return.
pub fn buffer_vectors(history: usize) -> usize {
    2 * (history + 1) + 8
}

/// Bytes of GPU memory L-BFGS adds for an image of `count` floats (vectors, partials, scalars).
pub fn bytes(count: usize, history: usize) -> u64 {
    let scalars = slot_count(history) + 2;
    4 * (buffer_vectors(history) * count + dot_partials(count) + scalars) as u64
}

fn slot_count(history: usize) -> usize {
    2 * (history + 1) + 4
}

/// Why L-BFGS stopped before its iterations were done.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// max|g| ≤ 1e-7.
    GradientVanished,
    /// gᵀd > −1e-9: the direction does not descend.
    NoDescent,
    /// The evaluation cap was reached.
    EvaluationCap(usize),
    /// max|t·d| ≤ 1e-9 or |ΔL| < 1e-9.
    NoProgress,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::GradientVanished => write!(f, "the gradient vanished (max |g| <= 1e-7)"),
            Stop::NoDescent => write!(f, "the direction stopped descending"),
            Stop::EvaluationCap(n) => write!(f, "it reached its cap of {n} loss evaluations (--lbfgs-max-evals)"),
            Stop::NoProgress => write!(f, "the step or the loss change fell below 1e-9"),
        }
    }
}

/// Runs the network at the current x (the one L-BFGS wrote into the image buffer): `before`, then forward,
/// losses and backward (∇L into the gradient buffer), then `after`, in one submission, and reads the losses and
/// `reads` back after it with one wait.
pub trait Evaluator {
    fn evaluate(&mut self, before: &[&Dispatch], after: &[&Dispatch], reads: &[Read<'_>]) -> Result<Evaluated>;
}

/// What an [`Evaluator`] read back: the losses, and each of the caller's reads.
pub struct Evaluated {
    pub losses: Losses,
    pub reads: Vec<Vec<f32>>,
}

/// The dispatches of one history slot j.
struct Pair {
    /// Kept alive for the bind groups below.
    _s: wgpu::Buffer,
    _y: wgpu::Buffer,
    /// y_j = g; y_j −= g_prev.
    make_y: [Dispatch; 2],
    /// s_j = t_prev · d (coefficient set before each use).
    make_s: Dispatch,
    /// slots[ys_j] = y_jᵀs_j.
    ys: [Dispatch; 2],
    /// slots[YY] = y_jᵀy_j.
    yy: [Dispatch; 2],
    /// slots[alpha_j] = s_jᵀq; q −= (alpha_j / ys_j)·y_j.
    first_loop: [Dispatch; 3],
    /// slots[BETA] = y_jᵀd; d += ((alpha_j − BETA) / ys_j)·s_j.
    second_loop: [Dispatch; 3],
}

/// L-BFGS's state for one image of `count` floats (the framed image buffer).
pub struct Lbfgs {
    count: usize,
    history: usize,
    max_evals: usize,
    pairs: Vec<Pair>,
    /// Accepted pairs, oldest first (indices into `pairs`).
    ring: VecDeque<usize>,
    /// The pair whose yᵀs / yᵀy is H.
    h_pair: Option<usize>,
    slots: wgpu::Buffer,
    ranges: wgpu::Buffer,
    // Whole-vector operations.
    negate_g_into_q: Dispatch,
    negate_g_into_d: Dispatch,
    scale_q_into_d: Dispatch,
    gtd: [Dispatch; 2],
    g_abs_sum: [Dispatch; 2],
    zero_ranges: Dispatch,
    g_max: Dispatch,
    d_max: Dispatch,
    save_x: Dispatch,
    restore_x: Dispatch,
    step_x: Dispatch,
    grad_gtd: [Dispatch; 2],
    save_g_prev: Dispatch,
    /// Copies of the gradient into each stash buffer, and of each stash buffer into g.
    stash_in: Vec<Dispatch>,
    stash_out: Vec<Dispatch>,
    /// Which evaluation id each stash buffer holds (this line search's ids).
    stash_ids: Vec<Option<usize>>,
    _vectors: Vec<wgpu::Buffer>,
    // Host state.
    iterations: usize,
    evals: usize,
    /// L and its terms at the current x (None before the first evaluation).
    current: Option<Losses>,
    t_prev: f64,
    steps: Vec<f64>,
    stopped: Option<Stop>,
}

// Scalar slots after the 2·(history + 1) of ys_j and alpha_j.
fn slot_beta(history: usize) -> usize {
    2 * (history + 1)
}
fn slot_yy(history: usize) -> usize {
    2 * (history + 1) + 1
}
fn slot_gtd(history: usize) -> usize {
    2 * (history + 1) + 2
}
fn slot_abs_sum(history: usize) -> usize {
    2 * (history + 1) + 3
}

impl Lbfgs {
    /// Allocates the history for `x` (the image buffer the network reads) and `grad` (where it writes ∇L).
    pub fn new(
        ctx: &GpuContext,
        count: usize,
        history: usize,
        max_evals: usize,
        x: &Buffer,
        grad: &Buffer,
    ) -> Result<Self> {
        if history == 0 {
            return Err(Error::InvalidOption("--lbfgs-history must be at least 1".into()));
        }
        let m = history;
        let vector = |label: &str| ctx.storage_buffer(label, count);
        let (q, d, x_init, g, g_prev) =
            (vector("lbfgs q")?, vector("lbfgs d")?, vector("lbfgs x0")?, vector("lbfgs g")?, vector("lbfgs g_prev")?);
        let stash: Vec<wgpu::Buffer> = (0..3).map(|_| vector("lbfgs stash")).collect::<Result<_>>()?;
        let partials = ctx.storage_buffer("lbfgs partials", dot_partials(count))?;
        let slots = ctx.storage_buffer("lbfgs scalars", slot_count(m))?;
        let ranges = ctx.storage_buffer("lbfgs ranges", 2)?;
        let c = Coefficient::constant;
        let dot2 =
            |a: &Buffer, b: &Buffer, slot: usize| dot(ctx, Reduction::Dot, count, (a, b), &partials, (&slots, slot));
        let mut pairs = Vec::with_capacity(m + 1);
        for j in 0..=m {
            let (s, y) = (vector("lbfgs s")?, vector("lbfgs y")?);
            let alpha = m + 1 + j;
            let [a0, a1] = dot2(&s, &q, alpha)?;
            let [b0, b1] = dot2(&y, &d, slot_beta(m))?;
            pairs.push(Pair {
                make_y: [
                    axpy(ctx, count, false, c(1.0), &g, &y, &slots)?,
                    axpy(ctx, count, true, c(-1.0), &g_prev, &y, &slots)?,
                ],
                make_s: axpy(ctx, count, false, c(0.0), &d, &s, &slots)?,
                ys: dot2(&y, &s, j)?,
                yy: dot2(&y, &y, slot_yy(m))?,
                first_loop: [
                    a0,
                    a1,
                    axpy(ctx, count, true, Coefficient::slots(-1.0, Some(alpha), None, Some(j)), &y, &q, &slots)?,
                ],
                second_loop: [
                    b0,
                    b1,
                    axpy(
                        ctx,
                        count,
                        true,
                        Coefficient::slots(1.0, Some(alpha), Some(slot_beta(m)), Some(j)),
                        &s,
                        &d,
                        &slots,
                    )?,
                ],
                _s: s,
                _y: y,
            });
        }
        let this = Self {
            count,
            history: m,
            max_evals,
            negate_g_into_q: axpy(ctx, count, false, c(-1.0), &g, &q, &slots)?,
            negate_g_into_d: axpy(ctx, count, false, c(-1.0), &g, &d, &slots)?,
            scale_q_into_d: axpy(ctx, count, false, c(1.0), &q, &d, &slots)?,
            gtd: dot2(&g, &d, slot_gtd(m))?,
            g_abs_sum: dot(ctx, Reduction::AbsSum, count, (&g, &g), &partials, (&slots, slot_abs_sum(m)))?,
            zero_ranges: zero_ranges(ctx, 2, &ranges)?,
            g_max: max_abs(ctx, count, 0, &g, &ranges)?,
            d_max: max_abs(ctx, count, 1, &d, &ranges)?,
            save_x: axpy(ctx, count, false, c(1.0), x, &x_init, &slots)?,
            restore_x: axpy(ctx, count, false, c(1.0), &x_init, x, &slots)?,
            step_x: axpy(ctx, count, true, c(0.0), &d, x, &slots)?,
            grad_gtd: dot2(grad, &d, slot_gtd(m))?,
            save_g_prev: axpy(ctx, count, false, c(1.0), &g, &g_prev, &slots)?,
            stash_in: stash.iter().map(|b| axpy(ctx, count, false, c(1.0), grad, b, &slots)).collect::<Result<_>>()?,
            stash_out: stash.iter().map(|b| axpy(ctx, count, false, c(1.0), b, &g, &slots)).collect::<Result<_>>()?,
            stash_ids: vec![None; 3],
            pairs,
            ring: VecDeque::with_capacity(m),
            h_pair: None,
            slots,
            ranges,
            _vectors: [q, d, x_init, g, g_prev].into_iter().chain(stash).collect(),
            iterations: 0,
            evals: 0,
            current: None,
            t_prev: 0.0,
            steps: Vec::new(),
            stopped: None,
        };
        ctx.check()?;
        Ok(this)
    }

    /// Accepted iterates so far.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// Evaluations of L and ∇L so far.
    pub fn evaluations(&self) -> usize {
        self.evals
    }

    /// The losses at the current x, once evaluated.
    pub fn current(&self) -> Option<Losses> {
        self.current
    }

    /// Why L-BFGS stopped, once it has.
    pub fn stopped(&self) -> Option<&Stop> {
        self.stopped.as_ref()
    }

    /// The step t of each accepted iterate so far.
    pub fn steps(&self) -> &[f64] {
        &self.steps
    }

    /// Pairs in the history now.
    pub fn pairs(&self) -> usize {
        self.ring.len()
    }

    /// The history with `pair` taken in (the oldest dropped when full), oldest first, and the pair H comes from.
    fn ring_with(&self, pair: Option<usize>) -> (VecDeque<usize>, Option<usize>) {
        let mut ring = self.ring.clone();
        let Some(j) = pair else { return (ring, self.h_pair) };
        if ring.len() == self.history {
            ring.pop_front();
        }
        ring.push_back(j);
        (ring, Some(j))
    }

    /// The search direction d from −g and the history with `pair` taken in, then gᵀd and max|d| (and on the
    /// first iteration Σ|g|), in one submission after `before`, waited for once. Returns the scalar slots and
    /// [max|g|, max|d|]. `pair` is the candidate made by `before`: its yᵀy is measured here; without it, H's
    /// yᵀy is measured again (a rejected candidate's submission overwrote it; the same sum, so the same bits).
    fn direction(&self, ctx: &GpuContext, before: &[&Dispatch], pair: Option<usize>) -> Result<(Vec<f64>, [f64; 2])> {
        let first = self.iterations == 0;
        let (ring, h_pair) = self.ring_with(pair);
        let h = match h_pair {
            Some(j) => Coefficient::slots(1.0, Some(j), None, Some(slot_yy(self.history))),
            None => Coefficient::constant(1.0),
        };
        let mut ds: Vec<&Dispatch> = before.to_vec();
        ds.extend([&self.zero_ranges, &self.g_max]);
        if first {
            ds.push(&self.negate_g_into_d);
        } else {
            set_coefficient(ctx, &self.scale_q_into_d, self.count, false, h);
            if let Some(j) = h_pair {
                ds.extend(&self.pairs[j].yy);
            }
            ds.push(&self.negate_g_into_q);
            for &i in ring.iter().rev() {
                ds.extend(&self.pairs[i].first_loop);
            }
            ds.push(&self.scale_q_into_d);
            for &i in &ring {
                ds.extend(&self.pairs[i].second_loop);
            }
        }
        ds.extend(&self.gtd);
        ds.push(&self.d_max);
        if first {
            ds.extend(&self.g_abs_sum);
        }
        ds.push(&self.save_x);
        let reads = [Read::new(&self.slots, 0, slot_count(self.history)), Read::new(&self.ranges, 0, 2)];
        let read = ctx.submit_and_read(ctx.encode(ds), &reads)?;
        // max_abs stores the bits of a non-negative f32: read as f32, they are the value.
        let [g_max, d_max] = [f64::from(read[1][0]), f64::from(read[1][1])];
        Ok((read[0].iter().copied().map(f64::from).collect(), [g_max, d_max]))
    }

    /// One L-BFGS iteration (the first call also evaluates the initial x). Returns the losses of x BEFORE the
    /// update, as Adam's step does; None once stopped (nothing is done then).
    ///
    /// The host waits once for the direction and once per evaluation of the line search: the candidate pair
    /// (s, y) goes in the direction's submission, which assumes it is kept (nearly always); when yᵀs says it is
    /// not, the direction is made again without it (one more wait). The step's own submission is not waited for.
    pub fn iteration(&mut self, ctx: &GpuContext, eval: &mut dyn Evaluator) -> Result<Option<Losses>> {
        if self.stopped.is_some() {
            return Ok(None);
        }
        let m = self.history;
        let before = match self.current {
            Some(l) => l,
            None => {
                // ∇L at x0 goes straight into g.
                let l = eval.evaluate(&[], &[&self.stash_in[0], &self.stash_out[0]], &[])?.losses;
                self.evals += 1;
                self.current = Some(l);
                l
            }
        };

        // The candidate pair from the last step: s = t_prev·d (d still the last direction), y = g − g_prev; kept
        // when yᵀs > 1e-10.
        let first = self.iterations == 0;
        let candidate =
            (!first).then(|| (0..=m).find(|j| !self.ring.contains(j)).expect("one pair slot is always free"));
        let (scalars, [g_max, d_max]) = match candidate {
            None => self.direction(ctx, &[], None)?,
            Some(j) => {
                set_coefficient(
                    ctx,
                    &self.pairs[j].make_s,
                    self.count,
                    false,
                    Coefficient::constant(self.t_prev as f32),
                );
                let p = &self.pairs[j];
                let make = [&p.make_s, &p.make_y[0], &p.make_y[1], &p.ys[0], &p.ys[1]];
                let (scalars, ranges) = self.direction(ctx, &make, Some(j))?;
                if scalars[j] > CURVATURE_EPS {
                    (self.ring, self.h_pair) = self.ring_with(Some(j));
                    (scalars, ranges)
                } else {
                    self.direction(ctx, &[], None)?
                }
            }
        };
        if g_max <= TOLERANCE_GRAD {
            self.stopped = Some(Stop::GradientVanished);
            return Ok(Some(before));
        }
        let gtd = scalars[slot_gtd(m)];
        let t = if first { (1.0 / scalars[slot_abs_sum(m)]).min(1.0) } else { 1.0 };
        // (A NaN gᵀd stops too.)
        if gtd.is_nan() || gtd > -TOLERANCE_CHANGE {
            self.stopped = Some(Stop::NoDescent);
            return Ok(Some(before));
        }

        // The line search.
        self.stash_ids = vec![None; 3];
        let mut objective = Objective { lbfgs: self, ctx, eval, losses: vec![before] };
        let accepted = line_search::strong_wolfe(&mut objective, before.total, gtd, t, d_max)?;
        let losses = objective.losses;
        let p = accepted.point;

        // x = x0 + t·d, g_prev = g, g = the accepted gradient: queued, not waited for (the next submission
        // runs after it).
        set_coefficient(ctx, &self.step_x, self.count, true, Coefficient::constant(p.t as f32));
        let mut ds = vec![&self.restore_x, &self.step_x, &self.save_g_prev];
        if p.id != 0 {
            let k = self.stash_ids.iter().position(|s| *s == Some(p.id)).expect("the accepted gradient is kept");
            ds.push(&self.stash_out[k]);
        }
        ctx.queue.submit([ctx.encode(ds).finish()]);
        self.evals += accepted.evals;
        self.iterations += 1;
        self.t_prev = p.t;
        self.steps.push(p.t);
        let now = losses[p.id];
        self.current = Some(now);
        if self.evals >= self.max_evals {
            self.stopped = Some(Stop::EvaluationCap(self.max_evals));
        } else if p.t.abs() * d_max <= TOLERANCE_CHANGE || (now.total - before.total).abs() < TOLERANCE_CHANGE {
            self.stopped = Some(Stop::NoProgress);
        }
        Ok(Some(before))
    }
}

/// L-BFGS's history starts afresh at each coarse-to-fine scale: it hands nothing over.
impl super::ImageOptimizer for Lbfgs {
    fn iterate(&mut self, problem: &mut dyn super::Problem<'_>, _read_losses: bool) -> Result<Option<Losses>> {
        let before = self.iterations;
        let ctx = problem.context();
        let losses = self.iteration(ctx, problem)?;
        if self.iterations > before {
            problem.accepted()?;
        }
        Ok(losses)
    }

    fn iterations(&self) -> usize {
        self.iterations
    }

    fn evaluations(&self) -> Option<usize> {
        Some(self.evals)
    }

    fn stopped(&self) -> Option<String> {
        self.stopped.as_ref().map(Stop::to_string)
    }

    fn current_losses(&self) -> Option<Losses> {
        self.current
    }

    fn line_steps(&self) -> Option<&[f64]> {
        Some(&self.steps)
    }

    fn handover(&self, _ctx: &GpuContext, _frame: crate::frame::Frame) -> Result<super::Handover> {
        Ok(super::Handover::default())
    }

    fn resume(&mut self, _ctx: &GpuContext, _frame: crate::frame::Frame, h: &super::Handover) -> Result<()> {
        if !h.planes.is_empty() {
            return Err(Error::InvalidOption("L-BFGS starts each scale afresh: it takes no optimiser state".into()));
        }
        Ok(())
    }
}

/// φ(t) = L(x0 + t·d) on the GPU for the line search.
struct Objective<'l, 'e> {
    lbfgs: &'l mut Lbfgs,
    ctx: &'l GpuContext,
    eval: &'e mut dyn Evaluator,
    /// The losses of each evaluation id (0: the start).
    losses: Vec<Losses>,
}

impl LineObjective for Objective<'_, '_> {
    type Error = Error;

    fn evaluate(&mut self, t: f64, live: &[usize]) -> Result<(f64, f64)> {
        let id = self.losses.len();
        let l = &mut *self.lbfgs;
        for s in l.stash_ids.iter_mut() {
            if s.is_some_and(|s| !live.contains(&s)) {
                *s = None;
            }
        }
        let k = l.stash_ids.iter().position(Option::is_none).expect("the line search keeps at most two gradients");
        l.stash_ids[k] = Some(id);
        set_coefficient(self.ctx, &l.step_x, l.count, true, Coefficient::constant(t as f32));
        let after = [&l.grad_gtd[0], &l.grad_gtd[1], &l.stash_in[k]];
        let read = Read::new(&l.slots, slot_gtd(l.history), 1);
        let Evaluated { losses, reads } = self.eval.evaluate(&[&l.restore_x, &l.step_x], &after, &[read])?;
        let gtd = f64::from(reads[0][0]);
        self.losses.push(losses);
        Ok((losses.total, gtd))
    }
}

//! The strong-Wolfe line search of L-BFGS (docs/MATHS.md, "Optimiser: L-BFGS"), on scalars only: the caller
//! evaluates φ(t) = L(x + t·d) and φ'(t) = ∇L(x + t·d)ᵀd wherever asked, on the GPU or (for the reference) in
//! f64. Gradients are named by evaluation ids (0: the starting point, then 1, 2, … in the order of evaluation);
//! the search tells the caller which ids it may still return, so a GPU caller keeps at most three gradients.

/// Armijo constant (sufficient decrease).
pub const C1: f64 = 1e-4;
/// Curvature constant.
pub const C2: f64 = 0.9;
/// Bracket width (times max|d|) below which the search gives up refining.
pub const TOLERANCE_CHANGE: f64 = 1e-9;
/// Evaluations one search may make.
pub const MAX_EVALS: usize = 25;

/// One evaluation of φ: the value and the directional derivative at a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub t: f64,
    pub f: f64,
    pub gtd: f64,
    /// Which evaluation's gradient belongs to this point.
    pub id: usize,
}

/// What the search needs from its caller.
pub trait LineObjective {
    type Error;
    /// Evaluates φ and φ' at `t`; its gradient gets the next id. `live` are the ids of earlier evaluations the
    /// search may still return: the caller may forget every other.
    fn evaluate(&mut self, t: f64, live: &[usize]) -> Result<(f64, f64), Self::Error>;
}

/// The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to `bounds` (default: the
/// interval between x1 and x2); the bounds' midpoint when the cubic has no minimiser.
pub fn cubic_interpolate(p1: (f64, f64, f64), p2: (f64, f64, f64), bounds: Option<(f64, f64)>) -> f64 {
    let ((x1, f1, g1), (x2, f2, g2)) = (p1, p2);
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        min_pos.max(lo).min(hi)
    } else {
        (lo + hi) / 2.0
    }
}

/// The accepted step and the evaluations it took.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Accepted {
    pub point: Point,
    pub evals: usize,
}

/// Strong-Wolfe search from φ(0) = `f`, φ'(0) = `gtd` < 0, first trial `t`; `d_max` = max|d|.
pub fn strong_wolfe<O: LineObjective>(obj: &mut O, f: f64, gtd: f64, t: f64, d_max: f64) -> Result<Accepted, O::Error> {
    let start = Point { t: 0.0, f, gtd, id: 0 };
    let mut evals = 0usize;
    let mut eval = |obj: &mut O, t: f64, live: &[usize]| -> Result<Point, O::Error> {
        let (f, gtd) = obj.evaluate(t, live)?;
        evals += 1;
        Ok(Point { t, f, gtd, id: evals })
    };
    // A NaN or infinite loss fails it (torch would extrapolate on).
    let armijo_fails = |p: &Point| !p.f.is_finite() || p.f > f + C1 * p.t * gtd;
    let curvature_holds = |p: &Point| p.gtd.abs() <= -C2 * gtd;

    // Bracketing: extrapolate until the minimum is enclosed or the trial is good enough.
    let mut prev = start;
    let mut new = eval(obj, t, &[start.id])?;
    let mut tries = 0usize;
    let mut done = false;
    let mut bracket: Vec<Point>;
    loop {
        if tries == MAX_EVALS {
            bracket = vec![start, new];
            break;
        }
        if armijo_fails(&new) || (tries > 1 && new.f >= prev.f) {
            bracket = vec![prev, new];
            break;
        }
        if curvature_holds(&new) {
            bracket = vec![new];
            done = true;
            break;
        }
        if new.gtd >= 0.0 {
            bracket = vec![prev, new];
            break;
        }
        let (lo, hi) = (new.t + 0.01 * (new.t - prev.t), new.t * 10.0);
        let next = cubic_interpolate((prev.t, prev.f, prev.gtd), (new.t, new.f, new.gtd), Some((lo, hi)));
        prev = new;
        new = eval(obj, next, &[prev.id])?;
        tries += 1;
    }

    // Zoom: shrink the bracket until a point satisfies both conditions.
    let mut insufficient_progress = false;
    let order = |b: &[Point]| if b[0].f <= b[b.len() - 1].f { (0, b.len() - 1) } else { (b.len() - 1, 0) };
    let (mut low, mut high) = order(&bracket);
    while !done && tries < MAX_EVALS {
        let (a, b) = (bracket[0], bracket[1]);
        if (b.t - a.t).abs() * d_max < TOLERANCE_CHANGE {
            break;
        }
        let mut t = cubic_interpolate((a.t, a.f, a.gtd), (b.t, b.f, b.gtd), None);
        let (bmin, bmax) = (a.t.min(b.t), a.t.max(b.t));
        let eps = 0.1 * (bmax - bmin);
        if (bmax - t).min(t - bmin) < eps {
            // Too close to an end: move it inside unless the previous step already had to.
            if insufficient_progress || t >= bmax || t <= bmin {
                t = if (t - bmax).abs() < (t - bmin).abs() { bmax - eps } else { bmin + eps };
                insufficient_progress = false;
            } else {
                insufficient_progress = true;
            }
        } else {
            insufficient_progress = false;
        }
        let p = eval(obj, t, &[a.id, b.id])?;
        tries += 1;
        if armijo_fails(&p) || p.f >= bracket[low].f {
            bracket[high] = p;
            (low, high) = order(&bracket);
        } else {
            if curvature_holds(&p) {
                done = true;
            } else if p.gtd * (bracket[high].t - bracket[low].t) >= 0.0 {
                bracket[high] = bracket[low];
            }
            bracket[low] = p;
        }
    }
    Ok(Accepted { point: bracket[low], evals })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// φ(t) = L(x0 + t·d) of a 1-D function given by value and derivative.
    struct OneD<F: Fn(f64) -> (f64, f64)> {
        phi: F,
        calls: Vec<f64>,
    }

    impl<F: Fn(f64) -> (f64, f64)> LineObjective for OneD<F> {
        type Error = ();
        fn evaluate(&mut self, t: f64, live: &[usize]) -> Result<(f64, f64), ()> {
            assert!(live.len() <= 2, "the search keeps at most two earlier gradients: {live:?}");
            self.calls.push(t);
            Ok((self.phi)(t))
        }
    }

    #[test]
    fn cubic_interpolation_finds_a_cubics_minimum_and_respects_bounds() {
        // f(x) = (x − 2)² + 1 is its own cubic: the minimiser is exact from any two points.
        let q = |x: f64| (x, (x - 2.0).powi(2) + 1.0, 2.0 * (x - 2.0));
        assert!((cubic_interpolate(q(0.0), q(5.0), None) - 2.0).abs() < 1e-12);
        assert!((cubic_interpolate(q(5.0), q(0.0), None) - 2.0).abs() < 1e-12);
        assert_eq!(cubic_interpolate(q(0.0), q(1.0), Some((3.0, 4.0))), 3.0);
        // f(x) = x³ − 3x: minimum at 1.
        let c = |x: f64| (x, x.powi(3) - 3.0 * x, 3.0 * x * x - 3.0);
        assert!((cubic_interpolate(c(0.0), c(2.0), None) - 1.0).abs() < 1e-12);
        // No minimiser (d1² < g1·g2): the midpoint of the bounds.
        assert_eq!(cubic_interpolate((0.0, 0.0, 1.0), (1.0, 2.0 / 3.0, 1.0), None), 0.5);
        assert_eq!(cubic_interpolate((0.0, 0.0, 1.0), (1.0, 2.0 / 3.0, 1.0), Some((0.0, 4.0))), 2.0);
    }

    fn check_wolfe(phi: impl Fn(f64) -> (f64, f64) + Copy, t0: f64) -> (Accepted, Vec<f64>) {
        let (f0, g0) = phi(0.0);
        let mut o = OneD { phi, calls: Vec::new() };
        let a = strong_wolfe(&mut o, f0, g0, t0, 1.0).unwrap();
        let p = a.point;
        assert_eq!(a.evals, o.calls.len());
        assert_eq!((p.f, p.gtd), phi(p.t), "the returned point is an evaluated one");
        assert!(p.f <= f0 + C1 * p.t * g0, "sufficient decrease at t = {}", p.t);
        assert!(p.gtd.abs() <= -C2 * g0, "curvature at t = {}: {}", p.t, p.gtd);
        (a, o.calls)
    }

    #[test]
    fn accepts_a_good_first_step_at_once() {
        let (a, calls) = check_wolfe(|t| ((t - 1.0).powi(2), 2.0 * (t - 1.0)), 1.0);
        assert_eq!((a.point.t, a.point.id, calls.len()), (1.0, 1, 1));
    }

    #[test]
    fn extrapolates_a_short_first_step() {
        // Minimum at t = 50, first trial 1e-3: bracketing grows the step at most 10x per trial, until the slope
        // has fallen below 0.9 of its start (t = 10 here: φ' = −80 vs −100).
        let (a, calls) = check_wolfe(|t| ((t - 50.0).powi(2), 2.0 * (t - 50.0)), 1e-3);
        assert!(calls.windows(2).all(|w| w[1] > w[0] && w[1] <= 10.0 * w[0] + 1e-12), "{calls:?}");
        assert_eq!((a.point.t, calls.len()), (10.0, 5), "{a:?}");
    }

    #[test]
    fn zooms_into_an_overlong_first_step() {
        // A steep quartic: t = 10 overshoots badly.
        let phi = |t: f64| ((t - 0.3).powi(4) - t * 0.01, 4.0 * (t - 0.3).powi(3) - 0.01);
        let (a, calls) = check_wolfe(phi, 10.0);
        assert!(calls.len() > 2, "{calls:?}");
        assert!(a.point.t < 1.0);
    }

    #[test]
    fn gives_up_on_a_direction_without_a_wolfe_point_within_its_evaluations() {
        // φ keeps falling linearly: no step satisfies the curvature condition; the search stops at its cap and
        // returns the best point it evaluated.
        let mut o = OneD { phi: |t: f64| (-t, -1.0), calls: Vec::new() };
        let a = strong_wolfe(&mut o, 0.0, -1.0, 1.0, 1.0).unwrap();
        assert!(a.evals <= MAX_EVALS + 1, "{}", a.evals);
        assert!(a.point.f < 0.0);
    }
}

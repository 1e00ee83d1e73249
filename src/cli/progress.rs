//! Progress on stderr: setup stages as timestamped lines from the first second, then an indicatif bar
//! (iteration, seconds per iteration, ETA, current losses) when stderr is a terminal, plain lines every
//! `--print-every` iterations otherwise. Speed and ETA come from measured iteration times (the mean of the last
//! few), never from an estimate before the first iteration has finished.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use neural_style::Losses;

/// Iteration times the speed is averaged over.
const SPEED_WINDOW: usize = 10;

/// Timestamped setup lines (`[  2.1s] style targets: …`), counted from the start of the run.
pub struct Stages {
    start: Instant,
}

impl Stages {
    pub fn new(start: Instant) -> Self {
        Self { start }
    }

    pub fn line(&self, what: impl std::fmt::Display) {
        eprintln!("[{:6.1}s] {what}", self.start.elapsed().as_secs_f64());
    }
}

/// `1.234e5`-style numbers, short enough for one line.
fn sci(v: f64) -> String {
    format!("{v:.3e}")
}

pub fn losses_text(l: &Losses) -> String {
    let temporal = l.temporal.map(|t| format!("  temporal {}", sci(t))).unwrap_or_default();
    format!("content {}  style {}  tv {}{temporal}  total {}", sci(l.content), sci(l.style), sci(l.tv), sci(l.total))
}

/// `3m05s`, `1h02m`, `42s`.
pub fn duration_text(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Iteration speed from the last few measured iterations.
#[derive(Debug, Default)]
pub struct Speed {
    recent: VecDeque<f64>,
}

impl Speed {
    pub fn record(&mut self, secs: f64) {
        if self.recent.len() == SPEED_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(secs);
    }

    /// Mean seconds per iteration, once one has been measured.
    pub fn secs_per_iteration(&self) -> Option<f64> {
        (!self.recent.is_empty()).then(|| self.recent.iter().sum::<f64>() / self.recent.len() as f64)
    }

    /// Speed and ETA for `remaining` iterations, as shown: `1.92 s/it  ETA 4m12s` (or `12.3 it/s`).
    #[cfg(test)]
    pub fn text(&self, remaining: usize) -> String {
        self.text_scaled(1.0, remaining as f64)
    }

    /// As [`Speed::text`] when the recorded times are per unit of cost: the next iteration costs `now` units
    /// and the remaining ones `remaining` units in all (coarse to fine: pixels of their scale).
    pub fn text_scaled(&self, now: f64, remaining: f64) -> String {
        match self.secs_per_iteration() {
            None => "measuring speed…".into(),
            Some(unit) => {
                let s = unit * now;
                let speed = if s >= 1.0 { format!("{s:.2} s/it") } else { format!("{:.1} it/s", 1.0 / s.max(1e-9)) };
                format!("{speed}  ETA {}", duration_text(unit * remaining))
            }
        }
    }
}

pub struct Progress {
    total: usize,
    start: Instant,
    bar: Option<ProgressBar>,
    speed: Speed,
    /// The last losses reported (printed as a plain line when the bar is cleared).
    last: Cell<Option<(usize, Losses)>>,
    /// Relative cost of each iteration (coarse to fine: the pixels of its scale); None: all equal.
    costs: Option<Vec<f64>>,
    /// When the last plain line about blocks was printed.
    last_blocks_line: Cell<Instant>,
}

impl Progress {
    /// A bar when stderr is a terminal (and `NEURAL_STYLE_NO_BAR` is unset), plain lines otherwise.
    pub fn new(total: usize) -> Self {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("NEURAL_STYLE_NO_BAR").is_none();
        let bar = if tty && total > 0 {
            let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:25}] {pos}/{len}  {prefix}  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix("measuring speed…");
            bar.enable_steady_tick(Duration::from_millis(250));
            Some(bar)
        } else {
            None
        };
        let start = Instant::now();
        let last_blocks_line = Cell::new(start);
        Progress { total, start, bar, speed: Speed::default(), last: Cell::new(None), costs: None, last_blocks_line }
    }

    /// The relative cost of each iteration, so that speed and ETA stay right when later iterations are slower
    /// (coarse to fine).
    pub fn set_costs(&mut self, costs: Vec<f64>) {
        self.costs = Some(costs);
    }

    fn cost(&self, iteration: usize) -> f64 {
        self.costs.as_ref().and_then(|c| c.get(iteration.min(c.len().saturating_sub(1)))).copied().unwrap_or(1.0)
    }

    /// Speed of the next iteration and the ETA of the rest, after `done` iterations.
    fn speed_text(&self, done: usize) -> String {
        let remaining: f64 = (done..self.total).map(|i| self.cost(i)).sum();
        self.speed.text_scaled(self.cost(done), remaining)
    }

    /// Restarts the clock (call right before the first iteration).
    pub fn start(&mut self) {
        self.start = Instant::now();
    }

    /// Iterations per second since [`Progress::start`], over `done` iterations.
    fn rate(&self, done: usize) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        if secs > 0.0 && done > 0 {
            done as f64 / secs
        } else {
            0.0
        }
    }

    /// The losses of the image after `iter` updates.
    pub fn report(&self, iter: usize, l: &Losses) {
        match &self.bar {
            Some(bar) => {
                bar.set_message(losses_text(l));
                self.last.set(Some((iter, *l)));
            }
            None => self.plain_line(iter, l),
        }
    }

    fn plain_line(&self, iter: usize, l: &Losses) {
        let w = self.total.to_string().len();
        let speed = self.speed_text(iter);
        eprintln!("iter {iter:>w$}/{}  {}  {speed}", self.total, losses_text(l));
    }

    /// Tiled evaluation: `done` of the iteration's `of` block passes are done. On the bar, at once; as plain lines,
    /// at most one every 10 s (an iteration of many blocks can take minutes on a CPU adapter).
    pub fn blocks(&self, done: usize, of: usize) {
        match &self.bar {
            Some(bar) => bar.set_message(format!("blocks {done}/{of}")),
            None if self.last_blocks_line.get().elapsed() >= Duration::from_secs(10) => {
                self.last_blocks_line.set(Instant::now());
                eprintln!(
                    "  blocks {done}/{of} of this iteration ({} painting)",
                    duration_text(self.start.elapsed().as_secs_f64())
                );
            }
            None => {}
        }
    }

    /// One iteration done, `secs` after the previous one.
    pub fn inc(&mut self, done: usize, secs: f64) {
        self.speed.record(secs / self.cost(done.saturating_sub(1)));
        if let Some(bar) = &self.bar {
            bar.set_prefix(self.speed_text(done));
            // A tiled iteration's "blocks k/n" gives way to the last losses again.
            let last = self.last.get().map(|(_, l)| losses_text(&l)).unwrap_or_default();
            bar.set_message(last);
            bar.inc(1);
        }
    }

    /// Clears the bar (printing the last reported losses as a plain line) and returns the average it/s.
    pub fn finish(&self, done: usize) -> f64 {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            if let Some((iter, l)) = self.last.take() {
                self.plain_line(iter, &l);
            }
        }
        self.rate(done)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_weighs_later_iterations_by_their_cost() {
        let mut p = Progress::new(4);
        p.set_costs(vec![1.0, 1.0, 4.0, 4.0]);
        p.inc(1, 0.5);
        p.inc(2, 0.5);
        // 0.5 s per unit: the next iteration (cost 4) takes 2 s, the two left 4 s.
        assert_eq!(p.speed_text(2), "2.00 s/it  ETA 4s");
        p.inc(3, 2.0);
        assert_eq!(p.speed_text(3), "2.00 s/it  ETA 2s");
    }

    #[test]
    fn eta_comes_from_measured_iterations_only() {
        let mut s = Speed::default();
        assert_eq!(s.text(100), "measuring speed…");
        // One slow first iteration (kernel compiles) is averaged with the next ones, never extrapolated alone.
        s.record(30.0);
        for _ in 0..SPEED_WINDOW {
            s.record(2.0);
        }
        assert_eq!(s.secs_per_iteration(), Some(2.0));
        assert_eq!(s.text(150), "2.00 s/it  ETA 5m00s");
        let mut fast = Speed::default();
        fast.record(0.005);
        assert_eq!(fast.text(1000), "200.0 it/s  ETA 5s");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(0.4), "0s");
        assert_eq!(duration_text(59.6), "1m00s");
        assert_eq!(duration_text(185.0), "3m05s");
        assert_eq!(duration_text(3725.0), "1h02m");
    }
}

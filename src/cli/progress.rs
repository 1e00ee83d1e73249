//! Progress reporting on stderr: an indicatif bar (iteration, it/s, ETA, current losses) when stderr is a
//! terminal, plain lines every `--print-every` iterations otherwise.

use std::cell::Cell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use neural_style::Losses;

pub struct Progress {
    total: usize,
    start: Instant,
    bar: Option<ProgressBar>,
    /// The last losses reported (printed as a plain line when the bar is cleared).
    last: Cell<Option<(usize, Losses)>>,
}

/// `1.234e5`-style numbers, short enough for one line.
fn sci(v: f64) -> String {
    format!("{v:.3e}")
}

pub fn losses_text(l: &Losses) -> String {
    format!("content {}  style {}  tv {}  total {}", sci(l.content), sci(l.style), sci(l.tv), sci(l.total))
}

impl Progress {
    /// A bar when stderr is a terminal (and `NEURAL_STYLE_NO_BAR` is unset), plain lines otherwise.
    pub fn new(total: usize) -> Self {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("NEURAL_STYLE_NO_BAR").is_none();
        let bar = if tty && total > 0 {
            let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:25}] {pos}/{len}  {per_sec}  ETA {eta}  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            Some(bar)
        } else {
            None
        };
        Progress { total, start: Instant::now(), bar, last: Cell::new(None) }
    }

    /// Restarts the it/s clock (call right before the first iteration).
    pub fn start(&mut self) {
        self.start = Instant::now();
        if let Some(bar) = &self.bar {
            bar.reset_elapsed();
            bar.reset_eta();
        }
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
        eprintln!("iter {iter:>w$}/{}  {}  {:.1} it/s", self.total, losses_text(l), self.rate(iter));
    }

    /// One iteration done.
    pub fn inc(&self) {
        if let Some(bar) = &self.bar {
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

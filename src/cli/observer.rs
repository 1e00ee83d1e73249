//! The main command's view of a painting: the library's job reports to this observer, which prints the stages
//! and the losses, writes the JSON-lines log and the `--save-every` snapshots, feeds the web preview and keeps
//! the last image Ctrl-C can save.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use neural_style::gpu::GpuContext;
use neural_style::image_io;
use neural_style::job::{Event, IterationLosses, Job, Observer};
use neural_style::{PlanarImage, SetupStage, StyleLoss};

use super::progress::{Progress, Stages};
use super::rescue::Rescue;
use super::web::{self, WebPreview};
use super::{CliError, StyleArgs};

/// Iterations slower than this keep a host copy of every iterate (Ctrl-C then never waits for the GPU).
const KEEP_EVERY_ITERATE_ABOVE: Duration = Duration::from_millis(250);

fn runtime(msg: impl Into<String>) -> CliError {
    CliError::Runtime(msg.into())
}

/// JSON-lines loss log.
pub struct LossLog {
    out: BufWriter<File>,
    path: PathBuf,
    /// The video frame the lines are of (`"frame"`), for a sequence's log.
    frame: Option<usize>,
}

impl LossLog {
    /// A new log, or with `append` (a resumed sequence) the existing one continued.
    pub fn open(path: &Path, append: bool) -> Result<Self, CliError> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .map_err(|e| runtime(format!("cannot write --log '{}': {e}", path.display())))?;
        Ok(LossLog { out: BufWriter::new(f), path: path.to_path_buf(), frame: None })
    }

    /// The lines that follow are frame `n`'s.
    pub fn set_frame(&mut self, n: usize) {
        self.frame = Some(n);
    }

    /// One line: `evals` only for L-BFGS (Adam makes one per iteration), `scale` only coarse to fine, `frame`
    /// only in a sequence.
    pub fn write(&mut self, r: &IterationLosses<'_>) -> Result<(), CliError> {
        let l = r.losses;
        let mut line = serde_json::json!({
            "iter": r.iteration,
            "content": l.content,
            "style": l.style,
            "tv": l.tv,
            "total": l.total,
            "ms": (r.ms * 1000.0).round() / 1000.0,
        });
        if let Some(t) = l.temporal {
            line["temporal"] = t.into();
        }
        if let Some(e) = r.evaluations {
            line["evals"] = e.into();
        }
        if let Some(s) = r.scale {
            line["scale"] = s.into();
        }
        if let Some(n) = self.frame {
            line["frame"] = n.into();
        }
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .map_err(|e| runtime(format!("cannot write --log '{}': {e}", self.path.display())))
    }
}

/// Where the CLI's reports go.
pub struct Sinks<'r> {
    pub stages: &'r Stages,
    pub log: Option<LossLog>,
    pub web: &'r WebPreview,
    pub rescue: &'r Rescue,
}

/// What the CLI does with a job's reports.
pub struct CliObserver<'r> {
    args: &'r StyleArgs,
    job: &'r Job,
    ctx: &'r GpuContext,
    stages: &'r Stages,
    pub progress: Progress,
    log: Option<LossLog>,
    web: &'r WebPreview,
    rescue: &'r Rescue,
    /// Keep every iterate on the host (a CPU adapter, or iterations slower than 250 ms).
    keep_each: bool,
    /// Test hook: destroy the device before this update, to exercise the device-lost path for real.
    lose_device_at: Option<usize>,
    /// Whether this iteration's losses are printed (its image is read with them).
    print_now: bool,
    last_tick: Instant,
}

impl<'r> CliObserver<'r> {
    pub fn new(args: &'r StyleArgs, job: &'r Job, ctx: &'r GpuContext, sinks: Sinks<'r>) -> Self {
        let Sinks { stages, log, web, rescue } = sinks;
        let mut progress = Progress::new(job.options().size.iterations);
        if job.scales().len() > 1 {
            // An iteration costs about its scale's pixels: the ETA counts the larger scales still to come.
            let costs = job
                .scales()
                .iter()
                .flat_map(|s| std::iter::repeat_n((s.content.width * s.content.height) as f64, s.iterations));
            progress.set_costs(costs.collect());
        }
        let lose_device_at = std::env::var("NEURAL_STYLE_TEST_LOSE_DEVICE_AT").ok().and_then(|v| v.parse().ok());
        Self {
            args,
            job,
            ctx,
            stages,
            progress,
            log,
            web,
            rescue,
            keep_each: ctx.info.device_type == wgpu::DeviceType::Cpu,
            lose_device_at,
            print_now: false,
            last_tick: Instant::now(),
        }
    }

    /// The first scale is ready: the initial image is what Ctrl-C can save; the preview and the run's line.
    fn started(&mut self, initial: PlanarImage) {
        let (a, job, ctx) = (self.args, self.job, self.ctx);
        self.rescue.keep(0, initial);
        let (content, styles) = (job.content(), job.styles());
        let (fw, fh) = (content.width, content.height);
        let size = job.options().size;
        let style_side = job.options().style_side();
        self.web.publish_run_info(&web::RunInfo {
            adapter: ctx.adapter_name(),
            width: fw,
            height: fh,
            iterations: size.iterations,
            style_scale: a.style_scale,
            style_side,
            content,
            styles,
            original_colors: a.original_colors,
            output: &a.output,
            sequence: None,
        });
        let first = &job.scales()[0];
        let scales_text = if job.scales().len() > 1 {
            let sides: Vec<String> = job.scales().iter().map(|s| s.side.to_string()).collect();
            let iters: Vec<String> = job.scales().iter().map(|s| s.iterations.to_string()).collect();
            let (w, h) = (first.content.width, first.content.height);
            format!(", coarse to fine: scales {} px, iterations {}; now {w}x{h}", sides.join("/"), iters.join("/"))
        } else {
            String::new()
        };
        let style = &job.options().style;
        let mut average_text = match style.average_decay {
            Some(d) => format!(", writing the average of the iterates (decay {d})"),
            None => String::new(),
        };
        if style.style_loss == StyleLoss::W2 {
            average_text.push_str(", Wasserstein-2 style loss");
        }
        // The margin at the job's size (each coarser scale has its own).
        let margin_text = match style.margin_for(fw, fh) {
            0 => String::new(),
            m => format!(" painted on a canvas with a {m} px margin (cropped; --margin 0 for none)"),
        };
        self.stages.line(format!(
            "{fw}x{fh}{margin_text}, {} style image{} ({style_side} px longest side), {} iterations{scales_text}\
             {average_text}{}",
            styles.len(),
            if styles.len() == 1 { "" } else { "s" },
            size.iterations,
            if ctx.info.device_type == wgpu::DeviceType::Cpu {
                " (the first one also compiles the kernels on this CPU adapter)"
            } else {
                ""
            }
        ));
        self.progress.start();
    }

    fn saves_snapshot(&self, k: usize) -> bool {
        self.args.save_every > 0 && k.is_multiple_of(self.args.save_every)
    }

    /// An iteration is done: the preview, the image kept for Ctrl-C, the speed, the `--save-every` snapshot.
    fn iteration(
        &mut self,
        k: usize,
        done: usize,
        losses: Option<(usize, &neural_style::Losses)>,
        image: Option<PlanarImage>,
    ) -> Result<(), CliError> {
        self.web.publish_progress(k, losses);
        if let Some(img) = image {
            self.web.offer_image(k, &img);
            self.rescue.keep(k, img);
        }
        // Measured after the read-back: that is when the iteration is known to be done.
        let secs = self.last_tick.elapsed();
        self.last_tick = Instant::now();
        self.keep_each |= secs > KEEP_EVERY_ITERATE_ABOVE;
        self.progress.inc(done, secs.as_secs_f64());
        if self.saves_snapshot(k) {
            let f = image_io::snapshot_path(&self.args.output, k);
            self.rescue.writer.write(&f, self.rescue.last().expect("read back for the snapshot").1)?;
        }
        Ok(())
    }
}

impl Observer for CliObserver<'_> {
    type Error = CliError;

    fn wants_losses(&mut self, i: usize) -> bool {
        self.print_now = self.args.print_every > 0 && i.is_multiple_of(self.args.print_every);
        self.print_now || self.log.is_some()
    }

    fn wants_image(&mut self, k: usize) -> bool {
        self.print_now || self.saves_snapshot(k) || self.keep_each
    }

    fn wants_final_losses(&mut self) -> bool {
        self.log.is_some() || self.args.print_every > 0
    }

    fn event(&mut self, event: Event<'_>) -> Result<(), CliError> {
        match event {
            Event::Scale { index: 0, .. } => {}
            Event::Scale { index, count, scale } => self.stages.line(format!(
                "scale {}/{count}: {}x{}, {} iterations (style images {} px)",
                index + 1,
                scale.content.width,
                scale.content.height,
                scale.iterations,
                scale.style_side
            )),
            // Blocks of a target: a line when the last is done, else at most one every 10 s.
            Event::Setup(stage @ SetupStage::Blocks { done, of, .. }) => {
                if done == of || self.last_tick.elapsed() >= Duration::from_secs(10) {
                    self.last_tick = Instant::now();
                    self.stages.line(stage);
                }
            }
            Event::Setup(stage) => self.stages.line(stage),
            Event::Ready { initial_image, .. } => {
                if let Some(img) = initial_image {
                    self.started(img);
                }
                self.last_tick = Instant::now();
            }
            Event::Update { iteration } => {
                if self.lose_device_at == Some(iteration) {
                    self.ctx.device.destroy();
                }
            }
            Event::Blocks { done, of } => self.progress.blocks(done, of),
            Event::Losses(r) => {
                if let Some(log) = &mut self.log {
                    log.write(&r)?;
                }
                // Decided by the iterate's own number: Adam's losses arrive one step late.
                if self.args.print_every > 0 && r.iteration.is_multiple_of(self.args.print_every) {
                    self.progress.report(r.iteration, r.losses);
                }
            }
            Event::Iteration { iteration, done, losses, image } => self.iteration(iteration, done, losses, image)?,
            Event::OptimizerStopped { at, why } => {
                let n = self.job.options().size.iterations;
                self.stages.line(format!("L-BFGS stopped after {at} of {n} iterations: {why}"));
            }
            Event::FinalLosses(r) => {
                if let Some(log) = &mut self.log {
                    log.write(&r)?;
                }
                if self.args.print_every > 0 {
                    self.progress.report(r.iteration, r.losses);
                }
                self.web.publish_progress(r.iteration, Some((r.iteration, r.losses)));
            }
        }
        Ok(())
    }
}

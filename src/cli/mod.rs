//! The command-line interface: `neural-style CONTENT STYLE [STYLE ...] [OPTIONS]` and the `devices`, `bench`
//! and `selftest` subcommands. It drives the engine only through the library API ([`neural_style::job::Job`]).
//!
//! Exit codes: 0 success, 1 runtime error (files, weights, GPU), 2 usage error (bad flag or value),
//! 130 interrupted by Ctrl-C (after writing the current image). Errors are one line on stderr: `error: ...`.

mod args;
mod observer;
mod outputs;
mod progress;
mod rescue;
mod run;
mod video;
mod web;

use std::process::ExitCode;

use clap::Parser;
use neural_style::error::one_line;

pub use args::{BenchArgs, Cli, Command, FlowArgs, SelftestArgs, StyleArgs, VideoArgs};

/// Exit code after Ctrl-C (128 + SIGINT), used once the current image is written.
pub const EXIT_INTERRUPTED: u8 = 130;

/// A failure of the CLI, mapped to the exit code.
#[derive(Debug)]
pub enum CliError {
    /// A bad flag or flag value: exit 2.
    Usage(String),
    /// Files, weights, GPU: exit 1.
    Runtime(String),
}

impl From<neural_style::Error> for CliError {
    fn from(e: neural_style::Error) -> Self {
        match e {
            neural_style::Error::InvalidOption(m) => CliError::Usage(m),
            other => CliError::Runtime(other.to_string()),
        }
    }
}

/// How a successful command ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Stopped by Ctrl-C; the current image was written.
    Interrupted,
}

pub fn main() -> ExitCode {
    // clap prints its own usage errors (exit 2) and --help/--version (exit 0).
    let cli = Cli::try_parse().unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Some(Command::Devices) => devices(),
        Some(Command::Bench(a)) => bench(&a),
        Some(Command::Selftest(a)) => selftest(&a),
        Some(Command::Video(a)) => video::run(&a),
        Some(Command::Flow(a)) => flow(&a),
        None => run::run(&cli.style),
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted) => ExitCode::from(EXIT_INTERRUPTED),
        Err(CliError::Usage(m)) => {
            eprintln!("error: {}", one_line(&m));
            ExitCode::from(2)
        }
        Err(CliError::Runtime(m)) => {
            eprintln!("error: {}", one_line(&m));
            ExitCode::from(1)
        }
    }
}

/// `neural-style devices`: every adapter wgpu sees.
fn devices() -> Result<Outcome, CliError> {
    let adapters = neural_style::gpu::list_adapters();
    if adapters.is_empty() {
        return Err(CliError::Runtime(
            "no GPU adapter found (is a Vulkan, Metal, DX12 or GL driver installed?)".into(),
        ));
    }
    for a in &adapters {
        println!("{a}");
    }
    Ok(Outcome::Done)
}

/// `neural-style bench`: one JSON line on stdout.
fn bench(args: &BenchArgs) -> Result<Outcome, CliError> {
    let lib_args = neural_style::bench::BenchArgs {
        size: args.size,
        iterations: args.iterations,
        adapter: args.adapter.clone(),
        weights: args.weights.clone(),
        precision: args.precision.into(),
        style_loss: args.style_loss.into(),
        margin: args.margin,
        max_memory: args.max_memory.map(|gb| (gb * 1e9) as u64),
        tile_size: args.tile_size.map(|px| px as usize),
    };
    let line = match (args.plan_only, args.min_scale) {
        _ if args.masks => serde_json::to_string(&neural_style::bench::masks(&lib_args)?),
        (true, _) => {
            serde_json::to_string(&neural_style::bench::plan(&lib_args, args.max_binding_mib.map(|m| m << 20))?)
        }
        (false, Some(min)) => serde_json::to_string(&neural_style::bench::run_job(&lib_args, min)?),
        (false, None) => serde_json::to_string(&neural_style::bench::run(&lib_args)?),
    };
    let line = line.map_err(|e| CliError::Runtime(format!("bench report: {e}")))?;
    println!("{line}");
    Ok(Outcome::Done)
}

/// `neural-style flow A B -o F.flo`: the flow from A to B, and the GPU's time per pair.
fn flow(args: &FlowArgs) -> Result<Outcome, CliError> {
    use neural_style::image_io;
    let load =
        |p: &std::path::Path| image_io::load_image(p).map_err(|e| CliError::Runtime(format!("'{}': {e}", p.display())));
    let (mut a, mut b) = (load(&args.first)?, load(&args.second)?);
    if let Some(px) = args.size {
        a = image_io::resize_longest(&a, px as usize);
        b = image_io::resize_exact(&b, a.width, a.height);
    }
    if (a.width, a.height) != (b.width, b.height) {
        return Err(CliError::Runtime(format!(
            "the images differ in size ({}x{} and {}x{})",
            a.width, a.height, b.width, b.height
        )));
    }
    let ctx = neural_style::gpu::GpuContext::new(&neural_style::gpu::GpuOptions {
        adapter: args.adapter.clone(),
        ..Default::default()
    })?;
    let estimator = neural_style::flow::FlowEstimator::new(&ctx, a.width, a.height)?;
    let flow = estimator.flow(&a.data, &b.data)?;
    let mut times = Vec::with_capacity(args.repeat);
    for _ in 0..args.repeat {
        let t = std::time::Instant::now();
        estimator.flow(&a.data, &b.data)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    neural_style::flow::write_flo(&args.output, a.width, a.height, &flow)?;
    if !times.is_empty() {
        let median = neural_style::bench::median(&times);
        eprintln!(
            "{}x{} on {}: ms per pair: {median:.2} (median of {}, upload and read-back included)",
            a.width,
            a.height,
            ctx.adapter_name(),
            times.len()
        );
    }
    eprintln!("wrote '{}'", args.output.display());
    Ok(Outcome::Done)
}

/// `neural-style selftest`: the table on stdout; exit 1 when any check fails.
fn selftest(args: &SelftestArgs) -> Result<Outcome, CliError> {
    let lib_args = neural_style::selftest::SelftestArgs {
        adapter: args.adapter.clone(),
        all_adapters: args.all_adapters,
        full: args.full,
    };
    let report = neural_style::selftest::run(&lib_args).map_err(|e| CliError::Runtime(e.to_string()))?;
    println!("{report}");
    if !args.full {
        println!("(the first-use set a run checks; `neural-style selftest --full` runs every kernel case and whole iterations)");
    }
    if report.passed() {
        Ok(Outcome::Done)
    } else {
        Err(CliError::Runtime("selftest failed: see the table above".into()))
    }
}

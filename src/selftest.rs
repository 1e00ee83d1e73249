//! `neural-style selftest`: the kernel conformance checks (the same code the test suite runs, at small shapes)
//! plus whole iterations against the CPU reference, on one adapter or on every adapter wgpu sees. Prints a table
//! of pass/fail with the largest error per check and adapter.

use std::fmt;
use std::time::Instant;

use crate::gpu::{self, GpuContext, GpuOptions};
use crate::verify::{self as check};

#[derive(Clone, Debug, Default)]
pub struct SelftestArgs {
    /// Substring of the adapter name (default: the adapter the engine would pick).
    pub adapter: Option<String>,
    /// Every adapter wgpu sees.
    pub all_adapters: bool,
    /// Every conformance case at its quick scale and whole iterations (minutes on a CPU adapter), instead of
    /// the first-use set (seconds).
    pub full: bool,
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub adapter: String,
    pub backend: String,
    pub check: String,
    /// `Ok(max error)` or the failure.
    pub result: Result<f64, String>,
    pub ms: f64,
}

/// An adapter that could not be tested, and why (e.g. refused for missing limits).
#[derive(Clone, Debug)]
pub struct Skipped {
    pub adapter: String,
    pub backend: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub refused: Vec<Skipped>,
    /// Checks an adapter lacks the hardware for (the tensor-core kernels without cooperative matrices).
    pub not_run: Vec<Skipped>,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.result.is_ok())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let aw = self.rows.iter().map(|r| r.adapter.len()).chain([7]).max().unwrap_or(7);
        let cw = self.rows.iter().map(|r| r.check.len()).chain([5]).max().unwrap_or(5);
        writeln!(
            f,
            "{:aw$}  {:7}  {:cw$}  {:6}  {:>9}  {:>8}",
            "adapter", "backend", "check", "result", "max error", "ms"
        )?;
        for r in &self.rows {
            let (res, err) = match &r.result {
                Ok(e) => ("pass".to_string(), format!("{e:.2e}")),
                Err(_) => ("FAIL".to_string(), "-".to_string()),
            };
            writeln!(f, "{:aw$}  {:7}  {:cw$}  {:6}  {:>9}  {:>8.1}", r.adapter, r.backend, r.check, res, err, r.ms)?;
        }
        for r in self.rows.iter().filter(|r| r.result.is_err()) {
            writeln!(f, "FAIL on {} ({}): {}", r.adapter, r.backend, r.result.as_ref().unwrap_err())?;
        }
        for s in &self.refused {
            writeln!(f, "not tested: {} ({}): {}", s.adapter, s.backend, s.reason)?;
        }
        for s in &self.not_run {
            writeln!(f, "not run on {} ({}): {}", s.adapter, s.backend, s.reason)?;
        }
        let failed = self.rows.iter().filter(|r| r.result.is_err()).count();
        write!(f, "{} passed, {} failed", self.rows.len() - failed, failed)
    }
}

/// The first-use set ([`crate::first_use`]) of the adapter's own kernels and, where it has them, of its tensor
/// cores: what a run checks before it trusts an adapter, in seconds.
fn first_use_checks(ctx: &GpuContext) -> Vec<check::Case> {
    let facts = crate::kernels::AdapterFacts::of(ctx);
    let mut sets = crate::first_use::f32_checks(&facts);
    if let Some(config) = crate::kernels::coop::config(&facts) {
        sets.extend(crate::first_use::tensor_core_checks(config, false));
    }
    sets.into_iter()
        .map(|(name, run)| check::Case {
            kernel: "first use",
            checks: Vec::new(),
            name,
            needs_fragment: None,
            run: Box::new(move |ctx| run(ctx)),
        })
        .collect()
}

/// The full set, small enough for a CPU adapter (minutes on lavapipe): the shared kernel cases at their quick
/// scale, then whole iterations against the reference (also on the tensor cores where `ctx` has them).
fn checks(ctx: &GpuContext, full: bool) -> Vec<check::Case> {
    if !full {
        return first_use_checks(ctx);
    }
    let mut v = check::cases(check::Scale::Quick);
    v.push(check::Case {
        checks: Vec::new(),
        kernel: "stylizer",
        name: "full iterations 20x17 (x2)".into(),
        needs_fragment: None,
        run: Box::new(|ctx| check::network::full_iterations(ctx, 20, 17, 2, 20)),
    });
    if let Some(&fragment) = ctx.coop_fragments.iter().max() {
        v.push(check::Case {
            checks: Vec::new(),
            kernel: "stylizer",
            name: "full iteration 20x17 on tensor cores".into(),
            needs_fragment: Some(fragment as usize),
            run: Box::new(|ctx| check::network::full_iterations_f16(ctx, 20, 17, 20, crate::Precision::F16)),
        });
    }
    v
}

/// Runs every check on `ctx` (the full set or the first-use set), appending rows.
pub fn run_on(ctx: &GpuContext, full: bool, report: &mut Report) {
    let backend = format!("{:?}", ctx.info.backend);
    let (mut lacking, mut fragments) = (0, Vec::new());
    for case in checks(ctx, full) {
        if case.unavailable(ctx).is_some() {
            lacking += 1;
            fragments.extend(case.needs_fragment.filter(|f| !fragments.contains(f)));
            continue;
        }
        let t = Instant::now();
        // A panic inside wgpu or a kernel wrapper is a failure of this check, not of the whole selftest.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(ctx)))
            .unwrap_or_else(|_| Err("panicked (see stderr)".into()));
        let name = case.name;
        report.rows.push(Row {
            adapter: ctx.adapter_name().to_string(),
            backend: backend.clone(),
            check: name,
            result,
            ms: t.elapsed().as_secs_f64() * 1e3,
        });
    }
    if lacking > 0 {
        let sides: Vec<String> = fragments.iter().map(|f| format!("{f}x{f}")).collect();
        report.not_run.push(Skipped {
            adapter: ctx.adapter_name().to_string(),
            backend,
            reason: format!(
                "{lacking} tensor-core checks: no {} f16 cooperative matrices through wgpu (their software twin ran)",
                sides.join(" or ")
            ),
        });
    }
}

pub fn run(args: &SelftestArgs) -> crate::Result<Report> {
    let mut report = Report::default();
    if args.all_adapters {
        let adapters = gpu::enumerate_adapters();
        if adapters.is_empty() {
            return Err(crate::Error::NoAdapter(String::new()));
        }
        for a in adapters {
            let info = a.get_info();
            match GpuContext::from_adapter(a) {
                Ok(ctx) => run_on(&ctx, args.full, &mut report),
                Err(e) => report.refused.push(Skipped {
                    adapter: info.name,
                    backend: format!("{:?}", info.backend),
                    reason: e.to_string(),
                }),
            }
        }
    } else {
        let ctx = GpuContext::new(&GpuOptions { adapter: args.adapter.clone(), ..Default::default() })?;
        run_on(&ctx, args.full, &mut report);
    }
    Ok(report)
}

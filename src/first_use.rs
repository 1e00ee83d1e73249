//! The first-use check: before the first run on an adapter + driver + this version of the engine, the kernels
//! the run would use are checked against the f64 reference (the conformance cases of [`crate::verify`] at small
//! shapes): one conv of each variant the network picks, forward and backward-data, the Gram, the style gradient,
//! both poolings and Adam; where tensor cores would be used, every tensor-core GEMM use (conv forward,
//! backward-data, Gram, style gradient) at shapes that fill whole tiles in both directions and leave ragged
//! edges. The verdict ([`decide`], a pure function) is kept in the user's cache directory, so later runs pay
//! nothing; a failure is said in one line and the run falls back to kernels that passed, or stops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::gpu::GpuContext;
use crate::kernels::coop::CoopConfig;
use crate::kernels::{conv, gram, loss, pool::PoolShape, AdapterFacts};
use crate::verify::{self, Check};
use neural_style_weights::VGG16_CONV_LAYERS;

/// Environment variable naming the directory the verdicts are kept in (default: the user's cache directory's
/// `neural-style`; empty: keep nothing on disk).
pub const CACHE_ENV: &str = "NEURAL_STYLE_CACHE_DIR";

/// A check of the first-use set and the kernel (variant, shape) it exercises.
pub type NamedCheck = (String, Box<dyn Fn(&GpuContext) -> Check + Send + Sync>);

/// One check of the first-use set: the kernel it exercises and its result (max error, or why it failed).
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub kernel: String,
    pub result: Check,
}

/// Which kernels a run uses after the first-use check.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Decision {
    /// The tensor-core kernels (and the f32 ones for the rest) passed.
    TensorCores,
    /// The adapter's own f32 kernels; `why_not_tensor_cores` when tensor cores were checked and failed.
    F32 { why_not_tensor_cores: Option<String> },
    /// The adapter's own kernel family failed, the other (CPU-shaped on a GPU, or GPU-shaped on a CPU adapter)
    /// passed: slower, but right.
    OtherFamily { failed: String },
    /// Nothing that was checked can be trusted on this adapter.
    Stop { failed: String },
}

/// The first failure among `outcomes`, as "kernel: error".
fn first_failure(outcomes: &[Outcome]) -> Option<String> {
    outcomes.iter().find_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.kernel)))
}

/// The verdict from the outcomes of the adapter's own f32 kernels, of the other family (checked only when the own
/// failed: `None` otherwise), and of the tensor-core kernels (`None` when the run would not use them).
pub fn decide(own: &[Outcome], other: Option<&[Outcome]>, tensor_cores: Option<&[Outcome]>) -> Decision {
    if let Some(failed) = first_failure(own) {
        return match other {
            Some(o) if !o.is_empty() && first_failure(o).is_none() => Decision::OtherFamily { failed },
            _ => Decision::Stop { failed },
        };
    }
    match tensor_cores {
        None => Decision::F32 { why_not_tensor_cores: None },
        Some(t) => match first_failure(t) {
            None if !t.is_empty() => Decision::TensorCores,
            None => Decision::F32 { why_not_tensor_cores: Some("no tensor-core check ran".into()) },
            why => Decision::F32 { why_not_tensor_cores: why },
        },
    }
}

/// The f32 checks for an adapter with these facts (`facts.coop` ignored): each distinct conv variant the network
/// picks over VGG16's layers, forward and backward-data, at a small size with that layer's channels; the Gram and
/// the style gradient; max and average pooling; Adam.
pub fn f32_checks(facts: &AdapterFacts) -> Vec<NamedCheck> {
    let facts = AdapterFacts { coop: None, ..facts.clone() };
    let mut v: Vec<NamedCheck> = Vec::new();
    let (mut forward, mut backward) = (Vec::new(), Vec::new());
    for (i, &(_, cin, cout)) in VGG16_CONV_LAYERS.iter().enumerate() {
        // 11x7: odd sides, several tiles of the CPU kernel's rows, a ragged GEMM tile.
        let s = conv::ConvShape { cin, cout, height: 11, width: 7 };
        let f = conv::forward_variant(s, &facts);
        if !forward.contains(&f) {
            forward.push(f);
            let seed = 2100 + i as u64;
            v.push((
                format!("conv3x3 {f:?} {cin}->{cout}"),
                Box::new(move |ctx| verify::conv::conv3x3(ctx, s, true, f, seed)),
            ));
        }
        let b = conv::backward_variant(s, &facts);
        if !backward.contains(&b) {
            backward.push(b);
            let seed = 2200 + i as u64;
            v.push((
                format!("conv3x3_backward_data {b:?} {cin}->{cout}"),
                Box::new(move |ctx| verify::conv::conv3x3_backward_data(ctx, s, b, false, seed)),
            ));
        }
    }
    let g = gram::variant(&facts);
    v.push((format!("gram {g:?}"), Box::new(move |ctx| verify::gram::gram(ctx, 64, 17, 9, g, 2300))));
    let sg = loss::style_grad_variant(&facts);
    v.push((format!("style_grad {sg:?}"), Box::new(move |ctx| verify::losses::style_grad(ctx, 64, 17, 9, sg, 2400))));
    let p = PoolShape { channels: 64, height: 9, width: 13 };
    v.push(("maxpool2x2".into(), Box::new(move |ctx| verify::pool::pool(ctx, p, false, true, 2500))));
    v.push(("avgpool2x2".into(), Box::new(move |ctx| verify::pool::pool(ctx, p, true, false, 2501))));
    v.push(("adam".into(), Box::new(|ctx| verify::optim::adam(ctx, 1000, 2600))));
    v
}

/// The shapes of the tensor-core checks for tiles of side `tile`: GEMM rows one whole tile and a ragged half
/// (`tile + tile/2 + 3`), and pixels two whole tiles and a ragged part (13 rows of `2·tile/13 + 4` columns).
pub fn tensor_core_shape(tile: usize) -> (usize, usize, usize) {
    (tile + tile / 2 + 3, 13, 2 * tile / 13 + 4)
}

/// The tensor-core checks with `config` (`twin`: its software twin, which runs anywhere): conv forward and
/// backward-data, Gram and the style gradient, against the f64 reference at [`tensor_core_shape`]; and where
/// narrow convs take the half tile ([`CoopConfig::for_rows`]), conv forward and backward-data on it with 64 rows
/// (conv1_2's shape: whole tiles in rows, ragged in pixels).
pub fn tensor_core_checks(config: CoopConfig, twin: bool) -> Vec<NamedCheck> {
    let mut v = tensor_core_checks_at(config, twin);
    let half = config.for_rows(64);
    if half != config {
        let c = conv::ConvVariant::Coop { config: half, twin };
        let (h, w) = (13, 2 * half.tile() / 13 + 4);
        let forward = conv::ConvShape { cin: 64, cout: 64, height: h, width: w };
        let backward = conv::ConvShape { cin: 64, cout: 128, height: h, width: w };
        let name = |k: &str| format!("{k} on tensor cores, {}x{} tile, 64 channels, {h}x{w}", half.tile(), half.tile());
        v.push((name("conv3x3"), Box::new(move |ctx| verify::conv::conv3x3(ctx, forward, true, c, 2704))));
        v.push((
            name("conv3x3_backward_data"),
            Box::new(move |ctx| verify::conv::conv3x3_backward_data(ctx, backward, c, false, 2705)),
        ));
    }
    v
}

fn tensor_core_checks_at(config: CoopConfig, twin: bool) -> Vec<NamedCheck> {
    let (rows, h, w) = tensor_core_shape(config.tile());
    let c = conv::ConvVariant::Coop { config, twin };
    let forward = conv::ConvShape { cin: 64, cout: rows, height: h, width: w };
    let backward = conv::ConvShape { cin: rows, cout: 64, height: h, width: w };
    let g = gram::GramVariant::Coop { config, twin };
    let sg = loss::StyleGradVariant::Coop { config, twin };
    let name = |k: &str, c: usize| format!("{k} on tensor cores, {c} channels, {h}x{w}");
    vec![
        (name("conv3x3", rows), Box::new(move |ctx| verify::conv::conv3x3(ctx, forward, true, c, 2700))),
        (
            name("conv3x3_backward_data", rows),
            Box::new(move |ctx| verify::conv::conv3x3_backward_data(ctx, backward, c, false, 2701)),
        ),
        (name("gram", rows), Box::new(move |ctx| verify::gram::gram(ctx, rows, h, w, g, 2702))),
        (name("style_grad", rows), Box::new(move |ctx| verify::losses::style_grad(ctx, rows, h, w, sg, 2703))),
    ]
}

/// Runs checks; a panic inside one is its failure. Stops at the first failure (the rest cannot change the
/// verdict).
pub fn run(ctx: &GpuContext, checks: &[NamedCheck]) -> Vec<Outcome> {
    let mut out = Vec::new();
    for (kernel, check) in checks {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(ctx)))
            .unwrap_or_else(|_| Err("panicked".into()))
            .and_then(|e| ctx.check().map(|()| e).map_err(|e| e.to_string()));
        let failed = result.is_err();
        out.push(Outcome { kernel: kernel.clone(), result });
        if failed {
            break;
        }
    }
    out
}

/// A fingerprint of every kernel's WGSL (a development build with changed kernels at the same version is checked
/// afresh; std's hasher may differ between Rust releases, which costs only a re-check).
fn kernels_fingerprint() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for source in fingerprinted_sources() {
        source.hash(&mut h);
    }
    h.finish()
}

/// The WGSL the fingerprint hashes: every plain kernel as it is compiled (its file composed with its shared
/// pieces, the uniform's declaration generated from Rust, the frame constants and the bindings), every template
/// with its shared pieces and uniform, and the GEMM cores a variant composes in place of the tiled one.
fn fingerprinted_sources() -> Vec<std::borrow::Cow<'static, str>> {
    use std::borrow::Cow;
    let mut sources = Vec::new();
    for k in crate::kernels::registry() {
        match crate::kernels::source(k.name) {
            Some(composed) => sources.push(Cow::Owned(composed)),
            None => {
                sources.extend([Cow::Borrowed(k.wgsl), Cow::Owned((k.params)())]);
                sources.extend(k.shared.iter().map(|p| Cow::Borrowed(*p)));
            }
        }
    }
    sources.extend(crate::kernels::shared::ALTERNATIVE_CORES.iter().map(|c| Cow::Borrowed(*c)));
    sources
}

/// The cache key: adapter, backend, driver, the kernel family, this binary's version and its kernels.
pub fn cache_key(ctx: &GpuContext, tensor_cores: Option<CoopConfig>) -> String {
    let i = &ctx.info;
    let cores =
        tensor_cores.map_or("no tensor cores".to_string(), |c| format!("tensor cores {}x{}", c.tile(), c.tile()));
    format!(
        "{} | {:?} | {} {} | {:?} kernels | {cores} | neural-style {} | kernels {:016x}",
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        ctx.kernels_for,
        env!("CARGO_PKG_VERSION"),
        kernels_fingerprint()
    )
}

/// Where verdicts are kept: `$NEURAL_STYLE_CACHE_DIR`, else the user's cache directory; None: nowhere.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os(CACHE_ENV) {
        Some(d) if d.is_empty() => None,
        Some(d) => Some(PathBuf::from(d)),
        None => dirs::cache_dir().map(|d| d.join("neural-style")),
    }
}

const CACHE_FILE: &str = "first-use.json";

/// Whether a verdict is kept in the cache for later runs: a pass, or f32 instead of tensor cores (both leave the
/// run painting correctly); not "stop", which is checked again next run (0.4 s), so that a failure that does
/// not repeat (a driver's bad moment) does not stop every run until the binary, driver or kernels change.
fn kept_across_runs(d: &Decision) -> bool {
    !matches!(d, Decision::Stop { .. })
}

fn read_cache(dir: &Path) -> BTreeMap<String, Decision> {
    std::fs::read(dir.join(CACHE_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Adds a verdict to the cache file (written whole to a temporary file and renamed: never half-written). A
/// cache that cannot be written costs a re-check next time, nothing else.
fn write_cache(dir: &Path, key: &str, decision: &Decision) {
    let mut all = read_cache(dir);
    all.insert(key.to_string(), decision.clone());
    let Ok(json) = serde_json::to_vec_pretty(&all) else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    // Unique per process and thread: two writers never share a temporary file; the last rename wins whole.
    let tmp = dir.join(format!("{CACHE_FILE}.{}.{:?}.tmp", std::process::id(), std::thread::current().id()));
    if std::fs::write(&tmp, json).is_ok() && std::fs::rename(&tmp, dir.join(CACHE_FILE)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The verdict for this adapter: from this process's memory, else the cache directory, else by running the
/// checks (and keeping the verdict, unless it is to stop: [`kept_across_runs`]). `tensor_cores`: the tiling a run would use them with. The second value
/// says whether this process ran the checks.
///
/// A device lost during the checks is an error: lost in the f32 checks, nothing is kept (the next run checks
/// again); lost in the tensor-core checks, the verdict is f32 and it is kept, so the device opened again runs
/// without what lost it.
pub fn verdict(
    ctx: &GpuContext,
    facts: &AdapterFacts,
    tensor_cores: Option<CoopConfig>,
) -> crate::Result<(Decision, bool)> {
    // The verdict and whether this process ran its checks.
    static MEMORY: OnceLock<Mutex<BTreeMap<String, (Decision, bool)>>> = OnceLock::new();
    let key = cache_key(ctx, tensor_cores);
    let memory = MEMORY.get_or_init(Default::default);
    if let Some(d) = memory.lock().unwrap().get(&key) {
        return Ok(d.clone());
    }
    let dir = cache_dir();
    if let Some(d) = dir.as_deref().and_then(|d| read_cache(d).remove(&key)).filter(kept_across_runs) {
        memory.lock().unwrap().insert(key, (d.clone(), false));
        return Ok((d, false));
    }
    let lost = |outcomes: &[Outcome], what: &str| match ctx.check() {
        Err(crate::Error::DeviceLost(why)) => {
            let at = first_failure(outcomes).unwrap_or_default();
            Some(format!("{why} — during the first-use check of the {what} ({at})"))
        }
        _ => None,
    };
    let own = run(ctx, &f32_checks(facts));
    if let Some(why) = lost(&own, "f32 kernels") {
        return Err(crate::Error::DeviceLost(format!("{why}; run again to repeat it")));
    }
    let other = match first_failure(&own) {
        None => None,
        Some(_) => {
            let flipped = if facts.is_cpu() { wgpu::DeviceType::DiscreteGpu } else { wgpu::DeviceType::Cpu };
            let other = run(ctx, &f32_checks(&AdapterFacts { device_type: flipped, ..facts.clone() }));
            if let Some(why) = lost(&other, "other f32 kernels") {
                return Err(crate::Error::DeviceLost(format!("{why}; run again to repeat it")));
            }
            Some(other)
        }
    };
    let cores = tensor_cores.map(|c| run(ctx, &tensor_core_checks(c, false)));
    let cores_lost = cores.as_deref().and_then(|c| lost(c, "tensor-core kernels"));
    let d = match &cores_lost {
        Some(why) => Decision::F32 { why_not_tensor_cores: Some(why.clone()) },
        None => decide(&own, other.as_deref(), cores.as_deref()),
    };
    if let (Some(dir), true) = (&dir, kept_across_runs(&d)) {
        write_cache(dir, &key, &d);
    }
    memory.lock().unwrap().insert(key, (d.clone(), true));
    match cores_lost {
        Some(why) => Err(crate::Error::DeviceLost(format!(
            "{why}; the tensor cores are off for this adapter from now on (kept in the cache): run again"
        ))),
        None => Ok((d, true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_is_checked_again_next_run_a_pass_is_kept() {
        assert!(kept_across_runs(&Decision::TensorCores));
        assert!(kept_across_runs(&Decision::OtherFamily { failed: "conv3x3 Tiled".into() }));
        assert!(kept_across_runs(&Decision::F32 { why_not_tensor_cores: None }));
        assert!(kept_across_runs(&Decision::F32 { why_not_tensor_cores: Some("wrong".into()) }));
        assert!(!kept_across_runs(&Decision::Stop { failed: "conv3x3".into() }));
    }

    /// Every WGSL file in `kernels/` is hashed into the verdict's key (a changed kernel is checked afresh): a
    /// kernel's own file through the registry, a shared piece through a kernel's list or the alternative cores.
    #[test]
    fn the_fingerprint_covers_every_wgsl_file() {
        let hashed = fingerprinted_sources();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
        for dir in [root.clone(), root.join("shared")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "wgsl") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let covered = hashed.iter().any(|h| h.contains(text.as_str()));
                    assert!(covered, "{} is not fingerprinted", path.display());
                }
            }
        }
        // The uniform's generated declaration too: a field added in Rust changes the compiled kernel.
        let conv = crate::kernels::source("conv3x3").unwrap();
        assert!(conv.contains("tile_offset") && hashed.contains(&std::borrow::Cow::Owned(conv)));
    }

    fn pass(k: &str) -> Outcome {
        Outcome { kernel: k.into(), result: Ok(1e-6) }
    }
    fn fail(k: &str) -> Outcome {
        Outcome { kernel: k.into(), result: Err("max error 3.1e2 at index 7".into()) }
    }

    #[test]
    fn first_use_decision_passes_only_what_passed() {
        let good = [pass("conv3x3 Tiled"), pass("gram Tiled")];
        assert_eq!(decide(&good, None, None), Decision::F32 { why_not_tensor_cores: None });
        assert_eq!(decide(&good, None, Some(&[pass("conv3x3 on tensor cores")])), Decision::TensorCores);
        // A wrong tensor-core result: f32, and why.
        let d = decide(&good, None, Some(&[pass("conv3x3 on tensor cores"), fail("gram on tensor cores")]));
        let Decision::F32 { why_not_tensor_cores: Some(why) } = d else { panic!("{d:?}") };
        assert!(why.contains("gram on tensor cores") && why.contains("3.1e2"), "{why}");
        // No tensor-core check ran: never trusted.
        assert!(matches!(decide(&good, None, Some(&[])), Decision::F32 { why_not_tensor_cores: Some(_) }));
    }

    #[test]
    fn first_use_decision_falls_back_to_the_other_family_or_stops() {
        let own = [pass("conv3x3 Tiled"), fail("conv3x3_backward_data Narrow")];
        let other_good = [pass("conv3x3 Cpu"), pass("gram Cpu")];
        let d = decide(&own, Some(&other_good), Some(&[pass("conv3x3 on tensor cores")]));
        assert_eq!(
            d,
            Decision::OtherFamily { failed: "conv3x3_backward_data Narrow: max error 3.1e2 at index 7".into() }
        );
        let other_bad = [pass("conv3x3 Cpu"), fail("adam")];
        assert!(matches!(decide(&own, Some(&other_bad), None), Decision::Stop { .. }));
        assert!(matches!(decide(&own, None, None), Decision::Stop { .. }));
        assert!(matches!(decide(&own, Some(&[]), None), Decision::Stop { .. }));
    }

    #[test]
    fn first_use_tensor_core_shapes_fill_whole_tiles_and_leave_ragged_edges() {
        for tile in [32, 64, 128] {
            let (rows, h, w) = tensor_core_shape(tile);
            assert!(rows > tile && rows % tile != 0, "rows {rows} for tile {tile}");
            assert!(h * w > 2 * tile && (h * w) % tile != 0, "pixels {} for tile {tile}", h * w);
        }
    }

    #[test]
    fn first_use_f32_set_covers_each_variant_the_network_picks() {
        let gpu = f32_checks(&AdapterFacts::example_gpu());
        let names: Vec<&str> = gpu.iter().map(|c| c.0.as_str()).collect();
        for want in ["conv3x3 Tiled", "conv3x3_backward_data Tiled", "conv3x3_backward_data Narrow", "gram Tiled"] {
            assert!(names.iter().any(|n| n.starts_with(want)), "{want} missing from {names:?}");
        }
        for want in ["style_grad Tiled", "maxpool2x2", "avgpool2x2", "adam"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let cpu = f32_checks(&AdapterFacts::example_lavapipe());
        assert!(cpu.iter().any(|c| c.0.starts_with("conv3x3 Cpu")) && cpu.iter().any(|c| c.0 == "gram Cpu"));
    }
}

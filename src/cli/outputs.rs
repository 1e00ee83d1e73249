//! What the main command checks of its paths before any work: no output overwrites an input, an existing file
//! is replaced only with `--overwrite`, and every output can be written.

use std::path::{Path, PathBuf};

use neural_style::image_io;

use super::{CliError, StyleArgs};

/// Snapshots beyond this many are not checked one by one before the run (`--save-every 1 --iterations 10^9`).
const MAX_SNAPSHOT_PRECHECK: usize = 100_000;

fn runtime(msg: impl Into<String>) -> CliError {
    CliError::Runtime(msg.into())
}

/// The path as it is on disk (symlinks and `..` resolved), also for a file that does not exist yet.
pub(super) fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => dir.canonicalize().map(|d| d.join(name)).unwrap_or(abs.clone()),
        _ => abs,
    }
}

/// Whether two paths name the same file (canonical paths, and on Unix the same device and inode).
pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    if canonical(a) == canonical(b) {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    false
}

/// The files the run reads, with a name for messages.
pub(super) fn inputs(a: &StyleArgs, weights: &Path) -> Vec<(String, PathBuf)> {
    let mut v = vec![("the content image".to_string(), a.content.clone().expect("validated"))];
    for s in &a.styles {
        v.push(("a style image".to_string(), s.clone()));
    }
    if let Some(p) = &a.init_image {
        v.push(("the --init-image".to_string(), p.clone()));
    }
    v.push(("the weights file".to_string(), weights.to_path_buf()));
    v
}

/// Refuses, before any work, every output that would overwrite an input, an existing file without
/// `--overwrite`, or cannot be written.
pub fn check_outputs(a: &StyleArgs, iterations: usize, weights: &Path) -> Result<(), CliError> {
    let ins = inputs(a, weights);
    let out = &a.output;
    let shown = out.display();
    if out.is_dir() {
        return Err(runtime(format!("output '{shown}' is a directory; give a file name such as out.png")));
    }
    for (what, p) in &ins {
        if same_file(out, p) {
            return Err(runtime(format!("output '{shown}' is {what}; choose another --output")));
        }
    }
    if out.exists() && !a.overwrite {
        return Err(runtime(format!("output '{shown}' already exists; pass --overwrite to replace it")));
    }
    // Probe the directory the way the atomic write will use it (a temporary file, removed at once).
    if let Err(e) = tempfile::NamedTempFile::new_in(image_io::output_dir(out)) {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "its directory does not exist".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        return Err(runtime(format!("cannot write output '{shown}': {reason}")));
    }
    if a.save_every > 0 && iterations / a.save_every <= MAX_SNAPSHOT_PRECHECK {
        for k in (a.save_every..=iterations).step_by(a.save_every) {
            let f = image_io::snapshot_path(out, k);
            for (what, p) in &ins {
                if same_file(&f, p) {
                    return Err(runtime(format!(
                        "--save-every snapshot '{}' would overwrite {what}; choose another --output",
                        f.display()
                    )));
                }
            }
            if f.exists() && !a.overwrite {
                return Err(runtime(format!(
                    "--save-every snapshot '{}' already exists; pass --overwrite to replace it",
                    f.display()
                )));
            }
        }
    }
    if let Some(log) = &a.log {
        check_log(log, &ins, &[("the output", out)])?;
    }
    Ok(())
}

/// Refuses a `--log` that is one of the run's inputs or outputs, a directory, or in no directory.
pub(super) fn check_log(log: &Path, ins: &[(String, PathBuf)], outs: &[(&str, &Path)]) -> Result<(), CliError> {
    for (what, p) in ins.iter().map(|(w, p)| (w.as_str(), p.as_path())).chain(outs.iter().copied()) {
        if same_file(log, p) {
            return Err(runtime(format!("--log '{}' is {what}; choose another file", log.display())));
        }
    }
    if log.is_dir() {
        return Err(runtime(format!("--log '{}' is a directory", log.display())));
    }
    let dir = canonical(log).parent().map(Path::to_path_buf);
    if !dir.is_some_and(|d| d.is_dir()) {
        return Err(runtime(format!("cannot write --log '{}': its directory does not exist", log.display())));
    }
    Ok(())
}

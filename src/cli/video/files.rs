//! The video command's files: the input frames (a directory, or a video file through ffmpeg), the output frames
//! directory and its manifest (what `--resume` checks), and the encoded video (through ffmpeg).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::super::CliError;

/// The file name of the manifest in an output frames directory.
pub const MANIFEST: &str = "neural-style-video.json";

/// Extensions read as video files (through ffmpeg); anything else is a directory of frames.
const VIDEO_EXTENSIONS: &[&str] = &["mp4", "m4v", "mov", "mkv", "webm", "avi", "gif"];
/// Extensions of frame images in an input directory.
const FRAME_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp"];

fn runtime(msg: impl Into<String>) -> CliError {
    CliError::Runtime(msg.into())
}

fn extension(p: &Path) -> Option<String> {
    p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase)
}

/// Whether `p` names a video file (by its extension).
pub fn is_video(p: &Path) -> bool {
    extension(p).is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.as_str()))
}

/// The image files of a directory, sorted by name.
pub fn frames_in(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| runtime(format!("cannot read the frames directory '{}': {e}", dir.display())))?;
    let mut frames: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && extension(p).is_some_and(|e| FRAME_EXTENSIONS.contains(&e.as_str())))
        .collect();
    // Natural order: f2.png before f10.png, as people number frames.
    frames.sort_by_cached_key(|p| natural_key(&p.file_name().unwrap_or_default().to_string_lossy()));
    if frames.is_empty() {
        return Err(runtime(format!(
            "'{}' holds no frames (image files: {})",
            dir.display(),
            FRAME_EXTENSIONS.join(", ")
        )));
    }
    Ok(frames)
}

/// A name split into text and numbers, compared as numbers: the natural sort order of frame names.
fn natural_key(name: &str) -> Vec<(String, u128)> {
    let mut key = Vec::new();
    let mut chars = name.chars().peekable();
    while chars.peek().is_some() {
        let text: String = std::iter::from_fn(|| chars.next_if(|c| !c.is_ascii_digit())).collect();
        let digits: String = std::iter::from_fn(|| chars.next_if(char::is_ascii_digit)).collect();
        key.push((text, digits.parse().unwrap_or(u128::MAX)));
    }
    key
}

/// Checks that ffmpeg runs, or says how to do without it.
fn need_ffmpeg(why: &str) -> Result<(), CliError> {
    match Command::new("ffmpeg").arg("-version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err(runtime(format!(
            "{why} needs ffmpeg on PATH (not found); or use a directory of frames instead \
             (e.g. `ffmpeg -i clip.mp4 frames/%06d.png`, and -o a directory)"
        ))),
    }
}

fn run_ffmpeg(args: &[&std::ffi::OsStr], what: &str) -> Result<(), CliError> {
    let out = Command::new("ffmpeg").args(args).output().map_err(|e| runtime(format!("{what}: ffmpeg: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        return Err(runtime(format!("{what}: ffmpeg failed: {last}")));
    }
    Ok(())
}

/// The frames of a video file, decoded by ffmpeg into `into` (PNG), and its frame rate when ffprobe tells it.
pub fn extract(video: &Path, into: &Path) -> Result<(Vec<PathBuf>, Option<f64>), CliError> {
    need_ffmpeg(&format!("reading the video file '{}'", video.display()))?;
    let pattern = into.join("%06d.png");
    let args: Vec<&std::ffi::OsStr> = vec![
        "-v".as_ref(),
        "error".as_ref(),
        "-i".as_ref(),
        video.as_os_str(),
        "-fps_mode".as_ref(),
        "passthrough".as_ref(),
        pattern.as_os_str(),
    ];
    run_ffmpeg(&args, &format!("reading '{}'", video.display()))?;
    let fps = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=r_frame_rate", "-of", "csv=p=0"])
        .arg(video)
        .output()
        .ok()
        .and_then(|o| parse_rate(String::from_utf8_lossy(&o.stdout).trim()));
    Ok((frames_in(into)?, fps))
}

/// "30000/1001" or "25" as frames per second.
pub fn parse_rate(s: &str) -> Option<f64> {
    let rate = match s.split_once('/') {
        Some((n, d)) => n.trim().parse::<f64>().ok()? / d.trim().parse::<f64>().ok()?,
        None => s.parse().ok()?,
    };
    (rate.is_finite() && rate > 0.0).then_some(rate)
}

/// Encodes the frames `dir/frame_%06d.png` from number `first` into `video` (written under a temporary name, then
/// renamed: never half a file).
pub fn encode(dir: &Path, (first, last): (usize, usize), fps: f64, video: &Path) -> Result<(), CliError> {
    need_ffmpeg(&format!("writing the video file '{}'", video.display()))?;
    let ext = extension(video).unwrap_or_default();
    let tmp = video.with_file_name(format!(
        ".{}.{}.partial.{ext}",
        video.file_stem().and_then(|s| s.to_str()).unwrap_or("video"),
        std::process::id()
    ));
    let pattern = dir.join("frame_%06d.png");
    let (rate, start, count) = (format!("{fps}"), first.to_string(), (last + 1 - first).to_string());
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "-v".as_ref(),
        "error".as_ref(),
        "-y".as_ref(),
        "-framerate".as_ref(),
        rate.as_ref(),
        "-start_number".as_ref(),
        start.as_ref(),
        "-i".as_ref(),
        pattern.as_os_str(),
        // Only this range's frames, whatever else the directory holds.
        "-frames:v".as_ref(),
        count.as_ref(),
    ];
    // H.264 and VP9 want even sides and 4:2:0 for players to accept them; GIF takes the frames as they are.
    let codec: &[&str] = match ext.as_str() {
        "gif" => &[],
        "webm" => &["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"],
        _ => &["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"],
    };
    args.extend(codec.iter().map(std::ffi::OsStr::new));
    args.push(tmp.as_os_str());
    let result = run_ffmpeg(&args, &format!("writing '{}'", video.display()));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    std::fs::rename(&tmp, video).map_err(|e| runtime(format!("cannot write '{}': {e}", video.display())))
}

/// The output frame of input frame number `n` (1-based).
pub fn frame_path(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("frame_{n:06}.png"))
}

/// Where Ctrl-C leaves the unfinished frame `n` (never taken as painted by `--resume`).
pub fn partial_path(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("frame_{n:06}.partial.png"))
}

/// A 1-based inclusive range `A:B`, `A:` or `:B` of `count` frames, checked.
pub fn frame_range(spec: Option<&str>, count: usize) -> Result<(usize, usize), CliError> {
    let Some(spec) = spec else { return Ok((1, count)) };
    let bad = || CliError::Usage(format!("--frames {spec}: expected A:B, A: or :B with 1 <= A <= B <= {count}"));
    let (a, b) = spec.split_once(':').ok_or_else(bad)?;
    let a = if a.is_empty() { 1 } else { a.trim().parse().map_err(|_| bad())? };
    let b = if b.is_empty() { count } else { b.trim().parse().map_err(|_| bad())? };
    if a < 1 || a > b || b > count {
        return Err(bad());
    }
    Ok((a, b))
}

/// The settings of a sequence as its manifest records them; `--resume` refuses to continue under others.
pub fn check_manifest(dir: &Path, settings: &serde_json::Value, resume: bool, overwrite: bool) -> Result<(), CliError> {
    refuse_taken(dir, resume, overwrite)?;
    let path = dir.join(MANIFEST);
    if path.exists() && resume {
        let text =
            std::fs::read_to_string(&path).map_err(|e| runtime(format!("cannot read '{}': {e}", path.display())))?;
        let old: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| runtime(format!("'{}' is not a manifest: {e}", path.display())))?;
        if let Some(key) = first_difference(&old, settings) {
            return Err(runtime(format!(
                "--resume: the sequence in '{}' was painted with other settings ({key} differs); use the same flags, \
                 or --overwrite to paint it again",
                dir.display()
            )));
        }
        return Ok(());
    }
    let text = serde_json::to_string_pretty(settings).map_err(|e| runtime(e.to_string()))?;
    neural_style::image_io::write_bytes_atomic(&path, text.as_bytes()).map_err(|e| runtime(e.to_string()))
}

/// Refuses an output directory that already holds a sequence (without --resume or --overwrite), or painted
/// frames without a manifest (never taken over): checked before any work, and again with the manifest.
pub fn refuse_taken(dir: &Path, resume: bool, overwrite: bool) -> Result<(), CliError> {
    let exists = dir.join(MANIFEST).exists();
    let painted = std::fs::read_dir(dir)
        .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("frame_"))));
    if !exists && painted && !overwrite {
        return Err(runtime(format!(
            "'{}' holds frame_*.png files but no {MANIFEST}: not a sequence this command can resume; --overwrite \
             paints over them",
            dir.display()
        )));
    }
    if exists && !resume && !overwrite {
        return Err(runtime(format!(
            "'{}' already holds a painted sequence; --resume continues it, --overwrite paints it again",
            dir.display()
        )));
    }
    Ok(())
}

/// The first top-level key whose value differs between two manifests.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return Some("the manifest".into()) };
    a.keys().chain(b.keys()).find(|k| a.get(*k) != b.get(*k)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_rates_parse() {
        assert_eq!(frame_range(None, 8).unwrap(), (1, 8));
        assert_eq!(frame_range(Some("3:5"), 8).unwrap(), (3, 5));
        assert_eq!(frame_range(Some("3:"), 8).unwrap(), (3, 8));
        assert_eq!(frame_range(Some(":2"), 8).unwrap(), (1, 2));
        for bad in ["0:3", "5:3", "1:9", "x", "2"] {
            assert!(frame_range(Some(bad), 8).is_err(), "{bad}");
        }
        assert_eq!(parse_rate("25"), Some(25.0));
        assert!((parse_rate("30000/1001").unwrap() - 29.97).abs() < 0.01);
        assert_eq!(parse_rate("0/0"), None);
        assert!(is_video(Path::new("a.MP4")) && !is_video(Path::new("frames")));
        let a = serde_json::json!({"x": 1, "y": 2});
        assert_eq!(first_difference(&a, &serde_json::json!({"x": 1, "y": 3})), Some("y".into()));
        assert_eq!(first_difference(&a, &a), None);
        let mut names = vec!["f10.png", "f2.png", "f1.png", "g.png", "f02b.png"];
        names.sort_by_cached_key(|n| natural_key(n));
        assert_eq!(names, ["f1.png", "f2.png", "f02b.png", "f10.png", "g.png"]);
    }
}

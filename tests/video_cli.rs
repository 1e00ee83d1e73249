//! `neural-style video` end to end on tiny clips: a frames directory in and out (no ffmpeg needed), `--resume`
//! keeping the frames already painted and refusing other settings, `--frames` ranges, refusals; and a video file
//! in and out where ffmpeg is installed (CI installs it and sets NEURAL_STYLE_REQUIRE_FFMPEG, so it never skips
//! silently there).

mod cli_support;

use std::path::Path;

use cli_support::*;
use image::{DynamicImage, ImageFormat, RgbImage};

/// Four 40x32 frames of a picture moving 1 px right per frame, and a stripes style.
fn clip(d: &Path) {
    std::fs::create_dir_all(d.join("in")).unwrap();
    let big = picture(48, 32, 0);
    for k in 0..4u32 {
        let f = RgbImage::from_fn(40, 32, |x, y| *big.get_pixel(x + 4 - k, y));
        save(&d.join("in"), &format!("f{k}.png"), &DynamicImage::ImageRgb8(f), ImageFormat::Png);
    }
    std::fs::write(d.join("in/notes.txt"), "not a frame").unwrap();
    save(d, "style.png", &DynamicImage::ImageRgb8(stripes(32, 32)), ImageFormat::Png);
}

const SMALL: &[&str] = &["--image-size", "40", "--iterations", "4", "--frame-iterations", "2", "--single-scale"];

fn video(d: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["video", "in", "style.png", "-o", "out"];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    run(d, &args)
}

#[test]
fn a_frames_directory_is_painted_resumed_and_ranged() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    clip(d);
    let e = assert_ok(&video(d, &["--log", "log.jsonl", "--print-every", "1"]));
    assert!(e.contains("frame 2 of 1..4: 2 iterations, from frame 1 warped, held to 1 earlier frame(s)"), "{e}");
    assert!(e.contains("sequence ETA"), "{e}");
    // Two L-BFGS iterations' evaluation cap (1.25x) stops these frames after their first: the line says so.
    assert!(e.contains("frame 2: L-BFGS stopped after 1 of 2 iterations"), "{e}");
    // The log is the main command's, each line with its frame (the first frame's last line is its written image's,
    // after its 4 iterations).
    let log = read_log(&d.join("log.jsonl"));
    assert!(log.iter().all(|l| l["frame"].is_u64() && l["ms"].is_number() && l["total"].is_number()), "{log:?}");
    let frames: Vec<u64> = log.iter().map(|l| l["frame"].as_u64().unwrap()).collect();
    assert!(frames.is_sorted() && frames.first() == Some(&1) && frames.last() == Some(&4), "{frames:?}");
    assert_eq!(log.iter().rev().find(|l| l["frame"] == 1).map(|l| l["iter"].clone()), Some(4.into()), "{log:?}");
    let names = files(&d.join("out"));
    assert_eq!(
        names,
        ["frame_000001.png", "frame_000002.png", "frame_000003.png", "frame_000004.png", "neural-style-video.json"]
    );
    let first = std::fs::read(d.join("out/frame_000003.png")).unwrap();

    // Again without --resume: refused, nothing touched.
    assert_refused(
        d,
        &["video", "in", "style.png", "-o", "out", "--image-size", "40"],
        Some(1),
        "--resume continues it",
    );

    // --resume after losing the last two frames: the first two are kept, the rest painted again, identically
    // (each frame warps the earlier frames as written).
    std::fs::remove_file(d.join("out/frame_000003.png")).unwrap();
    std::fs::remove_file(d.join("out/frame_000004.png")).unwrap();
    let e = assert_ok(&video(d, &["--resume"]));
    assert!(e.contains("frame 2: kept"), "{e}");
    assert_eq!(std::fs::read(d.join("out/frame_000003.png")).unwrap(), first, "a resumed frame differs");

    // The log is never an input: not a style image, not inside the input directory.
    assert_refused(d, &["video", "in", "style.png", "-o", "other", "--log", "style.png"], Some(1), "a style image");
    assert_refused(d, &["video", "in", "style.png", "-o", "other", "--log", "in/f0.png"], Some(1), "input directory");
    assert!(!d.join("other").exists());

    // --resume under other settings is refused, naming the setting.
    let mut args = vec!["video", "in", "style.png", "-o", "out", "--resume", "--temporal-weight", "5"];
    args.extend_from_slice(SMALL);
    assert_refused(d, &args, Some(1), "temporal_weight differs");

    // A range into another directory: frames 2..3 only, the first of them painted as a still.
    let mut args = vec!["video", "in", "style.png", "-o", "shot", "--frames", "2:3"];
    args.extend_from_slice(SMALL);
    let e = assert_ok(&run(d, &args));
    assert!(e.contains("frame 2 of 2..3: 4 iterations, as a still"), "{e}");
    assert_eq!(files(&d.join("shot")), ["frame_000002.png", "frame_000003.png", "neural-style-video.json"]);
}

#[test]
fn bad_video_input_is_refused_in_one_line() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    clip(d);
    std::fs::create_dir(d.join("empty")).unwrap();
    assert_refused(d, &["video", "empty", "style.png", "-o", "out"], Some(1), "holds no frames");
    assert_refused(d, &["video", "in", "style.png", "-o", "out.png"], Some(2), "give a directory for the frames");
    assert_refused(d, &["video", "in", "style.png", "-o", "out", "--frames", "3:9"], Some(2), "--frames 3:9");
    assert_refused(
        d,
        &["video", "in", "style.png", "-o", "out", "--save-every", "5"],
        Some(2),
        "--save-every is not available",
    );
    // A frame of another size.
    save(&d.join("in"), "f9.png", &DynamicImage::ImageRgb8(picture(32, 40, 1)), ImageFormat::Png);
    let mut args = vec!["video", "in", "style.png", "-o", "out"];
    args.extend_from_slice(SMALL);
    let o = run(d, &args);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("every frame must have one size"), "{}", stderr(&o));
}

fn ffmpeg_present() -> bool {
    let present = std::process::Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success());
    if !present && std::env::var_os("NEURAL_STYLE_REQUIRE_FFMPEG").is_some() {
        panic!("ffmpeg is not on PATH and NEURAL_STYLE_REQUIRE_FFMPEG is set");
    }
    present
}

/// A video file in and out through ffmpeg (skipped, saying so, where ffmpeg is missing: then the refusal names
/// the frames-directory alternative).
#[test]
fn a_video_file_goes_in_and_out_through_ffmpeg() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    clip(d);
    if !ffmpeg_present() {
        eprintln!("ffmpeg not on PATH: checking the refusal only");
        std::fs::write(d.join("clip.mp4"), b"not a video").unwrap();
        assert_refused(d, &["video", "clip.mp4", "style.png", "-o", "out"], Some(1), "needs ffmpeg on PATH");
        return;
    }
    let made = std::process::Command::new("ffmpeg")
        .current_dir(d)
        .args([
            "-v",
            "error",
            "-framerate",
            "12",
            "-i",
            "in/f%d.png",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "clip.mp4",
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let mut args = vec!["video", "clip.mp4", "style.png", "-o", "painted.mp4"];
    args.extend_from_slice(SMALL);
    let e = assert_ok(&run(d, &args));
    assert!(e.contains("wrote 'painted.mp4' (4 frames at 12 fps)"), "{e}");
    assert!(std::fs::metadata(d.join("painted.mp4")).unwrap().len() > 0);
    assert_eq!(files(&d.join("painted.frames")).len(), 5);
}

/// Ctrl-C in the second frame: exit 130, the first frame kept, the second saved as `.partial.png` (which
/// `--resume` never takes as finished: it looks for `frame_N.png`).
#[test]
fn ctrl_c_keeps_the_finished_frames_and_the_current_one() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    clip(d);
    // Stopped once the second frame has made an iteration.
    let args = ["video", "in", "style.png", "-o", "out", "--image-size", "40", "--iterations", "4"];
    let more = ["--frame-iterations", "100000", "--single-scale", "--print-every", "1"];
    let Interrupted { status, seen, rest } = interrupt_at(d, &[&args[..], &more[..]].concat(), "frame 2/4 iter 1/");
    assert_eq!(status.code(), Some(130), "{seen}{}", rest.join("\n"));
    assert!(rest.iter().any(|l| l.contains("interrupted in frame 2")), "{}", rest.join("\n"));
    assert_eq!(files(&d.join("out")), ["frame_000001.png", "frame_000002.partial.png", "neural-style-video.json"]);
}

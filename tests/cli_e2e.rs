//! End-to-end runs of the `neural-style` binary on tiny images (≤ 48 px, ≤ 5 iterations) on whatever adapter
//! wgpu picks (lavapipe on CI): outputs, formats, logs, frames, multiple styles, original colours, seeds,
//! accepted input flavours and Ctrl-C.

mod cli_support;

use std::path::Path;
use std::process::Command;

use cli_support::*;
use image::{DynamicImage, GenericImageView, ImageFormat};

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), "content.png", &DynamicImage::ImageRgb8(picture(48, 36, 0)), ImageFormat::Png);
    save(dir.path(), "style.png", &DynamicImage::ImageRgb8(stripes(32, 32)), ImageFormat::Png);
    dir
}

fn no_temp_files(dir: &Path) {
    let f = files(dir);
    assert!(!f.iter().any(|n| n.starts_with(".tmp")), "temporary files left: {f:?}");
}

#[test]
fn run_writes_output_log_and_frames() {
    let dir = setup();
    let d = dir.path();
    // An existing output is replaced with --overwrite.
    std::fs::write(d.join("out.png"), b"old").unwrap();
    let o = run(
        d,
        &[
            "content.png",
            "style.png",
            "--image-size",
            "32",
            "--iterations",
            "2",
            "--save-every",
            "1",
            "--print-every",
            "2",
            "--log",
            "log.jsonl",
            "--overwrite",
        ],
    );
    let err = assert_ok(&o);
    // 48x36 → 32x24.
    let out = image::open(d.join("out.png")).unwrap();
    assert_eq!(out.dimensions(), (32, 24));
    assert_eq!(image::guess_format(&std::fs::read(d.join("out.png")).unwrap()).unwrap(), ImageFormat::Png);
    for k in [1, 2] {
        let f = image::open(d.join(format!("out_{k}.png"))).unwrap();
        assert_eq!(f.dimensions(), (32, 24));
    }
    assert!(!d.join("out_0.png").exists() && !d.join("out_3.png").exists());
    // The last frame is the output; the first differs from it.
    let last = std::fs::read(d.join("out_2.png")).unwrap();
    assert_eq!(last, std::fs::read(d.join("out.png")).unwrap());
    assert_ne!(last, std::fs::read(d.join("out_1.png")).unwrap());
    no_temp_files(d);

    let log = read_log(&d.join("log.jsonl"));
    assert_eq!(log.len(), 3, "iterations 0..=2");
    for (i, l) in log.iter().enumerate() {
        assert_eq!(l["iter"].as_u64(), Some(i as u64));
        for k in ["content", "style", "tv", "total", "ms"] {
            assert!(l[k].as_f64().is_some_and(f64::is_finite), "{k} in {l}");
        }
        let sum = l["content"].as_f64().unwrap() + l["style"].as_f64().unwrap() + l["tv"].as_f64().unwrap();
        assert!((sum - l["total"].as_f64().unwrap()).abs() <= 1e-3 * sum.abs().max(1.0), "{l}");
    }
    // Starting from the content: no content loss at iteration 0, and the total goes down.
    assert!(log[0]["content"].as_f64().unwrap().abs() < 1e-3 * log[0]["total"].as_f64().unwrap());
    assert!(log[1]["total"].as_f64().unwrap() < log[0]["total"].as_f64().unwrap(), "{log:?}");
    assert!(log[2]["total"].as_f64().unwrap() < log[1]["total"].as_f64().unwrap(), "{log:?}");

    // Plain progress lines (stderr is not a terminal here) for iterations 0 and 2 only.
    for k in ["iter 0/2", "iter 2/2"] {
        assert!(err.contains(k), "no '{k}' in:\n{err}");
    }
    assert!(!err.contains("iter 1/2"), "{err}");
    assert!(err.contains("it/s"), "{err}");
}

#[test]
fn multiple_styles_with_blend_weights_and_jpeg_output() {
    let dir = setup();
    let d = dir.path();
    save(d, "style2.jpg", &DynamicImage::ImageRgb8(picture(40, 24, 3)), ImageFormat::Jpeg);
    let o = run(
        d,
        &[
            "content.png",
            "style.png",
            "style2.jpg",
            "--style-blend-weights",
            "1,3",
            "--style-scale",
            "0.75",
            "--image-size",
            "40",
            "--iterations",
            "2",
            "--pooling",
            "avg",
            "-o",
            "result.jpg",
        ],
    );
    assert_ok(&o);
    let bytes = std::fs::read(d.join("result.jpg")).unwrap();
    assert_eq!(image::guess_format(&bytes).unwrap(), ImageFormat::Jpeg);
    assert_eq!(image::load_from_memory(&bytes).unwrap().dimensions(), (40, 30));
    no_temp_files(d);
}

#[test]
fn original_colors_keeps_the_content_chroma() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let content = save_chroma_pair(d);
    let o = run(
        d,
        &["content.png", "style.png", "--image-size", "32", "--iterations", "3", "--original-colors", "-o", "o.tiff"],
    );
    assert_ok(&o);
    let bytes = std::fs::read(d.join("o.tiff")).unwrap();
    assert_eq!(image::guess_format(&bytes).unwrap(), ImageFormat::Tiff);
    let out = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(out.dimensions(), (32, 32));
    let (mut max_d, mut luma_change) = (0f64, 0f64);
    for (p, q) in out.pixels().zip(content.pixels()) {
        let ((cb, cr), (cb0, cr0)) = (chroma(p), chroma(q));
        max_d = max_d.max((cb - cb0).abs()).max((cr - cr0).abs());
        let y = |p: &image::Rgb<u8>| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
        luma_change += (y(p) - y(q)).abs();
    }
    // Only 8-bit rounding separates the output's chroma from the content's.
    assert!(max_d <= 1.5, "chroma moved by {max_d}");
    assert!(luma_change / 1024.0 > 0.5, "the luminance should have been stylised");
}

/// `--optimizer lbfgs`: each log line an accepted iterate with its evaluation count, the loss falling every
/// iteration, the run bit-identical on rerun (only scalars cross to the CPU).
#[test]
fn lbfgs_logs_accepted_iterates_with_evaluations_and_reruns_identically() {
    let dir = setup();
    let d = dir.path();
    let go = |out: &str, log: &str| {
        let args = [
            "content.png",
            "style.png",
            "--image-size",
            "32",
            "--iterations",
            "4",
            "--optimizer",
            "lbfgs",
            "--lbfgs-max-evals",
            "100",
            "--lbfgs-history",
            "2",
            "--log",
            log,
            "-o",
            out,
        ];
        let err = assert_ok(&run(d, &args));
        (std::fs::read(d.join(out)).unwrap(), read_log(&d.join(log)), err)
    };
    let (a, log, err) = go("a.png", "a.jsonl");
    assert_eq!(log.len(), 5, "iterates 0..=4: {log:?}");
    let mut evals_before = 0;
    for (i, l) in log.iter().enumerate() {
        assert_eq!(l["iter"].as_u64(), Some(i as u64));
        let evals = l["evals"].as_u64().unwrap_or_else(|| panic!("no evals in {l}"));
        assert!(evals > evals_before, "evaluations must grow: {log:?}");
        evals_before = evals;
        if i > 0 {
            assert!(l["total"].as_f64().unwrap() < log[i - 1]["total"].as_f64().unwrap(), "{log:?}");
        }
    }
    assert_eq!(log[0]["evals"].as_u64(), Some(1));
    assert!(err.contains("4 iterations"), "{err}");
    let (b, log_b, _) = go("b.png", "b.jsonl");
    assert_eq!(a, b, "L-BFGS reruns are bit-identical");
    let totals = |l: &[serde_json::Value]| l.iter().map(|v| v["total"].as_f64()).collect::<Vec<_>>();
    assert_eq!(totals(&log), totals(&log_b));

    // The evaluation cap ends the run early, said in one line; the image is still written.
    let args = ["content.png", "style.png", "--image-size", "32", "--iterations", "4", "--optimizer", "lbfgs"];
    let err = assert_ok(&run(d, &[&args[..], &["--lbfgs-max-evals", "2", "-o", "capped.png"]].concat()));
    assert!(err.contains("L-BFGS stopped after 1 of 4 iterations") && err.contains("cap of 2"), "{err}");
    assert!(d.join("capped.png").exists());
}

/// `--min-scale` (coarse to fine): at --image-size 48 with --min-scale 24 the scales are 24, 34 and 48 px; the
/// iterations are split with two shares first, one iteration count runs across scales, frames have their
/// scale's size, the output the full size; with Adam and with L-BFGS.
#[test]
fn coarse_to_fine_runs_every_scale_and_logs_them() {
    let dir = setup();
    let d = dir.path();
    for optimizer in ["adam", "lbfgs"] {
        let out = format!("c2f_{optimizer}.png");
        let log = format!("c2f_{optimizer}.jsonl");
        let args = [
            "content.png",
            "style.png",
            "--image-size",
            "48",
            "--min-scale",
            "24",
            "--iterations",
            "8",
            "--save-every",
            "4",
            "--optimizer",
            optimizer,
            "--log",
            &log,
            "-o",
            &out,
        ];
        let err = assert_ok(&run(d, &args));
        assert!(err.contains("scales 24/34/48 px, iterations 4/2/2"), "{err}");
        assert!(err.contains("scale 2/3: 34x26") && err.contains("scale 3/3: 48x36"), "{err}");
        assert_eq!(image::open(d.join(&out)).unwrap().dimensions(), (48, 36));
        // Frame 4 closes the first scale (24x18), frame 8 the last (with Adam: L-BFGS may stop a scale early).
        let stem = out.trim_end_matches(".png");
        if optimizer == "adam" {
            assert_eq!(image::open(d.join(format!("{stem}_4.png"))).unwrap().dimensions(), (24, 18));
            assert_eq!(image::open(d.join(format!("{stem}_8.png"))).unwrap().dimensions(), (48, 36));
        }
        let lines = read_log(&d.join(&log));
        let scales: Vec<u64> = lines.iter().map(|l| l["scale"].as_u64().expect("scale")).collect();
        let iters: Vec<u64> = lines.iter().map(|l| l["iter"].as_u64().unwrap()).collect();
        if optimizer == "adam" {
            assert_eq!(iters, (0..=8).collect::<Vec<_>>(), "{lines:?}");
            assert_eq!(scales, vec![24, 24, 24, 24, 34, 34, 48, 48, 48], "{lines:?}");
        } else {
            // L-BFGS may stop a scale early (its own evaluation cap); the scales still come in order.
            assert!(scales.windows(2).all(|w| w[0] <= w[1]) && scales.last() == Some(&48), "{lines:?}");
            assert!(iters.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
        }
        // Losses of different scales are not comparable (other sizes, other style targets); within a scale the
        // loss falls.
        for side in [24, 34, 48] {
            let at: Vec<f64> =
                lines.iter().filter(|l| l["scale"] == side).map(|l| l["total"].as_f64().unwrap()).collect();
            assert!(at.windows(2).all(|w| w[1] < w[0]), "{optimizer}, scale {side}: {at:?}");
        }
    }
    // A minimum scale below the network's 16 px is refused before any work.
    let o = run(d, &["content.png", "style.png", "--min-scale", "8"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--min-scale"));
}

/// The image average and the Wasserstein-2 style loss through the CLI, coarse to fine: both said in the setup
/// line, every scale logged, the loss falling at the first scale, the last line the written average's.
#[test]
fn average_and_w2_style_loss_run_coarse_to_fine() {
    let dir = setup();
    let d = dir.path();
    // Small layers keep the square roots cheap on lavapipe (the 512-channel ones take ~15 s per iteration).
    let args = [
        "content.png",
        "style.png",
        "--image-size",
        "48",
        "--min-scale",
        "34",
        "--iterations",
        "6",
        "--style-loss",
        "w2",
        "--style-layers",
        "relu1_1,relu2_1",
        "--avg-decay",
        "0.9",
        "--log",
        "w2.jsonl",
        "-o",
        "w2.png",
    ];
    let err = assert_ok(&run(d, &args));
    assert!(err.contains("Wasserstein-2 style loss") && err.contains("average of the iterates (decay 0.9)"), "{err}");
    assert_eq!(image::open(d.join("w2.png")).unwrap().dimensions(), (48, 36));
    let lines = read_log(&d.join("w2.jsonl"));
    let iters: Vec<u64> = lines.iter().map(|l| l["iter"].as_u64().unwrap()).collect();
    assert_eq!(iters, (0..=6).collect::<Vec<_>>(), "{lines:?}");
    let first: Vec<f64> = lines.iter().filter(|l| l["scale"] == 34).map(|l| l["style"].as_f64().unwrap()).collect();
    assert!(first.len() == 4 && first.windows(2).all(|w| w[1] < w[0]), "W2 style loss at 34 px: {first:?}");
    assert!(lines.iter().all(|l| l["total"].as_f64().is_some_and(f64::is_finite)), "{lines:?}");
}

#[test]
fn seeded_runs_are_bit_identical() {
    let dir = setup();
    let d = dir.path();
    let go = |out: &str, seed: &str| {
        let o = run(
            d,
            &[
                "content.png",
                "style.png",
                "--image-size",
                "24",
                "--iterations",
                "1",
                "--init",
                "random",
                "--seed",
                seed,
                "-o",
                out,
            ],
        );
        assert_ok(&o);
        std::fs::read(d.join(out)).unwrap()
    };
    let a = go("a.png", "7");
    let b = go("b.png", "7");
    assert_eq!(a, b, "same seed, same adapter: same bytes");
    let c = go("c.png", "8");
    assert_ne!(a, c, "another seed: another image");
}

#[test]
fn zero_iterations_writes_the_initial_image_from_any_input_flavour() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Content: an EXIF-rotated JPEG (stored 40x20 landscape, orientation 6 = rotate 90° clockwise → 20x40).
    let stored =
        image::RgbImage::from_fn(
            40,
            20,
            |x, _| {
                if x < 20 {
                    image::Rgb([220, 30, 30])
                } else {
                    image::Rgb([30, 30, 220])
                }
            },
        );
    std::fs::write(d.join("rotated.jpg"), exif_jpeg(&stored, 6)).unwrap();
    // Styles: palette PNG, CMYK JPEG, 16-bit grayscale PNG, RGBA PNG, grayscale JPEG.
    let pal = [[255u8, 0, 0], [0, 255, 0], [0, 0, 255], [250, 250, 250]];
    std::fs::write(d.join("palette.png"), palette_png(24, 24, &pal, |x, y| ((x / 4 + y / 4) % 4) as u8)).unwrap();
    std::fs::write(d.join("cmyk.jpg"), cmyk_jpeg(24, 24, |x, y| [(x * 10) as u8, (y * 10) as u8, 0, 30])).unwrap();
    std::fs::write(d.join("gray16.png"), gray16_png(24, 24)).unwrap();
    let rgba = image::RgbaImage::from_fn(24, 24, |x, y| image::Rgba([x as u8 * 9, y as u8 * 9, 128, (x * 10) as u8]));
    save(d, "rgba.png", &DynamicImage::ImageRgba8(rgba), ImageFormat::Png);
    save(
        d,
        "gray.jpg",
        &DynamicImage::ImageLuma8(image::GrayImage::from_fn(24, 24, |x, _| image::Luma([x as u8 * 10]))),
        ImageFormat::Jpeg,
    );

    let o = run(
        d,
        &[
            "rotated.jpg",
            "palette.png",
            "cmyk.jpg",
            "gray16.png",
            "rgba.png",
            "gray.jpg",
            "--image-size",
            "40",
            "--style-scale",
            "0.6",
            "--iterations",
            "0",
            "-o",
            "init.png",
        ],
    );
    assert_ok(&o);
    let out = image::open(d.join("init.png")).unwrap().to_rgb8();
    assert_eq!(out.dimensions(), (20, 40), "EXIF orientation applied");
    // 0 iterations: the output is the (decoded) content itself. Rotated 90° clockwise, the stored left (red)
    // half is on top.
    let top = out.get_pixel(10, 5);
    let bottom = out.get_pixel(10, 34);
    assert!(top[0] > 180 && top[2] < 80, "top {top:?}");
    assert!(bottom[2] > 180 && bottom[0] < 80, "bottom {bottom:?}");
    no_temp_files(d);
}

#[test]
fn zero_iterations_with_content_at_size_is_exact() {
    let dir = setup();
    let d = dir.path();
    let content = picture(32, 20, 5);
    save(d, "c.png", &DynamicImage::ImageRgb8(content.clone()), ImageFormat::Png);
    let o = run(d, &["c.png", "style.png", "--image-size", "32", "--iterations", "0", "-o", "same.bmp"]);
    assert_ok(&o);
    let out = image::open(d.join("same.bmp")).unwrap().to_rgb8();
    assert_eq!(out, content, "round(clamp(x + mean)) of the untouched content is the content");
}

#[test]
fn ctrl_c_writes_the_current_image() {
    let dir = setup();
    let d = dir.path();
    // Stopped once the first iteration ran (its losses are printed after it).
    let args = ["content.png", "style.png", "--image-size", "24", "--iterations", "100000", "--print-every", "1"];
    let Interrupted { status, seen, rest } = interrupt_at(d, &args, "iter      0/");
    assert_eq!(status.code(), Some(130), "{seen}{}", rest.join("\n"));
    let out = image::open(d.join("out.png")).unwrap();
    assert_eq!(out.dimensions(), (24, 18));
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{}", rest.join("\n"));
    no_temp_files(d);
}

#[test]
fn devices_lists_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["devices"]);
    assert_ok(&o);
    assert!(!String::from_utf8_lossy(&o.stdout).trim().is_empty());
}

/// The device is destroyed for real before update 2 (a test hook): the run fails with one clear line, and the
/// last image read back (after update 2's predecessor, printed at every iteration) is on disk.
#[test]
fn device_lost_mid_run_keeps_the_last_good_image() {
    let dir = setup();
    let d = dir.path();
    let o = Command::new(bin())
        .current_dir(d)
        .args(["content.png", "style.png", "--image-size", "24", "--iterations", "4", "--print-every", "1"])
        .arg("--weights")
        .arg(weights())
        .env("NEURAL_STYLE_TEST_LOSE_DEVICE_AT", "2")
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    let errors: Vec<&str> = e.lines().filter(|l| l.starts_with("error:") && !is_driver_noise(l)).collect();
    assert_eq!(errors.len(), 1, "{e}");
    assert!(errors[0].contains("iteration 2") && errors[0].contains("wrote the image of iteration 2"), "{e}");
    assert!(errors[0].contains("watchdog") && errors[0].contains("24x18") && errors[0].contains("--image-size"), "{e}");
    let out = image::open(d.join("out.png")).unwrap();
    assert_eq!(out.dimensions(), (24, 18));
    no_temp_files(d);
}

/// `bench --min-scale` times a whole coarse-to-fine job: one JSON line with each scale (sizes by √2, the first
/// with two shares of the iterations), and finite losses at the end.
#[test]
fn bench_times_a_coarse_to_fine_job_scale_by_scale() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["bench", "--size", "40", "--iterations", "4", "--min-scale", "20"]);
    assert_ok(&o);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON line");
    assert_eq!(report["bench"], "job");
    let scales = report["scales"].as_array().unwrap();
    let sides: Vec<u64> = scales.iter().map(|s| s["side"].as_u64().unwrap()).collect();
    assert_eq!(sides, [20, 28, 40]);
    let iterations: Vec<u64> = scales.iter().map(|s| s["iterations"].as_u64().unwrap()).collect();
    assert_eq!(iterations, [2, 1, 1]);
    assert!(scales.iter().all(|s| s["ms_per_iter"].as_f64().unwrap() > 0.0 && s["setup_ms"].as_f64().unwrap() > 0.0));
    assert_eq!(report["losses_finite"], true);
}

/// `bench --size 32` (one JSON line): at most one host wait per Adam iteration, logged or not, the L-BFGS figure
/// (one wait per evaluation plus one for the direction), and how an iteration is submitted (the bar of the
/// first-GPU issue).
#[test]
fn bench_reports_host_waits_within_the_bar() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["bench", "--size", "32", "--iterations", "3"]);
    assert_ok(&o);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON line");
    assert_eq!(r["bench"], "iteration");
    let waits = r["host_waits_per_iter"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&waits), "{r}");
    assert!(r["host_waits_per_logged_iter"].as_f64().unwrap() <= 1.0, "{r}");
    let l = &r["lbfgs"];
    assert!(l["iterations"].as_u64().unwrap() >= 1, "{r}");
    let besides = l["host_waits_per_iter_besides_evaluations"].as_f64().unwrap();
    assert!(besides <= 1.0 + 1e-9, "L-BFGS waits beyond its evaluations: {r}");
    // Whole, or per VGG block (9) on a machine slow enough to take over 250 ms per iteration.
    assert!(matches!(r["command_buffers_per_iter"].as_u64(), Some(1 | 9)), "{r}");
    assert_eq!(r["losses_finite"], true);
}

/// The first-use check runs on the first run on an adapter and its verdict is kept in the cache directory: a
/// second run reads it (its precision line says so) and a third with the file gone checks again.
#[test]
fn first_use_verdict_is_kept_in_the_cache() {
    let dir = setup();
    let d = dir.path();
    let cache = d.join("cache");
    let paint = |out: &str| {
        let o = Command::new(bin())
            .current_dir(d)
            .args(["content.png", "style.png", "--image-size", "24", "--iterations", "1", "-o", out])
            .arg("--weights")
            .arg(weights())
            .env("NEURAL_STYLE_CACHE_DIR", &cache)
            .output()
            .unwrap();
        let e = assert_ok(&o);
        e.lines().find(|l| l.contains("precision:")).unwrap_or_else(|| panic!("no precision line: {e}")).to_string()
    };
    let first = paint("a.png");
    assert!(first.contains("first-use check passed)") || first.contains("first-use check passed;"), "{first}");
    let kept = std::fs::read_to_string(cache.join("first-use.json")).unwrap();
    let verdicts: serde_json::Value = serde_json::from_str(&kept).unwrap();
    let keys: Vec<&String> = verdicts.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 1, "{kept}");
    assert!(keys[0].contains("neural-style") && keys[0].contains("kernels"), "{kept}");
    assert!(paint("b.png").contains("first-use check passed earlier"));
    std::fs::remove_file(cache.join("first-use.json")).unwrap();
    assert!(!paint("c.png").contains("earlier"));
    assert_eq!(files(&cache), ["first-use.json"], "written whole, no temporary file left");
}

/// Spatial control through the CLI, coarse to fine (the masks resized at each scale, of other sizes than the
/// images): two styles on two regions, one taken from part of its image, a content mask; then a black mask is
/// a stated warning and its style unused.
#[test]
fn style_and_content_masks_run_coarse_to_fine() {
    let dir = setup();
    let d = dir.path();
    let half = |w: u32, h: u32, left: bool| {
        image::RgbImage::from_fn(w, h, |x, _| image::Rgb([if (x < w / 2) == left { 255 } else { 0 }; 3]))
    };
    save(d, "left.png", &DynamicImage::ImageRgb8(half(20, 10, true)), ImageFormat::Png);
    save(d, "right.png", &DynamicImage::ImageRgb8(half(20, 10, false)), ImageFormat::Png);
    save(d, "black.png", &DynamicImage::ImageRgb8(image::RgbImage::new(5, 5)), ImageFormat::Png);
    save(d, "style2.png", &DynamicImage::ImageRgb8(picture(40, 40, 3)), ImageFormat::Png);
    let base =
        ["content.png", "style.png", "style2.png", "--image-size", "48", "--min-scale", "34", "--iterations", "4"];
    let mut args = base.to_vec();
    args.extend(["--style-masks", "left.png,right.png", "--style-image-masks", ",left.png"]);
    args.extend(["--content-mask", "left.png", "--log", "masks.jsonl", "-o", "masks.png"]);
    let err = assert_ok(&run(d, &args));
    assert!(err.contains("masks: 2 style regions"), "{err}");
    assert_eq!(image::open(d.join("masks.png")).unwrap().dimensions(), (48, 36));
    let lines = read_log(&d.join("masks.jsonl"));
    assert!(lines.iter().all(|l| l["total"].as_f64().is_some_and(f64::is_finite)), "{lines:?}");
    assert!(lines.iter().any(|l| l["scale"] == 34) && lines.iter().any(|l| l["scale"] == 48), "{lines:?}");
    let mut args = base.to_vec();
    args.extend(["--style-masks", "left.png,black.png", "-o", "black.png.out.png"]);
    let err = assert_ok(&run(d, &args));
    assert!(err.contains("warning: the mask of style image 2 is black, so that style is not used"), "{err}");
}

/// Colour management through the CLI (docs/COLOUR.md): a Display P3 content image; the output carries the sRGB
/// profile by default, the content's own with `--output-profile content`, which a format without profiles
/// refuses.
#[test]
fn outputs_carry_the_srgb_or_the_contents_profile() {
    use image::ImageDecoder;
    let dir = setup();
    let d = dir.path();
    let p3 = moxcms::ColorProfile::new_display_p3().encode().unwrap();
    let mut png = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut png);
    image::ImageEncoder::set_icc_profile(&mut encoder, p3.clone()).unwrap();
    let img = picture(40, 30, 2);
    image::ImageEncoder::write_image(encoder, img.as_raw(), 40, 30, image::ExtendedColorType::Rgb8).unwrap();
    std::fs::write(d.join("p3.png"), &png).unwrap();
    let profile_of = |name: &str| {
        let bytes = std::fs::read(d.join(name)).unwrap();
        let mut decoder = image::codecs::png::PngDecoder::new(std::io::Cursor::new(bytes)).unwrap();
        decoder.icc_profile().unwrap()
    };
    let base = ["p3.png", "style.png", "--image-size", "32", "--iterations", "1"];
    assert_ok(&run(d, &[&base[..], &["-o", "srgb.png"]].concat()));
    assert_eq!(profile_of("srgb.png").as_deref(), Some(neural_style::colour::srgb_icc()));
    assert_ok(&run(d, &[&base[..], &["--output-profile", "content", "-o", "p3_out.png"]].concat()));
    assert_eq!(profile_of("p3_out.png"), Some(p3));
    let e =
        assert_refused(d, &[&base[..], &["--output-profile", "content", "-o", "out.bmp"]].concat(), Some(2), "profile");
    assert!(!d.join("out.bmp").exists(), "{e}");
}

//! Every refusal of the CLI: a non-zero exit, one `error: ...` line on stderr, no panic and no file written.
//! All of these stop before the optimisation starts (most before the GPU is touched), so they are fast.

mod cli_support;

use std::path::Path;

use cli_support::*;
use image::{DynamicImage, ImageFormat};

/// A temp dir with `content.png` (40x30) and `style.png` (32x32).
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), "content.png", &DynamicImage::ImageRgb8(picture(40, 30, 0)), ImageFormat::Png);
    save(dir.path(), "style.png", &DynamicImage::ImageRgb8(stripes(32, 32)), ImageFormat::Png);
    dir
}

const BASE: [&str; 6] = ["content.png", "style.png", "--image-size", "32", "--iterations", "1"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = BASE.to_vec();
    v.extend_from_slice(extra);
    v
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn bad_content_images_are_refused() {
    let dir = setup();
    let d = dir.path();
    let png = encode(&DynamicImage::ImageRgb8(picture(40, 30, 1)), ImageFormat::Png);
    let jpg = encode(&DynamicImage::ImageRgb8(picture(40, 30, 1)), ImageFormat::Jpeg);
    write(d, "empty.png", &[]);
    write(d, "truncated.png", &png[..png.len() / 2]);
    write(d, "truncated.jpg", &jpg[..jpg.len() * 2 / 3]);
    let mut corrupt = png.clone();
    let idat = corrupt.windows(4).position(|w| w == b"IDAT").unwrap();
    for b in &mut corrupt[idat + 6..idat + 20] {
        *b ^= 0x5A;
    }
    write(d, "corrupt.png", &corrupt);
    write(d, "text.png", b"this is a text file, not an image\n");
    write(d, "notes.txt", b"hello\n");
    write(d, "huge.png", &png_header_only(100_000, 100_000));
    std::fs::create_dir(d.join("folder.png")).unwrap();

    let cases: [(&str, &str); 9] = [
        ("missing.png", "no such file"),
        ("folder.png", "directory"),
        ("empty.png", "empty"),
        ("truncated.png", "content image"),
        ("truncated.jpg", "truncated"),
        ("corrupt.png", "content image"),
        ("text.png", "not a"),
        ("notes.txt", "not an image"),
        ("huge.png", "too large"),
    ];
    for (name, needle) in cases {
        let mut a = vec![name, "style.png", "--image-size", "32", "--iterations", "1"];
        a.push("-o");
        a.push("out.png");
        let e = assert_refused(d, &a, Some(1), needle);
        assert!(e.contains(name), "the message names the file: {e}");
    }
}

#[test]
fn bad_style_and_init_images_are_refused() {
    let dir = setup();
    let d = dir.path();
    write(d, "bad.jpg", b"\xFF\xD8\xFF\xE0 garbage");
    assert_refused(d, &["content.png", "style.png", "missing.jpg", "--image-size", "32"], Some(1), "style image");
    assert_refused(d, &["content.png", "bad.jpg", "--image-size", "32"], Some(1), "style image");
    assert_refused(d, &args(&["--init-image", "missing.png"]), Some(1), "--init-image");
}

#[test]
fn image_size_and_scale_limits() {
    let dir = setup();
    let d = dir.path();
    assert_refused(d, &["content.png", "style.png", "--image-size", "8"], Some(2), "--image-size");
    assert_refused(d, &["content.png", "style.png", "--image-size", "15"], Some(2), "--image-size");
    assert_refused(d, &args(&["--style-scale", "0"]), Some(2), "--style-scale");
    assert_refused(d, &args(&["--style-scale", "0.1"]), Some(2), "--style-scale");
    assert_refused(d, &args(&["--style-scale", "nan"]), Some(2), "--style-scale");
    // 200x10 at --image-size 32 becomes 32x2.
    save(d, "thin.png", &DynamicImage::ImageRgb8(picture(200, 10, 0)), ImageFormat::Png);
    assert_refused(d, &["thin.png", "style.png", "--image-size", "32"], Some(1), "at least 16");
}

#[test]
fn bad_flag_values_are_refused() {
    let dir = setup();
    let d = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (&["--lbfgs-history", "0"], "--lbfgs-history"),
        (&["--lbfgs-max-evals", "5"], "--optimizer lbfgs"),
        (&["--style-blend-weights", "1,2"], "style-blend-weights"),
        (&["--style-blend-weights", "-1"], "style-blend-weights"),
        (&["--style-blend-weights", "0"], "positive sum"),
        (&["--content-layers", "relu9_9"], "relu9_9"),
        (&["--style-layers", "relu1_1,conv1_1"], "conv1_1"),
        (&["--style-layers", "relu1_1,relu1_1"], "twice"),
        (&["--avg-decay", "1"], "--avg-decay"),
        (&["--avg-decay", "0"], "--avg-decay"),
        (&["--avg-decay", "nan"], "--avg-decay"),
        (&["--learning-rate", "0"], "--learning-rate"),
        (&["--learning-rate", "inf"], "--learning-rate"),
        (&["--tv-weight", "-1"], "--tv-weight"),
        (&["--content-weight", "nan"], "--content-weight"),
        (&["--style-weight", "-0.5"], "--style-weight"),
        (&["--init", "random", "--init-image", "content.png"], "--init-image"),
        (&["-o", "out.xyz"], "output format"),
        (&["-o", "out"], "output format"),
    ];
    for (extra, needle) in cases {
        assert_refused(d, &args(extra), Some(2), needle);
    }
}

#[test]
fn clap_usage_errors_exit_2() {
    let dir = setup();
    let d = dir.path();
    for a in [
        &[][..],
        &["content.png"][..],
        &["content.png", "style.png", "--iterations", "-1"][..],
        &["content.png", "style.png", "--pooling", "median"][..],
        &["content.png", "style.png", "--image-size", "big"][..],
        &["content.png", "style.png", "--no-such-flag"][..],
        &["content.png", "style.png", "--style-loss", "wasserstein"][..],
        &["content.png", "style.png", "--max-memory", "-1"][..],
        &["content.png", "style.png", "--max-memory", "0"][..],
        &["content.png", "style.png", "--tile-size", "8"][..],
    ] {
        let before = files(d);
        let o = run(d, a);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
        assert_eq!(files(d), before);
    }
}

#[test]
fn outputs_that_would_clobber_or_cannot_be_written_are_refused() {
    let dir = setup();
    let d = dir.path();
    std::fs::create_dir(d.join("sub")).unwrap();
    write(d, "file.txt", b"x");
    assert_refused(d, &args(&["-o", "content.png"]), Some(1), "content image");
    assert_refused(d, &args(&["-o", "content.png", "--overwrite"]), Some(1), "content image");
    assert_refused(d, &args(&["-o", "./sub/../content.png", "--overwrite"]), Some(1), "content image");
    assert_refused(d, &args(&["-o", "style.png", "--overwrite"]), Some(1), "style image");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(d.join("content.png"), d.join("link.png")).unwrap();
        assert_refused(d, &args(&["-o", "link.png", "--overwrite"]), Some(1), "content image");
    }
    // An existing output without --overwrite is left alone.
    write(d, "out.png", b"precious");
    assert_refused(d, &args(&["-o", "out.png"]), Some(1), "--overwrite");
    assert_eq!(std::fs::read(d.join("out.png")).unwrap(), b"precious");
    // Unwritable places.
    assert_refused(d, &args(&["-o", "no-such-dir/out.png"]), Some(1), "cannot write");
    assert_refused(d, &args(&["-o", "file.txt/out.png"]), Some(1), "cannot write");
    assert_refused(d, &args(&["-o", "sub"]), None, "sub");
    // Frames of --save-every follow the same rules.
    write(d, "frame_2.png", b"old frame");
    assert_refused(
        d,
        &[
            "content.png",
            "style.png",
            "--image-size",
            "32",
            "-o",
            "frame.png",
            "--iterations",
            "4",
            "--save-every",
            "2",
        ],
        Some(1),
        "already exists",
    );
    // The log must not clobber an input either.
    assert_refused(d, &args(&["-o", "new.png", "--log", "content.png"]), Some(1), "--log");
    assert_refused(d, &args(&["-o", "new.png", "--log", "no-such-dir/log.jsonl"]), Some(1), "--log");
}

#[test]
fn bad_weights_are_refused() {
    let dir = setup();
    let d = dir.path();
    write(d, "corrupt.safetensors", &[0x13; 4096]);
    let png = encode(&DynamicImage::ImageRgb8(picture(20, 20, 0)), ImageFormat::Png);
    write(d, "foreign.safetensors", &png);
    // A well-formed safetensors file with the wrong content.
    let header = br#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header);
    st.extend_from_slice(&[0; 4]);
    write(d, "other.safetensors", &st);
    for name in ["missing.safetensors", "corrupt.safetensors", "foreign.safetensors", "other.safetensors"] {
        assert_refused(d, &args(&["--weights", name]), Some(1), name);
    }
}

#[test]
fn unknown_adapter_is_refused() {
    let dir = setup();
    assert_refused(dir.path(), &args(&["--adapter", "no-such-gpu-xyz"]), Some(1), "no-such-gpu-xyz");
}

#[test]
fn lead_placeholders_and_help() {
    let dir = setup();
    let o = run(dir.path(), &["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--output",
        "--image-size",
        "--style-scale",
        "--style-blend-weights",
        "--content-weight",
        "--style-weight",
        "--tv-weight",
        "--iterations",
        "num-iterations",
        "--optimizer",
        "--learning-rate",
        "--init",
        "--init-image",
        "--seed",
        "--original-colors",
        "--pooling",
        "--content-layers",
        "--style-layers",
        "--print-every",
        "--save-every",
        "--log",
        "--adapter",
        "--weights",
        "--overwrite",
        "devices",
        "bench",
        "selftest",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let o = run(dir.path(), &["--version"]);
    assert!(o.status.success());
}

/// A canvas beyond one evaluation's memory is evaluated in blocks; one that fits the budget in no blocks at all is
/// refused before any GPU allocation, in one line with the numbers (bad values of the memory flags are usage
/// errors: `clap_usage_errors_exit_2`).
#[test]
fn a_canvas_that_fits_no_block_is_refused_with_the_numbers() {
    let dir = setup();
    let e = assert_refused(dir.path(), &["content.png", "style.png", "--max-memory", "0.05"], Some(1), "out of memory");
    assert!(e.contains("does not fit the 0.05 GB budget") && e.contains("even in blocks of 16 px it needs"), "{e}");
    // A canvas whose x alone exceeds a binding (lavapipe's 128 MiB: ~3,340²), in blocks or not.
    let ctx = neural_style::gpu::GpuContext::new(&Default::default()).expect("an adapter");
    let limit = ctx.max_binding();
    drop(ctx);
    if limit <= 256 << 20 {
        let side = (((limit as f64) / 12.0).sqrt() * 1.1) as usize;
        let size = side.to_string();
        let e = assert_refused(dir.path(), &["content.png", "style.png", "--image-size", &size], Some(1), "x alone");
        assert!(e.contains("in blocks or not; lower --image-size"), "{e}");
    }
}

/// Spatial control's bad input (issue 24): a mask count that does not match the styles, a mask without the flag
/// it needs (usage, exit 2); an unreadable or empty mask, every style's mask black (one line, exit 1, nothing
/// written).
#[test]
fn bad_masks_are_refused() {
    let dir = setup();
    let d = dir.path();
    save(
        d,
        "white.png",
        &DynamicImage::ImageRgb8(image::RgbImage::from_pixel(8, 6, image::Rgb([255; 3]))),
        ImageFormat::Png,
    );
    save(d, "black.png", &DynamicImage::ImageRgb8(image::RgbImage::new(8, 6)), ImageFormat::Png);
    write(d, "empty.png", &[]);
    let usage: &[(&[&str], &str)] = &[
        (&["--style-masks", "white.png,white.png"], "--style-masks has 2 mask(s) but there is 1 style image"),
        (&["--style-image-masks", "white.png"], "needs --style-masks"),
        (
            &["--style-masks", "white.png", "--style-image-masks", "white.png,white.png"],
            "--style-image-masks has 2 mask(s)",
        ),
    ];
    for (extra, needle) in usage {
        assert_refused(d, &args(extra), Some(2), needle);
    }
    let runtime: &[(&[&str], &str)] = &[
        (&["--style-masks", "missing.png"], "--style-masks"),
        (&["--style-masks", "empty.png"], "the file is empty"),
        (&["--content-mask", "missing.png"], "--content-mask"),
        (&["--style-masks", "black.png"], "every --style-masks mask is black"),
        (&["--style-masks", "white.png", "--style-image-masks", "black.png"], "is black"),
    ];
    for (extra, needle) in runtime {
        assert_refused(d, &args(extra), Some(1), needle);
    }
}

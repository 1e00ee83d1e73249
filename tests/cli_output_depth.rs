//! `--output-depth 16`: PNG and TIFF outputs (and frames) written with 16 bits per channel, checked from the
//! written file's header; 8 stays the default; JPEG and other 8-bit formats refused before any work.

mod cli_support;

use std::io::Cursor;
use std::path::Path;

use cli_support::*;
use image::{ColorType, DynamicImage, ImageDecoder, ImageFormat, ImageReader};

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), "content.png", &DynamicImage::ImageRgb8(picture(48, 36, 0)), ImageFormat::Png);
    save(dir.path(), "style.png", &DynamicImage::ImageRgb8(stripes(32, 32)), ImageFormat::Png);
    dir
}

/// The format, colour type and size a file's header declares.
fn header(path: &Path) -> (ImageFormat, ColorType, (u32, u32)) {
    let bytes = std::fs::read(path).unwrap();
    let reader = ImageReader::new(Cursor::new(&bytes)).with_guessed_format().unwrap();
    let format = reader.format().unwrap();
    let decoder = reader.into_decoder().unwrap();
    (format, decoder.color_type(), decoder.dimensions())
}

#[test]
fn sixteen_bit_png_tiff_and_frames() {
    let dir = setup();
    let d = dir.path();
    let base = ["content.png", "style.png", "--image-size", "24", "--iterations", "2", "--output-depth", "16"];
    for (out, format) in [("o.png", ImageFormat::Png), ("o.tiff", ImageFormat::Tiff)] {
        let mut args = base.to_vec();
        args.extend(["--save-every", "1", "-o", out]);
        assert_ok(&run(d, &args));
        assert_eq!(header(&d.join(out)), (format, ColorType::Rgb16, (24, 18)), "{out}");
        let frame = out.replace("o.", "o_1.");
        assert_eq!(header(&d.join(&frame)), (format, ColorType::Rgb16, (24, 18)), "{frame}");
        // Real 16-bit values: after two Adam steps most samples fall between two 8-bit levels (b · 257).
        let samples = image::open(d.join(out)).unwrap().into_rgb16().into_raw();
        let between = samples.iter().filter(|v| *v % 257 != 0).count();
        assert!(between * 2 > samples.len(), "{between} of {} samples are not 8-bit levels", samples.len());
    }
    // The default is 8 bits, as before.
    assert_ok(&run(d, &["content.png", "style.png", "--image-size", "24", "--iterations", "1", "-o", "d.png"]));
    assert_eq!(header(&d.join("d.png")), (ImageFormat::Png, ColorType::Rgb8, (24, 18)));
    assert!(!files(d).iter().any(|n| n.starts_with(".tmp")), "{:?}", files(d));
}

#[test]
fn sixteen_bit_with_original_colors_keeps_the_chroma_finely() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let content = save_chroma_pair(d);
    let args = ["content.png", "style.png", "--image-size", "32", "--iterations", "3", "--original-colors"];
    let mut a16 = args.to_vec();
    a16.extend(["--output-depth", "16", "-o", "o16.tiff"]);
    assert_ok(&run(d, &a16));
    assert_eq!(header(&d.join("o16.tiff")), (ImageFormat::Tiff, ColorType::Rgb16, (32, 32)));
    let out = image::open(d.join("o16.tiff")).unwrap().into_rgb16();
    let chroma16 = |p: &image::Rgb<u16>| {
        let f = |v: u16| v as f64 / 257.0;
        let (r, g, b) = (f(p[0]), f(p[1]), f(p[2]));
        (128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b, 128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b)
    };
    let mut max_d = 0f64;
    for (p, q) in out.pixels().zip(content.pixels()) {
        let ((cb, cr), (cb0, cr0)) = (chroma16(p), chroma(q));
        max_d = max_d.max((cb - cb0).abs()).max((cr - cr0).abs());
    }
    // 8-bit rounding alone moves the chroma by up to about 1 (the 8-bit test allows 1.5); 16 bits keep it
    // within a few thousandths of a level.
    assert!(max_d < 0.02, "chroma moved by {max_d}");
}

#[test]
fn sixteen_bits_are_refused_for_8_bit_formats() {
    let dir = setup();
    let d = dir.path();
    let base = ["content.png", "style.png", "--image-size", "24", "--iterations", "1"];
    let with = |extra: &[&'static str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let e = assert_refused(d, &with(&["--output-depth", "16", "-o", "o.jpg"]), Some(2), "JPEG is 8-bit only");
    assert!(e.contains(".png or .tiff"), "{e}");
    assert_refused(d, &with(&["--output-depth", "16", "-o", "o.jpeg"]), Some(2), "JPEG is 8-bit only");
    assert_refused(d, &with(&["--output-depth", "16", "-o", "o.webp"]), Some(2), "WEBP is 8-bit only");
    assert_refused(d, &with(&["--output-depth", "16", "-o", "o.bmp"]), Some(2), "BMP is 8-bit only");
    assert_refused(d, &with(&["--output-depth", "12", "-o", "o.png"]), Some(2), "must be 8 or 16");
}

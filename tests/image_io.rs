//! The image-loading path on every input flavour the CLI promises to accept, and on broken inputs: no panic,
//! a clear error, no huge allocation. CPU only.

mod cli_support;

use std::path::Path;

use cli_support::*;
use image::{DynamicImage, ImageFormat, RgbImage};
use neural_style::image_io::{self, decode_image, load_image};

fn px(p: &neural_style::PlanarImage, x: usize, y: usize) -> [f32; 3] {
    [p.at(0, y, x), p.at(1, y, x), p.at(2, y, x)]
}

fn near(a: [f32; 3], b: [f32; 3], tol: f32) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn lossless_formats_decode_exactly() {
    let img = picture(13, 7, 2);
    for f in [
        ImageFormat::Png,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::WebP,
        ImageFormat::Tga,
        ImageFormat::Pnm,
        ImageFormat::Qoi,
    ] {
        let bytes = encode(&DynamicImage::ImageRgb8(img.clone()), f);
        // TGA has no signature: it is found by its extension.
        let p = decode_image(&bytes, Some(f)).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        assert_eq!((p.width, p.height), (13, 7), "{f:?}");
        assert_eq!(image_io::to_rgb8(&p), img, "{f:?}");
    }
}

#[test]
fn gif_palette_png_and_grayscale_jpeg() {
    let pal = [[255u8, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]];
    let p = decode_image(&palette_png(8, 4, &pal, |x, _| (x % 4) as u8), None).unwrap();
    assert_eq!(px(&p, 0, 0), [255.0, 0.0, 0.0]);
    assert_eq!(px(&p, 3, 2), [10.0, 20.0, 30.0]);

    let gif = encode(&DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(stripes(12, 10)).to_rgba8()), ImageFormat::Gif);
    let p = decode_image(&gif, None).unwrap();
    assert_eq!((p.width, p.height), (12, 10));
    assert_eq!(px(&p, 0, 0), [230.0, 40.0, 30.0]);

    let g = image::GrayImage::from_fn(16, 16, |_, _| image::Luma([77]));
    let p = decode_image(&encode(&DynamicImage::ImageLuma8(g), ImageFormat::Jpeg), None).unwrap();
    assert!(near(px(&p, 5, 5), [77.0; 3], 1.0));
    assert_eq!(px(&p, 5, 5)[0], px(&p, 5, 5)[1]);
}

#[test]
fn sixteen_bit_grayscale_and_rgba16() {
    let p = decode_image(&gray16_png(24, 24), None).unwrap();
    let v = (3 * 2000 + 2 * 700) as f64 * 255.0 / 65_535.0; // value at (3, 2), see gray16_png
    assert_eq!(px(&p, 3, 2), [v as f32; 3]);
    let img = image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(2, 2, |_, _| image::Rgba([65_535, 32_768, 1, 0]));
    let p = decode_image(&encode(&DynamicImage::ImageRgba16(img), ImageFormat::Png), None).unwrap();
    assert_eq!(px(&p, 1, 1), [255.0, (32_768.0f64 * 255.0 / 65_535.0) as f32, (255.0f64 / 65_535.0) as f32]);
}

#[test]
fn cmyk_jpeg_is_converted_to_rgb() {
    let bytes = cmyk_jpeg(16, 16, |_, y| if y < 8 { [255, 0, 0, 0] } else { [0, 0, 0, 0] });
    let p = decode_image(&bytes, None).unwrap();
    assert_eq!((p.width, p.height), (16, 16));
    assert!(near(px(&p, 4, 2), [0.0, 255.0, 255.0], 8.0), "full cyan: {:?}", px(&p, 4, 2));
    assert!(near(px(&p, 4, 13), [255.0, 255.0, 255.0], 8.0), "no ink: {:?}", px(&p, 4, 13));
}

#[test]
fn every_exif_orientation_is_applied() {
    // Stored 6x4 with distinct quadrant colours; what the viewer sees (top-left quadrant) per orientation.
    let (r, g, b, w) = ([230u8, 20, 20], [20, 230, 20], [20, 20, 230], [240, 240, 240]);
    // Stored layout: top-left r, top-right g, bottom-left b, bottom-right w.
    let stored = RgbImage::from_fn(32, 16, |x, y| {
        image::Rgb(match (x < 16, y < 8) {
            (true, true) => r,
            (false, true) => g,
            (true, false) => b,
            (false, false) => w,
        })
    });
    // (orientation, displayed size, colour at displayed top-left)
    let cases = [
        (1, (32, 16), r),
        (2, (32, 16), g),
        (3, (32, 16), w),
        (4, (32, 16), b),
        (5, (16, 32), r),
        (6, (16, 32), b),
        (7, (16, 32), w),
        (8, (16, 32), g),
    ];
    for (o, size, top_left) in cases {
        let p = decode_image(&exif_jpeg(&stored, o), None).unwrap();
        assert_eq!((p.width, p.height), size, "orientation {o}");
        let want = top_left.map(|v| v as f32);
        assert!(near(px(&p, 2, 2), want, 20.0), "orientation {o}: {:?} vs {want:?}", px(&p, 2, 2));
    }
}

#[test]
fn truncations_never_panic_and_mostly_fail() {
    let img = DynamicImage::ImageRgb8(picture(20, 12, 1));
    for f in [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::WebP,
        ImageFormat::Qoi,
    ] {
        let bytes = encode(&img, f);
        let mut refused = 0;
        for cut in 0..bytes.len() {
            if decode_image(&bytes[..cut], Some(f)).is_err() {
                refused += 1;
            }
        }
        // Every cut that loses image data is refused (a few trailing bytes may be optional, e.g. PNG's IEND).
        assert!(refused + 16 >= bytes.len(), "{f:?}: only {refused} of {} truncations refused", bytes.len());
    }
}

#[test]
fn bit_flips_never_panic() {
    let img = DynamicImage::ImageRgb8(picture(16, 16, 4));
    for f in
        [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Gif, ImageFormat::Bmp, ImageFormat::Tiff, ImageFormat::WebP]
    {
        let bytes = encode(&img, f);
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % b.len();
                b[i] ^= 1 << ((state >> 60) % 8);
            }
            if let Ok(p) = decode_image(&b, None) {
                assert_eq!(p.data.len(), 3 * p.width * p.height);
            }
        }
    }
}

#[test]
fn absurd_headers_are_refused_before_allocating() {
    let e = decode_image(&png_header_only(100_000, 100_000), None).unwrap_err().to_string();
    assert!(e.contains("too large"), "{e}");
    // 30000 x 30000 passes the per-side limit but not the pixel limit.
    let e = decode_image(&png_header_only(30_000, 30_000), None).unwrap_err().to_string();
    assert!(e.contains("too large"), "{e}");
    // A BMP header claiming 60000 x 60000.
    let mut bmp = encode(&DynamicImage::ImageRgb8(picture(4, 4, 0)), ImageFormat::Bmp);
    bmp[18..22].copy_from_slice(&60_000i32.to_le_bytes());
    bmp[22..26].copy_from_slice(&60_000i32.to_le_bytes());
    assert!(decode_image(&bmp, None).is_err());
    // A GIF claiming 65535 x 65535.
    let mut gif = encode(&DynamicImage::ImageRgb8(picture(4, 4, 0)), ImageFormat::Gif);
    gif[6..8].copy_from_slice(&65_535u16.to_le_bytes());
    gif[8..10].copy_from_slice(&65_535u16.to_le_bytes());
    // Refused from the header (4.3 G pixels), before a 16 GB canvas could be allocated.
    let e = decode_image(&gif, None).unwrap_err().to_string();
    assert!(e.contains("too large"), "{e}");
}

#[test]
fn load_image_names_the_file_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = load_image(&d.join("nope.png")).unwrap_err().to_string();
    assert!(e.contains("nope.png") && e.contains("no such file"), "{e}");
    std::fs::write(d.join("empty.jpg"), []).unwrap();
    let e = load_image(&d.join("empty.jpg")).unwrap_err().to_string();
    assert!(e.contains("empty.jpg") && e.contains("empty"), "{e}");
    let e = load_image(d).unwrap_err().to_string();
    assert!(e.contains("directory"), "{e}");
    // Content wins over a misleading extension.
    let p = save(d, "really-a-png.jpg", &DynamicImage::ImageRgb8(picture(5, 5, 0)), ImageFormat::Png);
    assert_eq!(image_io::to_rgb8(&load_image(&p).unwrap()), picture(5, 5, 0));
}

#[test]
fn writes_every_common_format() {
    let dir = tempfile::tempdir().unwrap();
    let img = image_io::from_rgb8(&picture(20, 10, 3));
    for (name, f) in [
        ("o.png", ImageFormat::Png),
        ("o.jpg", ImageFormat::Jpeg),
        ("o.webp", ImageFormat::WebP),
        ("o.tif", ImageFormat::Tiff),
        ("o.bmp", ImageFormat::Bmp),
    ] {
        let path = dir.path().join(name);
        image_io::write_image_atomic(&path, &img).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(image::guess_format(&bytes).unwrap(), f, "{name}");
        let back = decode_image(&bytes, None).unwrap();
        assert_eq!((back.width, back.height), (20, 10));
        if f != ImageFormat::Jpeg {
            assert_eq!(back, img, "{name} is lossless");
        }
    }
    assert_eq!(files(dir.path()).len(), 5, "no temporary files: {:?}", files(dir.path()));
}

/// Regenerates `fuzz-image/seeds/` (the starting corpus of the `decode_image` fuzz target): run with
/// `cargo test --release --test image_io -- --ignored write_fuzz_seeds`. Each seed is one hint-selector byte
/// (see `fuzz-image/fuzz_targets/decode_image.rs`) followed by a small image file.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-image").join("seeds");
    std::fs::create_dir_all(&dir).unwrap();
    let img = DynamicImage::ImageRgb8(picture(8, 6, 1));
    let mut seeds: Vec<(String, u8, Vec<u8>)> = Vec::new();
    for (sel, f, ext) in [
        (1u8, ImageFormat::Png, "png"),
        (2, ImageFormat::Jpeg, "jpg"),
        (3, ImageFormat::Gif, "gif"),
        (4, ImageFormat::WebP, "webp"),
        (5, ImageFormat::Tiff, "tiff"),
        (6, ImageFormat::Bmp, "bmp"),
        (7, ImageFormat::Tga, "tga"),
        (8, ImageFormat::Pnm, "ppm"),
        (10, ImageFormat::Qoi, "qoi"),
    ] {
        seeds.push((format!("rgb8.{ext}"), sel, encode(&img, f)));
    }
    let pal = [[255u8, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]];
    seeds.push(("palette.png".into(), 1, palette_png(6, 4, &pal, |x, y| ((x + y) % 4) as u8)));
    seeds.push(("gray16.png".into(), 1, gray16_png(5, 3)));
    let rgba = image::RgbaImage::from_fn(4, 4, |x, y| image::Rgba([x as u8 * 60, y as u8 * 60, 7, 128]));
    seeds.push(("rgba.png".into(), 1, encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png)));
    seeds.push(("cmyk.jpg".into(), 2, cmyk_jpeg(8, 8, |x, y| [x as u8 * 30, y as u8 * 30, 0, 10])));
    seeds.push(("exif6.jpg".into(), 2, exif_jpeg(&picture(8, 4, 2), 6)));
    for (name, sel, bytes) in seeds {
        let mut data = vec![sel];
        data.extend_from_slice(&bytes);
        std::fs::write(dir.join(name), data).unwrap();
    }
}

/// Outputs get the permissions of any new file (0666 less the umask), not a temporary file's private 0600.
#[cfg(unix)]
#[test]
fn written_images_are_readable_like_any_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.png");
    image_io::write_image_atomic(&path, &image_io::from_rgb8(&picture(4, 4, 0))).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    // Whatever the umask, a new file is readable by its group or others unless the umask forbids it; 0600 is
    // what a temporary file gets.
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    let expected = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, expected, "output mode {mode:o}, a new file gets {expected:o}");
}

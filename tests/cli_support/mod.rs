//! Helpers shared by the CLI end-to-end tests: run the built binary, make tiny test images of every flavour
//! the decoder must accept, and check refusals.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{DynamicImage, ImageFormat, RgbImage};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_neural-style")
}

/// The shipped weights (or `$NEURAL_STYLE_TEST_WEIGHTS`).
pub fn weights() -> PathBuf {
    if let Some(p) = std::env::var_os("NEURAL_STYLE_TEST_WEIGHTS") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("weights").join("vgg16_conv.safetensors")
}

/// Runs the binary in `dir` with `args` (plus `--weights <shipped>` unless `args` has `--weights`).
pub fn run(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir).args(args);
    if !args.contains(&"--weights") && !args.first().is_some_and(|a| ["devices", "bench", "selftest"].contains(a)) {
        cmd.arg("--weights").arg(weights());
    }
    cmd.output().expect("run neural-style")
}

/// What a run stopped by Ctrl-C left: its exit status, its stderr up to the line it was stopped at, and the rest.
pub struct Interrupted {
    pub status: std::process::ExitStatus,
    pub seen: String,
    pub rest: Vec<String>,
}

/// Runs the binary in `dir` with `args` (plus `--weights <shipped>`), sends it SIGINT once a stderr line starts
/// with `at` (within 120 s), and collects the rest.
pub fn interrupt_at(dir: &Path, args: &[&str], at: &str) -> Interrupted {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(bin())
        .current_dir(dir)
        .args(args)
        .arg("--weights")
        .arg(weights())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let start = std::time::Instant::now();
    let mut seen = String::new();
    loop {
        let line = lines.next().unwrap_or_else(|| panic!("stderr closed before a line '{at}…':\n{seen}")).unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with(at) {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(120), "no progress:\n{seen}");
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    Interrupted { status: child.wait().unwrap(), seen, rest }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stderr.
pub fn assert_ok(o: &Output) -> String {
    let e = stderr(o);
    assert!(o.status.success(), "neural-style failed ({:?}):\n{e}", o.status.code());
    assert!(!e.contains("panicked"), "{e}");
    e
}

/// Names of the files in `dir`, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Lines that GPU drivers print on their own (e.g. Mesa's EGL without a session: "XDG_RUNTIME_DIR is invalid").
pub fn is_driver_noise(line: &str) -> bool {
    line.contains("XDG_RUNTIME_DIR")
}

/// A refusal: non-zero exit (`code` when given), exactly one line on stderr starting with `error: ` and
/// containing `needle`, no panic, and the directory's files unchanged (no output, no temporary file).
pub fn assert_refused(dir: &Path, args: &[&str], code: Option<i32>, needle: &str) -> String {
    let before = files(dir);
    let o = run(dir, args);
    let e = stderr(&o);
    assert!(!o.status.success(), "expected a refusal for {args:?}, got success:\n{e}");
    if let Some(c) = code {
        assert_eq!(o.status.code(), Some(c), "exit code for {args:?}:\n{e}");
    }
    assert!(!e.contains("panicked"), "{e}");
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty() && !is_driver_noise(l)).collect();
    assert_eq!(lines.len(), 1, "expected one stderr line for {args:?}, got:\n{e}");
    assert!(lines[0].starts_with("error: "), "{e}");
    assert!(lines[0].to_lowercase().contains(&needle.to_lowercase()), "stderr for {args:?} lacks '{needle}':\n{e}");
    assert_eq!(files(dir), before, "files changed after refusing {args:?}");
    e
}

/// A smooth colourful test picture.
pub fn picture(w: u32, h: u32, phase: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let r = (40 + (x * 180) / w.max(1) + phase * 13) % 256;
        let g = (60 + (y * 150) / h.max(1)) % 256;
        let b = (200u32.wrapping_sub((x + y) * 2) + phase * 31) % 256;
        image::Rgb([r as u8, g as u8, b as u8])
    })
}

/// Bold stripes: a style with strong texture.
pub fn stripes(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if (x / 3 + y / 5) % 2 == 0 {
            image::Rgb([230, 40, 30])
        } else {
            image::Rgb([20, 30, 200])
        }
    })
}

pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut c = Cursor::new(Vec::new());
    img.write_to(&mut c, format).unwrap();
    c.into_inner()
}

/// Writes `content.png`, a 32 px ramp of mid-range colours (at the target size of `--image-size 32`, so it is used
/// as is and nothing is clamped: its chroma can be compared pixel by pixel), and `style.png`, stripes, into `d`;
/// returns the content.
pub fn save_chroma_pair(d: &Path) -> RgbImage {
    let content =
        RgbImage::from_fn(32, 32, |x, y| image::Rgb([(90 + x * 2) as u8, (110 + y * 2) as u8, (100 + (x + y)) as u8]));
    save(d, "content.png", &DynamicImage::ImageRgb8(content.clone()), ImageFormat::Png);
    save(d, "style.png", &DynamicImage::ImageRgb8(stripes(32, 32)), ImageFormat::Png);
    content
}

pub fn save(dir: &Path, name: &str, img: &DynamicImage, format: ImageFormat) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, encode(img, format)).unwrap();
    p
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
}

/// zlib stream with stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(65_535).collect() };
    for (i, c) in chunks.iter().enumerate() {
        out.push(if i + 1 == chunks.len() { 1 } else { 0 });
        out.extend_from_slice(&(c.len() as u16).to_le_bytes());
        out.extend_from_slice(&(!(c.len() as u16)).to_le_bytes());
        out.extend_from_slice(c);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// A PNG with only an IHDR claiming `w` x `h` (8-bit RGB) and an empty image stream.
pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &zlib_stored(&[0; 16]));
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// An 8-bit palette (indexed colour) PNG: the pixel at (x, y) has palette index `index(x, y)`.
pub fn palette_png(w: u32, h: u32, palette: &[[u8; 3]], index: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"PLTE", &palette.concat());
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            raw.push(index(x, y));
        }
    }
    png_chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A CMYK JPEG (Adobe convention as written by jpeg-encoder); `cmyk(x, y)` gives the ink amounts.
pub fn cmyk_jpeg(w: u16, h: u16, cmyk: impl Fn(u16, u16) -> [u8; 4]) -> Vec<u8> {
    let mut data = Vec::new();
    for y in 0..h {
        for x in 0..w {
            data.extend_from_slice(&cmyk(x, y));
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 95).encode(&data, w, h, jpeg_encoder::ColorType::Cmyk).unwrap();
    out
}

/// A JPEG of `img` with an EXIF APP1 block carrying `orientation` (1–8).
pub fn exif_jpeg(img: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(&DynamicImage::ImageRgb8(img.clone()))
        .unwrap();
    let mut tiff = b"MM\0\x2a".to_vec();
    tiff.extend_from_slice(&8u32.to_be_bytes());
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A 16-bit grayscale PNG.
pub fn gray16_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(w, h, |x, y| {
        image::Luma([((x * 2000 + y * 700) % 65_536) as u16])
    });
    encode(&DynamicImage::ImageLuma16(img), ImageFormat::Png)
}

/// BT.601 full-range chroma (Cb, Cr) of an 8-bit RGB pixel.
pub fn chroma(p: &image::Rgb<u8>) -> (f64, f64) {
    let (r, g, b) = (p[0] as f64, p[1] as f64, p[2] as f64);
    (128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b, 128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b)
}

/// Parses a JSON-lines loss log.
pub fn read_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}")))
        .collect()
}

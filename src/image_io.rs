//! Image input and output: decoding with limits, the spec's preprocessing (RGB floats in pixel units 0–255),
//! resizing, the `--original-colors` colour transfer, and atomic writing.
//!
//! Decoding rules (docs/MATHS.md, "Images"):
//! - any format the `image` crate reads (PNG, JPEG incl. CMYK JPEG, WebP, TIFF, GIF, BMP, …); the format is
//!   sniffed from the content first, the extension is only a fallback;
//! - grayscale is replicated to R = G = B, alpha is dropped (not composited), palette images are expanded;
//! - 16-bit samples are scaled to 0–255 without rounding (`v · 255/65535`); float images are clamped to [0, 1]
//!   and scaled by 255;
//! - the EXIF orientation (JPEG, PNG, WebP, TIFF) is applied;
//! - an embedded ICC profile is converted to sRGB, in f64 ([`crate::colour`], docs/COLOUR.md); an image without
//!   one is taken as sRGB and decoded exactly as it always was;
//! - absurd dimensions are refused from the header, before any pixel buffer is allocated.
//!
//! Resizing uses a separable Lanczos3 filter (`image::imageops::FilterType::Lanczos3`) on the float image; the
//! result is clamped to [0, 255] (no ringing outside the valid range). An image already at its target size is
//! returned unchanged.
//!
//! Writing: `round(clamp(v, 0, 255))` to 8-bit RGB (or, with [`OutputDepth::Sixteen`] for PNG and TIFF,
//! `round(clamp(v, 0, 255) · 257)` to 16-bit RGB), format from the file extension, encoded to memory, written
//! to a temporary file in the same directory, fsynced and renamed over the target, so a reader (or a crash, or
//! Ctrl-C) never sees a partial file. [`OutputProfile`] says which colour profile is written: sRGB (embedded where
//! the format carries a profile), or the content image's own, the pixels converted to it.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, Rgb32FImage, RgbImage};

use crate::colour;
use crate::error::{one_line, Error, Result};
use crate::planar::PlanarImage;

/// Largest accepted side of an input image, in pixels (checked from the header, before decoding).
pub const MAX_INPUT_SIDE: u32 = 32_768;
/// Largest accepted number of pixels of an input image (about 134 Mpx).
pub const MAX_INPUT_PIXELS: u64 = 1 << 27;
/// Largest accepted decoded buffer (bytes), e.g. RGBA 16-bit at the pixel limit.
pub const MAX_DECODE_BYTES: u64 = 1 << 30;
/// Largest accepted input file (bytes).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Reads and decodes an image file into RGB floats in pixel units (0–255), EXIF orientation applied.
///
/// Every failure (missing, unreadable, empty, truncated, corrupt, not an image, too large) is an
/// [`Error::Io`] or [`Error::Image`] with a one-line message naming the file.
pub fn load_image(path: &Path) -> Result<PlanarImage> {
    load_image_with_profile(path).map(|(img, _)| img)
}

/// [`load_image`], also returning the ICC profile the pixels were converted from (see
/// [`decode_image_with_profile`]): what `--output-profile content` writes the output back into.
pub fn load_image_with_profile(path: &Path) -> Result<(PlanarImage, Option<Vec<u8>>)> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| Error::Io(format!("cannot read '{shown}': {}", io_reason(&e))))?;
    if meta.is_dir() {
        return Err(Error::Io(format!("cannot read '{shown}': it is a directory")));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::Image(format!(
            "'{shown}' is too large ({} bytes; at most {MAX_FILE_BYTES} accepted)",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("cannot read '{shown}': {}", io_reason(&e))))?;
    let hint = ImageFormat::from_path(path).ok();
    decode_image_with_profile(&bytes, hint, &DecodeLimits::default()).map_err(|e| match e {
        Error::Image(msg) => Error::Image(format!("'{shown}': {msg}")),
        other => other,
    })
}

/// Decodes an in-memory image (the core of [`load_image`], also the fuzzing entry point).
///
/// `hint` is the format guessed from a file extension; the content's signature wins when it is recognised.
/// Errors are [`Error::Image`] with a message that does not name a file.
pub fn decode_image(bytes: &[u8], hint: Option<ImageFormat>) -> Result<PlanarImage> {
    decode_image_with_limits(bytes, hint, &DecodeLimits::default())
}

/// Size limits checked from an image's header before decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted side, in pixels.
    pub max_side: u32,
    /// Largest accepted number of pixels.
    pub max_pixels: u64,
    /// Largest accepted decoded buffer, in bytes (also the decoder's allocation limit).
    pub max_bytes: u64,
}

impl Default for DecodeLimits {
    /// [`MAX_INPUT_SIDE`], [`MAX_INPUT_PIXELS`], [`MAX_DECODE_BYTES`].
    fn default() -> Self {
        DecodeLimits { max_side: MAX_INPUT_SIDE, max_pixels: MAX_INPUT_PIXELS, max_bytes: MAX_DECODE_BYTES }
    }
}

/// [`decode_image`] with other limits (the fuzz target uses small ones, so that slowness means a hang, not a
/// legitimately large image).
pub fn decode_image_with_limits(bytes: &[u8], hint: Option<ImageFormat>, lim: &DecodeLimits) -> Result<PlanarImage> {
    decode_image_with_profile(bytes, hint, lim).map(|(img, _)| img)
}

/// [`decode_image_with_limits`], also returning the embedded ICC profile the pixels were converted from.
///
/// Every decode converts to sRGB (docs/COLOUR.md): an image with an embedded ICC profile (PNG iCCP, JPEG APP2,
/// TIFF, WebP, GIF) is converted from it with moxcms, in f64; the profile's bytes are returned. An image without
/// one is taken as sRGB and decoded exactly as before; so is one whose profile is ignored (unreadable, CMYK, a
/// gray profile on a colour image: see [`crate::colour::to_srgb`]), for which `None` is returned.
pub fn decode_image_with_profile(
    bytes: &[u8],
    hint: Option<ImageFormat>,
    lim: &DecodeLimits,
) -> Result<(PlanarImage, Option<Vec<u8>>)> {
    if bytes.is_empty() {
        return Err(Error::Image("the file is empty".into()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Image(format!("cannot read the image: {e}")))?;
    // The content's signature wins; the extension is the fallback for formats without one (e.g. TGA).
    let sniffed = reader.format().is_some();
    if !sniffed {
        if let Some(f) = hint {
            reader.set_format(f);
        }
    }
    let format = reader.format().ok_or_else(|| Error::Image("not an image (unrecognised file format)".into()))?;
    let fail = |format: ImageFormat, e: ImageError| {
        if sniffed {
            image_error(format, e)
        } else {
            Error::Image(format!(
                "not a {} image (unrecognised content; {})",
                format_name(format),
                one_line(&e.to_string())
            ))
        }
    };
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes)?;
    }

    let mut limits = Limits::default();
    limits.max_image_width = Some(lim.max_side);
    limits.max_image_height = Some(lim.max_side);
    limits.max_alloc = Some(lim.max_bytes);
    reader.limits(limits);

    let mut decoder = reader.into_decoder().map_err(|e| fail(format, e))?;
    let (w, h) = decoder.dimensions();
    check_dimensions(w, h, lim)?;
    if decoder.total_bytes() > lim.max_bytes {
        return Err(Error::Image(format!(
            "image is too large to decode ({w}x{h}, {} bytes decoded; at most {})",
            decoder.total_bytes(),
            lim.max_bytes
        )));
    }
    // A broken EXIF block is not worth refusing an image for: fall back to no transform.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    // Likewise an unreadable profile: the image is taken as sRGB, as an untagged one.
    let icc = decoder.icc_profile().ok().flatten().filter(|p| !p.is_empty());
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| fail(format, e))?;
    img.apply_orientation(orientation);
    let (w, h) = (img.width(), img.height());
    check_dimensions(w, h, lim)?;
    let mut planar = dynamic_to_planar(&img);
    let icc = match icc {
        Some(icc) if colour::to_srgb(&mut planar, &icc, !img.color().has_color())? => Some(icc),
        _ => None,
    };
    Ok((planar, icc))
}

fn check_dimensions(w: u32, h: u32, lim: &DecodeLimits) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(Error::Image(format!("image has no pixels ({w}x{h})")));
    }
    if w > lim.max_side || h > lim.max_side || (w as u64) * (h as u64) > lim.max_pixels {
        return Err(Error::Image(format!(
            "image dimensions {w}x{h} are too large (at most {} px a side and {} pixels)",
            lim.max_side, lim.max_pixels
        )));
    }
    Ok(())
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => one_line(&e.to_string()),
    }
}

fn format_name(f: ImageFormat) -> String {
    format!("{f:?}").to_uppercase()
}

fn image_error(format: ImageFormat, e: ImageError) -> Error {
    let name = format_name(format);
    Error::Image(match e {
        ImageError::Limits(l) => format!("image is too large: {}", one_line(&l.to_string())),
        ImageError::Unsupported(u) => {
            format!("unsupported {name} image: {}", one_line(&u.to_string()))
        }
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("{name} image is truncated")
        }
        ImageError::IoError(io) => format!("cannot decode the {name} image: {}", one_line(&io.to_string())),
        other => format!("corrupt or truncated {name} image: {}", one_line(&other.to_string())),
    })
}

/// zune-jpeg (in its lenient mode) decodes a JPEG cut short in its entropy-coded data as if the rest were
/// grey. A truncated input is an error here: the data after the first start-of-scan must contain an
/// end-of-image marker.
fn check_jpeg_complete(bytes: &[u8]) -> Result<()> {
    let truncated = || Error::Image("JPEG image is truncated (no end-of-image marker)".into());
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Ok(()); // let the decoder report it
    }
    // Walk the marker segments up to the first SOS (0xFFDA).
    let mut i = 2usize;
    loop {
        // Skip fill bytes.
        while i < bytes.len() && bytes[i] == 0xFF && i + 1 < bytes.len() && bytes[i + 1] == 0xFF {
            i += 1;
        }
        if i + 1 >= bytes.len() {
            return Err(truncated());
        }
        if bytes[i] != 0xFF {
            return Ok(()); // malformed: the decoder reports it
        }
        let marker = bytes[i + 1];
        match marker {
            0xD9 => return Ok(()), // EOI before any scan: the decoder decides
            0x01 | 0xD0..=0xD7 => {
                i += 2;
                continue;
            }
            _ => {}
        }
        if i + 3 >= bytes.len() {
            return Err(truncated());
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if marker == 0xDA {
            let scan_start = i + 2 + len;
            if scan_start > bytes.len() {
                return Err(truncated());
            }
            let rest = &bytes[scan_start..];
            return if rest.windows(2).any(|w| w == [0xFF, 0xD9]) { Ok(()) } else { Err(truncated()) };
        }
        i += 2 + len;
    }
}

/// Converts a decoded image to planar RGB floats in pixel units: grayscale replicated, alpha dropped, 16-bit
/// scaled by 255/65535 without rounding, floats clamped to [0, 1] and scaled by 255.
pub fn dynamic_to_planar(img: &DynamicImage) -> PlanarImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let n = w * h;
    let mut data = vec![0f32; 3 * n];
    // `px(i)` gives the RGB of pixel i (row-major).
    fn fill<F: Fn(usize) -> [f32; 3]>(data: &mut [f32], n: usize, px: F) {
        for i in 0..n {
            let [r, g, b] = px(i);
            data[i] = r;
            data[n + i] = g;
            data[2 * n + i] = b;
        }
    }
    let s16 = |v: u16| (v as f64 * 255.0 / 65535.0) as f32;
    let sf = |v: f32| {
        if v.is_nan() {
            0.0
        } else {
            v.clamp(0.0, 1.0) * 255.0
        }
    };
    match img {
        DynamicImage::ImageLuma8(b) => {
            let r = b.as_raw();
            fill(&mut data, n, |i| [r[i] as f32; 3])
        }
        DynamicImage::ImageLumaA8(b) => {
            let r = b.as_raw();
            fill(&mut data, n, |i| [r[2 * i] as f32; 3])
        }
        DynamicImage::ImageRgb8(b) => {
            let r = b.as_raw();
            fill(&mut data, n, |i| [r[3 * i] as f32, r[3 * i + 1] as f32, r[3 * i + 2] as f32])
        }
        DynamicImage::ImageRgba8(b) => {
            let r = b.as_raw();
            fill(&mut data, n, |i| [r[4 * i] as f32, r[4 * i + 1] as f32, r[4 * i + 2] as f32])
        }
        DynamicImage::ImageLuma16(b) => {
            let r = b.as_raw();
            fill(&mut data, n, |i| [s16(r[i]); 3])
        }
        DynamicImage::ImageLumaA16(b) => {
            let r = b.as_raw();
            fill(&mut data, n, |i| [s16(r[2 * i]); 3])
        }
        DynamicImage::ImageRgb16(b) => {
            let r = b.as_raw();
            fill(&mut data, n, |i| [s16(r[3 * i]), s16(r[3 * i + 1]), s16(r[3 * i + 2])])
        }
        DynamicImage::ImageRgba16(b) => {
            let r = b.as_raw();
            fill(&mut data, n, |i| [s16(r[4 * i]), s16(r[4 * i + 1]), s16(r[4 * i + 2])])
        }
        DynamicImage::ImageRgb32F(b) => {
            let r = b.as_raw();
            fill(&mut data, n, |i| [sf(r[3 * i]), sf(r[3 * i + 1]), sf(r[3 * i + 2])])
        }
        DynamicImage::ImageRgba32F(b) => {
            let r = b.as_raw();
            fill(&mut data, n, |i| [sf(r[4 * i]), sf(r[4 * i + 1]), sf(r[4 * i + 2])])
        }
        other => {
            let b = other.to_rgb32f();
            let r = b.as_raw();
            fill(&mut data, n, |i| [sf(r[3 * i]), sf(r[3 * i + 1]), sf(r[3 * i + 2])])
        }
    }
    PlanarImage::new(w, h, data)
}

/// (width, height) with the longest side `longest`, aspect kept: the other side is `round(side · longest /
/// longest_side)`, at least 1.
pub fn target_size(width: usize, height: usize, longest: usize) -> (usize, usize) {
    let scaled =
        |side: usize, long: usize| -> usize { ((side as f64 * longest as f64 / long as f64).round() as usize).max(1) };
    if width >= height {
        (longest, scaled(height, width))
    } else {
        (scaled(width, height), longest)
    }
}

/// The longest side of the style images: `ceil(style_scale · image_size)`.
pub fn style_longest_side(image_size: usize, style_scale: f64) -> usize {
    // Computed in f64; a tiny epsilon keeps e.g. 0.5 · 512 = 256 exactly at 256.
    let v = style_scale * image_size as f64;
    (v - 1e-9).ceil().max(1.0) as usize
}

/// Resizes so that the longest side is `longest` (see [`target_size`]); unchanged when already that size.
pub fn resize_longest(img: &PlanarImage, longest: usize) -> PlanarImage {
    let (w, h) = target_size(img.width, img.height, longest);
    resize_exact(img, w, h)
}

/// Resizes to exactly `width` x `height` with Lanczos3 (result clamped to [0, 255]); unchanged when already
/// that size.
pub fn resize_exact(img: &PlanarImage, width: usize, height: usize) -> PlanarImage {
    assert!(width > 0 && height > 0, "resize_exact: empty target size");
    if (img.width, img.height) == (width, height) {
        return img.clone();
    }
    let n = img.width * img.height;
    let mut inter = Vec::with_capacity(3 * n);
    for i in 0..n {
        for c in 0..3 {
            inter.push(img.data[c * n + i] / 255.0);
        }
    }
    let buf = Rgb32FImage::from_raw(img.width as u32, img.height as u32, inter).expect("buffer size");
    let out = image::imageops::resize(&buf, width as u32, height as u32, image::imageops::FilterType::Lanczos3);
    let raw = out.as_raw();
    let m = width * height;
    let mut data = vec![0f32; 3 * m];
    for i in 0..m {
        for c in 0..3 {
            data[c * m + i] = (raw[3 * i + c] * 255.0).clamp(0.0, 255.0);
        }
    }
    PlanarImage::new(width, height, data)
}

/// How [`resample_planes`] interpolates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    /// Catmull-Rom (bicubic): the image and Adam's first moment between scales.
    Bicubic,
    /// Triangle (bilinear): Adam's second moment, which must stay ≥ 0 (bicubic overshoots).
    Bilinear,
}

/// Resizes `channels` planes of `width` x `height` floats (CHW) to `new_width` x `new_height`, in the values'
/// own units (any sign), each result within its plane's [min, max]: coarse-to-fine moves the optimised x and
/// the optimiser's state with it.
pub fn resample_planes(
    data: &[f32],
    channels: usize,
    (width, height): (usize, usize),
    (new_width, new_height): (usize, usize),
    filter: Resample,
) -> Vec<f32> {
    assert_eq!(data.len(), channels * width * height, "resample_planes: size");
    let filter = match filter {
        Resample::Bicubic => image::imageops::FilterType::CatmullRom,
        Resample::Bilinear => image::imageops::FilterType::Triangle,
    };
    let n = width * height;
    let m = new_width * new_height;
    let mut out = Vec::with_capacity(channels * m);
    for c in 0..channels {
        let plane = &data[c * n..(c + 1) * n];
        // The image crate keeps f32 pixels within [0, 1]: map each plane's range onto it and back (so a
        // bicubic overshoot is clipped to the plane's own range).
        let (lo, hi) = plane.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
            out.extend(std::iter::repeat_n(if lo.is_finite() { lo } else { 0.0 }, m));
            continue;
        }
        let unit: Vec<f32> = plane.iter().map(|v| (v - lo) / (hi - lo)).collect();
        let buf = image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_raw(width as u32, height as u32, unit)
            .expect("plane size");
        let resized = image::imageops::resize(&buf, new_width as u32, new_height as u32, filter);
        out.extend(resized.into_raw().into_iter().map(|u| lo + u * (hi - lo)));
    }
    out
}

/// The output quantisation: `round(clamp(v, 0, 255))` (NaN → 0) to 8-bit RGB.
pub fn to_rgb8(img: &PlanarImage) -> RgbImage {
    let n = img.width * img.height;
    let mut raw = Vec::with_capacity(3 * n);
    for i in 0..n {
        for c in 0..3 {
            raw.push(quantize(img.data[c * n + i]));
        }
    }
    RgbImage::from_raw(img.width as u32, img.height as u32, raw).expect("buffer size")
}

/// `round(clamp(v, 0, 255))` as u8; NaN gives 0.
pub fn quantize(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        v.clamp(0.0, 255.0).round() as u8
    }
}

/// The inverse of [`to_rgb8`]'s layout change: an 8-bit RGB image as planar floats.
pub fn from_rgb8(img: &RgbImage) -> PlanarImage {
    dynamic_to_planar(&DynamicImage::ImageRgb8(img.clone()))
}

/// The output format for `path`, from its extension. Refuses unknown extensions and formats the `image` crate
/// cannot write as 8-bit RGB, before any work is done.
pub fn output_format(path: &Path) -> Result<ImageFormat> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let unknown = || {
        Error::InvalidOption(format!(
            "cannot tell the output format of '{}' from its extension; use .png, .jpg, .webp, .tiff, .bmp, ...",
            path.display()
        ))
    };
    if ext.is_empty() {
        return Err(unknown());
    }
    let format = ImageFormat::from_extension(ext).ok_or_else(unknown)?;
    if !format.writing_enabled() {
        return Err(Error::InvalidOption(format!(
            "cannot write {} files ('{}'); use .png, .jpg, .webp, .tiff, .bmp, ...",
            format_name(format),
            path.display()
        )));
    }
    // Prove the encoder accepts an RGB image, so a run never ends with an unwritable format.
    encode_image(&PlanarImage::zeros(16, 16), format).map_err(|_| {
        Error::InvalidOption(format!(
            "cannot write {} files ('{}'); use .png, .jpg, .webp, .tiff, .bmp, ...",
            format_name(format),
            path.display()
        ))
    })?;
    Ok(format)
}

/// Bits per channel of a written image (`--output-depth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputDepth {
    /// 8-bit RGB, [`to_rgb8`]: every format.
    #[default]
    Eight,
    /// 16-bit RGB, [`to_rgb16`]: PNG and TIFF only.
    Sixteen,
}

impl OutputDepth {
    /// 8 → [`OutputDepth::Eight`], 16 → [`OutputDepth::Sixteen`]; anything else is `None`.
    pub fn from_bits(bits: u32) -> Option<Self> {
        match bits {
            8 => Some(OutputDepth::Eight),
            16 => Some(OutputDepth::Sixteen),
            _ => None,
        }
    }
}

/// Refuses a depth the format cannot hold, before any work is done: 16 bits only for PNG and TIFF (the
/// formats whose `image` encoders take 16-bit RGB and that every viewer reads back as 16-bit).
pub fn check_output_depth(path: &Path, format: ImageFormat, depth: OutputDepth) -> Result<()> {
    if depth == OutputDepth::Sixteen && !holds_16_bits(format) {
        return Err(Error::InvalidOption(format!(
            "--output-depth 16: {} is 8-bit only ('{}'); write a .png or .tiff for 16 bits per channel",
            format_name(format),
            path.display()
        )));
    }
    Ok(())
}

fn holds_16_bits(format: ImageFormat) -> bool {
    matches!(format, ImageFormat::Png | ImageFormat::Tiff)
}

/// The 16-bit output quantisation: `round(clamp(v, 0, 255) · 257)` (NaN → 0) to 16-bit RGB, so that 0 and 255
/// map to 0 and 65535 and an 8-bit value `b` to `b · 257`, exactly what a 16-bit reader scales back to `b`.
pub fn to_rgb16(img: &PlanarImage) -> image::ImageBuffer<image::Rgb<u16>, Vec<u16>> {
    let n = img.width * img.height;
    let mut raw = Vec::with_capacity(3 * n);
    for i in 0..n {
        for c in 0..3 {
            raw.push(quantize16(img.data[c * n + i]));
        }
    }
    image::ImageBuffer::from_raw(img.width as u32, img.height as u32, raw).expect("buffer size")
}

/// `round(clamp(v, 0, 255) · 257)` as u16; NaN gives 0.
pub fn quantize16(v: f32) -> u16 {
    if v.is_nan() {
        0
    } else {
        // In f64: 255 · 257 = 65535 and the .5 cases round the same on every platform.
        (v.clamp(0.0, 255.0) as f64 * 257.0).round() as u16
    }
}

/// Encodes to memory as 8-bit RGB ([`to_rgb8`]) in `format`; JPEG at quality 95.
pub fn encode_image(img: &PlanarImage, format: ImageFormat) -> Result<Vec<u8>> {
    encode_image_with_depth(img, format, OutputDepth::Eight)
}

/// Encodes to memory in `format` with `depth` bits per channel ([`to_rgb8`] or [`to_rgb16`]); JPEG at quality
/// 95. A depth the format cannot hold is an [`Error::InvalidOption`] (see [`check_output_depth`]).
pub fn encode_image_with_depth(img: &PlanarImage, format: ImageFormat, depth: OutputDepth) -> Result<Vec<u8>> {
    encode_dynamic(&to_dynamic(img, format, depth)?, format, None)
}

/// `img` quantised to `depth` bits per channel, or an [`Error::InvalidOption`] when `format` cannot hold them.
fn to_dynamic(img: &PlanarImage, format: ImageFormat, depth: OutputDepth) -> Result<DynamicImage> {
    Ok(match depth {
        OutputDepth::Eight => DynamicImage::ImageRgb8(to_rgb8(img)),
        OutputDepth::Sixteen if holds_16_bits(format) => DynamicImage::ImageRgb16(to_rgb16(img)),
        OutputDepth::Sixteen => {
            return Err(Error::InvalidOption(format!(
                "cannot write a {} image with 16 bits per channel: {} is 8-bit only",
                format_name(format),
                format_name(format)
            )))
        }
    })
}

/// Encodes `rgb` in `format` (JPEG at quality 95, every other format with the `image` crate's defaults), with
/// the ICC profile `icc` embedded when given; `icc` must be `None` unless [`carries_profile`]`(format)`.
fn encode_dynamic(rgb: &DynamicImage, format: ImageFormat, icc: Option<&[u8]>) -> Result<Vec<u8>> {
    use image::codecs::{jpeg::JpegEncoder, png::PngEncoder, tiff::TiffEncoder, webp::WebPEncoder};
    use image::ImageEncoder;
    fn write<E: ImageEncoder>(rgb: &DynamicImage, mut encoder: E, icc: Option<&[u8]>) -> image::ImageResult<()> {
        if let Some(icc) = icc {
            encoder.set_icc_profile(icc.to_vec()).map_err(ImageError::Unsupported)?;
        }
        rgb.write_with_encoder(encoder)
    }
    let mut out = Cursor::new(Vec::new());
    // The same encoders `write_to` picks, made here so that a profile can be set on them.
    let res = match format {
        ImageFormat::Jpeg => write(rgb, JpegEncoder::new_with_quality(&mut out, 95), icc),
        ImageFormat::Png => write(rgb, PngEncoder::new(&mut out), icc),
        ImageFormat::Tiff => write(rgb, TiffEncoder::new(&mut out), icc),
        ImageFormat::WebP => write(rgb, WebPEncoder::new_lossless(&mut out), icc),
        _ => {
            assert!(icc.is_none(), "{format:?} carries no ICC profile");
            rgb.write_to(&mut out, format)
        }
    };
    res.map_err(|e| {
        Error::Image(format!("cannot encode the {} image: {}", format_name(format), one_line(&e.to_string())))
    })?;
    Ok(out.into_inner())
}

/// The colour profile of a written image (`--output-profile`, docs/COLOUR.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OutputProfile {
    /// sRGB, the colours everything is computed in: the pixels as they are, with an sRGB ICC profile embedded
    /// where the format carries one ([`carries_profile`]; elsewhere untagged, which readers take as sRGB).
    #[default]
    Srgb,
    /// The content image's own profile, its ICC bytes as [`load_image_with_profile`] returned them: the pixels
    /// are converted from sRGB to it and it is embedded. Only for formats that carry a profile.
    Content(Vec<u8>),
}

impl OutputProfile {
    /// `--output-profile content` for a content image whose profile is `icc`: sRGB when it had none (an untagged
    /// image is sRGB, so its colours are already the content's).
    pub fn content(icc: Option<Vec<u8>>) -> OutputProfile {
        icc.map_or(OutputProfile::Srgb, OutputProfile::Content)
    }
}

/// Whether the `image` crate's encoder for `format` embeds an ICC profile: PNG (iCCP chunk), JPEG (APP2
/// segments), TIFF (ICC tag) and WebP (ICCP chunk). BMP, GIF, TGA, PNM, QOI, ICO, farbfeld, OpenEXR, HDR and AVIF
/// are written without one.
pub fn carries_profile(format: ImageFormat) -> bool {
    matches!(format, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Tiff | ImageFormat::WebP)
}

/// Refuses an output profile that cannot be written to `path` in `format`, before any work is done:
/// [`OutputProfile::Content`] needs a format that [`carries_profile`] and an RGB profile moxcms can convert to.
pub fn check_output_profile(path: &Path, format: ImageFormat, profile: &OutputProfile) -> Result<()> {
    let OutputProfile::Content(icc) = profile else { return Ok(()) };
    if !carries_profile(format) {
        return Err(Error::InvalidOption(format!(
            "--output-profile content: {} files cannot carry an ICC profile ('{}'); write a .png, .jpg, .tiff or \
             .webp, or use --output-profile srgb",
            format_name(format),
            path.display()
        )));
    }
    colour::check_output_icc(icc)
}

/// [`encode_image_with_depth`] in the colours of `profile`, embedded where the format carries one (see
/// [`OutputProfile`]). [`OutputProfile::Content`] on a format without profiles, or with a profile that cannot
/// be converted to, is an [`Error::InvalidOption`] (see [`check_output_profile`]).
pub fn encode_image_with_profile(
    img: &PlanarImage,
    format: ImageFormat,
    depth: OutputDepth,
    profile: &OutputProfile,
) -> Result<Vec<u8>> {
    match profile {
        OutputProfile::Srgb => {
            let icc = carries_profile(format).then(colour::srgb_icc);
            encode_dynamic(&to_dynamic(img, format, depth)?, format, icc)
        }
        OutputProfile::Content(icc) => {
            // The CLI refuses this before any work (check_output_profile); a library caller learns it here.
            check_output_profile(Path::new("the output"), format, profile)?;
            let converted = colour::from_srgb(img, icc)?;
            encode_dynamic(&to_dynamic(&converted, format, depth)?, format, Some(icc))
        }
    }
}

/// The directory an atomic write of `path` creates its temporary file in.
pub fn output_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename (the one atomic
/// writer, shared with the weights: `neural_style_weights::write_atomic`). On failure the temporary file is
/// removed and `path` is untouched.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    neural_style_weights::write_atomic(path, bytes)
        .map_err(|e| Error::Io(format!("cannot write '{}': {}", path.display(), io_reason(&e))))
}

/// Encodes `img` as 8-bit sRGB in the format of `path`'s extension, the sRGB profile embedded where the format
/// carries one, and writes it atomically (see [`write_bytes_atomic`]).
pub fn write_image_atomic(path: &Path, img: &PlanarImage) -> Result<()> {
    write_image_atomic_with_profile(path, img, OutputDepth::Eight, &OutputProfile::Srgb)
}

/// [`write_image_atomic`] with `depth` bits per channel in the colours of `profile`
/// (see [`encode_image_with_profile`]).
pub fn write_image_atomic_with_profile(
    path: &Path,
    img: &PlanarImage,
    depth: OutputDepth,
    profile: &OutputProfile,
) -> Result<()> {
    let format = output_format(path)?;
    check_output_depth(path, format, depth)?;
    check_output_profile(path, format, profile)?;
    let bytes = encode_image_with_profile(img, format, depth, profile)?;
    write_bytes_atomic(path, &bytes)
}

/// The path of the snapshot saved after iteration `iter` by `--save-every`: `<stem>_<iter>.<ext>` beside `output`.
pub fn snapshot_path(output: &Path, iter: usize) -> PathBuf {
    let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let name = match output.extension() {
        Some(ext) => format!("{stem}_{iter}.{}", ext.to_string_lossy()),
        None => format!("{stem}_{iter}"),
    };
    output.with_file_name(name)
}

/// RGB → YCbCr, BT.601 full range (JPEG's): Y in [0, 255], Cb and Cr centred on 128.
pub fn rgb_to_ycbcr(r: f64, g: f64, b: f64) -> (f64, f64, f64) {
    let y = 0.299 * r + 0.587 * g + 0.114 * b;
    let cb = 128.0 - 0.168_735_891_647_856_7 * r - 0.331_264_108_352_143_3 * g + 0.5 * b;
    let cr = 128.0 + 0.5 * r - 0.418_687_589_158_663_5 * g - 0.081_312_410_841_336_5 * b;
    (y, cb, cr)
}

/// YCbCr → RGB, the exact inverse of [`rgb_to_ycbcr`].
pub fn ycbcr_to_rgb(y: f64, cb: f64, cr: f64) -> (f64, f64, f64) {
    let (cb, cr) = (cb - 128.0, cr - 128.0);
    let r = y + 1.402 * cr;
    let g = y - 0.344_136_286_201_022_1 * cb - 0.714_136_286_201_022_1 * cr;
    let b = y + 1.772 * cb;
    (r, g, b)
}

/// `--original-colors`: the luminance (Y) of `output` (clamped to [0, 255] first, i.e. what would be written)
/// with the chroma (Cb, Cr) of `content`, BT.601 full-range YCbCr. Both images must have the same size.
pub fn original_colors(output: &PlanarImage, content: &PlanarImage) -> PlanarImage {
    assert_eq!((output.width, output.height), (content.width, content.height), "original_colors: size mismatch");
    let n = output.width * output.height;
    let mut data = vec![0f32; 3 * n];
    let cl = |v: f32| {
        if v.is_nan() {
            0.0
        } else {
            v.clamp(0.0, 255.0) as f64
        }
    };
    for i in 0..n {
        let (y, _, _) = rgb_to_ycbcr(cl(output.data[i]), cl(output.data[n + i]), cl(output.data[2 * n + i]));
        let (_, cb, cr) =
            rgb_to_ycbcr(content.data[i] as f64, content.data[n + i] as f64, content.data[2 * n + i] as f64);
        let (r, g, b) = ycbcr_to_rgb(y, cb, cr);
        data[i] = r as f32;
        data[n + i] = g as f32;
        data[2 * n + i] = b as f32;
    }
    PlanarImage::new(output.width, output.height, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut c = Cursor::new(Vec::new());
        img.write_to(&mut c, format).unwrap();
        c.into_inner()
    }

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7 % 256) as u8, (y * 11 % 256) as u8, ((x + y) * 3 % 256) as u8])
        })
    }

    #[test]
    fn rgb8_roundtrip_is_exact() {
        let img = gradient(5, 3);
        let p = decode_image(&encode(DynamicImage::ImageRgb8(img.clone()), ImageFormat::Png), None).unwrap();
        assert_eq!((p.width, p.height), (5, 3));
        assert_eq!(p.at(0, 2, 4), img.get_pixel(4, 2)[0] as f32);
        assert_eq!(p.at(1, 2, 4), img.get_pixel(4, 2)[1] as f32);
        assert_eq!(p.at(2, 1, 3), img.get_pixel(3, 1)[2] as f32);
        assert_eq!(to_rgb8(&p), img);
    }

    #[test]
    fn grayscale_is_replicated_and_alpha_dropped() {
        let g = image::GrayImage::from_fn(4, 2, |x, y| image::Luma([(x * 50 + y) as u8]));
        let p = decode_image(&encode(DynamicImage::ImageLuma8(g), ImageFormat::Png), None).unwrap();
        for c in 0..3 {
            assert_eq!(p.at(c, 1, 3), 151.0);
        }
        let a = image::RgbaImage::from_fn(3, 3, |x, _| image::Rgba([10, 20, 30, (x * 100) as u8]));
        let p = decode_image(&encode(DynamicImage::ImageRgba8(a), ImageFormat::Png), None).unwrap();
        assert_eq!((p.at(0, 0, 0), p.at(1, 0, 0), p.at(2, 0, 0)), (10.0, 20.0, 30.0));
    }

    #[test]
    fn sixteen_bit_is_scaled_without_rounding() {
        let img =
            image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(2, 1, |x, _| image::Rgb([1000 + x as u16, 65535, 0]));
        let p = decode_image(&encode(DynamicImage::ImageRgb16(img), ImageFormat::Png), None).unwrap();
        assert_eq!(p.at(0, 0, 0), (1000.0f64 * 255.0 / 65535.0) as f32);
        assert_eq!(p.at(0, 0, 1), (1001.0f64 * 255.0 / 65535.0) as f32);
        assert_eq!(p.at(1, 0, 0), 255.0);
        assert_eq!(p.at(2, 0, 0), 0.0);
        assert!(p.at(0, 0, 0).fract() != 0.0);
    }

    #[test]
    fn refuses_empty_garbage_and_truncated() {
        assert!(decode_image(&[], None).is_err());
        let e = decode_image(b"hello, this is not an image at all", None).unwrap_err().to_string();
        assert!(e.contains("not an image"), "{e}");
        let png = encode(DynamicImage::ImageRgb8(gradient(40, 40)), ImageFormat::Png);
        assert!(decode_image(&png[..png.len() / 2], None).is_err());
        let jpg = encode(DynamicImage::ImageRgb8(gradient(40, 40)), ImageFormat::Jpeg);
        assert!(decode_image(&jpg, None).is_ok());
        let e = decode_image(&jpg[..jpg.len() * 2 / 3], None).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn refuses_absurd_dimensions_from_the_header() {
        // A PNG header claiming 100000 x 100000 with no data.
        let mut png = Vec::new();
        png.extend_from_slice(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(b"IHDR");
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
        let e = decode_image(&png, None).unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn target_sizes() {
        assert_eq!(target_size(100, 50, 32), (32, 16));
        assert_eq!(target_size(50, 100, 32), (16, 32));
        assert_eq!(target_size(3, 1000, 20), (1, 20));
        assert_eq!(target_size(33, 10, 16), (16, 5)); // 4.85 → 5
        assert_eq!(style_longest_side(512, 1.0), 512);
        assert_eq!(style_longest_side(512, 0.5), 256);
        assert_eq!(style_longest_side(33, 0.5), 17);
        assert_eq!(style_longest_side(100, 1.234), 124);
    }

    #[test]
    fn resample_planes_keeps_signed_values_and_linear_ramps() {
        // Two planes: a signed ramp along x (−100 … 140) and a constant; upscaled 2x both ways.
        let (w, h) = (7, 5);
        let ramp: Vec<f32> = (0..w * h).map(|i| -100.0 + 40.0 * (i % w) as f32).collect();
        let data: Vec<f32> = ramp.iter().copied().chain(std::iter::repeat_n(-3.5, w * h)).collect();
        for filter in [Resample::Bicubic, Resample::Bilinear] {
            let out = resample_planes(&data, 2, (w, h), (14, 10), filter);
            assert_eq!(out.len(), 2 * 140);
            let (a, b) = out.split_at(140);
            assert!(a.iter().all(|v| (-100.0..=140.0).contains(v)), "{filter:?}: {a:?}");
            // Interior samples of a linear ramp stay on it (both filters reproduce linear functions).
            for y in 0..10 {
                for x in 3..11 {
                    let expect = -100.0 + 40.0 * ((x as f32 + 0.5) / 2.0 - 0.5);
                    assert!(
                        (a[y * 14 + x] - expect).abs() < 1e-3,
                        "{filter:?} ({x},{y}): {} vs {expect}",
                        a[y * 14 + x]
                    );
                }
            }
            assert!(b.iter().all(|&v| v == -3.5));
        }
    }

    #[test]
    fn resize_keeps_same_size_untouched_and_constant_images_constant() {
        let p = PlanarImage::new(2, 1, vec![1.5, 300.0, -4.0, 7.0, 8.0, 9.0]);
        assert_eq!(resize_exact(&p, 2, 1), p);
        let c = PlanarImage::new(40, 30, [vec![10.0; 1200], vec![128.0; 1200], vec![250.0; 1200]].concat());
        let r = resize_longest(&c, 20);
        assert_eq!((r.width, r.height), (20, 15));
        for (i, v) in r.data.iter().enumerate() {
            let want = [10.0, 128.0, 250.0][i / 300];
            assert!((v - want).abs() < 1e-3, "{v} vs {want}");
        }
        let up = resize_exact(&c, 64, 48);
        assert!(up.data.iter().all(|v| (0.0..=255.0).contains(v)));
    }

    #[test]
    fn quantize_rounds_and_clamps() {
        assert_eq!(quantize(-3.0), 0);
        assert_eq!(quantize(300.0), 255);
        assert_eq!(quantize(1.49), 1);
        assert_eq!(quantize(1.5), 2);
        assert_eq!(quantize(f32::NAN), 0);
    }

    #[test]
    fn ycbcr_roundtrip_and_original_colors() {
        for &(r, g, b) in &[(0.0, 0.0, 0.0), (255.0, 255.0, 255.0), (12.0, 200.0, 99.0), (255.0, 0.0, 0.0)] {
            let (y, cb, cr) = rgb_to_ycbcr(r, g, b);
            let (r2, g2, b2) = ycbcr_to_rgb(y, cb, cr);
            assert!((r - r2).abs() < 1e-9 && (g - g2).abs() < 1e-9 && (b - b2).abs() < 1e-9);
        }
        let (_, cb, cr) = rgb_to_ycbcr(77.0, 77.0, 77.0);
        assert!((cb - 128.0).abs() < 1e-9 && (cr - 128.0).abs() < 1e-9);

        let content = PlanarImage::new(2, 1, vec![200.0, 10.0, 50.0, 100.0, 60.0, 180.0]);
        let output = PlanarImage::new(2, 1, vec![90.0, 120.0, 90.0, 120.0, 90.0, 400.0]);
        let mixed = original_colors(&output, &content);
        for i in 0..2 {
            let px = |p: &PlanarImage, clamp: bool| {
                let f = |v: f32| {
                    if clamp {
                        v.clamp(0.0, 255.0) as f64
                    } else {
                        v as f64
                    }
                };
                rgb_to_ycbcr(f(p.data[i]), f(p.data[2 + i]), f(p.data[4 + i]))
            };
            let (y, cb, cr) = px(&mixed, false);
            let (yo, _, _) = px(&output, true);
            let (_, cbc, crc) = px(&content, false);
            assert!((y - yo).abs() < 1e-3 && (cb - cbc).abs() < 1e-3 && (cr - crc).abs() < 1e-3);
        }
    }

    #[test]
    fn snapshot_paths() {
        assert_eq!(snapshot_path(Path::new("dir/out.png"), 100), PathBuf::from("dir/out_100.png"));
        assert_eq!(snapshot_path(Path::new("a.b.jpg"), 0), PathBuf::from("a.b_0.jpg"));
    }

    #[test]
    fn output_formats() {
        for ok in ["o.png", "o.jpg", "o.jpeg", "o.webp", "o.tiff", "o.tif", "o.bmp", "o.PNG"] {
            output_format(Path::new(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["o", "o.txt", "o.xyz"] {
            assert!(output_format(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantize16_rounds_clamps_and_matches_8_bit_levels() {
        assert_eq!(quantize16(-3.0), 0);
        assert_eq!(quantize16(f32::NAN), 0);
        assert_eq!(quantize16(300.0), 65_535);
        assert_eq!(quantize16(255.0), 65_535);
        assert_eq!(quantize16(1.5), 386); // 385.5 rounds up
        assert_eq!(quantize16(0.001), 0);
        assert_eq!(quantize16(0.002), 1); // 0.514: finer than an 8-bit step
        for b in 0..=255u8 {
            assert_eq!(quantize16(b as f32), b as u16 * 257);
        }
    }

    #[test]
    fn sixteen_bit_png_and_tiff_keep_the_fraction() {
        let img = PlanarImage::new(3, 1, vec![0.0, 100.25, 255.0, 10.5, 300.0, -1.0, 1.0, 2.0, 3.0]);
        for format in [ImageFormat::Png, ImageFormat::Tiff] {
            let bytes = encode_image_with_depth(&img, format, OutputDepth::Sixteen).unwrap();
            let decoder = ImageReader::new(Cursor::new(&bytes)).with_guessed_format().unwrap().into_decoder().unwrap();
            assert_eq!(decoder.color_type(), image::ColorType::Rgb16, "{format:?}");
            let back = image::load_from_memory(&bytes).unwrap().into_rgb16();
            assert_eq!(back.get_pixel(1, 0).0, [25_764, 65_535, 514], "{format:?}"); // 100.25 · 257 = 25764.25
            assert_eq!(back.get_pixel(0, 0).0, [0, 2_699, 257], "{format:?}"); // 10.5 · 257 = 2698.5
        }
    }

    #[test]
    fn eight_bit_encoding_is_unchanged() {
        // The 8-bit path must stay byte-identical to encoding `to_rgb8` directly (what every version wrote).
        let img = PlanarImage::new(2, 2, vec![0.0, 100.4, 255.0, 10.6, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        for format in [ImageFormat::Png, ImageFormat::Tiff, ImageFormat::Bmp] {
            let mut direct = Cursor::new(Vec::new());
            DynamicImage::ImageRgb8(to_rgb8(&img)).write_to(&mut direct, format).unwrap();
            assert_eq!(encode_image_with_depth(&img, format, OutputDepth::Eight).unwrap(), direct.into_inner());
            assert_eq!(
                encode_image(&img, format).unwrap(),
                encode_image_with_depth(&img, format, OutputDepth::Eight).unwrap()
            );
        }
    }

    #[test]
    fn sixteen_bits_only_for_png_and_tiff() {
        for (name, format) in [("o.png", ImageFormat::Png), ("o.tif", ImageFormat::Tiff)] {
            check_output_depth(Path::new(name), format, OutputDepth::Sixteen).unwrap();
        }
        let e = check_output_depth(Path::new("o.jpg"), ImageFormat::Jpeg, OutputDepth::Sixteen).unwrap_err();
        assert!(matches!(e, Error::InvalidOption(_)), "{e:?}");
        assert!(e.to_string().contains("JPEG is 8-bit only"), "{e}");
        for (name, format) in [("o.webp", ImageFormat::WebP), ("o.bmp", ImageFormat::Bmp), ("o.jpg", ImageFormat::Jpeg)]
        {
            check_output_depth(Path::new(name), format, OutputDepth::Eight).unwrap();
            assert!(check_output_depth(Path::new(name), format, OutputDepth::Sixteen).is_err(), "{name}");
            assert!(encode_image_with_depth(&PlanarImage::zeros(2, 2), format, OutputDepth::Sixteen).is_err());
        }
        assert_eq!(OutputDepth::from_bits(8), Some(OutputDepth::Eight));
        assert_eq!(OutputDepth::from_bits(16), Some(OutputDepth::Sixteen));
        assert_eq!(OutputDepth::from_bits(12), None);
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("ns-image-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.png");
        let img = PlanarImage::new(2, 1, vec![0.0, 255.0, 10.4, 10.6, -5.0, 999.0]);
        write_image_atomic(&path, &img).unwrap();
        // Nothing but the output is left in the directory.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let back = load_image(&path).unwrap();
        assert_eq!(back.data, vec![0.0, 255.0, 10.0, 11.0, 0.0, 255.0]);
        assert!(write_image_atomic(&dir.join("missing-dir/x.png"), &img).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Colour management (docs/COLOUR.md): inputs in Display P3, Adobe RGB and gray profiles decode to the sRGB
/// values an independent f64 reference computes; outputs carry their profile; a P3 photo survives a round trip.
#[cfg(test)]
mod colour_tests {
    use super::*;
    use image::codecs::png::PngEncoder;
    use image::ImageEncoder;
    use moxcms::ColorProfile;
    use nalgebra::{Matrix3, Vector3};

    /// Chromaticities (x, y) of an RGB space's red, green and blue primaries.
    type Primaries = [(f64, f64); 3];
    const SRGB: Primaries = [(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)];
    const P3: Primaries = [(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)];
    const ADOBE: Primaries = [(0.64, 0.33), (0.21, 0.71), (0.15, 0.06)];
    const D65: (f64, f64) = (0.3127, 0.3290);

    /// The reference's transfer functions, 0–1 units.
    #[derive(Clone, Copy)]
    enum Trc {
        Srgb,
        Gamma(f64),
    }

    impl Trc {
        fn decode(self, v: f64) -> f64 {
            match self {
                Trc::Srgb if v <= 0.04045 => v / 12.92,
                Trc::Srgb => ((v + 0.055) / 1.055).powf(2.4),
                Trc::Gamma(g) => v.powf(g),
            }
        }
    }

    fn srgb_encode(l: f64) -> f64 {
        if l <= 0.003_130_8 {
            12.92 * l
        } else {
            1.055 * l.powf(1.0 / 2.4) - 0.055
        }
    }

    /// The RGB → XYZ matrix of primaries `p` with white D65 (the textbook derivation, SMPTE RP 177).
    fn rgb_to_xyz(p: Primaries) -> Matrix3<f64> {
        let xyz = |(x, y): (f64, f64)| Vector3::new(x / y, 1.0, (1.0 - x - y) / y);
        let m = Matrix3::from_columns(&[xyz(p[0]), xyz(p[1]), xyz(p[2])]);
        let s = m.try_inverse().unwrap() * xyz(D65);
        m * Matrix3::from_diagonal(&s)
    }

    /// The reference: `px` (0–255 in a space of primaries `p` and curve `trc`) in sRGB, 0–255 (unrounded), linear
    /// values clipped to [0, 1] channel by channel. Both spaces are D65, so no white adaptation enters.
    fn reference(px: [f64; 3], p: Primaries, trc: Trc) -> [f64; 3] {
        let to_srgb = rgb_to_xyz(SRGB).try_inverse().unwrap() * rgb_to_xyz(p);
        let lin = to_srgb * Vector3::from_fn(|c, _| trc.decode(px[c] / 255.0));
        [0, 1, 2].map(|c| srgb_encode(lin[c].clamp(0.0, 1.0)) * 255.0)
    }

    fn icc(profile: ColorProfile) -> Vec<u8> {
        profile.encode().unwrap()
    }

    fn png_with_icc(img: &DynamicImage, icc: Option<&[u8]>) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut encoder = PngEncoder::new(&mut out);
        if let Some(icc) = icc {
            encoder.set_icc_profile(icc.to_vec()).unwrap();
        }
        img.write_with_encoder(encoder).unwrap();
        out.into_inner()
    }

    /// An 8-bit RGB image whose columns are `colours`, `h` rows tall.
    fn columns8(colours: &[[u8; 3]], h: u32) -> DynamicImage {
        let w = colours.len() as u32;
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, _| image::Rgb(colours[x as usize])))
    }

    /// Rows enough for the `image` crate's TIFF decoder to read a profile back: it refuses an ICC tag of more
    /// than (image bytes) / size_of::<tiff Value> bytes (its limit for decoding buffers, not for IFD values).
    const TALL: u32 = 2048;

    /// Largest |decoded − reference| over the pixels of `img` (a row of `colours`), 0–255 units.
    fn worst_error(img: &PlanarImage, colours: &[[f64; 3]], p: Primaries, trc: Trc) -> f64 {
        let mut worst = 0f64;
        for (x, px) in colours.iter().enumerate() {
            let want = reference(*px, p, trc);
            for (c, w) in want.iter().enumerate() {
                worst = worst.max((img.at(c, 0, x) as f64 - w).abs());
            }
        }
        worst
    }

    const COLOURS: [[u8; 3]; 6] =
        [[255, 0, 0], [0, 255, 0], [128, 128, 128], [200, 120, 80], [60, 130, 190], [20, 40, 10]];

    fn as_f64(colours: &[[u8; 3]]) -> Vec<[f64; 3]> {
        colours.iter().map(|c| c.map(|v| v as f64)).collect()
    }

    #[test]
    fn reference_is_the_published_p3_to_srgb_matrix() {
        // The matrix the reference builds, against the published one, so that the test does not check moxcms
        // against a reference with the same mistake. The published one is given to 4 decimals from a slightly
        // different white (its rows sum to 1 ± 4e-4), hence the tolerance.
        let m = rgb_to_xyz(SRGB).try_inverse().unwrap() * rgb_to_xyz(P3);
        let published = Matrix3::new(1.2249, -0.2247, 0.0, -0.0420, 1.0419, 0.0, -0.0197, -0.0786, 1.0979);
        assert!((m - published).abs().max() < 5e-4, "{m}");
    }

    #[test]
    fn display_p3_and_adobe_rgb_inputs_decode_to_the_reference_srgb() {
        for (name, profile, p, trc) in [
            ("Display P3", ColorProfile::new_display_p3(), P3, Trc::Srgb),
            ("Adobe RGB", ColorProfile::new_adobe_rgb(), ADOBE, Trc::Gamma(563.0 / 256.0)),
        ] {
            let icc = icc(profile);
            let png = png_with_icc(&columns8(&COLOURS, 1), Some(&icc));
            let (img, got_icc) = decode_image_with_profile(&png, None, &DecodeLimits::default()).unwrap();
            assert_eq!(got_icc.as_deref(), Some(&icc[..]), "{name}: the profile is returned");
            let worst = worst_error(&img, &as_f64(&COLOURS), p, trc);
            eprintln!("{name} 8-bit → sRGB: worst error {worst:.4} levels");
            assert!(worst <= 0.25, "{name}: {worst} levels off the reference");
            // The test can fail: without conversion the in-gamut colours are far from the reference.
            let untagged = decode_image(&png_with_icc(&columns8(&COLOURS, 1), None), None).unwrap();
            assert!(worst_error(&untagged, &as_f64(&COLOURS), p, trc) > 10.0, "{name}");
            // Out of gamut: pure red and green clip channel by channel to sRGB's red and green.
            assert_eq!([0, 1, 2].map(|c| img.at(c, 0, 0).round()), [255.0, 0.0, 0.0], "{name}");
            assert_eq!([0, 1, 2].map(|c| img.at(c, 0, 1).round()), [0.0, 255.0, 0.0], "{name}");
        }
    }

    #[test]
    fn sixteen_bit_p3_input_keeps_its_precision() {
        // Values 1/16 of an 8-bit level apart (16 of 65535 ≈ 0.06 level) must stay apart.
        let vals: Vec<[u16; 3]> =
            (0..8).map(|k| [51_400 + 16 * k, 30_840 + 16 * k, 20_560 + 16 * k]).chain([[65_535, 0, 0]]).collect();
        let img = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(vals.len() as u32, 1, |x, _| {
            image::Rgb(vals[x as usize])
        });
        let png = png_with_icc(&DynamicImage::ImageRgb16(img), Some(&icc(ColorProfile::new_display_p3())));
        let (p, _) = decode_image_with_profile(&png, None, &DecodeLimits::default()).unwrap();
        let colours: Vec<[f64; 3]> = vals.iter().map(|v| v.map(|s| s as f64 * 255.0 / 65535.0)).collect();
        let worst = worst_error(&p, &colours, P3, Trc::Srgb);
        eprintln!("Display P3 16-bit → sRGB: worst error {worst:.4} levels");
        assert!(worst <= 0.03, "{worst} levels off the reference");
        for x in 1..8 {
            assert!(p.at(0, 0, x) > p.at(0, 0, x - 1), "red at {x} not above its neighbour: 16-bit precision lost");
        }
    }

    #[test]
    fn gray_profile_input_decodes_to_the_reference() {
        // Gamma 1.8 (the classic Mac gray): far enough from sRGB's curve that skipping the conversion would fail.
        let icc = icc(ColorProfile::new_gray_with_gamma(1.8));
        let levels = [0u8, 30, 128, 200, 255];
        let gray = image::GrayImage::from_fn(levels.len() as u32, 1, |x, _| image::Luma([levels[x as usize]]));
        let png = png_with_icc(&DynamicImage::ImageLuma8(gray), Some(&icc));
        let (p, got) = decode_image_with_profile(&png, None, &DecodeLimits::default()).unwrap();
        assert!(got.is_some());
        for (x, &v) in levels.iter().enumerate() {
            let want = srgb_encode((v as f64 / 255.0).powf(1.8)) * 255.0;
            for c in 0..3 {
                assert!((p.at(c, 0, x) as f64 - want).abs() <= 0.5, "level {v}: {} vs {want}", p.at(c, 0, x));
            }
        }
        assert!((p.at(0, 0, 2) - 128.0).abs() > 10.0, "gamma 1.8 gray 128 is not sRGB 128");
    }

    #[test]
    fn untagged_and_srgb_tagged_inputs_decode_exactly_as_before() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb([(x * 17) as u8, (y * 16) as u8, ((x * y) % 256) as u8])
        }));
        let before = dynamic_to_planar(&img);
        let (untagged, none) =
            decode_image_with_profile(&png_with_icc(&img, None), None, &DecodeLimits::default()).unwrap();
        assert_eq!(none, None);
        assert_eq!(untagged, before);
        let (tagged, icc) =
            decode_image_with_profile(&png_with_icc(&img, Some(colour::srgb_icc())), None, &DecodeLimits::default())
                .unwrap();
        assert_eq!(icc.as_deref(), Some(colour::srgb_icc()));
        assert_eq!(tagged, before);
        // A profile moxcms cannot read is ignored: the image is taken as sRGB.
        let junk = png_with_icc(&img, Some(b"not an ICC profile at all, but long enough to look like one"));
        assert_eq!(decode_image_with_profile(&junk, None, &DecodeLimits::default()).unwrap(), (before, None));
    }

    #[test]
    fn srgb_output_carries_the_srgb_profile_where_the_format_can() {
        let img = dynamic_to_planar(&columns8(&COLOURS, TALL));
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Tiff, ImageFormat::WebP] {
            let bytes = encode_image_with_profile(&img, format, OutputDepth::Eight, &OutputProfile::Srgb).unwrap();
            let mut decoder =
                ImageReader::new(Cursor::new(&bytes)).with_guessed_format().unwrap().into_decoder().unwrap();
            let icc = decoder.icc_profile().unwrap().unwrap_or_else(|| panic!("{format:?}: no profile"));
            assert_eq!(icc, colour::srgb_icc(), "{format:?}");
            let (got, want) = (ColorProfile::new_from_slice(&icc).unwrap(), ColorProfile::new_srgb());
            let (got, want) = (got.rgb_to_xyz_matrix().v, want.rgb_to_xyz_matrix().v);
            assert!(got.iter().flatten().zip(want.iter().flatten()).all(|(g, w)| (g - w).abs() < 1e-4), "{format:?}");
            if format != ImageFormat::Jpeg {
                // Read back as sRGB: the pixels are unchanged.
                let (back, _) = decode_image_with_profile(&bytes, None, &DecodeLimits::default()).unwrap();
                assert_eq!(back, img, "{format:?}");
            }
        }
        let png = encode_image_with_profile(&img, ImageFormat::Png, OutputDepth::Sixteen, &OutputProfile::Srgb);
        assert!(png.unwrap().windows(4).any(|w| w == b"iCCP"), "the PNG has an iCCP chunk");
        // BMP carries no profile: written untagged (sRGB by convention), exactly as before.
        let bmp = encode_image_with_profile(&img, ImageFormat::Bmp, OutputDepth::Eight, &OutputProfile::Srgb);
        assert_eq!(bmp.unwrap(), encode_image(&img, ImageFormat::Bmp).unwrap());
    }

    #[test]
    fn content_profile_round_trip_keeps_a_wide_gamut_photos_colours() {
        let p3 = icc(ColorProfile::new_display_p3());
        let png = png_with_icc(&columns8(&COLOURS, TALL), Some(&p3));
        let (srgb, content_icc) = decode_image_with_profile(&png, None, &DecodeLimits::default()).unwrap();
        let profile = OutputProfile::content(content_icc);
        assert_eq!(profile, OutputProfile::Content(p3.clone()));
        for (format, depth) in [
            (ImageFormat::Png, OutputDepth::Eight),
            (ImageFormat::Png, OutputDepth::Sixteen),
            (ImageFormat::Tiff, OutputDepth::Sixteen),
            (ImageFormat::WebP, OutputDepth::Eight),
        ] {
            let bytes = encode_image_with_profile(&srgb, format, depth, &profile).unwrap();
            let (back, icc) = decode_image_with_profile(&bytes, None, &DecodeLimits::default()).unwrap();
            assert_eq!(icc.as_deref(), Some(&p3[..]), "{format:?}: the content's profile is embedded");
            // The sRGB pixels survive, up to the quantisation of the P3 values written (per column).
            let errors: Vec<f64> = (0..COLOURS.len())
                .map(|x| (0..3).map(|c| (srgb.at(c, 0, x) - back.at(c, 0, x)).abs() as f64).fold(0.0, f64::max))
                .collect();
            eprintln!("P3 round trip {format:?} {depth:?}: sRGB error per colour {errors:.4?} levels");
            let tolerance = if depth == OutputDepth::Eight { 1.0 } else { 0.02 };
            // Columns 0 and 1 (sRGB's red and green, clipped on the way in) have channels at 0, where the sRGB
            // curve's linear toe (slope 12.92) magnifies the rounding of an 8-bit P3 value to a few sRGB levels.
            let edge = if depth == OutputDepth::Eight { 3.0 } else { 0.02 };
            assert!(errors[..2].iter().all(|&e| e <= edge), "{format:?} {depth:?}: {errors:?}");
            assert!(errors[2..].iter().all(|&e| e <= tolerance), "{format:?} {depth:?}: {errors:?}");
            // The written pixels are P3 values: the in-gamut colours come back as they were in the photo.
            let raw = image::load_from_memory(&bytes).unwrap().into_rgb8();
            for (x, want) in COLOURS.iter().enumerate().skip(2) {
                let got = raw.get_pixel(x as u32, 0).0;
                assert!(got.iter().zip(want).all(|(g, w)| g.abs_diff(*w) <= 1), "{format:?}: {got:?} vs {want:?}");
            }
            // P3's pure red was clipped to sRGB's on the way in: it comes back as sRGB red in P3, not P3 red.
            assert_ne!(raw.get_pixel(0, 0).0, [255, 0, 0]);
        }
    }

    #[test]
    fn content_profile_refused_where_it_cannot_be_written() {
        let p3 = OutputProfile::Content(icc(ColorProfile::new_display_p3()));
        let img = PlanarImage::zeros(2, 2);
        for (name, format) in [("o.bmp", ImageFormat::Bmp), ("o.gif", ImageFormat::Gif)] {
            let e = check_output_profile(Path::new(name), format, &p3).unwrap_err();
            assert!(matches!(e, Error::InvalidOption(_)) && e.to_string().contains("cannot carry"), "{e}");
            let e = encode_image_with_profile(&img, format, OutputDepth::Eight, &p3).unwrap_err();
            assert!(matches!(e, Error::InvalidOption(_)), "{e}");
            check_output_profile(Path::new(name), format, &OutputProfile::Srgb).unwrap();
        }
        let gray = OutputProfile::Content(icc(ColorProfile::new_gray_with_gamma(2.2)));
        let e = check_output_profile(Path::new("o.png"), ImageFormat::Png, &gray).unwrap_err();
        assert!(matches!(e, Error::InvalidOption(_)) && e.to_string().contains("Gray"), "{e}");
        let junk = OutputProfile::Content(b"junk".to_vec());
        let e = check_output_profile(Path::new("o.png"), ImageFormat::Png, &junk).unwrap_err();
        assert!(matches!(e, Error::InvalidOption(_)), "{e}");
        assert_eq!(OutputProfile::content(None), OutputProfile::Srgb);
    }

    #[test]
    fn atomic_write_with_the_content_profile() {
        let dir = tempfile::tempdir().unwrap();
        let p3 = icc(ColorProfile::new_display_p3());
        let img = PlanarImage::new(1, 1, vec![214.0, 116.0, 70.0]);
        let path = dir.path().join("x.png");
        write_image_atomic_with_profile(&path, &img, OutputDepth::Eight, &OutputProfile::Content(p3.clone())).unwrap();
        let (back, icc) = load_image_with_profile(&path).unwrap();
        assert_eq!(icc, Some(p3.clone()));
        assert!(back.data.iter().zip(&img.data).all(|(a, b)| (a - b).abs() <= 1.0), "{:?}", back.data);
        let e = write_image_atomic_with_profile(
            &dir.path().join("x.bmp"),
            &img,
            OutputDepth::Eight,
            &OutputProfile::Content(p3),
        );
        assert!(matches!(e, Err(Error::InvalidOption(_))));
        assert!(!dir.path().join("x.bmp").exists());
    }
}

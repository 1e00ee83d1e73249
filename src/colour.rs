//! Colour management (docs/COLOUR.md): an input's embedded ICC profile converted to sRGB, and sRGB converted to an
//! output's profile. The colour science is moxcms' (the CMS the `image` crate itself depends on); this module only
//! moves planar pixels in and out of its transforms.
//!
//! Every conversion is in f64, never through 8 bits, so a 16-bit input keeps its fraction of a level: moxcms treats
//! f64 samples as 16-bit values (f32 ones as 14-bit; with f32 a 16-bit P3 round trip was off by 0.1 of an 8-bit
//! level, with f64 by 0.005).

use std::sync::OnceLock;

use moxcms::{ColorProfile, DataColorSpace, Layout, RenderingIntent, TransformF64Executor, TransformOptions};

use crate::error::{one_line, Error, Result};
use crate::planar::PlanarImage;

/// Pixels per call into a transform: bounds the interleaved f64 copies (a 134 Mpx image converts in 24 MiB slices,
/// not in one 3 GiB buffer).
const CHUNK: usize = 1 << 20;

/// A profile whose conversion to sRGB moves no probed colour by more than this (0–1 units: half an 8-bit level)
/// is sRGB in all but name (e.g. the many "sRGB IEC61966-2.1" profiles cameras and editors embed, whose curves
/// are tables). Its pixels are kept as decoded, so an sRGB-tagged 8-bit input stays exact.
const SRGB_TOLERANCE: f64 = 0.5 / 255.0;

/// The options of every transform: the perceptual intent (what the ICC header of almost every image asks for;
/// it picks the perceptual tables of a LUT-based profile). Matrix-shaper profiles (Display P3, Adobe RGB,
/// ProPhoto, most monitor and camera profiles) have no intent-specific data: their conversion is colorimetric and
/// a colour outside the destination's gamut is clipped channel by channel. Floating point throughout (the fixed
/// point paths trade precision for speed, and an image is converted once).
fn options() -> TransformOptions {
    TransformOptions { rendering_intent: RenderingIntent::Perceptual, prefer_fixed_point: false, ..Default::default() }
}

/// moxcms' sRGB profile (parametric IEC 61966-2.1 curves), built once.
fn srgb() -> &'static ColorProfile {
    static SRGB: OnceLock<ColorProfile> = OnceLock::new();
    SRGB.get_or_init(ColorProfile::new_srgb)
}

/// The ICC bytes of the sRGB profile written into outputs, encoded once. moxcms stamps the header's creation
/// date-time (bytes 24–35) with the clock; it is fixed here, so the same run writes the same bytes.
pub fn srgb_icc() -> &'static [u8] {
    static ICC: OnceLock<Vec<u8>> = OnceLock::new();
    ICC.get_or_init(|| {
        let mut icc = srgb().encode().expect("moxcms encodes its own sRGB profile");
        // 2026-12-07 00:00:00, as six big-endian u16s (year, month, day, hours, minutes, seconds).
        let date: Vec<u8> = [2026u16, 12, 7, 0, 0, 0].iter().flat_map(|v| v.to_be_bytes()).collect();
        icc[24..36].copy_from_slice(&date);
        icc
    })
}

fn cms_error(what: &str, e: moxcms::CmsError) -> Error {
    Error::Image(format!("{what}: {}", one_line(&e.to_string())))
}

/// Converts `img` (pixel units 0–255, as decoded) from the colours of the embedded profile `icc` to sRGB, in
/// place. `gray` says the decoded image was grayscale (its three planes equal).
///
/// Returns whether the profile describes the pixels: `true` when they were converted, or left as they are
/// because the profile is sRGB in all but name; `false` when the profile is ignored and the pixels are taken as
/// sRGB, as an untagged image is: a profile moxcms cannot parse or build a transform from, a colour space other
/// than RGB or gray (the `image` crate has already turned a CMYK JPEG into RGB without its profile), or a gray
/// profile on a colour image.
pub fn to_srgb(img: &mut PlanarImage, icc: &[u8], gray: bool) -> Result<bool> {
    let Ok(profile) = ColorProfile::new_from_slice(icc) else { return Ok(false) };
    let layout = match profile.color_space {
        DataColorSpace::Rgb => Layout::Rgb,
        DataColorSpace::Gray if gray => Layout::Gray,
        _ => return Ok(false),
    };
    let Ok(transform) = profile.create_transform_f64(layout, srgb(), Layout::Rgb, options()) else {
        return Ok(false);
    };
    if is_identity(transform.as_ref(), layout)? {
        return Ok(true);
    }
    apply(transform.as_ref(), layout, img).map_err(|e| cms_error("cannot convert the image to sRGB", e))?;
    Ok(true)
}

/// The profile `icc` as an output's destination: it must parse and be an RGB profile (the output is RGB).
fn output_profile(icc: &[u8]) -> Result<ColorProfile> {
    let profile = ColorProfile::new_from_slice(icc).map_err(|e| {
        Error::InvalidOption(format!("the content image's ICC profile cannot be read: {}", one_line(&e.to_string())))
    })?;
    if profile.color_space != DataColorSpace::Rgb {
        return Err(Error::InvalidOption(format!(
            "the content image's ICC profile is a {:?} profile: an RGB output cannot be written in it; use \
             --output-profile srgb",
            profile.color_space
        )));
    }
    Ok(profile)
}

/// The transform from sRGB to the output profile `icc`, or an [`Error::InvalidOption`] saying why there is none.
fn output_transform(icc: &[u8]) -> Result<std::sync::Arc<TransformF64Executor>> {
    let profile = output_profile(icc)?;
    srgb().create_transform_f64(Layout::Rgb, &profile, Layout::Rgb, options()).map_err(|e| {
        Error::InvalidOption(format!(
            "the content image's ICC profile cannot be converted to: {}",
            one_line(&e.to_string())
        ))
    })
}

/// Refuses an output profile that [`from_srgb`] could not convert to, before any work is done.
pub fn check_output_icc(icc: &[u8]) -> Result<()> {
    output_transform(icc).map(|_| ())
}

/// `img` (sRGB, pixel units; clamped to 0–255 first, as it would be written) converted to the RGB profile `icc`,
/// in pixel units of that profile's encoding. Colours outside its gamut are clipped channel by channel.
pub fn from_srgb(img: &PlanarImage, icc: &[u8]) -> Result<PlanarImage> {
    let transform = output_transform(icc)?;
    let mut out = img.clone();
    apply(transform.as_ref(), Layout::Rgb, &mut out).map_err(|e| cms_error("cannot convert the output", e))?;
    Ok(out)
}

/// Runs `transform` (from `layout` to RGB, 0–1 units) over the planar image `img` (pixel units), in place:
/// inputs clamped to [0, 255] (NaN → 0), outputs clipped to [0, 255]. A gray `layout` reads the first plane.
fn apply(transform: &TransformF64Executor, layout: Layout, img: &mut PlanarImage) -> Result<(), moxcms::CmsError> {
    let n = img.width * img.height;
    let channels = layout.channels();
    let unit = |v: f32| if v.is_nan() { 0.0 } else { v.clamp(0.0, 255.0) as f64 / 255.0 };
    let mut src = Vec::with_capacity(channels * CHUNK.min(n));
    let mut dst = vec![0f64; 3 * CHUNK.min(n)];
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        src.clear();
        for i in start..end {
            src.extend((0..channels).map(|c| unit(img.data[c * n + i])));
        }
        let dst = &mut dst[..3 * (end - start)];
        transform.transform(&src, dst)?;
        for (k, px) in dst.chunks_exact(3).enumerate() {
            for (c, v) in px.iter().enumerate() {
                img.data[c * n + start + k] = (v.clamp(0.0, 1.0) * 255.0) as f32;
            }
        }
    }
    Ok(())
}

/// Whether `transform` (to sRGB) leaves every probed colour within [`SRGB_TOLERANCE`]: the 256 levels of each
/// primary and of gray, and a 9-level grid of the cube (gray layouts: the 256 gray levels).
fn is_identity(transform: &TransformF64Executor, layout: Layout) -> Result<bool> {
    let level = |v: usize| v as f64 / 255.0;
    let mut probe: Vec<[f64; 3]> = Vec::new();
    for v in (0..256).map(level) {
        probe.extend([[v, v, v], [v, 0.0, 0.0], [0.0, v, 0.0], [0.0, 0.0, v]]);
    }
    let grid = |i: usize| (i * 32).min(255);
    for i in 0..9 * 9 * 9 {
        probe.push([level(grid(i % 9)), level(grid(i / 9 % 9)), level(grid(i / 81))]);
    }
    if layout == Layout::Gray {
        probe.retain(|p| p[0] == p[1] && p[1] == p[2]);
    }
    let src: Vec<f64> = probe.iter().flat_map(|p| p[..layout.channels()].to_vec()).collect();
    let mut dst = vec![0f64; 3 * probe.len()];
    transform.transform(&src, &mut dst).map_err(|e| cms_error("cannot convert the image to sRGB", e))?;
    let want = probe.iter().flatten();
    Ok(dst.iter().zip(want).all(|(got, want)| (got - want).abs() <= SRGB_TOLERANCE))
}

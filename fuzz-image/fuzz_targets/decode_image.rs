//! Fuzzes the image-loading path: any bytes, with any extension hint, must give an image or an error — never a
//! panic, an abort, a hang or a huge allocation (the decoder limits are part of what is tested).
//!
//! The first byte picks the extension hint (formats without a signature, such as TGA, are only reached that
//! way); the rest is the file.
#![no_main]

use image::ImageFormat;
use libfuzzer_sys::fuzz_target;
use neural_style::image_io;

const HINTS: [Option<ImageFormat>; 12] = [
    None,
    Some(ImageFormat::Png),
    Some(ImageFormat::Jpeg),
    Some(ImageFormat::Gif),
    Some(ImageFormat::WebP),
    Some(ImageFormat::Tiff),
    Some(ImageFormat::Bmp),
    Some(ImageFormat::Tga),
    Some(ImageFormat::Pnm),
    Some(ImageFormat::Ico),
    Some(ImageFormat::Qoi),
    Some(ImageFormat::Dds),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let hint = HINTS[sel as usize % HINTS.len()];
    // Smaller limits than the CLI's, so that a slow input means a hang rather than a legitimately large image
    // (a few hundred bytes of JPEG can describe 100 megapixels).
    let limits = image_io::DecodeLimits {
        max_side: 8192,
        max_pixels: 1 << 22,
        max_bytes: 64 << 20,
    };
    if let Ok(img) = image_io::decode_image_with_limits(bytes, hint, &limits) {
        assert_eq!(img.data.len(), 3 * img.width * img.height);
        assert!(
            img.data.iter().all(|v| (0.0..=255.0).contains(v)),
            "values outside 0..=255"
        );
        // The rest of the input path: resizing to a small target (skipped for big images, only for speed).
        if img.width * img.height <= 1 << 20 {
            let small = image_io::resize_longest(&img, 16);
            assert!(small.width.max(small.height) == 16);
        }
    }
});

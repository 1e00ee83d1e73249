//! Writing the image, and what is written when a run cannot finish: Ctrl-C saves the last iterate the host
//! already has without waiting for the GPU, and a GPU failure salvages it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use image::ImageFormat;
use neural_style::image_io::{self, OutputDepth};
use neural_style::PlanarImage;

use super::CliError;

/// Encodes and writes atomically, applying `--original-colors` when asked.
pub struct Writer {
    pub format: ImageFormat,
    pub depth: OutputDepth,
    pub original_colors: Option<PlanarImage>,
    /// The colour profile written (docs/COLOUR.md).
    pub profile: image_io::OutputProfile,
}

impl Writer {
    pub fn write(&self, path: &Path, img: PlanarImage) -> Result<(), CliError> {
        let img = match &self.original_colors {
            // A snapshot of an earlier coarse-to-fine scale takes its colours from the content at its own size.
            Some(content) if (content.width, content.height) != (img.width, img.height) => {
                image_io::original_colors(&img, &image_io::resize_exact(content, img.width, img.height))
            }
            Some(content) => image_io::original_colors(&img, content),
            None => img,
        };
        let bytes = image_io::encode_image_with_profile(&img, self.format, self.depth, &self.profile)?;
        image_io::write_bytes_atomic(path, &bytes)?;
        Ok(())
    }
}

/// The last completed iterate kept on the host, and how to write it: what Ctrl-C saves without waiting for
/// work still on the GPU (on a CPU adapter one iteration at 512 px takes seconds), and what a GPU failure
/// salvages.
pub struct Rescue {
    pub writer: Writer,
    pub output: PathBuf,
    /// The output's size: an image of an earlier coarse-to-fine scale (after Ctrl-C) is resized to it.
    pub size: (usize, usize),
    kept: Mutex<Option<(usize, PlanarImage)>>,
    /// Held while the output is written; `true` once the main thread has written it.
    written: Mutex<bool>,
}

pub static RESCUE: OnceLock<Rescue> = OnceLock::new();

/// How long Ctrl-C waits for the loop to stop by itself before the last kept image is written from the handler.
const CTRL_C_GRACE: Duration = Duration::from_millis(1500);

impl Rescue {
    pub fn new(writer: Writer, output: PathBuf, size: (usize, usize)) -> Self {
        Self { writer, output, size, kept: Mutex::new(None), written: Mutex::new(false) }
    }

    pub fn keep(&self, iteration: usize, img: PlanarImage) {
        *self.kept.lock().unwrap() = Some((iteration, img));
    }

    /// `img` at the output's size (Lanczos; only an interrupted coarse-to-fine run needs it).
    pub fn fit(&self, img: PlanarImage) -> PlanarImage {
        if (img.width, img.height) == self.size {
            img
        } else {
            image_io::resize_exact(&img, self.size.0, self.size.1)
        }
    }

    pub fn last(&self) -> Option<(usize, PlanarImage)> {
        self.kept.lock().unwrap().clone()
    }

    /// Writes the final image from the main thread (unless the Ctrl-C path already did and is exiting).
    pub fn write_final(&self, img: PlanarImage) -> Result<(), CliError> {
        let mut written = self.written.lock().unwrap();
        self.writer.write(&self.output, self.fit(img))?;
        *written = true;
        Ok(())
    }

    /// The Ctrl-C path when the loop did not stop in time: write the last kept image, exit 130.
    fn write_kept_and_exit(&self) -> ! {
        let written = self.written.lock().unwrap();
        if !*written {
            match self.last() {
                Some((k, img)) => match self.writer.write(&self.output, self.fit(img)) {
                    Ok(()) => eprintln!("interrupted: wrote the image of iteration {k} to '{}'", self.output.display()),
                    Err(CliError::Usage(e) | CliError::Runtime(e)) => eprintln!("error: saving failed: {e}"),
                },
                None => eprintln!("interrupted before the first iteration: nothing written"),
            }
        }
        std::process::exit(super::EXIT_INTERRUPTED as i32)
    }
}

pub fn install_ctrlc(interrupted: &'static AtomicBool) {
    let _ = ctrlc::set_handler(move || {
        // A second Ctrl-C quits at once, without saving.
        if interrupted.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: quitting without saving");
            std::process::exit(super::EXIT_INTERRUPTED as i32);
        }
        eprintln!("\ninterrupted: saving the last completed iteration (Ctrl-C again to quit without saving)");
        // The loop checks the flag between iterations; if an iteration is still running after the grace
        // period, write what the host already has rather than wait for it.
        std::thread::spawn(|| {
            std::thread::sleep(CTRL_C_GRACE);
            match RESCUE.get() {
                Some(r) => r.write_kept_and_exit(),
                None => {
                    eprintln!("interrupted during setup: nothing written");
                    std::process::exit(super::EXIT_INTERRUPTED as i32)
                }
            }
        });
    });
}

/// Ctrl-C for a job that saves its own work when it stops (the video command: each frame stops between
/// iterations, and its frame is written by the main thread): the first sets `interrupted`, a second quits.
pub fn install_ctrlc_flag(interrupted: &'static AtomicBool) {
    let _ = ctrlc::set_handler(move || {
        if interrupted.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: quitting (the frame in progress is not saved)");
            std::process::exit(super::EXIT_INTERRUPTED as i32);
        }
        eprintln!("\ninterrupted: finishing this iteration and saving the frame (Ctrl-C again to quit at once)");
    });
}

/// What a lost device most likely means, and the flags that help (empty for other errors).
pub fn lost_device_hint(e: &neural_style::Error, (w, h): (usize, usize)) -> String {
    if !matches!(e, neural_style::Error::DeviceLost(_)) {
        return String::new();
    }
    format!(
        " (a display's watchdog stops GPU work that runs too long without a break: Windows' TDR after 2 s, macOS \
         likewise; at {w}x{h} an iteration may be too long for this GPU: try a smaller --image-size, or \
         --adapter to pick another GPU)"
    )
}

/// A GPU failure mid-run: write the last image kept on the host (if any) to the output, and say so.
pub fn salvage(e: neural_style::Error, iteration: usize, rescue: &Rescue) -> CliError {
    let what = format!("GPU failure at iteration {iteration}: {e}{}", lost_device_hint(&e, rescue.size));
    match rescue.last() {
        Some((k, img)) => match rescue.write_final(img) {
            Ok(()) => {
                CliError::Runtime(format!("{what}; wrote the image of iteration {k} to '{}'", rescue.output.display()))
            }
            Err(CliError::Usage(w) | CliError::Runtime(w)) => {
                CliError::Runtime(format!("{what}; saving the last good image failed too: {w}"))
            }
        },
        None => CliError::Runtime(format!("{what}; no image had been read back yet, nothing written")),
    }
}

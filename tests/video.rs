//! Video (docs/MATHS.md, "Video"): the temporal term inside a whole problem against the f64 reference, and the
//! issue's bar on a synthetic clip (a camera pan over the example photo, 8 frames): painting coherently (each
//! frame from the previous painting warped, held to it by the temporal loss) against painting every frame
//! independently, same clip, measured by the warping error and the style loss.

mod common;

use common::*;
use neural_style::job::{Event, Observer};
use neural_style::stylizer::{Temporal, WarpedFrame};
use neural_style::verify::temporal::temporal_ref;
use neural_style::video::{self, Motion, Painted, VideoOptions};
use neural_style::weights::Vgg16Weights;
use neural_style::{Init, PlanarImage, StyleOptions, Stylizer};

fn weights() -> Vgg16Weights {
    Vgg16Weights::load(&Vgg16Weights::default_path()).expect("the shipped weights")
}

fn example(name: &str) -> PlanarImage {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    neural_style::image_io::load_image(&p).expect("example image")
}

fn seeded_image(seed: u64, (w, h): (usize, usize)) -> PlanarImage {
    let mut g = rng(seed);
    PlanarImage::new(w, h, random(&mut g, 3 * w * h, 100.0).iter().map(|v| (128.0 + v) as f32).collect())
}

/// The temporal loss and its gradient read through a whole problem (the other weights 0) match the reference:
/// loss 1e-5, dL/dx 1e-5 (relative to its rms), with and without a margin (the margin is never held).
#[test]
fn the_temporal_term_in_a_problem_matches_the_reference() {
    let (w, h) = (40, 28);
    let content = seeded_image(1, (w, h));
    let start = seeded_image(2, (w, h));
    let warped = seeded_image(3, (w, h));
    let mut g = rng(4);
    let c: Vec<f32> = random(&mut g, w * h, 1.0).iter().map(|v| v.abs() as f32).collect();
    let weights = weights();
    for margin in [0, 6] {
        let opts = StyleOptions {
            content_weight: 0.0,
            style_weight: 0.0,
            tv_weight: 0.0,
            margin: Some(margin),
            init: Init::Image(start.clone()),
            temporal: Some(Temporal {
                weight: 1e3,
                frames: vec![WarpedFrame { image: warped.clone(), weights: c.clone() }],
            }),
            ..Default::default()
        };
        let mut s = Stylizer::new(ctx(), &weights, &content, std::slice::from_ref(&content), &opts).unwrap();
        let x = to_f64(&neural_style::vgg::subtract_mean(&start));
        let target = to_f64(&neural_style::vgg::subtract_mean(&warped));
        let (loss, grad) = temporal_ref(&x, &target, &to_f64(&c), (1e3, w * h));
        let got = s.losses().unwrap();
        let t = got.temporal.expect("a temporal loss");
        assert!((t - loss).abs() <= 1e-5 * loss, "margin {margin}: temporal {t} vs reference {loss}");
        assert!((got.total - t).abs() <= 1e-6 * t, "the other terms weigh 0: {got:?}");
        // On the canvas: the reference inside the image, exactly 0 on the margin (never held).
        let canvas = opts.canvas(w, h).unwrap();
        let (cw, ch) = canvas.size();
        let mut expect = vec![0.0f64; 3 * cw * ch];
        for (c, plane) in grad.chunks_exact(w * h).enumerate() {
            for (y, row) in plane.chunks_exact(w).enumerate() {
                let at = c * cw * ch + (y + margin) * cw + margin;
                expect[at..at + w].copy_from_slice(row);
            }
        }
        let g = s.gradient().unwrap();
        let err = assert_close("temporal dL/dx", &g, &expect, 1e-5);
        let outside = g.iter().zip(&expect).filter(|(_, e)| **e == 0.0).map(|(g, _)| g.abs()).fold(0.0f32, f32::max);
        assert_eq!(outside, 0.0, "margin {margin}: a gradient on the margin");
        eprintln!("temporal term, margin {margin}: loss {t:.6e} vs {loss:.6e}, dL/dx max error {err:.2e}");
    }
}

/// Wants the written image's losses.
struct FinalLosses(Option<neural_style::Losses>);

impl Observer for FinalLosses {
    type Error = std::convert::Infallible;
    fn wants_final_losses(&mut self) -> bool {
        true
    }
    fn event(&mut self, e: Event<'_>) -> Result<(), Self::Error> {
        if let Event::FinalLosses(r) = e {
            self.0 = Some(*r.losses);
        }
        Ok(())
    }
}

/// Paints the clip; returns the frames as written (rounded to 8 bits), each frame's style loss, and each later
/// coherent frame's warping error against the frame its job held it to (what the video command prints).
fn paint(
    motion: &Motion<'_>,
    options: &VideoOptions,
    clip: &[PlanarImage],
    style: &PlanarImage,
) -> (Vec<Painted>, Vec<f64>, Vec<f64>) {
    let weights = weights();
    let mut painted: Vec<Painted> = Vec::new();
    let mut style_losses = Vec::new();
    let mut held_errors = Vec::new();
    for content in clip {
        let earlier = [painted.last()];
        let job = video::frame_job(motion, options, content, std::slice::from_ref(style), &earlier).unwrap();
        let mut observer = FinalLosses(None);
        let p = job.run(ctx(), &weights, &mut observer, &Default::default()).unwrap();
        style_losses.push(observer.0.unwrap().style);
        let painting = neural_style::image_io::from_rgb8(&neural_style::image_io::to_rgb8(&p.image));
        if let Some(held) = job.options().style.temporal.as_ref().and_then(|t| t.frames.first()) {
            held_errors.push(video::frame_warping_error(&painting, held).unwrap());
        }
        painted.push(Painted { content: content.clone(), painting });
    }
    (painted, style_losses, held_errors)
}

/// The bar: on an 8-frame pan (1.2 px per frame right, 0.6 px down, at 64x48), coherent painting has a warping
/// error at least 5x lower than independent painting, with a mean style loss at most 1.3x higher. Independent
/// frames each get the first frame's iterations (80, Adam); coherent later frames a third (27, L-BFGS, w_t 3e3:
/// the video command's defaults). With
/// NEURAL_STYLE_VIDEO_FRAMES=DIR set, both sequences are written there (the README's animation is made from them).
#[test]
fn coherent_painting_flickers_far_less_than_independent_painting() {
    let photo = example("chelsea.png");
    let photo = neural_style::image_io::resize_exact(&photo, 180, 120);
    let clip = video::pan_frames(&photo, 8, (64, 48), (48.0, 32.0), (1.2, 0.6)).unwrap();
    let style = example("starry_night.jpg");
    let size = neural_style::job::JobSize { image_size: 64, iterations: 80, min_scale: None, cpu_defaults: false };
    let mut still = neural_style::job::JobOptions::new(size);
    still.style.margin = Some(0);
    let coherent = VideoOptions {
        still,
        frame_iterations: 27,
        frame_optimizer: neural_style::Optimizer::Lbfgs { history: 100, max_evals: 1 },
        temporal_weight: video::TEMPORAL_WEIGHT,
        offsets: vec![1],
        independent: false,
    };
    let independent = VideoOptions { independent: true, ..coherent.clone() };
    let motion = Motion::new(ctx(), (64, 48)).unwrap();
    let (a, style_a, held_a) = paint(&motion, &coherent, &clip, &style);
    let (b, style_b, held_b) = paint(&motion, &independent, &clip, &style);
    let (error_a, each_a) = video::warping_error(&motion, &a).unwrap();
    let (error_b, each_b) = video::warping_error(&motion, &b).unwrap();
    // The error from each job's held frame (no second flow) is the sequence's, exactly: the same flows.
    assert_eq!(held_a, each_a);
    assert!(held_b.is_empty());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (sa, sb) = (mean(&style_a), mean(&style_b));
    eprintln!(
        "warping error: coherent {error_a:.2} {each_a:.1?}, independent {error_b:.2} {each_b:.1?}: {:.1}x",
        error_b / error_a
    );
    eprintln!("style loss: coherent {sa:.4e}, independent {sb:.4e}: {:.2}x", sa / sb);
    if let Some(dir) = std::env::var_os("NEURAL_STYLE_VIDEO_FRAMES") {
        let dir = std::path::Path::new(&dir);
        for (name, frames) in [("coherent", &a), ("independent", &b)] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            for (k, f) in frames.iter().enumerate() {
                let p = dir.join(name).join(format!("{:03}.png", k + 1));
                neural_style::image_io::write_image_atomic(&p, &f.painting).unwrap();
            }
        }
    }
    assert!(error_b >= 5.0 * error_a, "warping error {error_a} coherent vs {error_b} independent");
    assert!(sa <= 1.3 * sb, "style loss {sa} coherent vs {sb} independent");
}

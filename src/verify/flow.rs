//! Optical flow (DIS): the f64 reference of each step and of the whole flow (docs/MATHS.md, "Video: optical flow,
//! warping, the temporal loss", **Flow**), the smooth random textures the checks and the accuracy tests render,
//! and the conformance cases of the five flow kernels.
//!
//! Layouts as on the GPU ([`crate::kernels::flow`]): images dense row-major, flows the u plane then the v plane,
//! patch flows one (u, v) pair per patch, row by row of the patch grid.

use rand::Rng;

use super::*;
use crate::kernels::flow::{patch_count, patch_positions, pyramid_levels, PATCH};

/// Gauss–Newton iterations of the inverse search at most.
const ITERATIONS: usize = 12;
/// The search stops once an update is shorter than this (px).
const EARLY_STOP: f64 = 0.01;

/// Y = 0.299·R + 0.587·G + 0.114·B of planar RGB (3 planes of `pixels`).
pub fn grey(rgb: &[f64], pixels: usize) -> Vec<f64> {
    (0..pixels).map(|i| 0.299 * rgb[i] + 0.587 * rgb[pixels + i] + 0.114 * rgb[2 * pixels + i]).collect()
}

/// The 2x2 means of a `width` x `height` image, sizes halved and rounded down (the pooling's reference).
pub fn downsample(img: &[f64], (width, height): (usize, usize)) -> Vec<f64> {
    reference::avgpool2x2(img, 1, height, width)
}

/// `plane` (`width` x `height`) sampled bilinearly at (x, y), the position clamped into the image first.
pub fn bilinear(plane: &[f64], (width, height): (usize, usize), x: f64, y: f64) -> f64 {
    let cx = x.clamp(0.0, (width - 1) as f64);
    let cy = y.clamp(0.0, (height - 1) as f64);
    let (x0, y0) = ((cx.floor() as usize).min(width - 1), (cy.floor() as usize).min(height - 1));
    let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
    let (fx, fy) = (cx - x0 as f64, cy - y0 as f64);
    let at = |x: usize, y: usize| plane[y * width + x];
    let top = (1.0 - fx) * at(x0, y0) + fx * at(x1, y0);
    let bottom = (1.0 - fx) * at(x0, y1) + fx * at(x1, y1);
    (1.0 - fy) * top + fy * bottom
}

/// One patch's template T̃ and gradient J̃ (mean-normalised, 64 each) and H = Σ J̃·J̃ᵀ as (Hxx, Hxy, Hyy).
struct Template {
    t: Vec<f64>,
    gx: Vec<f64>,
    gy: Vec<f64>,
    h: (f64, f64, f64),
}

fn template(i0: &[f64], (width, height): (usize, usize), (x0, y0): (usize, usize)) -> Template {
    let at = |x: isize, y: isize| {
        i0[(y.clamp(0, height as isize - 1) as usize) * width + x.clamp(0, width as isize - 1) as usize]
    };
    let pixels = || (0..PATCH * PATCH).map(|i| ((x0 + i % PATCH) as isize, (y0 + i / PATCH) as isize));
    let centred = |v: Vec<f64>| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        v.into_iter().map(|a| a - mean).collect::<Vec<f64>>()
    };
    let t = centred(pixels().map(|(x, y)| at(x, y)).collect());
    let gx = centred(pixels().map(|(x, y)| (at(x + 1, y) - at(x - 1, y)) * 0.5).collect());
    let gy = centred(pixels().map(|(x, y)| (at(x, y + 1) - at(x, y - 1)) * 0.5).collect());
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    let h = (dot(&gx, &gx), dot(&gx, &gy), dot(&gy, &gy));
    Template { t, gx, gy, h }
}

/// At flow `u`: (Σ J̃_i·r_i, Σ r_i²) with r_i = (I1(p_i + u) − mean) − T̃_i, the warped patch mean-normalised.
fn residual(
    tp: &Template,
    i1: &[f64],
    size: (usize, usize),
    (x0, y0): (usize, usize),
    u: (f64, f64),
) -> (f64, f64, f64) {
    let warped: Vec<f64> = (0..PATCH * PATCH)
        .map(|i| bilinear(i1, size, (x0 + i % PATCH) as f64 + u.0, (y0 + i / PATCH) as f64 + u.1))
        .collect();
    let mean = warped.iter().sum::<f64>() / warped.len() as f64;
    let mut acc = (0.0, 0.0, 0.0);
    for (i, w) in warped.iter().enumerate() {
        let r = (w - mean) - tp.t[i];
        acc = (acc.0 + tp.gx[i] * r, acc.1 + tp.gy[i] * r, acc.2 + r * r);
    }
    acc
}

/// The inverse search of the patch at `corner`: Gauss–Newton from `u0`, as `dis_patch_search.wgsl`.
pub fn search_patch(
    i0: &[f64],
    i1: &[f64],
    size: (usize, usize),
    corner: (usize, usize),
    u0: (f64, f64),
) -> (f64, f64) {
    let tp = template(i0, size, corner);
    let (hxx, hxy, hyy) = tp.h;
    let det = hxx * hyy - hxy * hxy;
    if det <= 1e-3 * (hxx + hyy).powi(2) + 1e-9 {
        return u0;
    }
    let mut u = u0;
    let mut initial_ssd = 0.0;
    for it in 0..ITERATIONS {
        let (bx, by, ssd) = residual(&tp, i1, size, corner, u);
        if it == 0 {
            initial_ssd = ssd;
        }
        // Δ = H⁻¹·b; the inverse-compositional update of a translation is u − Δ.
        let delta = ((hyy * bx - hxy * by) / det, (hxx * by - hxy * bx) / det);
        u = (u.0 - delta.0, u.1 - delta.1);
        if delta.0.hypot(delta.1) < EARLY_STOP {
            break;
        }
    }
    if residual(&tp, i1, size, corner, u).2 < initial_ssd {
        u
    } else {
        u0
    }
}

/// Every patch's flow at one level (2 per patch), each starting from the dense `init` flow at its centre.
pub fn patch_search(i0: &[f64], i1: &[f64], init: &[f64], size: (usize, usize)) -> Vec<f64> {
    let corners =
        patch_positions(size.1).into_iter().flat_map(|y0| patch_positions(size.0).into_iter().map(move |x0| (x0, y0)));
    let starts = patch_search_starts(init, size);
    corners
        .zip(starts.chunks(2))
        .flat_map(|(corner, u0)| {
            let (u, v) = search_patch(i0, i1, size, corner, (u0[0], u0[1]));
            [u, v]
        })
        .collect()
}

/// Every patch's initial flow u₀ (2 per patch): the dense `init` flow at its centre.
fn patch_search_starts(init: &[f64], size: (usize, usize)) -> Vec<f64> {
    let plane = size.0 * size.1;
    let mut out = Vec::new();
    for &y0 in &patch_positions(size.1) {
        for &x0 in &patch_positions(size.0) {
            let (cx, cy) = (x0 as f64 + 3.5, y0 as f64 + 3.5);
            out.extend([bilinear(&init[..plane], size, cx, cy), bilinear(&init[plane..], size, cx, cy)]);
        }
    }
    out
}

/// The dense flow of one level from its patches' flows: per pixel, the mean of the flows of the patches containing
/// it, each weighted by 1 / max(1, |I1(x + u_j) − I0(x)|).
pub fn densify(i0: &[f64], i1: &[f64], patches: &[f64], size: (usize, usize)) -> Vec<f64> {
    let (width, height) = size;
    let (xs, ys) = (patch_positions(width), patch_positions(height));
    let mut flow = vec![0.0; 2 * width * height];
    for y in 0..height {
        for x in 0..width {
            let (mut su, mut sv, mut sw) = (0.0, 0.0, 0.0);
            for (ky, _) in ys.iter().enumerate().filter(|(_, &p)| p <= y && y < p + PATCH) {
                for (kx, _) in xs.iter().enumerate().filter(|(_, &p)| p <= x && x < p + PATCH) {
                    let j = ky * xs.len() + kx;
                    let (u, v) = (patches[2 * j], patches[2 * j + 1]);
                    let w = 1.0 / (bilinear(i1, size, x as f64 + u, y as f64 + v) - i0[y * width + x]).abs().max(1.0);
                    (su, sv, sw) = (su + w * u, sv + w * v, sw + w);
                }
            }
            flow[y * width + x] = su / sw;
            flow[width * height + y * width + x] = sv / sw;
        }
    }
    flow
}

/// A coarse level's flow brought to the next finer level of `size`: 2 x the coarse flow at ((x + ½)/2 − ½).
pub fn upsample(coarse: &[f64], coarse_size: (usize, usize), size: (usize, usize)) -> Vec<f64> {
    let cplane = coarse_size.0 * coarse_size.1;
    let mut fine = vec![0.0; 2 * size.0 * size.1];
    for y in 0..size.1 {
        for x in 0..size.0 {
            let (sx, sy) = ((x as f64 + 0.5) * 0.5 - 0.5, (y as f64 + 0.5) * 0.5 - 0.5);
            fine[y * size.0 + x] = 2.0 * bilinear(&coarse[..cplane], coarse_size, sx, sy);
            fine[size.0 * size.1 + y * size.0 + x] = 2.0 * bilinear(&coarse[cplane..], coarse_size, sx, sy);
        }
    }
    fine
}

/// The DIS flow from planar RGB `rgb0` to `rgb1` (`width` x `height`, both sides ≥ 16): u plane then v plane.
pub fn dis_flow(rgb0: &[f64], rgb1: &[f64], (width, height): (usize, usize)) -> Vec<f64> {
    let levels = pyramid_levels(width, height);
    assert!(!levels.is_empty(), "{width}x{height} is below the flow's 16 px");
    let (mut g0, mut g1) = (vec![grey(rgb0, width * height)], vec![grey(rgb1, width * height)]);
    for s in 1..levels.len() {
        g0.push(downsample(&g0[s - 1], levels[s - 1]));
        g1.push(downsample(&g1[s - 1], levels[s - 1]));
    }
    let coarsest = levels.len() - 1;
    let mut flow = vec![0.0; 2 * levels[coarsest].0 * levels[coarsest].1];
    for s in (0..levels.len()).rev() {
        let init = if s == coarsest { flow } else { upsample(&flow, levels[s + 1], levels[s]) };
        let patches = patch_search(&g0[s], &g1[s], &init, levels[s]);
        flow = densify(&g0[s], &g1[s], &patches, levels[s]);
    }
    flow
}

/// A smooth random texture, a continuous function of the plane: sinusoids of random direction, phase and
/// wavelength, plus Gaussian blobs, around grey 128. Rendering it at transformed positions gives frames whose
/// flow is known exactly.
pub struct Texture {
    /// (amplitude, kx, ky, phase): amplitude · sin(kx·x + ky·y + phase).
    waves: Vec<(f64, f64, f64, f64)>,
    /// (amplitude, x, y, σ).
    blobs: Vec<(f64, f64, f64, f64)>,
}

impl Texture {
    /// 16 sinusoids with wavelengths log-uniform in `wavelengths` (px) and 12 blobs (σ from ⅔ of the shortest
    /// wavelength to half the longest: 4–20 px for 6–40) over a `width` x `height` area and a margin of half its
    /// size.
    pub fn random(g: &mut ChaCha8Rng, (width, height): (usize, usize), wavelengths: (f64, f64)) -> Self {
        let waves = (0..16)
            .map(|_| {
                let lambda = (g.random_range(wavelengths.0.ln()..=wavelengths.1.ln())).exp();
                let angle: f64 = g.random_range(0.0..std::f64::consts::TAU);
                let k = std::f64::consts::TAU / lambda;
                (
                    g.random_range(6.0..14.0),
                    k * angle.cos(),
                    k * angle.sin(),
                    g.random_range(0.0..std::f64::consts::TAU),
                )
            })
            .collect();
        let (w, h) = (width as f64, height as f64);
        let sigmas = wavelengths.0 * 2.0 / 3.0..wavelengths.1 / 2.0;
        let blobs = (0..12)
            .map(|_| {
                let amplitude = g.random_range(25.0..50.0) * if g.random_bool(0.5) { 1.0 } else { -1.0 };
                (
                    amplitude,
                    g.random_range(-0.5 * w..1.5 * w),
                    g.random_range(-0.5 * h..1.5 * h),
                    g.random_range(sigmas.clone()),
                )
            })
            .collect();
        Self { waves, blobs }
    }

    /// The texture's value at (x, y).
    pub fn at(&self, x: f64, y: f64) -> f64 {
        let waves: f64 = self.waves.iter().map(|&(a, kx, ky, phase)| a * (kx * x + ky * y + phase).sin()).sum();
        let blobs: f64 = self
            .blobs
            .iter()
            .map(|&(a, bx, by, s)| a * (-((x - bx).powi(2) + (y - by).powi(2)) / (2.0 * s * s)).exp())
            .sum();
        128.0 + waves + blobs
    }

    /// A `width` x `height` plane whose pixel p shows the texture at `source(p)`.
    pub fn render(&self, (width, height): (usize, usize), source: impl Fn(f64, f64) -> (f64, f64)) -> Vec<f64> {
        let mut plane = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                let (sx, sy) = source(x as f64, y as f64);
                plane.push(self.at(sx, sy));
            }
        }
        plane
    }
}

/// Values rounded to f32 and back: the reference then sees exactly the GPU's inputs.
fn as_f32(v: Vec<f64>) -> Vec<f64> {
    to_f64(&to_f32(&v))
}

/// flow_grey on random RGB in 0–255: one f32 multiply-add chain per pixel.
pub fn flow_grey(ctx: &GpuContext, (w, h): (usize, usize), seed: u64) -> Check {
    let io = Io { ctx };
    let rgb: Vec<f64> = as_f32(random(&mut rng(seed), 3 * w * h, 127.5).iter().map(|v| v + 127.5).collect());
    let run = || -> Result<Vec<f32>> {
        let (rb, gb) = (io.buf(&rgb)?, io.out(w * h)?);
        ctx.run(&[&kernels::flow::grey(ctx, (w, h), &rb, &gb)?])?;
        io.read(&gb, w * h)
    };
    compare(&format!("flow_grey {w}x{h}"), &run().map_err(gpu_err)?, &grey(&rgb, w * h), 1e-5)
}

/// flow_downsample of a random image: sizes halved and rounded down, four adds and a multiply per pixel.
pub fn flow_downsample(ctx: &GpuContext, (w, h): (usize, usize), seed: u64) -> Check {
    let io = Io { ctx };
    let img = as_f32(random(&mut rng(seed), w * h, 100.0).iter().map(|v| v + 128.0).collect());
    let n = (w / 2) * (h / 2);
    let run = || -> Result<Vec<f32>> {
        let (ib, ob) = (io.buf(&img)?, io.out(n)?);
        ctx.run(&[&kernels::flow::downsample(ctx, (w, h), &ib, &ob)?])?;
        io.read(&ob, n)
    };
    compare(&format!("flow_downsample {w}x{h}"), &run().map_err(gpu_err)?, &downsample(&img, (w, h)), 1e-5)
}

/// flow_upsample of a random coarse flow (±5 px) of size (w/2, h/2) to `w` x `h`.
pub fn flow_upsample(ctx: &GpuContext, (w, h): (usize, usize), seed: u64) -> Check {
    let io = Io { ctx };
    let coarse_size = (w / 2, h / 2);
    let coarse = as_f32(random(&mut rng(seed), 2 * coarse_size.0 * coarse_size.1, 5.0));
    let run = || -> Result<Vec<f32>> {
        let (cb, fb) = (io.buf(&coarse)?, io.out(2 * w * h)?);
        ctx.run(&[&kernels::flow::upsample(ctx, coarse_size, (w, h), &cb, &fb)?])?;
        io.read(&fb, 2 * w * h)
    };
    let expect = upsample(&coarse, coarse_size, (w, h));
    compare(&format!("flow_upsample {w}x{h}"), &run().map_err(gpu_err)?, &expect, 1e-5)
}

/// A pair of smooth textured images, I1 = I0 moved by a smooth flow of about (1.3, −0.8) px (so a search has
/// something to find and densification weights vary), as f32.
fn textured_pair(seed: u64, (w, h): (usize, usize)) -> (Vec<f64>, Vec<f64>) {
    let texture = Texture::random(&mut rng(seed), (w, h), (6.0, 40.0));
    let i0 = as_f32(texture.render((w, h), |x, y| (x, y)));
    let i1 = as_f32(texture.render((w, h), |x, y| (x - 1.3 - 0.01 * y, y + 0.8 - 0.01 * x)));
    (i0, i1)
}

/// dis_densify of random patch flows (±3 px) on a textured pair. Tolerance 1e-4 (relative to |ref| + rms(ref)):
/// a weight's |I1(x + u_j) − I0(x)| is a difference of values near 128 sampled in f32 (absolute error ~1e-5), and
/// the weighted mean carries that relative error times the spread of the patches' flows.
pub fn dis_densify(ctx: &GpuContext, (w, h): (usize, usize), seed: u64) -> Check {
    let io = Io { ctx };
    let (i0, i1) = textured_pair(seed, (w, h));
    let patches = as_f32(random(&mut rng(seed + 1), 2 * patch_count(w) * patch_count(h), 3.0));
    let run = || -> Result<Vec<f32>> {
        let (b0, b1, pb, fb) = (io.buf(&i0)?, io.buf(&i1)?, io.buf(&patches)?, io.out(2 * w * h)?);
        ctx.run(&[&kernels::flow::densify(ctx, (w, h), (&b0, &b1), &pb, &fb)?])?;
        io.read(&fb, 2 * w * h)
    };
    let expect = densify(&i0, &i1, &patches, (w, h));
    compare(&format!("dis_densify {w}x{h}"), &run().map_err(gpu_err)?, &expect, 1e-4)
}

/// Patches within this distance (px) of the reference's flow count as agreeing...
pub const SEARCH_CLOSE: f64 = 1e-3;
/// ... and at least this share of the patches must agree ...
pub const SEARCH_CLOSE_SHARE: f64 = 0.99;
/// ... and every patch must be within this distance (px).
pub const SEARCH_MAX: f64 = 0.05;

/// dis_patch_search on a textured pair from a noisy initial flow (the true flow ± 0.75 px per pixel), against the
/// f64 search given the same f32 inputs. The rule (≥ 99% of patches within 1e-3 px, all within 0.05 px) is looser
/// than an elementwise tolerance because the search makes decisions on values f32 and f64 round differently: the
/// early stop |Δ| < 0.01 px can come one iteration apart (moving that patch by a last step of up to ~0.01 px),
/// and a patch whose final residual nearly equals its initial one can keep u₀ in one and not the other (a patch
/// whose search barely moved it). Errors of 1e-3 px or more on more than 1% of patches, or any of 0.05 px, are a
/// wrong kernel.
pub fn dis_patch_search(ctx: &GpuContext, (w, h): (usize, usize), seed: u64) -> Check {
    let io = Io { ctx };
    let (i0, i1) = textured_pair(seed, (w, h));
    let truth = |x: usize, y: usize| (1.3 + 0.01 * y as f64, -0.8 + 0.01 * x as f64);
    let noise = random(&mut rng(seed + 2), 2 * w * h, 0.75);
    let plane = w * h;
    let init = as_f32(
        (0..2 * plane)
            .map(|i| noise[i] + if i < plane { truth(i % w, i / w).0 } else { truth(i % w, (i - plane) / w).1 })
            .collect(),
    );
    let count = patch_count(w) * patch_count(h);
    let run = || -> Result<Vec<f32>> {
        let (b0, b1, ib, pb) = (io.buf(&i0)?, io.buf(&i1)?, io.buf(&init)?, io.out(2 * count)?);
        ctx.run(&[&kernels::flow::patch_search(ctx, (w, h), (&b0, &b1), &ib, &pb)?])?;
        io.read(&pb, 2 * count)
    };
    let gpu = run().map_err(gpu_err)?;
    let expect = patch_search(&i0, &i1, &init, (w, h));
    // The data must make the searches search: most patches move off u₀ (a kernel that always kept u₀ would
    // otherwise agree with a reference that did too).
    let starts = patch_search_starts(&init, (w, h));
    let moved = expect.chunks(2).zip(starts.chunks(2)).filter(|(e, s)| (e[0] - s[0]).hypot(e[1] - s[1]) > 0.01).count();
    if 2 * moved < count {
        return Err(format!("dis_patch_search {w}x{h}: only {moved} of {count} patches moved: the case checks little"));
    }
    compare_patch_flows(&format!("dis_patch_search {w}x{h}"), &gpu, &expect)
}

/// The patch-search rule of [`dis_patch_search`]; the largest distance (px).
pub fn compare_patch_flows(what: &str, gpu: &[f32], expect: &[f64]) -> Check {
    if gpu.len() != expect.len() {
        return Err(format!("{what}: {} values, expected {}", gpu.len(), expect.len()));
    }
    let distances: Vec<f64> = gpu
        .chunks(2)
        .zip(expect.chunks(2))
        .map(|(g, e)| (f64::from(g[0]) - e[0]).hypot(f64::from(g[1]) - e[1]))
        .collect();
    if let Some(k) = distances.iter().position(|d| d.is_nan() || *d > SEARCH_MAX) {
        let (g, e) = (&gpu[2 * k..2 * k + 2], &expect[2 * k..2 * k + 2]);
        return Err(format!("{what}: patch {k}: gpu {g:?} vs reference {e:?} (more than {SEARCH_MAX} px apart)"));
    }
    let close = distances.iter().filter(|&&d| d <= SEARCH_CLOSE).count();
    if (close as f64) < SEARCH_CLOSE_SHARE * distances.len() as f64 {
        return Err(format!(
            "{what}: only {close} of {} patches within {SEARCH_CLOSE} px of the reference (needs {:.0}%)",
            distances.len(),
            100.0 * SEARCH_CLOSE_SHARE
        ));
    }
    Ok(distances.iter().fold(0.0, |a: f64, &d| a.max(d)))
}

/// The cases of this family at `full` or quick scale: odd, small and realistic level sizes.
pub fn cases(full: bool) -> Vec<Case> {
    let sizes: Vec<(usize, usize)> =
        if full { vec![(13, 9), (37, 29), (128, 96), (8, 8)] } else { vec![(13, 9), (37, 29)] };
    let mut v = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let seed = 1700 + 10 * i as u64;
        let (w, h) = size;
        v.push(case("flow_grey", format!("flow_grey {w}x{h}"), move |ctx| flow_grey(ctx, size, seed)));
        v.push(case("flow_downsample", format!("flow_downsample {w}x{h}"), move |ctx| {
            flow_downsample(ctx, size, seed + 1)
        }));
        v.push(case("flow_upsample", format!("flow_upsample {w}x{h}"), move |ctx| flow_upsample(ctx, size, seed + 2)));
        v.push(case("dis_densify", format!("dis_densify {w}x{h}"), move |ctx| dis_densify(ctx, size, seed + 3)));
        v.push(case("dis_patch_search", format!("dis_patch_search {w}x{h}"), move |ctx| {
            dis_patch_search(ctx, size, seed + 4)
        }));
    }
    v
}

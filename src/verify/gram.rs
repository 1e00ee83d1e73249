//! The Gram matrix's kernels (every variant).

use super::*;

/// Runs `variant`'s Gram dispatches on `features` (C framed planes at `frame`) and reads G back.
pub fn run_gram(
    ctx: &GpuContext,
    variant: GramVariant,
    c: usize,
    frame: Frame,
    features: &wgpu::Buffer,
) -> Result<Vec<f32>> {
    let io = Io { ctx };
    let partial = io.out(kernels::gram::partial_len(variant, c, frame))?;
    let gb = io.out(c * c)?;
    let ranges = ctx.storage_buffer("ranges", 1)?;
    let kernel = kernels::gram::GramKernel::of(variant, || Ok((&ranges, 0)))?;
    let d = kernels::gram::gram(ctx, kernel, Tensor::new(features, c, frame), &partial, &gb)?;
    ctx.run(&d.iter().collect::<Vec<_>>())?;
    io.read(&gb, c * c)
}

/// Gram of a non-negative C x (h x w) feature map with `variant`'s kernel; also requires a rerun to be
/// bit-identical.
pub fn gram(ctx: &GpuContext, c: usize, h: usize, w: usize, variant: GramVariant, seed: u64) -> Check {
    let frame = Frame::new(h, w);
    let mut g = rng(seed);
    let f: Vec<f64> = random(&mut g, c * h * w, 1.0).iter().map(|v| v.max(0.0)).collect();
    let run = || -> Result<(Vec<f32>, Vec<f32>)> {
        let fb = Io { ctx }.framed(&f, c, frame)?;
        Ok((run_gram(ctx, variant, c, frame, &fb)?, run_gram(ctx, variant, c, frame, &fb)?))
    };
    let (first, again) = run().map_err(gpu_err)?;
    if first.iter().zip(&again).any(|(a, b)| a.to_bits() != b.to_bits()) {
        return Err(format!("gram ({variant:?}) {c}x{h}x{w}: rerun not bit-identical"));
    }
    let tol = match variant {
        GramVariant::Coop { .. } => COOP_TOL,
        _ => RTOL,
    };
    compare(&format!("gram ({variant:?}) {c}x{h}x{w}"), &first, &r::gram(&f, c, h * w), tol)
}

/// The cases of this family at `full` or quick scale.
pub fn cases(full: bool) -> Vec<Case> {
    let mut v = Vec::new();
    let gram_shapes: Vec<(usize, usize, usize)> = if full {
        vec![
            (3, 33, 31),
            (64, 17, 9),
            (1, 7, 13),
            (128, 4099, 1),
            (512, 7, 13),
            (65, 12, 25),
            (64, 200, 200),
            (17, 1, 1),
        ]
    } else {
        vec![(64, 17, 9), (512, 7, 13)]
    };
    for (i, &(c, h, w)) in gram_shapes.iter().enumerate() {
        for variant in [GramVariant::Tiled, GramVariant::Cpu] {
            let name = format!("gram ({variant:?}) {c}x{h}x{w} (+rerun bit-identical)");
            let kernels: &[&str] = if variant == GramVariant::Cpu { &["gram_cpu"] } else { &["gram", "gram_reduce"] };
            v.push(case("gram", name, move |ctx| gram(ctx, c, h, w, variant, 700 + i as u64)).checking(kernels));
        }
    }
    v
}

//! The optimiser's kernels: Adam and the image average.

use super::*;

/// Three fused Adam steps against torch.optim.Adam's formula.
pub fn adam(ctx: &GpuContext, n: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let mut x = random(&mut g, n, 100.0);
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    let lr = 10.0;
    let grads: Vec<Vec<f64>> = (0..3).map(|_| random(&mut g, n, 10.0)).collect();
    let run = |x: &[f64]| -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let (xb, mb, vb, gb) = (io.buf(x)?, io.buf(&vec![0.0; n])?, io.buf(&vec![0.0; n])?, io.out(n)?);
        let d = kernels::adam::adam(ctx, n, lr, &xb, &mb, &vb, &gb)?;
        for (t, grad) in grads.iter().enumerate() {
            ctx.queue.write_buffer(&gb, 0, bytemuck::cast_slice(&to_f32(grad)));
            kernels::adam::set_step(ctx, &d, n, lr, t as u64 + 1);
            ctx.run(&[&d])?;
        }
        Ok((io.read(&xb, n)?, io.read(&mb, n)?, io.read(&vb, n)?))
    };
    let (gx, gm, gv) = run(&x).map_err(gpu_err)?;
    for (t, grad) in grads.iter().enumerate() {
        r::adam_step(&mut x, &mut m, &mut v, grad, lr, t as u64 + 1);
    }
    both(both(compare("adam x", &gx, &x, RTOL), compare("adam m", &gm, &m, RTOL)), compare("adam v", &gv, &v, RTOL))
}

/// Four image_average updates (the first restarting over a poisoned b) against the f64 recurrence: b and the
/// average after each.
pub fn image_average(ctx: &GpuContext, n: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let mut g = rng(seed);
    let decay = 0.99;
    let images: Vec<Vec<f64>> = (0..4).map(|_| random(&mut g, n, 120.0)).collect();
    let run = || -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let (xb, bb, ab) = (io.out(n)?, io.out(n)?, io.out(n)?);
        let d = kernels::image_average::image_average(ctx, n, decay, &xb, &bb, &ab)?;
        let mut out = Vec::new();
        for (t, x) in images.iter().enumerate() {
            ctx.queue.write_buffer(&xb, 0, bytemuck::cast_slice(&to_f32(x)));
            kernels::image_average::set_update(ctx, &d, n, decay, t as u64);
            ctx.run(&[&d])?;
            out.push((io.read(&bb, n)?, io.read(&ab, n)?));
        }
        Ok(out)
    };
    let got = run().map_err(gpu_err)?;
    let mut biased = vec![f64::NAN; n];
    let mut worst = 0.0f64;
    for (t, (x, (gb, ga))) in images.iter().zip(&got).enumerate() {
        let average = r::image_average(&mut biased, x, decay, t as u64);
        worst = worst.max(compare(&format!("image_average b, update {t}"), gb, &biased, RTOL)?);
        worst = worst.max(compare(&format!("image_average a, update {t}"), ga, &average, RTOL)?);
    }
    Ok(worst)
}

/// The cases of this family at `full` or quick scale.
pub fn cases(full: bool) -> Vec<Case> {
    let mut v = Vec::new();
    let n = if full { 3 * 33 * 31 } else { 999 };
    v.push(case("adam", format!("adam (3 steps) n={n}"), move |ctx| adam(ctx, n, 1300)));
    let averaged: Vec<usize> = if full { vec![1, 4097, 3 * 33 * 31] } else { vec![999] };
    for (i, &n) in averaged.iter().enumerate() {
        v.push(case("image_average", format!("image_average (4 updates) n={n}"), move |ctx| {
            image_average(ctx, n, 1320 + i as u64)
        }));
    }
    v
}

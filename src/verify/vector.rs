//! The vector kernels: L-BFGS's dot products and axpys, the frame clear, max_abs, the input affine map.

use super::*;
use crate::tiling::Rect;

/// dot_sum + reduce_sum (Σ a·b and Σ |a|) into one slot of a poisoned array: neighbours stay untouched, a rerun
/// is bit-identical, and |gpu − ref| ≤ 1e-5 · Σ |a_i·b_i| (the sum's own f32 rounding scale: a dot product of
/// random vectors cancels, so its value can be far smaller than its terms).
pub fn dot(ctx: &GpuContext, n: usize, seed: u64) -> Check {
    use kernels::vector::{dot_partials, Reduction};
    let io = Io { ctx };
    let mut g = rng(seed);
    let a = random(&mut g, n, 3.0);
    let b = random(&mut g, n, 3.0);
    let mut worst = 0.0f64;
    for reduction in [Reduction::Dot, Reduction::AbsSum] {
        let run = || -> Result<(Vec<f32>, Vec<f32>)> {
            let (ab, bb, pb, sb) = (io.buf(&a)?, io.buf(&b)?, io.out(dot_partials(n))?, io.out(4)?);
            let [d0, d1] = kernels::vector::dot(ctx, reduction, n, (&ab, &bb), &pb, (&sb, 2))?;
            ctx.run(&[&d0, &d1])?;
            let first = io.read(&sb, 4)?;
            ctx.run(&[&d0, &d1])?;
            Ok((first, io.read(&sb, 4)?))
        };
        let (got, again) = run().map_err(gpu_err)?;
        let what = format!("dot_sum ({reduction:?}) n={n}");
        if !(got[0].is_nan() && got[1].is_nan() && got[3].is_nan()) {
            return Err(format!("{what}: wrote outside its slot"));
        }
        if got[2].to_bits() != again[2].to_bits() {
            return Err(format!("{what}: rerun differs ({} vs {})", got[2], again[2]));
        }
        let (expect, scale): (f64, f64) = match reduction {
            Reduction::Dot => {
                (a.iter().zip(&b).map(|(x, y)| x * y).sum(), a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum())
            }
            Reduction::AbsSum => (a.iter().map(|x| x.abs()).sum(), a.iter().map(|x| x.abs()).sum()),
        };
        let err = (f64::from(got[2]) - expect).abs() / scale.max(1e-300);
        if err.is_nan() || err > 1e-5 {
            return Err(format!("{what}: gpu {} vs reference {expect} (error {err:.2e} of Σ|terms| > 1e-5)", got[2]));
        }
        worst = worst.max(err);
    }
    Ok(worst)
}

/// axpy_slots: y = c·x over a poisoned y (keep = 0) and y += c·x (keep = 1), with c a constant and
/// c = scale · (slots[a] − slots[b]) / slots[d] as L-BFGS's two-loop recursion forms it.
pub fn axpy(ctx: &GpuContext, n: usize, seed: u64) -> Check {
    use kernels::vector::Coefficient;
    let io = Io { ctx };
    let mut g = rng(seed);
    let x = random(&mut g, n, 5.0);
    let y0 = random(&mut g, n, 5.0);
    let slots = [0.75, -2.5, 1.25, 40.0];
    let cases = [
        ("constant, overwrite", false, Coefficient::constant(-1.5), -1.5),
        (
            "slots (a − b) / d, accumulate",
            true,
            Coefficient::slots(-1.0, Some(1), Some(2), Some(0)),
            -((-2.5 - 1.25) / 0.75),
        ),
        ("slot a / d, overwrite", false, Coefficient::slots(2.0, Some(3), None, Some(2)), 2.0 * 40.0 / 1.25),
        ("1 − slot b, accumulate", true, Coefficient::slots(1.0, None, Some(0), None), 1.0 - 0.75),
    ];
    let mut worst = 0.0f64;
    for (what, keep, c, coef) in cases {
        let run = || -> Result<Vec<f32>> {
            let (xb, sb) = (io.buf(&x)?, io.buf(&slots)?);
            let yb = if keep { io.buf(&y0)? } else { io.out(n)? };
            let d = kernels::vector::axpy(ctx, n, keep, c, &xb, &yb, &sb)?;
            ctx.run(&[&d])?;
            io.read(&yb, n)
        };
        let got = run().map_err(gpu_err)?;
        let expect: Vec<f64> = x.iter().zip(&y0).map(|(xi, yi)| coef * xi + if keep { *yi } else { 0.0 }).collect();
        worst = worst.max(compare(&format!("axpy_slots ({what}) n={n}"), &got, &expect, RTOL)?);
    }
    Ok(worst)
}

/// frame_clear on a buffer whose every element holds a value: afterwards the frame is zero and every data pixel
/// is untouched.
pub fn frame_clear(ctx: &GpuContext, c: usize, h: usize, w: usize, seed: u64) -> Check {
    let frame = Frame::new(h, w);
    let mut g = rng(seed);
    let dirty = to_f32(&random(&mut g, frame.buffer_floats(c), 1.0));
    let run = || -> Result<Vec<f32>> {
        let b = ctx.buffer_from("dirty", &dirty)?;
        let d = kernels::frame_clear::clear_frame(ctx, Tensor::new(&b, c, frame))?;
        ctx.run(&[&d])?;
        ctx.read_all(&b)
    };
    let got = run().map_err(gpu_err)?;
    for (i, (&v, &before)) in got.iter().zip(&dirty).enumerate().take(Frame::HEAD + c * frame.plane()).skip(Frame::HEAD)
    {
        let want = if frame.is_data(i) { before } else { 0.0 };
        if v.to_bits() != want.to_bits() {
            return Err(format!("frame_clear {c}x{h}x{w}: index {i} is {v}, expected {want}"));
        }
    }
    Ok(0.0)
}

/// zero_u32 then max_abs (twice, into one entry, from two buffers of `n` values): the entry holds exactly the
/// bits of the largest magnitude of both, the other zeroed entries stay zero, and the word past the zeroed
/// range keeps its poison.
pub fn max_abs(ctx: &GpuContext, n: usize, seed: u64) -> Check {
    let mut g = rng(seed);
    let (a, b) = (random(&mut g, n, 3.0), random(&mut g, n, 2.0));
    let largest = a.iter().chain(&b).map(|&v| (v as f32).abs()).fold(0.0f32, f32::max);
    let poison = f32::from_bits(0x7fc0_dead);
    let run = || -> Result<Vec<f32>> {
        let (ab, bb, ranges) = (
            ctx.buffer_from("a", &to_f32(&a))?,
            ctx.buffer_from("b", &to_f32(&b))?,
            ctx.buffer_from("ranges", &[poison; 4])?,
        );
        let zero = kernels::coop::zero_ranges(ctx, 3, &ranges)?;
        let (ma, mb) =
            (kernels::coop::max_abs(ctx, n, 1, &ab, &ranges)?, kernels::coop::max_abs(ctx, n, 1, &bb, &ranges)?);
        ctx.run(&[&zero, &ma, &mb])?;
        ctx.read_all(&ranges)
    };
    let got = run().map_err(gpu_err)?;
    let want = [0.0, largest, 0.0, poison];
    if got.iter().zip(&want).any(|(g, w)| g.to_bits() != w.to_bits()) {
        return Err(format!("max_abs n={n}: ranges {got:?}, expected {want:?}"));
    }
    Ok(0.0)
}

/// channel_affine with arbitrary per-channel scale and offset (the frame must stay zero: the offset is not
/// written there).
pub fn channel_affine(ctx: &GpuContext, h: usize, w: usize, seed: u64) -> Check {
    let io = Io { ctx };
    let frame = Frame::new(h, w);
    let mut g = rng(seed);
    let x = random(&mut g, 3 * h * w, 100.0);
    let (s, o) = ([0.5f32, 2.0, -1.0], [1.0f32, -3.0, 0.25]);
    let p = h * w;
    let expect: Vec<f64> = x.iter().enumerate().map(|(i, v)| v * f64::from(s[i / p]) + f64::from(o[i / p])).collect();
    let run = || -> Result<wgpu::Buffer> {
        let (xb, ob) = (io.framed(&x, 3, frame)?, io.framed_out(3, frame)?);
        let d = kernels::affine::channel_affine(ctx, frame, s, o, &xb, &ob)?;
        ctx.run(&[&d])?;
        Ok(ob)
    };
    let ob = run().map_err(gpu_err)?;
    compare("channel_affine", &io.read_framed(&ob, 3, frame, "channel_affine")?, &expect, RTOL)
}

/// region_copy of a `rect` of a 3 x 13 x 17 tensor into a 3 x 9 x 11 one at `to`: the copied pixels (poisoned
/// first) equal the source's, every other destination pixel keeps its value, the frame stays zero.
pub fn region_copy(ctx: &GpuContext, rect: Rect, to: (usize, usize), seed: u64) -> Check {
    let io = Io { ctx };
    let (sf, df) = (Frame::new(13, 17), Frame::new(9, 11));
    let mut g = rng(seed);
    // Values already f32: a copy is exact.
    let src = to_f64(&to_f32(&random(&mut g, 3 * 13 * 17, 10.0)));
    let mut dst = to_f64(&to_f32(&random(&mut g, 3 * 9 * 11, 10.0)));
    let mut expect = dst.clone();
    for c in 0..3 {
        for i in 0..rect.height {
            for j in 0..rect.width {
                let at = (c * 9 + to.1 + i) * 11 + to.0 + j;
                expect[at] = src[(c * 13 + rect.y + i) * 17 + rect.x + j];
                dst[at] = f64::NAN;
            }
        }
    }
    let run = || -> Result<wgpu::Buffer> {
        let (sb, db) = (io.framed(&src, 3, sf)?, io.framed(&dst, 3, df)?);
        let d = kernels::region::copy(ctx, Tensor::new(&sb, 3, sf), rect, Tensor::new(&db, 3, df), to)?;
        ctx.run(&[&d])?;
        Ok(db)
    };
    let db = run().map_err(gpu_err)?;
    compare("region_copy", &io.read_framed(&db, 3, df, "region_copy")?, &expect, 0.0)
}

/// region_keep of `rect` on a `c` x `h` x `w` tensor: the rectangle unchanged, every other data pixel zero, the
/// frame zero. Exact.
pub fn region_keep(ctx: &GpuContext, (c, h, w): (usize, usize, usize), rect: Rect, seed: u64) -> Check {
    let io = Io { ctx };
    let frame = Frame::new(h, w);
    let x = to_f64(&to_f32(&random(&mut rng(seed), c * h * w, 10.0)));
    let inside = |i: usize| {
        let (y, col) = ((i / w) % h, i % w);
        (rect.x..rect.x + rect.width).contains(&col) && (rect.y..rect.y + rect.height).contains(&y)
    };
    let expect: Vec<f64> = x.iter().enumerate().map(|(i, &v)| if inside(i) { v } else { 0.0 }).collect();
    let run = || -> Result<wgpu::Buffer> {
        let b = io.framed(&x, c, frame)?;
        ctx.run(&[&kernels::region::keep(ctx, Tensor::new(&b, c, frame), rect)?])?;
        Ok(b)
    };
    let b = run().map_err(gpu_err)?;
    compare("region_keep", &io.read_framed(&b, c, frame, "region_keep")?, &expect, 0.0)
}

/// mask_weight on a `c` x `h` x `w` tensor with a random mask in [0, 1]: dst = mask ⊙ src (dst poisoned first, so
/// an unwritten element fails) or dst += mask ⊙ src; the destination's frame, poisoned too, must come back zero.
/// One f32 multiply-add per element.
pub fn mask_weight(ctx: &GpuContext, (c, h, w): (usize, usize, usize), accumulate: bool, seed: u64) -> Check {
    let io = Io { ctx };
    let frame = Frame::new(h, w);
    let mut g = rng(seed);
    let src = to_f64(&to_f32(&random(&mut g, c * h * w, 10.0)));
    let mask: Vec<f64> = to_f64(&to_f32(&random(&mut g, h * w, 1.0))).iter().map(|v| v.abs()).collect();
    let before = if accumulate { to_f64(&to_f32(&random(&mut g, c * h * w, 10.0))) } else { vec![f64::NAN; c * h * w] };
    let expect: Vec<f64> =
        (0..c * h * w).map(|i| if accumulate { before[i] } else { 0.0 } + mask[i % (h * w)] * src[i]).collect();
    let run = || -> Result<wgpu::Buffer> {
        let mut framed = frame.frame(&to_f32(&before), c);
        (0..framed.len()).filter(|&i| !frame.is_data(i)).for_each(|i| framed[i] = f32::NAN);
        let d = ctx.buffer_from("check output", &framed)?;
        let (m, s) = (io.framed(&mask, 1, frame)?, io.framed(&src, c, frame)?);
        ctx.run(&[&kernels::mask::weight(ctx, &m, Tensor::new(&s, c, frame), &d, accumulate)?])?;
        Ok(d)
    };
    let d = run().map_err(gpu_err)?;
    compare("mask_weight", &io.read_framed(&d, c, frame, "mask_weight")?, &expect, 1e-6)
}

/// The cases of this family at `full` or quick scale.
pub fn cases(full: bool) -> Vec<Case> {
    let mut v = Vec::new();
    let clears: Vec<(usize, usize, usize)> =
        if full { vec![(3, 5, 7), (64, 16, 16), (2, 13, 9), (1, 1, 1)] } else { vec![(3, 13, 9)] };
    for (i, &(c, h, w)) in clears.iter().enumerate() {
        v.push(case("frame_clear", format!("frame_clear {c}x{h}x{w}"), move |ctx| {
            frame_clear(ctx, c, h, w, 1500 + i as u64)
        }));
    }
    let sizes: Vec<usize> = if full { vec![1, 255, 4096, 4097, 100_003, 3 * 33 * 31] } else { vec![4097] };
    for (i, &n) in sizes.iter().enumerate() {
        let run = move |ctx: &GpuContext| max_abs(ctx, n, 1550 + i as u64);
        v.push(case("max_abs", format!("zero_u32 + max_abs n={n}"), run).checking(&["zero_u32", "max_abs"]));
    }
    let vectors: Vec<usize> = if full { vec![1, 255, 4096, 4097, 100_003, 3 * 35 * 33] } else { vec![4097] };
    for (i, &n) in vectors.iter().enumerate() {
        let run = move |ctx: &GpuContext| dot(ctx, n, 1560 + i as u64);
        v.push(case("dot_sum", format!("dot_sum + reduce_sum n={n}"), run).checking(&["dot_sum", "reduce_sum"]));
        v.push(case("axpy_slots", format!("axpy_slots n={n}"), move |ctx| axpy(ctx, n, 1570 + i as u64)));
    }
    v.push(case("channel_affine", "channel_affine 7x13".into(), |ctx| channel_affine(ctx, 7, 13, 1400)));
    let copies =
        [(Rect { x: 4, y: 3, width: 6, height: 5 }, (2, 1)), (Rect { x: 0, y: 0, width: 11, height: 9 }, (0, 0))];
    for (i, &(rect, to)) in copies.iter().enumerate().take(if full { 2 } else { 1 }) {
        let run = move |ctx: &GpuContext| region_copy(ctx, rect, to, 1580 + i as u64);
        v.push(case("region_copy", format!("region_copy {rect:?} to {to:?}"), run));
    }
    let keeps = [
        ((3, 13, 17), Rect { x: 2, y: 5, width: 9, height: 4 }),
        ((64, 16, 16), Rect { x: 0, y: 0, width: 16, height: 7 }),
    ];
    for (i, &(shape, rect)) in keeps.iter().enumerate().take(if full { 2 } else { 1 }) {
        let run = move |ctx: &GpuContext| region_keep(ctx, shape, rect, 1590 + i as u64);
        v.push(case("region_keep", format!("region_keep {shape:?} {rect:?}"), run));
    }
    let masks: Vec<((usize, usize, usize), bool)> = if full {
        vec![((3, 13, 17), false), ((3, 13, 17), true), ((64, 32, 29), false), ((1, 1, 1), true)]
    } else {
        vec![((3, 13, 17), false), ((5, 7, 9), true)]
    };
    for (i, &(shape, accumulate)) in masks.iter().enumerate() {
        let run = move |ctx: &GpuContext| mask_weight(ctx, shape, accumulate, 1600 + i as u64);
        v.push(case("mask_weight", format!("mask_weight {shape:?} accumulate={accumulate}"), run));
    }
    v
}

//! Max and average pooling, forward and backward.

use super::*;
use crate::vgg::Pooling;

/// Max or average pooling, forward and backward (with the input ReLU's mask fused: no gradient where the input
/// is ≤ 0). With `ties`, values come from a small set so the first-in-row-major arg-max rule is exercised. Max
/// pooling must match exactly (tolerance 0).
pub fn pool(ctx: &GpuContext, s: PoolShape, avg: bool, ties: bool, seed: u64) -> Check {
    let io = Io { ctx };
    let (c, h, w) = (s.channels, s.height, s.width);
    let (oh, ow) = (h / 2, w / 2);
    let (fin, fout) = (Frame::new(h, w), Frame::new(oh, ow));
    let mut g = rng(seed);
    // Values exactly representable in f32, so max and routing can be compared exactly.
    let raw = random(&mut g, c * h * w, 1.0);
    let x: Vec<f64> = if ties { raw.iter().map(|v| (v * 2.0).round()).collect() } else { to_f64(&to_f32(&raw)) };
    let gy = to_f64(&to_f32(&random(&mut g, c * oh * ow, 1.0)));
    let name = if avg { "avgpool2x2" } else { "maxpool2x2" };
    let what = format!("{name} {c}x{h}x{w} ties={ties}");
    let run = || -> Result<(wgpu::Buffer, wgpu::Buffer)> {
        let (xb, ob, gyb, gxb) =
            (io.framed(&x, c, fin)?, io.framed_out(c, fout)?, io.framed(&gy, c, fout)?, io.framed_out(c, fin)?);
        let (f, b) = if avg {
            (
                kernels::pool::pool2x2(ctx, Pooling::Avg, s, &xb, &ob)?,
                kernels::pool::pool2x2_backward(ctx, Pooling::Avg, s, &xb, (&gyb, &gxb))?,
            )
        } else {
            (
                kernels::pool::pool2x2(ctx, Pooling::Max, s, &xb, &ob)?,
                kernels::pool::pool2x2_backward(ctx, Pooling::Max, s, &xb, (&gyb, &gxb))?,
            )
        };
        ctx.run(&[&f, &b])?;
        Ok((ob, gxb))
    };
    let (ob, gxb) = run().map_err(gpu_err)?;
    let (fwd, bwd) = (io.read_framed(&ob, c, fout, &what)?, io.read_framed(&gxb, c, fin, &what)?);
    let (ef, eb, tol) = if avg {
        (r::avgpool2x2(&x, c, h, w), r::relu_mask(&r::avgpool2x2_backward(&gy, c, h, w), &x), RTOL)
    } else {
        (r::maxpool2x2(&x, c, h, w), r::relu_mask(&r::maxpool2x2_backward(&x, &gy, c, h, w), &x), 0.0)
    };
    both(compare(&what, &fwd, &ef, tol), compare(&format!("{what} backward"), &bwd, &eb, tol))
}

/// The cases of this family at `full` or quick scale.
pub fn cases(full: bool) -> Vec<Case> {
    let mut v = Vec::new();
    let pool_shapes: Vec<(usize, usize, usize)> = if full {
        vec![(3, 33, 31), (64, 17, 9), (1, 7, 13), (128, 16, 16), (512, 5, 3)]
    } else {
        vec![(64, 17, 9), (3, 33, 31)]
    };
    for (i, &(channels, height, width)) in pool_shapes.iter().enumerate() {
        let s = PoolShape { channels, height, width };
        for ties in [false, true] {
            let name = format!("maxpool2x2 (+backward) {channels}x{height}x{width} ties={ties}");
            let run = move |ctx: &GpuContext| pool(ctx, s, false, ties, 400 + i as u64);
            v.push(case("maxpool2x2", name, run).checking(&["maxpool2x2", "maxpool2x2_backward"]));
        }
        let name = format!("avgpool2x2 (+backward) {channels}x{height}x{width}");
        let run = move |ctx: &GpuContext| pool(ctx, s, true, false, 500 + i as u64);
        v.push(case("avgpool2x2", name, run).checking(&["avgpool2x2", "avgpool2x2_backward"]));
    }
    v
}

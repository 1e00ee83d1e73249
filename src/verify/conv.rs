//! The 3x3 convolution's kernels (forward and backward-data, every variant) against the reference and finite
//! differences, and the tensor-core first-use check as a check.

use super::*;
use crate::kernels::Dispatch;
use crate::Error;

/// A seeded conv problem of shape `s`: input, weights at VGG's scale, biases.
fn conv_data(g: &mut rand_chacha::ChaCha8Rng, s: ConvShape) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let x = random(g, s.cin * s.height * s.width, 1.0);
    let wt = random(g, s.cout * s.cin * 9, (3.0 / (s.cin as f64 * 9.0)).sqrt());
    (x, wt, random(g, s.cout, 0.5))
}

/// conv3x3 forward (+ bias, ± ReLU) with `variant`'s kernel.
pub fn conv3x3(ctx: &GpuContext, s: ConvShape, relu: bool, variant: ConvVariant, seed: u64) -> Check {
    let io = Io { ctx };
    let (cin, cout, h, w) = (s.cin, s.cout, s.height, s.width);
    let frame = s.frame();
    let mut g = rng(seed);
    let (x, wt, b) = conv_data(&mut g, s);
    let expect = r::conv3x3(&x, (cin, h, w), &wt, &b, cout, relu);
    let what = format!("conv3x3 ({variant:?}) {cin}->{cout} {h}x{w} relu={relu}");
    let run = || -> Result<wgpu::Buffer> {
        let wf = kernels::conv::forward_weights(variant, &to_f32(&wt), cin, cout);
        let (xb, wb, bb, ob) =
            (io.framed(&x, cin, frame)?, ctx.buffer_from("w", &wf)?, io.buf(&b)?, io.framed_out(cout, frame)?);
        // A tensor-core kernel's input range is measured into entry 0 first.
        let ranges = ctx.storage_buffer("ranges", 1)?;
        let mut ds = Vec::new();
        let kernel = ConvKernel::of(variant, || {
            ds.push(kernels::coop::max_abs(ctx, frame.buffer_floats(cin), 0, &xb, &ranges)?);
            Ok(coop_operands(&ranges, &wt))
        })?;
        let conv_io = ForwardIo { input: &xb, weights: &wb, bias: &bb, output: &ob };
        ds.push(kernels::conv::conv3x3(ctx, kernel, s, relu, conv_io)?);
        ctx.run(&ds.iter().collect::<Vec<_>>())?;
        Ok(ob)
    };
    let out = run().map_err(gpu_err)?;
    compare(&what, &io.read_framed(&out, cout, frame, &what)?, &expect, conv_tolerance(variant))
}

fn conv_tolerance(variant: ConvVariant) -> f64 {
    match variant {
        ConvVariant::Coop { .. } => COOP_TOL,
        _ => RTOL,
    }
}

/// The tensor-core operand ranges of a conv check: the weights' largest magnitude known on the host, the
/// activations' measured into entry 0 of `ranges`.
fn coop_operands<'a>(ranges: &'a wgpu::Buffer, weights: &[f64]) -> kernels::conv::CoopOperands<'a> {
    let largest = weights.iter().fold(0.0f64, |m, v| m.max(v.abs())) as f32;
    kernels::conv::CoopOperands {
        ranges,
        weights: kernels::coop::OperandRange::fixed(largest),
        input: kernels::coop::OperandRange::measured(0),
    }
}

/// conv3x3 backward-data with `variant`'s kernel against the reference, with and without the fused ReLU mask of
/// its input (the kernel is given the already-masked output gradient, as every writer of a gradient in the
/// engine leaves it); when `finite_differences`, the unmasked result against central differences of
/// L(x) = Σ r · relu(conv(x)).
pub fn conv3x3_backward_data(
    ctx: &GpuContext,
    s: ConvShape,
    variant: ConvVariant,
    finite_differences: bool,
    seed: u64,
) -> Check {
    let io = Io { ctx };
    let (cin, cout, h, w) = (s.cin, s.cout, s.height, s.width);
    let frame = s.frame();
    let mut g = rng(seed);
    let (x, wt, b) = conv_data(&mut g, s);
    let y = r::conv3x3(&x, (cin, h, w), &wt, &b, cout, true);
    let gy = random(&mut g, cout * h * w, 1.0);
    // The input's own forward values (as if it were a ReLU output) for the fused mask.
    let mask = random(&mut g, cin * h * w, 1.0);
    let expect = r::conv3x3_backward_data(&gy, &y, cin, cout, h, w, &wt);
    let expect_masked = r::relu_mask(&expect, &mask);
    let what = format!("conv3x3_backward_data ({variant:?}) {cin}->{cout} {h}x{w}");
    let run = || -> Result<(wgpu::Buffer, wgpu::Buffer)> {
        let wbk = kernels::conv::backward_weights(variant, &to_f32(&wt), cin, cout);
        let gyb = io.framed(&r::relu_mask(&gy, &y), cout, frame)?;
        let (wb, mb) = (ctx.buffer_from("w", &wbk)?, io.framed(&mask, cin, frame)?);
        let (o1, o2) = (io.framed_out(cin, frame)?, io.framed_out(cin, frame)?);
        // A tensor-core kernel's gradient range is measured into entry 0 first.
        let ranges = ctx.storage_buffer("ranges", 1)?;
        let mut ds = Vec::new();
        let kernel = ConvKernel::of(variant, || {
            ds.push(kernels::coop::max_abs(ctx, frame.buffer_floats(cout), 0, &gyb, &ranges)?);
            Ok(coop_operands(&ranges, &wt))
        })?;
        for (mask_src, grad_in) in [(None, &o1), (Some(&mb), &o2)] {
            let conv_io = BackwardIo { grad_out: &gyb, weights: &wb, mask_src, grad_in };
            ds.push(kernels::conv::conv3x3_backward_data(ctx, kernel, s, conv_io)?);
        }
        ctx.run(&ds.iter().collect::<Vec<_>>())?;
        Ok((o1, o2))
    };
    let (o1, o2) = run().map_err(gpu_err)?;
    let plain = io.read_framed(&o1, cin, frame, &what)?;
    let masked = io.read_framed(&o2, cin, frame, &what)?;
    let tol = conv_tolerance(variant);
    let vs_ref =
        both(compare(&what, &plain, &expect, tol), compare(&format!("{what} masked"), &masked, &expect_masked, tol));
    if !finite_differences {
        return vs_ref;
    }
    let loss = |x: &[f64]| -> f64 {
        r::conv3x3(x, (cin, h, w), &wt, &b, cout, true).iter().zip(&gy).map(|(a, b)| a * b).sum()
    };
    let fd = r::central_differences(&x, 1e-5, loss);
    both(vs_ref, compare(&format!("{what} vs finite differences"), &plain, &fd, tol.max(1e-3)))
}

/// A conv's forward (+ ReLU) and backward-data (the input's ReLU mask fused) on seeded data, and their f64
/// references: what the pieces and the two f32 cores are checked on.
struct PassPair {
    s: ConvShape,
    x: Vec<f64>,
    wt: Vec<f64>,
    b: Vec<f64>,
    /// The output gradient, already masked by the forward's ReLU (as every writer of a gradient leaves it).
    gy: Vec<f64>,
    /// The input's own forward values, whose sign is the fused mask.
    mask: Vec<f64>,
    forward: Vec<f64>,
    backward: Vec<f64>,
}

impl PassPair {
    fn new(s: ConvShape, seed: u64) -> Self {
        let (cin, cout, h, w) = (s.cin, s.cout, s.height, s.width);
        let mut g = rng(seed);
        let (x, wt, b) = conv_data(&mut g, s);
        let gy = random(&mut g, cout * h * w, 1.0);
        let mask = random(&mut g, cin * h * w, 1.0);
        let forward = r::conv3x3(&x, (cin, h, w), &wt, &b, cout, true);
        let backward = r::relu_mask(&r::conv3x3_backward_data(&gy, &forward, cin, cout, h, w, &wt), &mask);
        let gy = r::relu_mask(&gy, &forward);
        Self { s, x, wt, b, gy, mask, forward, backward }
    }

    /// Both passes with `variant`, built in pieces of at most `piece_gflop` (`None`: whole), `per_launch` pieces
    /// in one launch (None: all of them), in one command buffer or (`apart`) one per launch. Returns the two
    /// results (dense), checked against the references.
    fn run(
        &self,
        ctx: &GpuContext,
        variant: ConvVariant,
        piece_gflop: Option<f64>,
        (per_launch, apart): (Option<usize>, bool),
        what: &str,
    ) -> std::result::Result<(Vec<f32>, Vec<f32>, f64), String> {
        let io = Io { ctx };
        let (s, frame) = (self.s, self.s.frame());
        let (cin, cout) = (s.cin, s.cout);
        let run = || -> Result<(wgpu::Buffer, wgpu::Buffer)> {
            let wf = kernels::conv::forward_weights(variant, &to_f32(&self.wt), cin, cout);
            let wb = kernels::conv::backward_weights(variant, &to_f32(&self.wt), cin, cout);
            let (xb, wfb, bb, yb) = (
                io.framed(&self.x, cin, frame)?,
                ctx.buffer_from("w", &wf)?,
                io.buf(&self.b)?,
                io.framed_out(cout, frame)?,
            );
            let (gyb, wbb, mb) =
                (io.framed(&self.gy, cout, frame)?, ctx.buffer_from("w", &wb)?, io.framed(&self.mask, cin, frame)?);
            let gxb = io.framed_out(cin, frame)?;
            let ranges = ctx.storage_buffer("ranges", 2)?;
            let mut ds = Vec::new();
            let kernel = |slot: u32, input: &wgpu::Buffer, channels: usize, ds: &mut Vec<Dispatch>| {
                ConvKernel::of(variant, || {
                    ds.push(kernels::coop::max_abs(ctx, frame.buffer_floats(channels), slot, input, &ranges)?);
                    let mut operands = coop_operands(&ranges, &self.wt);
                    operands.input = kernels::coop::OperandRange::measured(slot);
                    Ok(operands)
                })
            };
            let fk = kernel(0, &xb, cin, &mut ds)?;
            let bk = kernel(1, &gyb, cout, &mut ds)?;
            let fio = ForwardIo { input: &xb, weights: &wfb, bias: &bb, output: &yb };
            let bio = BackwardIo { grad_out: &gyb, weights: &wbb, mask_src: Some(&mb), grad_in: &gxb };
            let piece = piece_gflop.unwrap_or(f64::INFINITY);
            let convs = [
                kernels::conv::conv3x3_pieced(ctx, fk, s, true, fio, piece)?,
                kernels::conv::conv3x3_backward_data_pieced(ctx, bk, s, bio, piece)?,
            ];
            for d in convs.iter().filter(|_| piece_gflop.is_some()) {
                if !d.pieces().is_some_and(|p| p.count >= 3 && p.tiles % p.tiles_each != 0) {
                    let pieces = d.pieces();
                    let why = format!("{}: {pieces:?}, expected 3+ pieces, the last short", d.kernel);
                    return Err(Error::Validation(why));
                }
            }
            // Both convs have the same work and tiles, so the same pieces.
            let launch_gflop = per_launch.zip(convs[0].pieces()).map(|(k, p)| k as f64 * p.gflop_each);
            if apart {
                let encoders = ctx.encode_cut(ds.iter().chain(&convs), |_| false, launch_gflop);
                let launches: usize = convs.iter().map(|d| d.launch_count(launch_gflop)).sum();
                if encoders.len() != launches + usize::from(!ds.is_empty()) {
                    let why = format!("{} command buffers for {launches} launches", encoders.len());
                    return Err(Error::Validation(why));
                }
                let submitted = ctx.submit(encoders);
                ctx.wait(Some(submitted))?;
            } else {
                ctx.submit_and_wait(ctx.encode_within(ds.iter().chain(&convs), launch_gflop).finish())?;
            }
            Ok((yb, gxb))
        };
        let (yb, gxb) = run().map_err(gpu_err)?;
        let y = io.read_framed(&yb, cout, frame, what)?;
        let gx = io.read_framed(&gxb, cin, frame, what)?;
        let tol = conv_tolerance(variant);
        let worst = both(
            compare(&format!("conv3x3 {what}"), &y, &self.forward, tol),
            compare(&format!("conv3x3_backward_data {what}"), &gx, &self.backward, tol),
        )?;
        Ok((y, gx, worst))
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A GEMM conv (forward with ReLU, backward-data with the input's mask) built in 5 or 6 pieces along its pixel
/// tiles, the last one short, and recorded four ways: every piece in one launch, one launch per piece, two per
/// launch, two per launch in a command buffer each (what a slow adapter gets, [`crate::submission`]). Each
/// against the reference, and all bit-identical (a piece runs exactly the tiles it would run in one launch).
pub fn conv3x3_in_pieces(ctx: &GpuContext, s: ConvShape, variant: ConvVariant, seed: u64) -> Check {
    let pair = PassPair::new(s, seed);
    let piece_gflop = 2.0 * s.macs() as f64 / 1e9 / 4.5;
    let ways = [
        ("whole", (None, false)),
        ("a piece per launch", (Some(1), false)),
        ("two per launch", (Some(2), false)),
        ("two per launch, a command buffer each", (Some(2), true)),
    ];
    let mut results = Vec::new();
    let mut worst = 0.0f64;
    for (how, way) in ways {
        let what = format!("{variant:?} {}->{} {}x{} in pieces, {how}", s.cin, s.cout, s.height, s.width);
        let (y, gx, err) = pair.run(ctx, variant, Some(piece_gflop), way, &what)?;
        worst = worst.max(err);
        results.push((what, bits(&y), bits(&gx)));
    }
    for (what, y, gx) in &results[1..] {
        if (y, gx) != (&results[0].1, &results[0].2) {
            return Err(format!("{what}: the result differs from one launch"));
        }
    }
    Ok(worst)
}

/// The 4x4 and 8x8 GEMM cores give bit-identical convs, forward and backward-data (the same k order per output
/// is their contract), and match the reference.
pub fn tiled_cores_agree(ctx: &GpuContext, s: ConvShape, seed: u64) -> Check {
    let pair = PassPair::new(s, seed);
    let what = |v: ConvVariant| format!("({v:?}) {}->{} {}x{}", s.cin, s.cout, s.height, s.width);
    let (y4, gx4, e4) = pair.run(ctx, ConvVariant::Tiled, None, (None, false), &what(ConvVariant::Tiled))?;
    let (y8, gx8, e8) = pair.run(ctx, ConvVariant::Tiled8x8, None, (None, false), &what(ConvVariant::Tiled8x8))?;
    if (bits(&y4), bits(&gx4)) != (bits(&y8), bits(&gx8)) {
        return Err(format!(
            "{}: the 8x8 core's conv differs in some bit from the 4x4 core's",
            what(ConvVariant::Tiled8x8)
        ));
    }
    Ok(e4.max(e8))
}

/// The WGSL kernel of a forward variant.
fn forward_kernel(variant: ConvVariant) -> &'static str {
    match variant {
        ConvVariant::Cpu { .. } => "conv3x3_cpu",
        ConvVariant::Tiled | ConvVariant::Tiled8x8 | ConvVariant::Narrow | ConvVariant::Coop { .. } => "conv3x3",
    }
}

/// The WGSL kernel of a backward-data variant.
fn backward_kernel(variant: ConvVariant) -> &'static str {
    match variant {
        ConvVariant::Cpu { .. } => "conv3x3_cpu",
        ConvVariant::Narrow => "conv3x3_backward_data_narrow",
        ConvVariant::Tiled | ConvVariant::Tiled8x8 | ConvVariant::Coop { .. } => "conv3x3_backward_data",
    }
}

/// The cases of this family at `full` or quick scale.
pub fn cases(full: bool) -> Vec<Case> {
    let conv = |(cin, cout, height, width): (usize, usize, usize, usize)| ConvShape { cin, cout, height, width };
    let mut v = Vec::new();
    // (cin, cout, h, w): odd, prime and realistic; a 3-channel side for conv1_1 both ways; more channels than
    // one CPU block (8) and than one tile (64), and not a multiple of either.
    let conv_shapes: Vec<(usize, usize, usize, usize)> = if full {
        vec![
            (3, 64, 33, 31),
            (64, 128, 17, 9),
            (1, 7, 7, 13),
            (128, 64, 5, 11),
            (512, 512, 3, 5),
            (64, 3, 16, 16),
            (4, 130, 19, 23),
            (16, 20, 1, 1),
        ]
    } else {
        vec![(3, 64, 17, 13), (64, 128, 9, 7), (512, 512, 3, 5)]
    };
    for (i, &s) in conv_shapes.iter().enumerate() {
        let s = conv(s);
        for variant in kernels::conv::forward_variant_list() {
            for relu in if full { vec![true, false] } else { vec![true] } {
                let name = format!("conv3x3 ({variant:?}) {}->{} {}x{} relu={relu}", s.cin, s.cout, s.height, s.width);
                let run = move |ctx: &GpuContext| conv3x3(ctx, s, relu, variant, 100 + i as u64);
                v.push(case("conv3x3", name, run).checking(&[forward_kernel(variant)]));
            }
        }
    }
    let bwd_shapes: Vec<(usize, usize, usize, usize)> =
        if full { conv_shapes.clone() } else { vec![(3, 64, 16, 16), (128, 64, 7, 9)] };
    for (i, &s) in bwd_shapes.iter().enumerate() {
        let s = conv(s);
        for variant in kernels::conv::backward_variant_list(s.cin) {
            let name = format!("conv3x3_backward_data ({variant:?}) {}->{} {}x{}", s.cin, s.cout, s.height, s.width);
            let run = move |ctx: &GpuContext| conv3x3_backward_data(ctx, s, variant, false, 200 + i as u64);
            v.push(case("conv3x3_backward_data", name, run).checking(&[backward_kernel(variant)]));
        }
    }
    // The two f32 GEMM cores, bit for bit: several row and pixel tiles, both ragged.
    let s = conv((37, 70, 11, 13));
    let name = format!(
        "conv3x3 + backward-data {}->{} {}x{}: the 4x4 and 8x8 cores bit-identical",
        s.cin, s.cout, s.height, s.width
    );
    v.push(
        case("conv3x3", name, move |ctx: &GpuContext| tiled_cores_agree(ctx, s, 500))
            .checking(&["conv3x3", "conv3x3_backward_data"]),
    );
    // The GEMM variants built in pieces (what a large image gets): 6 pieces over 17 pixel tiles, 2 row tiles.
    let s = conv((16, 70, 37, 29));
    let name = format!(
        "conv3x3 + backward-data {}->{} {}x{} in pieces, launched whole, one and two per launch",
        s.cin, s.cout, s.height, s.width
    );
    for variant in [ConvVariant::Tiled, ConvVariant::Tiled8x8] {
        let name = format!("{name} ({variant:?})");
        let run = move |ctx: &GpuContext| conv3x3_in_pieces(ctx, s, variant, 400);
        v.push(case("conv3x3", name, run).checking(&["conv3x3", "conv3x3_backward_data"]));
    }
    // Central finite differences of L(x) = Σ r · relu(conv(x)), also for a 3-channel result (conv1_1's image
    // gradient).
    let fd_shapes: Vec<(usize, usize, usize, usize)> =
        if full { vec![(5, 6, 7, 9), (3, 70, 9, 7)] } else { vec![(5, 6, 7, 9)] };
    for (i, &s) in fd_shapes.iter().enumerate() {
        let s = conv(s);
        for variant in kernels::conv::backward_variant_list(s.cin) {
            let name = format!(
                "conv3x3_backward_data ({variant:?}) {}->{} {}x{} vs finite differences",
                s.cin, s.cout, s.height, s.width
            );
            let run = move |ctx: &GpuContext| conv3x3_backward_data(ctx, s, variant, true, 300 + i as u64);
            v.push(case("conv3x3_backward_data", name, run).checking(&[backward_kernel(variant)]));
        }
    }
    v
}

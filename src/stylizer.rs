//! The library API: a [`Stylizer`] holds the GPU plan for one content image and a set of style images, and
//! steps Adam iterations on the image. The CLI is a thin layer over this.
//!
//! ```ignore
//! let ctx = GpuContext::new(&GpuOptions::default())?;
//! let weights = Vgg16Weights::load(&Vgg16Weights::default_path())?;
//! let mut s = Stylizer::new(&ctx, &weights, &content, &[style], &StyleOptions::default())?;
//! for _ in 0..1000 { s.step()?; }
//! let losses = s.losses()?;       // losses of the current image
//! let img = s.image()?;           // current image, pixel units, not clamped
//! ```

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::kernels::{self, conv::ConvShape, pool::PoolShape, Dispatch};
use crate::planar::PlanarImage;
use crate::vgg::{self, ForwardPlan, GpuNet, POOL_AFTER};
use crate::weights::{Vgg16Weights, CAFFE_MEAN_RGB};

/// Pooling used after relu1_2, relu2_2, relu3_3, relu4_3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Pooling {
    #[default]
    Max,
    Avg,
}

/// Where the optimisation starts.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Init {
    /// Start from the content image.
    #[default]
    Content,
    /// Start from this image (pixel units, must be the content image's size).
    Image(PlanarImage),
    /// Seeded noise around the mean colour: x = 0.001 · N(0, 1) in mean-subtracted pixel units (as
    /// jcjohnson/neural-style's `-init random`), from a ChaCha8 generator seeded by `StyleOptions::seed`.
    Random,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StyleOptions {
    pub content_weight: f32,
    pub style_weight: f32,
    pub tv_weight: f32,
    pub learning_rate: f32,
    /// relu layer names, e.g. `["relu4_2"]`.
    pub content_layers: Vec<String>,
    /// relu layer names, e.g. `["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]`.
    pub style_layers: Vec<String>,
    /// One per style image; empty = equal. Normalised to sum 1.
    pub style_blend_weights: Vec<f32>,
    pub pooling: Pooling,
    pub init: Init,
    pub seed: u64,
}

impl Default for StyleOptions {
    fn default() -> Self {
        Self {
            content_weight: 5.0,
            style_weight: 100.0,
            tv_weight: 1e-3,
            learning_rate: 10.0,
            content_layers: vec!["relu4_2".into()],
            style_layers: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            style_blend_weights: Vec::new(),
            pooling: Pooling::Max,
            init: Init::Content,
            seed: 0,
        }
    }
}

/// Loss values of one image (see `docs/MATHS.md`).
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize)]
pub struct Losses {
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    pub total: f64,
}

/// A loss term evaluated at one tapped layer.
struct Tap {
    layer: usize,
    kind: TapKind,
}

enum TapKind {
    /// Target features P.
    Content { target: wgpu::Buffer },
    /// This image's Gram G and the blended target A.
    Style { gram: wgpu::Buffer, target: wgpu::Buffer },
}

/// Neural style transfer state for one content image: the GPU plan, the targets, Adam's moments.
pub struct Stylizer<'a> {
    ctx: &'a GpuContext,
    _net: GpuNet,
    plan: ForwardPlan,
    opts: StyleOptions,
    _taps: Vec<Tap>,
    /// Loss dispatches (scalars only): content/style sq-diff + reduce, Grams.
    loss_dispatches: Vec<Dispatch>,
    /// Backward from the deepest tap to the image gradient, TV (loss + gradient), reduce.
    backward_dispatches: Vec<Dispatch>,
    tv_dispatches: Vec<Dispatch>,
    adam: Dispatch,
    losses_buf: wgpu::Buffer,
    /// Slot kinds of `losses_buf`: 0 content, 1 style, 2 tv.
    slot_kinds: Vec<u8>,
    /// dL/dx, what Adam consumes.
    grad_x: wgpu::Buffer,
    /// Where the loss slots are copied for reading back (created once).
    losses_staging: wgpu::Buffer,
    /// The last iteration submitted without a read-back, not yet waited for.
    in_flight: Option<wgpu::SubmissionIndex>,
    iteration: usize,
    bytes: u64,
    // Kept alive for the dispatches that bind them.
    _buffers: Vec<wgpu::Buffer>,
}

fn layer_indices(names: &[String], what: &str) -> Result<Vec<usize>> {
    names
        .iter()
        .map(|n| {
            vgg::relu_index(n).ok_or_else(|| {
                Error::InvalidOption(format!(
                    "unknown {what} layer \"{n}\" (choose from {})",
                    vgg::RELU_NAMES.join(", ")
                ))
            })
        })
        .collect()
}

/// x = pixels − mean, CHW.
pub fn subtract_mean(img: &PlanarImage) -> Vec<f32> {
    let plane = img.width * img.height;
    img.data.iter().enumerate().map(|(i, v)| v - CAFFE_MEAN_RGB[i / plane]).collect()
}

/// Normalised blend weights (sum 1), or a clear error.
pub fn blend_weights(given: &[f32], styles: usize) -> Result<Vec<f64>> {
    if styles == 0 {
        return Err(Error::InvalidOption("at least one style image is needed".into()));
    }
    if given.is_empty() {
        return Ok(vec![1.0 / styles as f64; styles]);
    }
    if given.len() != styles {
        return Err(Error::InvalidOption(format!(
            "--style-blend-weights has {} values for {} style images",
            given.len(),
            styles
        )));
    }
    if given.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(Error::InvalidOption("style blend weights must be finite and >= 0".into()));
    }
    let sum: f64 = given.iter().map(|&w| f64::from(w)).sum();
    if sum <= 0.0 {
        return Err(Error::InvalidOption("style blend weights must have a positive sum".into()));
    }
    Ok(given.iter().map(|&w| f64::from(w) / sum).collect())
}

fn check_options(o: &StyleOptions) -> Result<()> {
    for (name, v) in
        [("content weight", o.content_weight), ("style weight", o.style_weight), ("tv weight", o.tv_weight)]
    {
        if !v.is_finite() || v < 0.0 {
            return Err(Error::InvalidOption(format!("{name} must be finite and >= 0, got {v}")));
        }
    }
    if !o.learning_rate.is_finite() || o.learning_rate <= 0.0 {
        return Err(Error::InvalidOption(format!("learning rate must be > 0, got {}", o.learning_rate)));
    }
    if o.content_layers.is_empty() && o.style_layers.is_empty() {
        return Err(Error::InvalidOption("no content or style layers given".into()));
    }
    Ok(())
}

impl<'a> Stylizer<'a> {
    /// Plans buffers for the content size, runs the content forward and the style Grams once.
    pub fn new(
        ctx: &'a GpuContext,
        weights: &Vgg16Weights,
        content: &PlanarImage,
        styles: &[PlanarImage],
        opts: &StyleOptions,
    ) -> Result<Self> {
        check_options(opts)?;
        let (w, h) = (content.width, content.height);
        vgg::check_size(w, h)?;
        for s in styles {
            vgg::check_size(s.width, s.height)?;
        }
        let content_layers = layer_indices(&opts.content_layers, "content")?;
        let style_layers = layer_indices(&opts.style_layers, "style")?;
        let blend =
            if style_layers.is_empty() { Vec::new() } else { blend_weights(&opts.style_blend_weights, styles.len())? };
        let net = GpuNet::new(ctx, weights, opts.pooling)?;
        let up_to = content_layers.iter().chain(&style_layers).copied().max().unwrap_or(0);

        // Style targets A_l = Σ_k b_k G_l(style k), each Gram at its image's own size, blended in f64.
        let mut targets: Vec<Vec<f64>> = Vec::new();
        if !style_layers.is_empty() {
            for (k, s) in styles.iter().enumerate() {
                let g = vgg::grams(ctx, &net, &subtract_mean(s), s.width, s.height, &style_layers)?;
                if k == 0 {
                    targets = g.iter().map(|m| vec![0.0; m.len()]).collect();
                }
                for (t, m) in targets.iter_mut().zip(&g) {
                    for (a, &v) in t.iter_mut().zip(m) {
                        *a += blend[k] * f64::from(v);
                    }
                }
            }
        }

        let plan = ForwardPlan::with_scratch(ctx, &net, w, h, up_to, backward_scratch_len(&net, w, h, up_to))?;
        let bytes = std::cell::Cell::new(net.bytes + plan.bytes);
        let mut buffers = Vec::new();
        let alloc = |label: &str, len: usize| -> Result<wgpu::Buffer> {
            bytes.set(bytes.get() + (len * 4) as u64);
            ctx.storage_buffer(label, len)
        };

        // Content targets: the content image's own features.
        let content_x = subtract_mean(content);
        let mut taps = Vec::new();
        if !content_layers.is_empty() {
            plan.run(ctx, &content_x)?;
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            for &l in &content_layers {
                let (c, hh, ww) = plan.shapes[l];
                let target = alloc("content target", c * hh * ww)?;
                enc.copy_buffer_to_buffer(&plan.relu[l], 0, &target, 0, (c * hh * ww * 4) as u64);
                taps.push(Tap { layer: l, kind: TapKind::Content { target } });
            }
            ctx.submit_and_wait(enc.finish())?;
        }
        for (i, &l) in style_layers.iter().enumerate() {
            let (c, _, _) = plan.shapes[l];
            let target32: Vec<f32> = targets[i].iter().map(|&v| v as f32).collect();
            bytes.set(bytes.get() + (8 * c * c) as u64);
            let target = ctx.buffer_from("style target", &target32)?;
            let gram = ctx.storage_buffer("gram", c * c)?;
            taps.push(Tap { layer: l, kind: TapKind::Style { gram, target } });
        }

        // Scratch shared by the loss kernels (each reduction finishes before the next starts).
        let plane = w * h;
        let mut partial_len = kernels::loss::tv_partials(h, w);
        let mut gram_scratch = 1;
        for t in &taps {
            let (c, hh, ww) = plan.shapes[t.layer];
            partial_len = partial_len.max(kernels::loss::sq_diff_partials(match t.kind {
                TapKind::Content { .. } => c * hh * ww,
                TapKind::Style { .. } => c * c,
            }));
            if let TapKind::Style { .. } = t.kind {
                gram_scratch = gram_scratch.max(kernels::gram::partial_len(c, hh * ww));
            }
        }
        let partials = alloc("loss partials", partial_len)?;
        let gram_partial = alloc("gram partials", gram_scratch)?;
        let losses_buf = alloc("losses", taps.len() + 1)?;

        // Loss scalars.
        let mut loss_dispatches = Vec::new();
        let mut slot_kinds = Vec::new();
        for (slot, t) in taps.iter().enumerate() {
            let (c, hh, ww) = plan.shapes[t.layer];
            let f = &plan.relu[t.layer];
            match &t.kind {
                TapKind::Content { target } => {
                    let n = c * hh * ww;
                    loss_dispatches.push(kernels::loss::sq_diff_sum(ctx, n, f, target, &partials)?);
                    let scale = f64::from(opts.content_weight) / n as f64;
                    loss_dispatches.push(kernels::loss::reduce_sum(
                        ctx,
                        kernels::loss::sq_diff_partials(n),
                        slot,
                        scale,
                        &partials,
                        &losses_buf,
                    )?);
                    slot_kinds.push(0);
                }
                TapKind::Style { gram, target } => {
                    loss_dispatches.extend(kernels::gram::gram(ctx, c, hh * ww, f, &gram_partial, gram)?);
                    loss_dispatches.push(kernels::loss::sq_diff_sum(ctx, c * c, gram, target, &partials)?);
                    let scale = f64::from(opts.style_weight) / (c * c) as f64;
                    loss_dispatches.push(kernels::loss::reduce_sum(
                        ctx,
                        kernels::loss::sq_diff_partials(c * c),
                        slot,
                        scale,
                        &partials,
                        &losses_buf,
                    )?);
                    slot_kinds.push(1);
                }
            }
        }
        slot_kinds.push(2);

        // Backward, planned so it needs one extra activation-sized buffer (the scratch, which is also the pools'
        // output buffer in the forward): every kernel that writes a post-ReLU gradient applies that ReLU's mask
        // itself, so a conv's backward never reads its own activations, and once the gradient of relu_l exists,
        // relu_l's buffer is dead and receives the gradient of the layer below. The gradient of relu_l lives in
        // the scratch when l is the top layer or feeds a pool, else in relu_{l+1}'s buffer.
        let grad_x = alloc("image gradient", 3 * plane)?;
        let grad_net_in = match net.input_affine {
            Some(_) => Some(alloc("network input gradient", 3 * plane)?),
            None => None,
        };
        let scratch = &plan.pool_out;
        let mut backward = Vec::new();
        let mut cur = scratch; // holds dL/d(pre-ReLU of layer), masked
        for layer in (0..=up_to).rev() {
            let (c, hh, ww) = plan.shapes[layer];
            let f = &plan.relu[layer];
            let mut written = layer != up_to; // the layer above already wrote this gradient
            for t in taps.iter().filter(|t| t.layer == layer) {
                match &t.kind {
                    TapKind::Content { target } => {
                        let n = c * hh * ww;
                        let scale = 2.0 * f64::from(opts.content_weight) / n as f64;
                        backward.push(kernels::loss::content_grad(ctx, n, scale, written, f, target, cur)?);
                    }
                    TapKind::Style { gram, target } => {
                        let m = (c * hh * ww) as f64;
                        let scale = 4.0 * f64::from(opts.style_weight) / ((c * c) as f64 * m);
                        backward.push(kernels::loss::style_grad(
                            ctx,
                            c,
                            hh * ww,
                            scale,
                            written,
                            gram,
                            target,
                            f,
                            cur,
                        )?);
                    }
                }
                written = true;
            }
            let conv = &net.convs[layer];
            let shape = ConvShape { cin: conv.cin, cout: c, height: hh, width: ww };
            if layer == 0 {
                let out = grad_net_in.as_ref().unwrap_or(&grad_x);
                backward.push(kernels::conv::conv3x3_backward_data(ctx, shape, cur, &conv.w_backward, None, out)?);
                break;
            }
            let below = &plan.relu[layer - 1];
            if POOL_AFTER.contains(&(layer - 1)) {
                // conv → gradient of the pool's output (in relu_l's dead buffer) → pool backward into the scratch.
                backward.push(kernels::conv::conv3x3_backward_data(ctx, shape, cur, &conv.w_backward, None, f)?);
                let (pc, ph, pw) = plan.shapes[layer - 1];
                let ps = PoolShape { channels: pc, height: ph, width: pw };
                backward.push(match net.pooling {
                    Pooling::Max => kernels::pool::maxpool2x2_backward(ctx, ps, below, f, scratch)?,
                    Pooling::Avg => kernels::pool::avgpool2x2_backward(ctx, ps, below, f, scratch)?,
                });
                cur = scratch;
            } else {
                backward.push(kernels::conv::conv3x3_backward_data(ctx, shape, cur, &conv.w_backward, Some(below), f)?);
                cur = f;
            }
        }
        if let (Some((s, _)), Some(gni)) = (net.input_affine, &grad_net_in) {
            backward.push(kernels::affine::channel_affine(ctx, plane, s, [0.0; 3], gni, &grad_x)?);
        }
        // TV on x: loss partials + gradient added to the image gradient written above.
        let tv_dispatches = vec![
            kernels::loss::tv_loss_grad(ctx, h, w, f64::from(opts.tv_weight), true, &plan.x, &grad_x, &partials)?,
            kernels::loss::reduce_sum(ctx, kernels::loss::tv_partials(h, w), taps.len(), 1.0, &partials, &losses_buf)?,
        ];

        let m = alloc("adam m", 3 * plane)?;
        let v = alloc("adam v", 3 * plane)?;
        let zeros = vec![0.0f32; 3 * plane];
        ctx.queue.write_buffer(&m, 0, bytemuck::cast_slice(&zeros));
        ctx.queue.write_buffer(&v, 0, bytemuck::cast_slice(&zeros));
        // Never read before written, but zero it so a bug shows as zeros rather than garbage.
        ctx.queue.write_buffer(&grad_x, 0, bytemuck::cast_slice(&zeros));
        let adam = kernels::adam::adam(ctx, 3 * plane, f64::from(opts.learning_rate), &plan.x, &m, &v, &grad_x)?;

        // Initial image.
        let x0: Vec<f32> = match &opts.init {
            Init::Content => content_x,
            Init::Image(img) => {
                if (img.width, img.height) != (w, h) {
                    return Err(Error::InvalidOption(format!(
                        "init image is {}x{}, must be the content size {w}x{h}",
                        img.width, img.height
                    )));
                }
                subtract_mean(img)
            }
            Init::Random => random_init(3 * plane, opts.seed),
        };
        ctx.queue.write_buffer(&plan.x, 0, bytemuck::cast_slice(&x0));
        buffers.extend([partials, gram_partial, m, v]);
        buffers.extend(grad_net_in);
        ctx.check()?;
        let losses_staging = ctx.staging_buffer("losses readback", slot_kinds.len());
        Ok(Self {
            ctx,
            _net: net,
            plan,
            opts: opts.clone(),
            _taps: taps,
            loss_dispatches,
            backward_dispatches: backward,
            tv_dispatches,
            adam,
            losses_buf,
            slot_kinds,
            grad_x,
            losses_staging,
            in_flight: None,
            iteration: 0,
            bytes: bytes.get(),
            _buffers: buffers,
        })
    }

    /// All dispatches of one iteration in order, labelled by kernel (for benchmarks' per-kernel breakdown).
    pub fn iteration_dispatches(&self) -> Vec<&Dispatch> {
        self.plan
            .dispatches
            .iter()
            .chain(&self.loss_dispatches)
            .chain(&self.backward_dispatches)
            .chain(&self.tv_dispatches)
            .chain(std::iter::once(&self.adam))
            .collect()
    }

    /// Prepares Adam's constants for the next update (call before recording an iteration).
    pub fn prepare_step(&mut self) {
        self.iteration += 1;
        kernels::adam::set_step(
            self.ctx,
            &self.adam,
            3 * self.plan.width * self.plan.height,
            f64::from(self.opts.learning_rate),
            self.iteration as u64,
        );
    }

    /// One Adam iteration. With `read_losses`, returns the losses of the image BEFORE this update (the log
    /// convention: the first call gives iteration 0 = the initial image).
    ///
    /// Without `read_losses` nothing is read back and the call returns once the PREVIOUS iteration has finished:
    /// one iteration stays queued, so the GPU is not idle while the CPU records the next one, and a GPU error
    /// surfaces at most one call late.
    pub fn step(&mut self, read_losses: bool) -> Result<Option<Losses>> {
        self.prepare_step();
        let enc = self.ctx.encode(self.iteration_dispatches());
        self.finish(enc, read_losses)
    }

    /// Losses of the current image (one forward pass, no update).
    pub fn losses(&mut self) -> Result<Losses> {
        let enc = self.ctx.encode(self.plan.dispatches.iter().chain(&self.loss_dispatches).chain(&self.tv_dispatches));
        Ok(self.finish(enc, true)?.expect("losses requested"))
    }

    fn finish(&mut self, mut enc: wgpu::CommandEncoder, read_losses: bool) -> Result<Option<Losses>> {
        if !read_losses {
            let idx = self.ctx.queue.submit([enc.finish()]);
            if let Some(prev) = self.in_flight.replace(idx) {
                self.ctx.wait(Some(prev))?;
            }
            return Ok(None);
        }
        // The loss slots are copied to the persistent staging buffer in the same submission.
        let n = self.slot_kinds.len();
        enc.copy_buffer_to_buffer(&self.losses_buf, 0, &self.losses_staging, 0, (n * 4) as u64);
        self.ctx.queue.submit([enc.finish()]);
        self.in_flight = None; // mapping waits for everything submitted
        let slots = self.ctx.map_f32(&self.losses_staging, n)?;
        let mut l = Losses::default();
        for (k, v) in self.slot_kinds.iter().zip(&slots) {
            let v = f64::from(*v);
            match k {
                0 => l.content += v,
                1 => l.style += v,
                _ => l.tv += v,
            }
        }
        l.total = l.content + l.style + l.tv;
        Ok(Some(l))
    }

    /// Number of updates done so far.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// Current image x + mean, pixel units, NOT clamped.
    pub fn image(&mut self) -> Result<PlanarImage> {
        let x = self.ctx.read_all(&self.plan.x)?;
        let plane = self.plan.width * self.plan.height;
        let data = x[..3 * plane].iter().enumerate().map(|(i, v)| v + CAFFE_MEAN_RGB[i / plane]).collect();
        Ok(PlanarImage::new(self.plan.width, self.plan.height, data))
    }

    /// The mean-subtracted variable x itself (CHW).
    pub fn x(&self) -> Result<Vec<f32>> {
        self.ctx.read_all(&self.plan.x)
    }

    /// The gradient of the total loss w.r.t. x at the current image (runs forward + backward, no update).
    pub fn gradient(&mut self) -> Result<Vec<f32>> {
        let p = &self.plan;
        let all = p.dispatches.iter().chain(&self.loss_dispatches).chain(&self.backward_dispatches);
        self.ctx.submit_and_wait(self.ctx.encode(all.chain(&self.tv_dispatches)).finish())?;
        self.in_flight = None;
        self.ctx.read_all(&self.grad_x)
    }

    /// (width, height) of the optimised image.
    pub fn size(&self) -> (usize, usize) {
        (self.plan.width, self.plan.height)
    }

    /// Bytes of GPU buffers this stylizer allocated (weights, activations, gradients, targets, scratch).
    pub fn gpu_bytes(&self) -> u64 {
        self.bytes
    }

    pub fn context(&self) -> &GpuContext {
        self.ctx
    }
}

/// Floats of the backward's scratch: the gradient of the top layer and of each pool's input.
pub fn backward_scratch_len(net: &GpuNet, width: usize, height: usize, up_to: usize) -> usize {
    let shapes = vgg::layer_shapes(&net.couts(), height, width);
    let size = |l: usize| shapes[l].0 * shapes[l].1 * shapes[l].2;
    POOL_AFTER.iter().filter(|&&p| p < up_to).map(|&p| size(p)).chain([size(up_to)]).max().unwrap_or(1)
}

/// Seeded noise init: 0.001 · N(0, 1) per element (ChaCha8).
pub fn random_init(len: usize, seed: u64) -> Vec<f32> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = rand_distr::StandardNormal;
    (0..len)
        .map(|_| {
            let z: f64 = normal.sample(&mut rng);
            (0.001 * z) as f32
        })
        .collect()
}

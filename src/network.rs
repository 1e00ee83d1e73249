//! VGG16 on the GPU: the weights uploaded once in the layouts the chosen kernels read ([`GpuNet`]), and a
//! [`Plan`] made real ([`Network`]): one buffer per slot, the forward dispatches, and the backward dispatches
//! with the loss terms' gradients spliced in where the plan says.

use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels::conv::{BackwardIo, ConvKernel, ConvShape, ConvVariant, ForwardIo};
use crate::kernels::gram::GramKernel;
use crate::kernels::{self, pool::PoolShape, AdapterFacts};
use crate::plan::{Plan, PlanSpec, Step, TensorId};
use crate::submission::Recording;
use crate::tensor::Tensor;
use crate::vgg::{self, Pooling};
use neural_style_weights::Vgg16Weights;

/// One conv layer's weights on the GPU, in the layouts of the forward and backward-data kernels chosen for
/// this adapter (the choice depends on the channel counts and the adapter, not the image size).
pub struct GpuConv {
    pub cin: usize,
    pub cout: usize,
    pub forward_variant: ConvVariant,
    pub w_forward: wgpu::Buffer,
    pub backward_variant: ConvVariant,
    pub w_backward: wgpu::Buffer,
    pub bias: wgpu::Buffer,
    /// The weights' largest magnitude (the tensor-core kernels' fixed scale for them).
    pub largest_weight: f32,
}

/// The network's weights on the GPU (uploaded once, shared by every plan).
pub struct GpuNet {
    pub convs: Vec<GpuConv>,
    /// Per-channel (scale, offset) from x to the network input; `None` for the identity (Caffe convention).
    pub input_affine: Option<([f32; 3], [f32; 3])>,
    pub pooling: Pooling,
    pub bytes: u64,
    /// The adapter facts the kernels were chosen with (including the precision: [`AdapterFacts::coop`]).
    pub facts: AdapterFacts,
}

impl GpuNet {
    /// The weights for the f32 kernels (or the CPU-shaped ones on a CPU adapter).
    pub fn new(ctx: &GpuContext, weights: &Vgg16Weights, pooling: Pooling) -> Result<Self> {
        Self::with_facts(ctx, weights, pooling, AdapterFacts::of(ctx))
    }

    /// The weights in the layouts of the kernels `facts` chooses (e.g. with tensor cores: `facts.coop`).
    pub fn with_facts(ctx: &GpuContext, weights: &Vgg16Weights, pooling: Pooling, facts: AdapterFacts) -> Result<Self> {
        let mut convs = Vec::new();
        let mut bytes = 0u64;
        for layer in &weights.layers {
            let (cin, cout) = (layer.cin, layer.cout);
            let (fv, bv) = conv_variants(cin, cout, &facts);
            let wf = kernels::conv::forward_weights(fv, &layer.weight, cin, cout);
            let wb = kernels::conv::backward_weights(bv, &layer.weight, cin, cout);
            let b = &layer.bias;
            convs.push(GpuConv {
                cin,
                cout,
                forward_variant: fv,
                w_forward: ctx.buffer_from(&format!("{} forward weights", layer.name), &wf)?,
                backward_variant: bv,
                w_backward: ctx.buffer_from(&format!("{} backward weights", layer.name), &wb)?,
                bias: ctx.buffer_from(&format!("{} bias", layer.name), b)?,
                largest_weight: layer.weight.iter().fold(0.0f32, |m, w| m.max(w.abs())),
            });
            bytes += 4 * (wf.len() + wb.len() + b.len()) as u64;
        }
        let (scale, offset) = weights.convention.input_affine();
        let identity = scale == [1.0; 3] && offset == [0.0; 3];
        Ok(Self { convs, input_affine: (!identity).then_some((scale, offset)), pooling, bytes, facts })
    }

    /// The plan spec of a pass over this network at `width` x `height` reading relu layers `taps`.
    pub fn plan_spec(&self, width: usize, height: usize, taps: &[usize], backward: bool) -> PlanSpec {
        let mut taps = taps.to_vec();
        taps.sort_unstable();
        taps.dedup();
        PlanSpec {
            width,
            height,
            convs: self.convs.iter().map(|c| (c.cin, c.cout)).collect(),
            pooling: self.pooling,
            input_affine: self.input_affine.is_some(),
            taps,
            backward,
        }
    }
}

/// The forward and backward-data kernels of a conv with these channel counts on this adapter.
fn conv_variants(cin: usize, cout: usize, facts: &AdapterFacts) -> (ConvVariant, ConvVariant) {
    // The choice depends on the channel counts, not on the image size.
    let shape = ConvShape { cin, cout, height: 1, width: 1 };
    (kernels::conv::forward_variant(shape, facts), kernels::conv::backward_variant(shape, facts))
}

/// Bytes the weights take on the GPU for an adapter with these facts (the same accounting as [`GpuNet::bytes`]).
pub fn weight_bytes(convs: &[(usize, usize)], facts: &AdapterFacts) -> u64 {
    convs
        .iter()
        .map(|&(cin, cout)| {
            let (fv, bv) = conv_variants(cin, cout, facts);
            let floats = |v: ConvVariant, outputs: usize, inputs: usize| match v {
                ConvVariant::Tiled | ConvVariant::Tiled8x8 | ConvVariant::Coop { .. } => inputs * outputs * 9,
                ConvVariant::Narrow => inputs * 9 * 4,
                ConvVariant::Cpu { channels } => outputs.div_ceil(channels) * channels * inputs * 9,
            };
            4 * (floats(fv, cout, cin) + floats(bv, cin, cout) + cout) as u64
        })
        .sum()
}

/// Refuses a plan whose largest tensor exceeds what the adapter can bind, naming the largest size that fits. The
/// plan is for a `w` x `h` image painted on a canvas `margin(w, h)` px wider on every side (docs/MATHS.md, "Edges:
/// the margin"), and the size named is the largest whose canvas fits.
pub fn check_binding_limit(
    ctx: &GpuContext,
    plan: &Plan,
    (w, h): (usize, usize),
    margin: impl Fn(usize, usize) -> usize,
) -> Result<()> {
    let largest = plan.largest_tensor_bytes();
    let limit = ctx.limits.max_storage_buffer_binding_size;
    if largest > limit {
        let m = (plan.spec.width - w) / 2;
        let canvas = if m > 0 { format!(" (with its {m} px margin)") } else { String::new() };
        return Err(Error::OutOfMemory(format!(
            ": a {w}x{h} image{canvas} needs {} MiB activations but {} binds at most {} MiB; the largest size that \
             fits is --image-size {}",
            largest >> 20,
            ctx.adapter_name(),
            limit >> 20,
            vgg::largest_fitting_side(w, h, limit, margin)
        )));
    }
    Ok(())
}

/// The largest magnitudes the tensor-core kernels scale their operands by (one u32 entry per measured operand,
/// f32 bits), zeroed at the start of every forward pass and raised by `max_abs` dispatches.
pub struct CoopRanges {
    pub buffer: wgpu::Buffer,
    next: std::cell::Cell<u32>,
}

/// Entries of [`CoopRanges`]: far more than a VGG16 pass measures (≈ 40 with every loss).
const COOP_RANGE_SLOTS: u32 = 256;
/// Bytes of [`CoopRanges`].
pub const COOP_RANGES_BYTES: u64 = 4 * COOP_RANGE_SLOTS as u64;

impl CoopRanges {
    fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(Self { buffer: ctx.storage_buffer("coop ranges", COOP_RANGE_SLOTS as usize)?, next: 0.into() })
    }

    /// A fresh entry.
    pub fn slot(&self) -> u32 {
        let s = self.next.get();
        assert!(s < COOP_RANGE_SLOTS, "out of operand range entries");
        self.next.set(s + 1);
        s
    }
}

/// A plan's buffers and dispatches on the GPU.
pub struct Network {
    pub plan: Plan,
    buffers: Vec<wgpu::Buffer>,
    /// The tensor-core kernels' operand ranges (only with tensor cores).
    pub coop_ranges: Option<CoopRanges>,
    /// The forward pass, in order.
    pub forward: Vec<Dispatch>,
    /// The backward pass (empty until [`Network::build_backward`]), in order.
    pub backward: Vec<Dispatch>,
}

/// Where the loss terms add their gradients (a [`Step::LossGradient`] of the plan).
pub struct LossGradientSite<'a> {
    pub layer: usize,
    /// relu `layer`'s output.
    pub features: &'a wgpu::Buffer,
    /// dL/d(pre-ReLU of conv `layer`): the terms add into it (the ReLU mask fused).
    pub grad: &'a wgpu::Buffer,
    /// The first term overwrites `grad` (nothing wrote it yet); the others add.
    pub first_writes: bool,
}

impl Network {
    /// Allocates the plan's slots and builds the forward dispatches.
    pub fn new(ctx: &GpuContext, net: &GpuNet, spec: PlanSpec) -> Result<Self> {
        vgg::check_size(spec.width, spec.height)?;
        let plan = Plan::new(spec);
        let size = (plan.spec.width, plan.spec.height);
        check_binding_limit(ctx, &plan, size, |_, _| 0)?;
        // Buffers start zeroed (wgpu guarantees it): the frames are zero and no kernel writes them.
        let buffers = plan
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| ctx.storage_buffer(&format!("slot {i}"), s.floats))
            .collect::<Result<Vec<_>>>()?;
        let coop_ranges = net.facts.coop.map(|_| CoopRanges::new(ctx)).transpose()?;
        let mut network = Self { plan, buffers, coop_ranges, forward: Vec::new(), backward: Vec::new() };
        let mut forward = Vec::new();
        if let Some(r) = &network.coop_ranges {
            forward.push(kernels::coop::zero_ranges(ctx, COOP_RANGE_SLOTS as usize, &r.buffer)?);
        }
        for step in &network.plan.forward {
            network.dispatch(ctx, net, step, &mut forward)?;
        }
        network.forward = forward;
        Ok(network)
    }

    /// Builds the backward dispatches: the plan's steps, with `loss_gradients(site)` spliced in at each
    /// [`Step::LossGradient`].
    pub fn build_backward(
        &mut self,
        ctx: &GpuContext,
        net: &GpuNet,
        mut loss_gradients: impl FnMut(LossGradientSite<'_>) -> Result<Vec<Dispatch>>,
    ) -> Result<()> {
        let mut out = Vec::new();
        for step in &self.plan.backward {
            match *step {
                Step::LossGradient { layer, features, grad, first_writes } => {
                    out.extend(loss_gradients(LossGradientSite {
                        layer,
                        features: self.buffer(features),
                        grad: self.buffer(grad),
                        first_writes,
                    })?)
                }
                _ => self.dispatch(ctx, net, step, &mut out)?,
            }
        }
        self.backward = out;
        Ok(())
    }

    /// The buffer holding tensor `t` (shared with every tensor of the same slot; see [`Plan`]).
    pub fn buffer(&self, t: TensorId) -> &wgpu::Buffer {
        &self.buffers[self.plan.tensors[t].slot]
    }

    /// relu `layer`'s output.
    pub fn relu(&self, layer: usize) -> &wgpu::Buffer {
        self.buffer(self.plan.relu[layer])
    }

    /// The optimised image x (3 x H x W, mean-subtracted pixels).
    pub fn image(&self) -> &wgpu::Buffer {
        self.buffer(self.plan.image)
    }

    /// dL/dx after the backward pass.
    pub fn grad_image(&self) -> Option<&wgpu::Buffer> {
        self.plan.grad_image.map(|t| self.buffer(t))
    }

    /// Bytes of the plan's buffers and, with tensor cores, of the operand ranges.
    pub fn bytes(&self) -> u64 {
        self.plan.bytes() + self.coop_ranges.as_ref().map_or(0, |_| COOP_RANGES_BYTES)
    }

    /// The image's frame.
    pub fn image_frame(&self) -> Frame {
        self.plan.shape(self.plan.image).frame()
    }

    /// Writes `x` (mean-subtracted, dense CHW) into the image buffer, framed.
    pub fn upload_image(&self, ctx: &GpuContext, x: &[f32]) {
        ctx.queue.write_buffer(self.image(), 0, bytemuck::cast_slice(&self.image_frame().frame(x, 3)));
    }

    /// Uploads `x` (mean-subtracted, dense CHW) and runs the forward pass (cut for a display's watchdog when
    /// large, [`Recording::run_unmeasured`]).
    pub fn run_forward(&self, ctx: &GpuContext, x: &[f32]) -> Result<()> {
        self.upload_image(ctx, x);
        let d: Vec<&Dispatch> = self.forward.iter().collect();
        let frame = self.image_frame();
        Recording::run_unmeasured(ctx, &d, forward_gflop(frame.width, frame.height))
    }

    /// The dispatches of one step (a tensor-core conv measures its operand's range first, onto `out`).
    fn dispatch(&self, ctx: &GpuContext, net: &GpuNet, step: &Step, out: &mut Vec<Dispatch>) -> Result<()> {
        let d = match *step {
            Step::Conv { layer, input, output } => {
                let c = &net.convs[layer];
                let kernel =
                    ConvKernel::of(c.forward_variant, || self.coop_operands(ctx, input, c.largest_weight, out))?;
                let io = ForwardIo {
                    input: self.buffer(input),
                    weights: &c.w_forward,
                    bias: &c.bias,
                    output: self.buffer(output),
                };
                kernels::conv::conv3x3(ctx, kernel, self.conv_shape(net, layer), true, io)?
            }
            Step::ConvBackward { layer, grad_out, mask, grad_in } => {
                let c = &net.convs[layer];
                let kernel =
                    ConvKernel::of(c.backward_variant, || self.coop_operands(ctx, grad_out, c.largest_weight, out))?;
                let io = BackwardIo {
                    grad_out: self.buffer(grad_out),
                    weights: &c.w_backward,
                    mask_src: mask.map(|t| self.buffer(t)),
                    grad_in: self.buffer(grad_in),
                };
                kernels::conv::conv3x3_backward_data(ctx, kernel, self.conv_shape(net, layer), io)?
            }
            _ => self.single_dispatch(ctx, net, step)?,
        };
        out.push(d);
        Ok(())
    }

    fn conv_shape(&self, net: &GpuNet, layer: usize) -> ConvShape {
        let s = self.plan.layers[layer];
        ConvShape { cin: net.convs[layer].cin, cout: s.channels, height: s.height, width: s.width }
    }

    /// The Gram of `features` with `variant`'s kernels (a tensor-core Gram measures
    /// its operand's range first, into a fresh entry of this network's ranges).
    pub fn gram_dispatches(
        &self,
        ctx: &GpuContext,
        variant: kernels::gram::GramVariant,
        features: Tensor<'_>,
        partial: &wgpu::Buffer,
        gram: &wgpu::Buffer,
    ) -> Result<Vec<Dispatch>> {
        let kernel = GramKernel::of(variant, || {
            let ranges = self.coop_ranges.as_ref().ok_or_else(no_ranges)?;
            Ok((&ranges.buffer, ranges.slot()))
        })?;
        kernels::gram::gram(ctx, kernel, features, partial, gram)
    }

    /// A tensor-core conv's operand scales: the weights' fixed range, and `tensor`'s measured by a `max_abs`
    /// pushed onto `out`.
    fn coop_operands(
        &self,
        ctx: &GpuContext,
        tensor: TensorId,
        largest_weight: f32,
        out: &mut Vec<Dispatch>,
    ) -> Result<kernels::conv::CoopOperands<'_>> {
        let ranges = self.coop_ranges.as_ref().ok_or_else(no_ranges)?;
        let slot = ranges.slot();
        let floats = self.plan.shape(tensor).buffer_floats();
        out.push(kernels::coop::max_abs(ctx, floats, slot, self.buffer(tensor), &ranges.buffer)?);
        Ok(kernels::conv::CoopOperands {
            ranges: &ranges.buffer,
            weights: kernels::coop::OperandRange::fixed(largest_weight),
            input: kernels::coop::OperandRange::measured(slot),
        })
    }

    fn single_dispatch(&self, ctx: &GpuContext, net: &GpuNet, step: &Step) -> Result<Dispatch> {
        let plan = &self.plan;
        let pool_shape = |layer: usize| {
            let s = plan.layers[layer];
            PoolShape { channels: s.channels, height: s.height, width: s.width }
        };
        let image = plan.shape(plan.image).frame();
        match *step {
            Step::InputAffine { input, output } => {
                let (scale, offset) = net.input_affine.ok_or_else(no_affine)?;
                kernels::affine::channel_affine(ctx, image, scale, offset, self.buffer(input), self.buffer(output))
            }
            Step::Pool { layer, input, output } => {
                let (i, o) = (self.buffer(input), self.buffer(output));
                kernels::pool::pool2x2(ctx, net.pooling, pool_shape(layer), i, o)
            }
            Step::Conv { .. } | Step::ConvBackward { .. } | Step::LossGradient { .. } => {
                Err(Error::Validation(format!("{step:?} is recorded by its own builder")))
            }
            Step::PoolBackward { layer, input, grad_out, grad_in } => {
                let (i, g, gi) = (self.buffer(input), self.buffer(grad_out), self.buffer(grad_in));
                kernels::pool::pool2x2_backward(ctx, net.pooling, pool_shape(layer), i, (g, gi))
            }
            Step::InputAffineBackward { grad_out, grad_in } => {
                let (scale, _) = net.input_affine.ok_or_else(no_affine)?;
                kernels::affine::channel_affine(
                    ctx,
                    image,
                    scale,
                    [0.0; 3],
                    self.buffer(grad_out),
                    self.buffer(grad_in),
                )
            }
            Step::ClearFrame { tensor } => {
                let s = plan.shape(tensor);
                kernels::frame_clear::clear_frame(ctx, Tensor::new(self.buffer(tensor), s.channels, s.frame()))
            }
        }
    }
}

/// A tensor-core kernel in a network made without the operand ranges (a bug: they are made together).
fn no_ranges() -> Error {
    Error::Validation("a tensor-core kernel in a network without operand ranges".into())
}

/// An input affine step in a network whose weights need none (a bug: the plan follows the weights).
fn no_affine() -> Error {
    Error::Validation("an input affine step for weights without one".into())
}

/// Conv GFLOP of a forward pass of the whole network at `width` x `height` (half an iteration's forward +
/// backward-data).
fn forward_gflop(width: usize, height: usize) -> f64 {
    crate::vgg::conv_flops_per_iteration(width, height) / 2.0 / 1e9
}

/// A C x C matrix read back, row-major.
pub type Matrix = Vec<f32>;

/// Gram matrices of relu `layers` for image `x` (mean-subtracted) of `width` x `height`, read back as f32
/// row-major C x C, with `variant`'s kernel, and with `means` the channel means of each layer too (else empty):
/// the style targets, once per style image at its own size. A forward-only plan, so the layers between the
/// tapped ones share buffers.
pub fn grams(
    ctx: &GpuContext,
    net: &GpuNet,
    image: (&[f32], usize, usize),
    layers: &[usize],
    variant: kernels::gram::GramVariant,
    means: bool,
) -> Result<(Vec<Matrix>, Vec<Vec<f32>>)> {
    masked_grams(ctx, net, image, layers, variant, means, None)
}

/// As [`grams`], the statistics weighted by `mask` (the image's size) where given: G_w and μ_w of docs/MATHS.md,
/// "Spatial control" (a style image's `--style-image-masks`). A layer the mask covers everywhere is computed as
/// without it; one it covers nowhere is an error.
pub fn masked_grams(
    ctx: &GpuContext,
    net: &GpuNet,
    (x, width, height): (&[f32], usize, usize),
    layers: &[usize],
    variant: kernels::gram::GramVariant,
    means: bool,
    mask: Option<&crate::masks::Mask>,
) -> Result<(Vec<Matrix>, Vec<Vec<f32>>)> {
    let network = Network::new(ctx, net, net.plan_spec(width, height, layers, false))?;
    let mut dispatches: Vec<&Dispatch> = network.forward.iter().collect();
    let mut owned = Vec::new();
    let mut grams = Vec::new();
    let largest = layers.iter().map(|&l| network.plan.layers[l].buffer_floats()).max().unwrap_or(1);
    let weighted = match mask {
        Some(_) => Some(ctx.storage_buffer("masked features", largest)?),
        None => None,
    };
    for &l in layers {
        let s = network.plan.layers[l];
        let c = s.channels;
        let g = ctx.storage_buffer("gram", c * c)?;
        let mut features = Tensor::new(network.relu(l), c, s.frame());
        let mut mean_input = None;
        let mut d = Vec::new();
        // The W2 targets keep the variant as given (their terms take it so too).
        let mut layer_variant = if means { variant } else { variant.for_channels(c) };
        if let (Some(w), Some(weighted)) = (mask.map(|m| m.image_layer(l, s)).transpose()?.flatten(), &weighted) {
            let gram_input = ctx.buffer_from("style mask", &w.normalised(0.5))?;
            d.push(kernels::mask::weight(ctx, &gram_input, features, weighted, false)?);
            mean_input = Some((ctx.buffer_from("style mask", &w.normalised(1.0))?, features));
            features = Tensor::new(weighted, c, s.frame());
            // Weighted features leave the range the tensor cores' operand scaling measured: f32 (as W2's).
            layer_variant = crate::loss_terms::w2_gram_variant(&net.facts);
        }
        let partial_len = |v| kernels::gram::partial_len(v, c, s.frame());
        let partial = ctx.storage_buffer("gram partial", partial_len(variant).max(partial_len(layer_variant)))?;
        d.extend(network.gram_dispatches(ctx, layer_variant, features, &partial, &g)?);
        let mean = if means {
            let m = ctx.storage_buffer("channel means", c)?;
            if let (Some((input, unweighted)), Some(weighted)) = (&mean_input, &weighted) {
                d.push(kernels::mask::weight(ctx, input, *unweighted, weighted, false)?);
            }
            d.push(kernels::w2::channel_mean(ctx, features, &m)?);
            Some(m)
        } else {
            None
        };
        owned.push(d);
        grams.push((g, partial, mean));
    }
    dispatches.extend(owned.iter().flatten());
    network.upload_image(ctx, x);
    Recording::run_unmeasured(ctx, &dispatches, forward_gflop(width, height))?;
    let g = grams.iter().map(|(g, _, _)| ctx.read_all(g)).collect::<Result<_>>()?;
    let m = grams.iter().filter_map(|(_, _, m)| m.as_ref().map(|m| ctx.read_all(m))).collect::<Result<_>>()?;
    Ok((g, m))
}

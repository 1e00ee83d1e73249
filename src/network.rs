//! VGG16 on the GPU: the weights uploaded once in the layouts the chosen kernels read ([`GpuNet`]), and a
//! [`Plan`] made real ([`Network`]): one buffer per slot, the forward dispatches, and the backward dispatches
//! with the loss terms' gradients spliced in where the plan says.

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels::{self, conv::ConvShape, pool::PoolShape, AdapterFacts};
use crate::plan::{Plan, PlanSpec, Step, TensorId};
use crate::vgg::{self, Pooling};
use crate::weights::Vgg16Weights;

/// One conv layer's weights on the GPU, in the layouts of the forward and backward-data kernels.
pub struct GpuConv {
    pub cin: usize,
    pub cout: usize,
    pub w_forward: wgpu::Buffer,
    pub backward_variant: kernels::conv::BackwardVariant,
    pub w_backward: wgpu::Buffer,
    pub bias: wgpu::Buffer,
}

/// The network's weights on the GPU (uploaded once, shared by every plan).
pub struct GpuNet {
    pub convs: Vec<GpuConv>,
    /// Per-channel (scale, offset) from x to the network input; `None` for the identity (Caffe convention).
    pub input_affine: Option<([f32; 3], [f32; 3])>,
    pub pooling: Pooling,
    pub bytes: u64,
}

impl GpuNet {
    pub fn new(ctx: &GpuContext, weights: &Vgg16Weights, pooling: Pooling) -> Result<Self> {
        let facts = AdapterFacts::of(ctx);
        let mut convs = Vec::new();
        let mut bytes = 0u64;
        for layer in &weights.layers {
            let (cin, cout) = (layer.cin, layer.cout);
            // The backward kernel depends on the channel counts only, not the image size.
            let variant = kernels::conv::backward_variant(ConvShape { cin, cout, height: 1, width: 1 }, &facts);
            let wf = kernels::conv::forward_weights(&layer.weight, cin, cout);
            let wb = kernels::conv::backward_weights_for(variant, &layer.weight, cin, cout);
            convs.push(GpuConv {
                cin,
                cout,
                w_forward: ctx.buffer_from(&format!("{} forward weights", layer.name), &wf)?,
                backward_variant: variant,
                w_backward: ctx.buffer_from(&format!("{} backward weights", layer.name), &wb)?,
                bias: ctx.buffer_from(&format!("{} bias", layer.name), &layer.bias)?,
            });
            bytes += 4 * (wf.len() + wb.len() + layer.bias.len()) as u64;
        }
        let (scale, offset) = weights.convention.input_affine();
        let identity = scale == [1.0; 3] && offset == [0.0; 3];
        Ok(Self { convs, input_affine: (!identity).then_some((scale, offset)), pooling, bytes })
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

/// Bytes the weights take on the GPU for an adapter with these facts (the same accounting as [`GpuNet::bytes`]).
pub fn weight_bytes(convs: &[(usize, usize)], facts: &AdapterFacts) -> u64 {
    convs
        .iter()
        .map(|&(cin, cout)| {
            let variant = kernels::conv::backward_variant(ConvShape { cin, cout, height: 1, width: 1 }, facts);
            let backward = match variant {
                kernels::conv::BackwardVariant::Tiled => cin * cout * 9,
                kernels::conv::BackwardVariant::Narrow => cout * 9 * 4,
            };
            4 * (cin * cout * 9 + backward + cout) as u64
        })
        .sum()
}

/// A plan's buffers and dispatches on the GPU.
pub struct Network {
    pub plan: Plan,
    buffers: Vec<wgpu::Buffer>,
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
        let largest = plan.largest_tensor_bytes();
        let limit = ctx.limits.max_storage_buffer_binding_size;
        if largest > limit {
            let (w, h) = (plan.spec.width, plan.spec.height);
            return Err(Error::OutOfMemory(format!(
                ": a {w}x{h} image needs {} MiB activations but {} binds at most {} MiB; the largest size that fits \
                 is --image-size {}",
                largest >> 20,
                ctx.adapter_name(),
                limit >> 20,
                vgg::largest_fitting_side(w, h, limit)
            )));
        }
        let buffers = plan
            .slots
            .iter()
            .enumerate()
            .map(|(i, &floats)| ctx.storage_buffer(&format!("slot {i}"), floats))
            .collect::<Result<Vec<_>>>()?;
        let mut network = Self { plan, buffers, forward: Vec::new(), backward: Vec::new() };
        network.forward =
            network.plan.forward.iter().map(|s| network.dispatch(ctx, net, s)).collect::<Result<Vec<_>>>()?;
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
                _ => out.push(self.dispatch(ctx, net, step)?),
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

    pub fn bytes(&self) -> u64 {
        self.plan.bytes()
    }

    /// Uploads `x` (mean-subtracted, CHW) and runs the forward pass.
    pub fn run_forward(&self, ctx: &GpuContext, x: &[f32]) -> Result<()> {
        ctx.queue.write_buffer(self.image(), 0, bytemuck::cast_slice(x));
        let d: Vec<&Dispatch> = self.forward.iter().collect();
        ctx.run(&d)
    }

    fn dispatch(&self, ctx: &GpuContext, net: &GpuNet, step: &Step) -> Result<Dispatch> {
        let plan = &self.plan;
        let conv_shape = |layer: usize| {
            let s = plan.layers[layer];
            ConvShape { cin: net.convs[layer].cin, cout: s.channels, height: s.height, width: s.width }
        };
        let pool_shape = |layer: usize| {
            let s = plan.layers[layer];
            PoolShape { channels: s.channels, height: s.height, width: s.width }
        };
        let plane = plan.spec.width * plan.spec.height;
        match *step {
            Step::InputAffine { input, output } => {
                let (scale, offset) = net.input_affine.expect("planned with the input affine map");
                kernels::affine::channel_affine(ctx, plane, scale, offset, self.buffer(input), self.buffer(output))
            }
            Step::Conv { layer, input, output } => {
                let c = &net.convs[layer];
                let (i, o) = (self.buffer(input), self.buffer(output));
                kernels::conv::conv3x3(ctx, conv_shape(layer), true, i, &c.w_forward, &c.bias, o)
            }
            Step::Pool { layer, input, output } => {
                let (i, o) = (self.buffer(input), self.buffer(output));
                match net.pooling {
                    Pooling::Max => kernels::pool::maxpool2x2(ctx, pool_shape(layer), i, o),
                    Pooling::Avg => kernels::pool::avgpool2x2(ctx, pool_shape(layer), i, o),
                }
            }
            Step::ConvBackward { layer, grad_out, mask, grad_in } => {
                let c = &net.convs[layer];
                let (g, m, gi) = (self.buffer(grad_out), mask.map(|t| self.buffer(t)), self.buffer(grad_in));
                kernels::conv::conv3x3_backward_data(
                    ctx,
                    c.backward_variant,
                    conv_shape(layer),
                    g,
                    &c.w_backward,
                    m,
                    gi,
                )
            }
            Step::PoolBackward { layer, input, grad_out, grad_in } => {
                let (i, g, gi) = (self.buffer(input), self.buffer(grad_out), self.buffer(grad_in));
                match net.pooling {
                    Pooling::Max => kernels::pool::maxpool2x2_backward(ctx, pool_shape(layer), i, g, gi),
                    Pooling::Avg => kernels::pool::avgpool2x2_backward(ctx, pool_shape(layer), i, g, gi),
                }
            }
            Step::InputAffineBackward { grad_out, grad_in } => {
                let (scale, _) = net.input_affine.expect("planned with the input affine map");
                kernels::affine::channel_affine(
                    ctx,
                    plane,
                    scale,
                    [0.0; 3],
                    self.buffer(grad_out),
                    self.buffer(grad_in),
                )
            }
            Step::LossGradient { .. } => unreachable!("loss gradients come from the loss terms"),
        }
    }
}

/// Gram matrices of relu `layers` for image `x` (mean-subtracted) of `width` x `height`, read back as f32
/// row-major C x C: the style targets, once per style image at its own size. A forward-only plan, so the layers
/// between the tapped ones share buffers.
pub fn grams(
    ctx: &GpuContext,
    net: &GpuNet,
    x: &[f32],
    width: usize,
    height: usize,
    layers: &[usize],
) -> Result<Vec<Vec<f32>>> {
    let network = Network::new(ctx, net, net.plan_spec(width, height, layers, false))?;
    network.run_forward(ctx, x)?;
    let mut out = Vec::new();
    for &l in layers {
        let s = network.plan.layers[l];
        let (c, n) = (s.channels, s.height * s.width);
        let partial = ctx.storage_buffer("gram partial", kernels::gram::partial_len(c, n))?;
        let g = ctx.storage_buffer("gram", c * c)?;
        let [a, b] = kernels::gram::gram(ctx, c, n, network.relu(l), &partial, &g)?;
        ctx.run(&[&a, &b])?;
        out.push(ctx.read_all(&g)?);
    }
    Ok(out)
}

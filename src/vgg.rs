//! VGG16 conv1_1 … conv5_1 on the GPU: the graph, its weights in kernel layouts, and a forward plan for one
//! image size (buffers allocated once, dispatches built once, recorded every iteration).
//!
//! Buffers and liveness: every conv's post-ReLU output is kept (the backward needs it as the ReLU mask and as
//! the pools' arg-max input, then reuses the buffer for a gradient). Pool outputs are only read by the next
//! conv, so all four pools share one buffer, which the backward then uses as its scratch.

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::kernels::{self, conv::ConvShape, pool::PoolShape, Dispatch};
use crate::stylizer::Pooling;
use crate::weights::Vgg16Weights;

/// Post-ReLU layer names, one per conv, in order.
pub const RELU_NAMES: [&str; 11] = [
    "relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu4_1", "relu4_2", "relu4_3",
    "relu5_1",
];
/// Pooling follows these convs (relu1_2, relu2_2, relu3_3, relu4_3).
pub const POOL_AFTER: [usize; 4] = [1, 3, 6, 9];
/// Smallest side that still reaches relu5_1 (four halvings leave ≥ 1 pixel).
pub const MIN_SIDE: usize = 16;

/// Index of a relu layer by name.
pub fn relu_index(name: &str) -> Option<usize> {
    RELU_NAMES.iter().position(|n| *n == name)
}

/// (C, H, W) of every conv output for an input of `height` x `width`.
pub fn layer_shapes(weights_cout: &[usize], height: usize, width: usize) -> Vec<(usize, usize, usize)> {
    let (mut h, mut w) = (height, width);
    let mut out = Vec::new();
    for (i, &c) in weights_cout.iter().enumerate() {
        out.push((c, h, w));
        if POOL_AFTER.contains(&i) {
            h /= 2;
            w /= 2;
        }
    }
    out
}

/// Refuses images that cannot reach relu5_1.
pub fn check_size(width: usize, height: usize) -> Result<()> {
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(Error::ImageTooSmall { width, height, min: MIN_SIDE });
    }
    Ok(())
}

/// One conv layer's weights on the GPU in both kernel layouts.
pub struct GpuConv {
    pub cin: usize,
    pub cout: usize,
    pub w_forward: wgpu::Buffer,
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
        let mut convs = Vec::new();
        let mut bytes = 0u64;
        for layer in &weights.layers {
            let (cin, cout) = (layer.cin, layer.cout);
            let wf = kernels::conv::forward_weights(&layer.weight, cin, cout);
            let wb = kernels::conv::backward_weights_for(&layer.weight, cin, cout);
            convs.push(GpuConv {
                cin,
                cout,
                w_forward: ctx.buffer_from(&format!("{} forward weights", layer.name), &wf)?,
                w_backward: ctx.buffer_from(&format!("{} backward weights", layer.name), &wb)?,
                bias: ctx.buffer_from(&format!("{} bias", layer.name), &layer.bias)?,
            });
            bytes += 4 * (2 * wf.len() + layer.bias.len()) as u64;
        }
        let (scale, offset) = weights.convention.input_affine();
        let identity = scale == [1.0; 3] && offset == [0.0; 3];
        Ok(Self { convs, input_affine: (!identity).then_some((scale, offset)), pooling, bytes })
    }

    pub fn couts(&self) -> Vec<usize> {
        self.convs.iter().map(|c| c.cout).collect()
    }
}

/// Buffers and dispatches of one forward pass at a fixed size, up to conv index `up_to`.
pub struct ForwardPlan {
    pub height: usize,
    pub width: usize,
    pub up_to: usize,
    /// The network's image input x (3 x H x W, mean-subtracted pixels).
    pub x: wgpu::Buffer,
    /// x after the input convention's affine map (torchvision weights only).
    pub net_in: Option<wgpu::Buffer>,
    /// Post-ReLU outputs of conv 0..=up_to.
    pub relu: Vec<wgpu::Buffer>,
    pub shapes: Vec<(usize, usize, usize)>,
    pub pool_out: wgpu::Buffer,
    pub dispatches: Vec<Dispatch>,
    pub bytes: u64,
}

/// The largest longest-side (keeping `width:height`) whose biggest activation fits `max_binding` bytes.
pub fn largest_fitting_side(width: usize, height: usize, max_binding: u64) -> usize {
    let (long, short) = (width.max(height) as f64, width.min(height) as f64);
    // 64 channels x long x short x 4 bytes ≤ max_binding, short = long * ratio.
    let ratio = short / long;
    ((max_binding as f64 / (64.0 * 4.0 * ratio)).sqrt().floor() as usize).max(MIN_SIDE)
}

impl ForwardPlan {
    pub fn new(ctx: &GpuContext, net: &GpuNet, width: usize, height: usize, up_to: usize) -> Result<Self> {
        Self::with_scratch(ctx, net, width, height, up_to, 0)
    }

    /// As [`ForwardPlan::new`], with the pools' output buffer at least `scratch_len` floats: the backward pass
    /// reuses it as its scratch (the forward is done with it by then).
    pub fn with_scratch(
        ctx: &GpuContext,
        net: &GpuNet,
        width: usize,
        height: usize,
        up_to: usize,
        scratch_len: usize,
    ) -> Result<Self> {
        check_size(width, height)?;
        let shapes = layer_shapes(&net.couts(), height, width);
        let biggest = shapes[..=up_to].iter().map(|&(c, h, w)| (c * h * w * 4) as u64).max().unwrap_or(0);
        if biggest > ctx.limits.max_storage_buffer_binding_size {
            return Err(Error::OutOfMemory(format!(
                ": a {width}x{height} image needs {} MiB activations but {} binds at most {} MiB; the largest \
                 size that fits is --image-size {}",
                biggest >> 20,
                ctx.adapter_name(),
                ctx.limits.max_storage_buffer_binding_size >> 20,
                largest_fitting_side(width, height, ctx.limits.max_storage_buffer_binding_size)
            )));
        }
        let plane = width * height;
        let mut bytes = 0u64;
        let mut alloc = |label: &str, len: usize| -> Result<wgpu::Buffer> {
            bytes += (len * 4) as u64;
            ctx.storage_buffer(label, len)
        };
        let x = alloc("x", 3 * plane)?;
        let net_in = match net.input_affine {
            Some(_) => Some(alloc("network input", 3 * plane)?),
            None => None,
        };
        let mut relu = Vec::new();
        for (i, &(c, h, w)) in shapes.iter().enumerate().take(up_to + 1) {
            relu.push(alloc(RELU_NAMES[i], c * h * w)?);
        }
        let pool_len = POOL_AFTER
            .iter()
            .filter(|&&i| i < up_to)
            .map(|&i| {
                let (c, h, w) = shapes[i];
                c * (h / 2) * (w / 2)
            })
            .max()
            .unwrap_or(1)
            .max(scratch_len);
        let pool_out = alloc("pool output / backward scratch", pool_len)?;

        let mut dispatches = Vec::new();
        if let (Some((s, o)), Some(ni)) = (net.input_affine, &net_in) {
            dispatches.push(kernels::affine::channel_affine(ctx, plane, s, o, &x, ni)?);
        }
        let mut input = net_in.as_ref().unwrap_or(&x);
        for i in 0..=up_to {
            let (c, h, w) = shapes[i];
            let conv = &net.convs[i];
            let shape = ConvShape { cin: conv.cin, cout: c, height: h, width: w };
            dispatches.push(kernels::conv::conv3x3(ctx, shape, true, input, &conv.w_forward, &conv.bias, &relu[i])?);
            input = &relu[i];
            if POOL_AFTER.contains(&i) && i < up_to {
                let ps = PoolShape { channels: c, height: h, width: w };
                dispatches.push(match net.pooling {
                    Pooling::Max => kernels::pool::maxpool2x2(ctx, ps, &relu[i], &pool_out)?,
                    Pooling::Avg => kernels::pool::avgpool2x2(ctx, ps, &relu[i], &pool_out)?,
                });
                input = &pool_out;
            }
        }
        Ok(Self { height, width, up_to, x, net_in, relu, shapes, pool_out, dispatches, bytes })
    }

    /// Uploads `x` (mean-subtracted, CHW) and runs the forward pass.
    pub fn run(&self, ctx: &GpuContext, x: &[f32]) -> Result<()> {
        ctx.queue.write_buffer(&self.x, 0, bytemuck::cast_slice(x));
        let d: Vec<&Dispatch> = self.dispatches.iter().collect();
        ctx.run(&d)
    }
}

/// Gram matrices of `layers` (conv indices) for image `x` (mean-subtracted) of `width` x `height`, read back as
/// f32 row-major C x C. Used for the style targets, once per style image at its own size.
pub fn grams(
    ctx: &GpuContext,
    net: &GpuNet,
    x: &[f32],
    width: usize,
    height: usize,
    layers: &[usize],
) -> Result<Vec<Vec<f32>>> {
    let up_to = layers.iter().copied().max().unwrap_or(0);
    let plan = ForwardPlan::new(ctx, net, width, height, up_to)?;
    plan.run(ctx, x)?;
    let mut out = Vec::new();
    for &l in layers {
        let (c, h, w) = plan.shapes[l];
        let partial = ctx.storage_buffer("gram partial", kernels::gram::partial_len(c, h * w))?;
        let g = ctx.storage_buffer("gram", c * c)?;
        let [a, b] = kernels::gram::gram(ctx, c, h * w, &plan.relu[l], &partial, &g)?;
        ctx.run(&[&a, &b])?;
        out.push(ctx.read_all(&g)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_floor_pooling() {
        let couts: Vec<usize> = crate::weights::VGG16_CONV_LAYERS.iter().map(|l| l.2).collect();
        let s = layer_shapes(&couts, 33, 17);
        assert_eq!(s[0], (64, 33, 17));
        assert_eq!(s[2], (128, 16, 8));
        assert_eq!(s[4], (256, 8, 4));
        assert_eq!(s[7], (512, 4, 2));
        assert_eq!(s[10], (512, 2, 1));
        assert!(check_size(16, 16).is_ok());
        assert!(matches!(check_size(15, 40), Err(Error::ImageTooSmall { min: 16, .. })));
    }

    #[test]
    fn largest_fitting_side_fits() {
        let limit = 128u64 << 20;
        let s = largest_fitting_side(1000, 500, limit);
        let (w, h) = (s, s / 2);
        assert!((64 * w * h * 4) as u64 <= limit);
        assert!((64 * (w + 2) * ((w + 2) / 2) * 4) as u64 > limit);
        assert_eq!(relu_index("relu4_2"), Some(8));
        assert_eq!(relu_index("relu5_2"), None);
    }
}

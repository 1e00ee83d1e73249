//! Exact tiled evaluation on the GPU (docs/MATHS.md, "Tiled evaluation"): one block's network (one plan, one set of
//! buffers, one dispatch list: every block has the same outer size), the canvas's x and dL/dx, and per block the
//! cut of x into the block and the paste of the block's dL/dx back onto the pixels it owns; the content features
//! of every block, kept on the host and uploaded before the block's pass 2. The loss terms add their per-block
//! statistics and scalars ([`LossTerms::block_statistics`], [`LossTerms::block_scalars`]); this module puts an
//! evaluation in order as [`Segment`]s, one block each, which the stylizer submits one by one.

use crate::error::Result;
use crate::frame::Frame;
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels;
use crate::loss_terms::LossTerms;
use crate::network::{GpuNet, Matrix, Network};
use crate::plan::PlanSpec;
use crate::setup_stage::SetupStage;
use crate::submission::Recording;
use crate::tensor::Tensor;
use crate::tiling::{BlockGrid, Rect};

/// Part of an evaluation submitted on its own: host data written to GPU buffers first, then the dispatches.
pub struct Segment<'a> {
    pub uploads: Vec<(&'a wgpu::Buffer, &'a [f32])>,
    pub dispatches: Vec<&'a Dispatch>,
}

/// A canvas evaluated block by block.
pub struct Tiled {
    pub grid: BlockGrid,
    /// One block's network, forward and backward.
    pub network: Network,
    /// The canvas's x and dL/dx, framed at [`Tiled::frame`].
    pub x: wgpu::Buffer,
    pub grad: wgpu::Buffer,
    pub frame: Frame,
    /// Per block: x's outer rectangle into the block's image; the block's dL/dx on its owned pixels into `grad`.
    cuts: Vec<Dispatch>,
    pastes: Vec<Dispatch>,
    /// The content terms' target buffers (one block's shape) and, per block, their contents.
    content_targets: Vec<wgpu::Buffer>,
    content: Vec<Vec<Vec<f32>>>,
}

impl Tiled {
    /// The block network of `spec` (one block's size) over a canvas of `grid`'s size, with the cut and paste of
    /// every block. The backward pass is built later ([`Network::build_backward`] on [`Tiled::network`]).
    pub fn new(ctx: &GpuContext, net: &GpuNet, spec: PlanSpec, grid: BlockGrid) -> Result<Self> {
        let network = Network::new(ctx, net, spec)?;
        let frame = Frame::new(grid.height, grid.width);
        let x = ctx.storage_buffer("canvas x", frame.buffer_floats(3))?;
        let grad = ctx.storage_buffer("canvas dL/dx", frame.buffer_floats(3))?;
        let block_frame = network.image_frame();
        let block_grad = network.grad_image().ok_or_else(|| {
            crate::error::Error::Validation("a tiled evaluation's block network has no backward pass".into())
        })?;
        let (mut cuts, mut pastes) = (Vec::new(), Vec::new());
        for b in &grid.blocks {
            let (outer, owned) = (b.outer, b.owned);
            let image = Tensor::new(network.image(), 3, block_frame);
            cuts.push(kernels::region::copy(ctx, Tensor::new(&x, 3, frame), outer, image, (0, 0))?);
            let inside = Rect { x: owned.x - outer.x, y: owned.y - outer.y, ..owned };
            let from = Tensor::new(block_grad, 3, block_frame);
            pastes.push(kernels::region::copy(ctx, from, inside, Tensor::new(&grad, 3, frame), (owned.x, owned.y))?);
        }
        Ok(Self { grid, network, x, grad, frame, cuts, pastes, content_targets: Vec::new(), content: Vec::new() })
    }

    /// Bytes of the canvas's x and dL/dx (the block network's are [`Network::bytes`]).
    pub fn canvas_bytes(frame: Frame) -> u64 {
        2 * 4 * frame.buffer_floats(3) as u64
    }

    /// The content image's features at `layers` for every block: `content_x` (the canvas, mean-subtracted, dense)
    /// is cut block by block and run forward; each block's features are kept on the host. Returns the content
    /// terms' target buffers (one block's shape), which [`Tiled::segments`] fills before each block's pass 2.
    pub fn content_targets(
        &mut self,
        ctx: &GpuContext,
        content_x: &[f32],
        layers: &[usize],
        on_stage: &mut dyn FnMut(SetupStage),
    ) -> Result<Vec<wgpu::Buffer>> {
        if layers.is_empty() {
            return Ok(Vec::new());
        }
        on_stage(SetupStage::ContentTargets);
        ctx.queue.write_buffer(&self.x, 0, bytemuck::cast_slice(&self.frame.frame(content_x, 3)));
        let (w, h) = self.grid.block;
        let gflop = crate::vgg::conv_flops_per_iteration(w, h) / 2.0 / 1e9;
        self.content = Vec::with_capacity(self.grid.blocks.len());
        let of = self.cuts.len();
        for (b, cut) in self.cuts.iter().enumerate() {
            let dispatches: Vec<&Dispatch> = std::iter::once(cut).chain(&self.network.forward).collect();
            Recording::run_unmeasured(ctx, &dispatches, gflop)?;
            let features = layers
                .iter()
                .map(|&l| ctx.read_f32(self.network.relu(l), 0, self.network.plan.layers[l].buffer_floats()))
                .collect::<Result<_>>()?;
            self.content.push(features);
            on_stage(SetupStage::Blocks { what: "content targets", done: b + 1, of });
        }
        self.content_targets = layers
            .iter()
            .map(|&l| ctx.storage_buffer("content target", self.network.plan.layers[l].buffer_floats()))
            .collect::<Result<_>>()?;
        Ok(self.content_targets.clone())
    }

    /// The content targets' uploads before block `b` (none without content terms).
    fn uploads(&self, b: usize) -> Vec<(&wgpu::Buffer, &[f32])> {
        let per_layer = self.content.get(b).map_or(&[][..], |c| &c[..]);
        self.content_targets.iter().zip(per_layer).map(|(t, c)| (t, &c[..])).collect()
    }

    /// One evaluation, block by block. Pass 1, when a style term needs the canvas's statistics or the losses are
    /// read: each block forward, its statistics added to the canvas's, with `read_losses` its share of the
    /// content scalars (they zero what the block does not own, so they run where nothing reads the features
    /// after them). Then what follows from the statistics and the style scalars; with `backward`, pass 2: each
    /// block's content targets uploaded, forward, backward, its dL/dx pasted; last the image terms on the canvas.
    pub fn segments<'a>(&'a self, losses: &'a LossTerms, read_losses: bool, backward: bool) -> Vec<Segment<'a>> {
        let forward = &self.network.forward;
        let content_scalars = read_losses && losses.has_block_scalars();
        let mut segments = Vec::new();
        if losses.needs_statistics() || content_scalars || !backward {
            for (b, cut) in self.cuts.iter().enumerate() {
                let mut dispatches: Vec<&Dispatch> =
                    std::iter::once(cut).chain(forward).chain(losses.block_statistics(b)).collect();
                let mut uploads = losses.block_uploads(b);
                if content_scalars {
                    uploads.extend(self.uploads(b));
                    dispatches.extend(losses.block_scalars(b));
                }
                segments.push(Segment { uploads, dispatches });
            }
        }
        let mut between: Vec<&Dispatch> = losses.after_forward().collect();
        if read_losses {
            between.extend(losses.layer_scalars());
        }
        if backward {
            for (b, cut) in self.cuts.iter().enumerate() {
                let mut dispatches: Vec<&Dispatch> = if b == 0 { std::mem::take(&mut between) } else { Vec::new() };
                dispatches.push(cut);
                dispatches.extend(forward);
                dispatches.extend(&self.network.backward);
                dispatches.push(&self.pastes[b]);
                let mut uploads = losses.block_uploads(b);
                uploads.extend(self.uploads(b));
                segments.push(Segment { uploads, dispatches });
            }
        }
        let last = &mut segments.last_mut().expect("at least one block").dispatches;
        last.extend(between);
        last.extend(losses.image_gradients());
        if read_losses {
            last.extend(losses.image_scalars());
        }
        segments
    }
}

/// The Gram matrices of relu `layers` (and with `means` each layer's channel means) of `x` (mean-subtracted, dense
/// CHW, `width` x `height`) with `variant`'s kernel, block by block over `grid`, as [`crate::network::grams`]
/// computes them at once (to f32 rounding): each block's features outside what it owns zeroed, its statistics
/// read back and added in f64, weighted by its share of the positions. A forward-only plan of one block's size.
pub fn grams(
    ctx: &GpuContext,
    net: &GpuNet,
    (x, width, height): (&[f32], usize, usize),
    layers: &[usize],
    (variant, means): (kernels::gram::GramVariant, bool),
    (grid, mask): (&BlockGrid, Option<&crate::masks::Mask>),
    on_stage: &mut dyn FnMut(SetupStage),
) -> Result<(Vec<Matrix>, Vec<Vec<f32>>)> {
    let (bw, bh) = grid.block;
    let network = Network::new(ctx, net, net.plan_spec(bw, bh, layers, false))?;
    let frame = Frame::new(height, width);
    let image = ctx.buffer_from("style image", &frame.frame(x, 3))?;
    let couts: Vec<usize> = net.convs.iter().map(|c| c.cout).collect();
    let whole = crate::vgg::layer_shapes(&couts, height, width);
    // Per layer: the block's Gram, its partials and means, and the canvas's sums so far.
    let mut outputs = Vec::new();
    for &l in layers {
        let c = network.plan.layers[l].channels;
        // A masked layer's Gram is the f32 one (below): room for either.
        let frame = network.plan.layers[l].frame();
        let f32_variant = crate::loss_terms::w2_gram_variant(&net.facts);
        let partial_len =
            kernels::gram::partial_len(variant, c, frame).max(kernels::gram::partial_len(f32_variant, c, frame));
        let gram = ctx.storage_buffer("block gram", c * c)?;
        let mean = if means { Some(ctx.storage_buffer("block means", c)?) } else { None };
        outputs.push((ctx.storage_buffer("gram partial", partial_len)?, gram, mean));
    }
    let mut gram_sums: Vec<Vec<f64>> = layers.iter().map(|&l| vec![0.0; whole[l].0 * whole[l].0]).collect();
    let mut mean_sums: Vec<Vec<f64>> = layers.iter().map(|&l| vec![0.0; if means { whole[l].0 } else { 0 }]).collect();
    let gflop = crate::vgg::conv_flops_per_iteration(bw, bh) / 2.0 / 1e9;
    let block_frame = network.image_frame();
    let features = |l: usize| {
        let s = network.plan.layers[l];
        Tensor::new(network.relu(l), s.channels, s.frame())
    };
    // The statistics' dispatches are the same for every block (built once: a tensor-core Gram takes an operand
    // range entry each time); only the cut, the owned rectangles and a mask's cut differ.
    let mut statistics = Vec::new();
    let masked = BlockMasks::new(ctx, &network, layers, mask, (width, height))?;
    for (i, (&l, (partial, gram, mean))) in layers.iter().zip(&outputs).enumerate() {
        let f = features(l);
        let layer_variant = if means { variant } else { variant.for_channels(f.channels) };
        match masked.at(i) {
            // The Gram of (w·HW/S)^½ ⊙ F, the mean of (w·HW/S) ⊙ F (docs/MATHS.md, "Spatial control"), in f32:
            // weighted features leave the range the tensor cores' operand scaling measured.
            Some((gram_input, mean_input, weighted)) => {
                let layer_variant = crate::loss_terms::w2_gram_variant(&net.facts);
                let of_weighted = Tensor::new(weighted, f.channels, f.frame);
                statistics.push(kernels::mask::weight(ctx, gram_input, f, weighted, false)?);
                statistics.extend(network.gram_dispatches(ctx, layer_variant, of_weighted, partial, gram)?);
                if let Some(m) = mean {
                    statistics.push(kernels::mask::weight(ctx, mean_input, f, weighted, false)?);
                    statistics.push(kernels::w2::channel_mean(ctx, of_weighted, m)?);
                }
            }
            None => {
                statistics.extend(network.gram_dispatches(ctx, layer_variant, f, partial, gram)?);
                if let Some(m) = mean {
                    statistics.push(kernels::w2::channel_mean(ctx, f, m)?);
                }
            }
        }
    }
    for (b, block) in grid.blocks.iter().enumerate() {
        masked.upload(ctx, block);
        let into = Tensor::new(network.image(), 3, block_frame);
        let cut = kernels::region::copy(ctx, Tensor::new(&image, 3, frame), block.outer, into, (0, 0))?;
        let mut keeps = Vec::new();
        for &l in layers {
            let f = features(l);
            let mine = grid.owned_at(block, crate::tiling::layer_stride(l), (f.frame.width, f.frame.height));
            keeps.push(kernels::region::keep(ctx, f, mine)?);
        }
        let forward = std::iter::once(&cut).chain(&network.forward);
        let list: Vec<&Dispatch> = forward.chain(&keeps).chain(&statistics).collect();
        Recording::run_unmeasured(ctx, &list, gflop)?;
        for (i, (&l, (_, gram, mean))) in layers.iter().zip(&outputs).enumerate() {
            let s = network.plan.layers[l];
            let share = (s.width * s.height) as f64 / (whole[l].2 * whole[l].1) as f64;
            for (sum, v) in gram_sums[i].iter_mut().zip(ctx.read_all(gram)?) {
                *sum += share * f64::from(v);
            }
            if let Some(m) = mean {
                for (sum, v) in mean_sums[i].iter_mut().zip(ctx.read_all(m)?) {
                    *sum += share * f64::from(v);
                }
            }
        }
        on_stage(SetupStage::Blocks { what: "style targets", done: b + 1, of: grid.blocks.len() });
    }
    let to_f32 = |v: Vec<Vec<f64>>| v.into_iter().map(|m| m.into_iter().map(|x| x as f32).collect()).collect();
    let means = if means { to_f32(mean_sums) } else { Vec::new() };
    Ok((to_f32(gram_sums), means))
}

/// A style image's mask in [`grams`]: per layer, its weights on the whole image and the block-sized buffers of the
/// Gram's and the means' inputs (None where it is 1 everywhere), and the scratch the weighted features go to.
struct BlockMasks {
    layers: Vec<Option<MaskedLayer>>,
    weighted: Option<wgpu::Buffer>,
}

/// One layer of [`BlockMasks`]: the weights, the block's shape of the layer, the two input buffers.
struct MaskedLayer {
    weights: crate::masks::LayerWeights,
    inside: crate::plan::Shape,
    stride: usize,
    gram_input: wgpu::Buffer,
    mean_input: wgpu::Buffer,
}

impl BlockMasks {
    fn new(
        ctx: &GpuContext,
        network: &Network,
        layers: &[usize],
        mask: Option<&crate::masks::Mask>,
        (width, height): (usize, usize),
    ) -> Result<Self> {
        let mut out = Self { layers: Vec::new(), weighted: None };
        let Some(mask) = mask else {
            out.layers.resize_with(layers.len(), || None);
            return Ok(out);
        };
        let mut largest = 0;
        for &l in layers {
            let inside = network.plan.layers[l];
            let stride = crate::tiling::layer_stride(l);
            let whole = crate::plan::Shape { width: width / stride, height: height / stride, ..inside };
            let Some(weights) = mask.image_layer(l, whole)? else {
                out.layers.push(None);
                continue;
            };
            largest = largest.max(inside.buffer_floats());
            let buffer = || ctx.storage_buffer("style mask", inside.frame().buffer_floats(1));
            let (gram_input, mean_input) = (buffer()?, buffer()?);
            out.layers.push(Some(MaskedLayer { weights, inside, stride, gram_input, mean_input }));
        }
        out.weighted = (largest > 0).then(|| ctx.storage_buffer("masked features", largest)).transpose()?;
        Ok(out)
    }

    /// Layer `i`'s Gram and means inputs and the scratch, where masked.
    fn at(&self, i: usize) -> Option<(&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer)> {
        let layer = self.layers[i].as_ref()?;
        Some((&layer.gram_input, &layer.mean_input, self.weighted.as_ref()?))
    }

    /// Fills the input buffers with `block`'s cut of the weights (normalised by the whole image's H·W and S).
    fn upload(&self, ctx: &GpuContext, block: &crate::tiling::Block) {
        for layer in self.layers.iter().flatten() {
            let at = ((block.outer.x / layer.stride, block.outer.y / layer.stride), layer.inside);
            for (buffer, power) in [(&layer.gram_input, 0.5), (&layer.mean_input, 1.0)] {
                ctx.queue.write_buffer(buffer, 0, bytemuck::cast_slice(&layer.weights.normalised_in(power, at)));
            }
        }
    }
}

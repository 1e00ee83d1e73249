//! Masks on the loss terms (docs/MATHS.md, "Spatial control"): each masked term's weights at its layer on the
//! GPU, and the dispatches a masked term puts around the unmasked kernels (`kernels/mask_weight.wgsl`).

use super::StyleLoss;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext};
use crate::kernels;
use crate::masks::LayerWeights;
use crate::plan::Shape;
use crate::tensor::Tensor;

/// The buffers a masked style term adds at a layer of `shape`: w and the Gram's input weights, and (W2) the
/// means' input weights.
pub fn style_buffers(shape: Shape, loss: StyleLoss) -> Vec<(&'static str, usize)> {
    let count = if loss == StyleLoss::W2 { 3 } else { 2 };
    vec![("style mask", shape.frame().buffer_floats(1)); count]
}

/// The buffers a masked content term adds: m, √m and √m ⊙ P.
pub fn content_buffers(shape: Shape) -> [(&'static str, usize); 3] {
    let mask = shape.frame().buffer_floats(1);
    [("content mask", mask), ("content mask", mask), ("masked content target", shape.buffer_floats())]
}

/// What the terms are weighted by (host side; empty where nothing is masked).
#[derive(Clone, Debug, Default)]
pub struct TermMasks {
    /// `style[k][i]`: region k's weights at the i-th style layer (one region per style image).
    pub style: Vec<Vec<LayerWeights>>,
    /// β_k, each region's relative weight (1 by default).
    pub region_weights: Vec<f64>,
    /// The content mask's weights at each content layer.
    pub content: Vec<LayerWeights>,
}

impl TermMasks {
    /// The weights at each term's layer (`layers[l]`: relu l's shape on the canvas) of the output's masks on the
    /// canvas: `style[k]` region k's (with its weight β_k), `content` the content mask.
    pub fn new(
        spec: &super::LossSpec,
        layers: &[Shape],
        style: &[(crate::masks::Mask, f64)],
        content: Option<&crate::masks::Mask>,
    ) -> Self {
        let at = |m: &crate::masks::Mask, ls: &[usize]| ls.iter().map(|&l| m.at_layer(l, layers[l])).collect();
        Self {
            style: style.iter().map(|(m, _)| at(m, &spec.style_layers)).collect(),
            region_weights: style.iter().map(|(_, beta)| *beta).collect(),
            content: content.map(|m| at(m, &spec.content_layers)).unwrap_or_default(),
        }
    }
}

/// Where a mask covers its layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// w = 1 everywhere: the term runs exactly the unmasked dispatches.
    Everywhere,
    /// S = 0: the term contributes nothing.
    Nowhere,
    Partly,
}

/// One masked term's weights on the GPU: the whole layer's, or (tiled) one block's, filled before each block.
pub struct TermMask {
    pub coverage: Coverage,
    /// a = S / (H·W).
    pub area: f64,
    /// w, which weights the gradient.
    pub weights: wgpu::Buffer,
    /// The statistics' inputs: (w·HW/S)^½ before the Gram and w·HW/S before the means (W2); √w before the
    /// content sum.
    pub statistics_input: wgpu::Buffer,
    pub mean_input: Option<wgpu::Buffer>,
    /// Tiled: per block, what the buffers above hold for it (in their order), cut from the canvas's weights.
    blocks: Vec<Vec<Vec<f32>>>,
}

/// Where a term's mask applies: relu `layer`, whose shape in the network's buffers is `inside` (a block's when
/// `grid` is given).
#[derive(Clone, Copy)]
pub struct MaskSite<'a> {
    pub layer: usize,
    pub inside: Shape,
    pub grid: Option<&'a crate::tiling::BlockGrid>,
}

/// What one of a mask's buffers holds.
#[derive(Clone, Copy)]
enum Values {
    /// w^power.
    Raw(f64),
    /// (w·HW/S)^power (zeros where S = 0).
    Normalised(f64),
}

impl TermMask {
    /// A style term's mask (with the means' input for W2).
    pub fn style(ctx: &GpuContext, w: &LayerWeights, means: bool, site: MaskSite<'_>) -> Result<Self> {
        let mut values = vec![Values::Raw(1.0), Values::Normalised(0.5)];
        if means {
            values.push(Values::Normalised(1.0));
        }
        Self::new(ctx, "style mask", w, &values, site)
    }

    /// The content term's mask.
    pub fn content(ctx: &GpuContext, w: &LayerWeights, site: MaskSite<'_>) -> Result<Self> {
        Self::new(ctx, "content mask", w, &[Values::Raw(1.0), Values::Raw(0.5)], site)
    }

    fn new(ctx: &GpuContext, label: &str, w: &LayerWeights, values: &[Values], site: MaskSite<'_>) -> Result<Self> {
        let coverage = coverage(w);
        let of = |v: Values, block| match v {
            Values::Raw(p) => w.raw_in(p, block),
            Values::Normalised(_) if coverage == Coverage::Nowhere => w.raw_in(1.0, block),
            Values::Normalised(p) => w.normalised_in(p, block),
        };
        let (mut buffers, mut blocks) = (Vec::new(), Vec::new());
        match site.grid {
            None => {
                for &v in values {
                    buffers.push(ctx.buffer_from(label, &of(v, ((0, 0), w.shape)))?);
                }
            }
            Some(grid) => {
                let stride = crate::tiling::layer_stride(site.layer);
                for _ in values {
                    buffers.push(ctx.storage_buffer(label, site.inside.frame().buffer_floats(1))?);
                }
                for b in &grid.blocks {
                    let at = ((b.outer.x / stride, b.outer.y / stride), site.inside);
                    blocks.push(values.iter().map(|&v| of(v, at)).collect());
                }
            }
        }
        let mut buffers = buffers.into_iter();
        let (weights, statistics_input, mean_input) = (buffers.next(), buffers.next(), buffers.next());
        let missing = || Error::Validation("a mask without its buffers".into());
        Ok(Self {
            coverage,
            area: w.area(),
            weights: weights.ok_or_else(missing)?,
            statistics_input: statistics_input.ok_or_else(missing)?,
            mean_input,
            blocks,
        })
    }

    /// Tiled: the uploads that fill the buffers for block `b` (none untiled).
    pub fn uploads(&self, b: usize) -> Vec<(&wgpu::Buffer, &[f32])> {
        let buffers = [Some(&self.weights), Some(&self.statistics_input), self.mean_input.as_ref()];
        let data = self.blocks.get(b).map_or(&[][..], |d| &d[..]);
        buffers.into_iter().flatten().zip(data).map(|(buffer, d)| (buffer, &d[..])).collect()
    }

    /// A term's unmasked gradient (in `scratch`) weighted into dL/dF: grad (+)= w ⊙ scratch.
    pub fn weighted_gradient(
        &self,
        ctx: &GpuContext,
        scratch: Tensor<'_>,
        grad: &wgpu::Buffer,
        accumulate: bool,
    ) -> Result<Dispatch> {
        kernels::mask::weight(ctx, &self.weights, scratch, grad, accumulate)
    }

    /// A term covering nothing still writes dL/dF when it is the first at its layer: zeros (w = 0 everywhere).
    pub fn nothing(
        &self,
        ctx: &GpuContext,
        features: Tensor<'_>,
        grad: &wgpu::Buffer,
        accumulate: bool,
    ) -> Result<Vec<Dispatch>> {
        Ok(if accumulate {
            Vec::new()
        } else {
            vec![kernels::mask::weight(ctx, &self.weights, features, grad, false)?]
        })
    }
}

/// `into = input ⊙ features` (one of a [`TermMask`]'s inputs).
pub fn weigh(ctx: &GpuContext, input: &wgpu::Buffer, features: Tensor<'_>, into: &wgpu::Buffer) -> Result<Dispatch> {
    kernels::mask::weight(ctx, input, features, into, false)
}

fn coverage(w: &LayerWeights) -> Coverage {
    if w.is_ones() {
        Coverage::Everywhere
    } else if w.sum == 0.0 {
        Coverage::Nowhere
    } else {
        Coverage::Partly
    }
}

/// The shared scratch of the masked terms (a bug when missing: the spec counts it whenever a term is masked).
pub fn scratch(scratch: &super::Scratch) -> Result<&wgpu::Buffer> {
    scratch.masked.as_ref().ok_or_else(|| Error::Validation("a masked term without the masked scratch".into()))
}

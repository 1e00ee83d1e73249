//! Host wrappers of the 3x3 convolutions — forward (+ bias + ReLU) and backward-data (the input ReLU's mask
//! fused) — their variants, the choice between them, and the one-time weight layouts each variant reads.
//!
//! | variant | WGSL | for |
//! |---|---|---|
//! | [`ConvVariant::Tiled`] | `conv3x3.wgsl`, `conv3x3_backward_data.wgsl` on `shared/gemm_tiled.wgsl` | GPUs |
//! | [`ConvVariant::Tiled8x8`] | the same on `shared/gemm_tiled_8x8.wgsl` | GPUs, once measured faster |
//! | [`ConvVariant::Narrow`] | `conv3x3_backward_data_narrow.wgsl` | GPUs, backward-data with ≤ 4 result channels |
//! | [`ConvVariant::Cpu`] | `conv3x3_cpu.wgsl` (template) | CPU adapters (lavapipe): no workgroup memory |
//!
//! All read and write framed CHW tensors ([`crate::frame`]).

use super::shared::{CONV3X3_IM2COL, GEMM_TILED, GEMM_TILED_8X8, GRID_ENTRY};
use super::uniform::uniform;
use super::{kernel, template, Kernel};

use super::coop::{self, CoopConfig, OperandRange};
use super::grid::{gemm_grid_with, gemm_pieces, grid_2d, ELEMENTWISE_GROUP, GEMM_TILE, PIECE_GFLOP};
use super::uniform::u32_of;
use super::{compose_with_core, max_dim, render, shader, AdapterFacts, Dispatch, TemplateValue};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::gpu::GpuContext;
use wgpu::Buffer;

/// Shape of one 3x3 convolution on a CHW image (`cin` channels in, `cout` out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub cin: usize,
    pub cout: usize,
    pub height: usize,
    pub width: usize,
}

impl ConvShape {
    /// Multiply-adds of the forward (and of the backward-data) pass.
    pub fn macs(&self) -> usize {
        self.cin * self.cout * 9 * self.height * self.width
    }

    pub fn frame(&self) -> Frame {
        Frame::new(self.height, self.width)
    }
}

/// Which kernel computes a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvVariant {
    /// The 64x64 workgroup-tiled implicit GEMM (GPUs): 256 invocations, 4x4 outputs each.
    Tiled,
    /// The same tile and arithmetic (bit-identical results) from 64 invocations of 8x8 outputs, vec4 reads of
    /// the staged tiles. Not chosen by [`forward_variant`] until a GPU measures it faster (its sibling, the
    /// 4x4, ran a plain SGEMM at 30 TFLOP/s on an H100; docs/PERFORMANCE.md); benchmarks time both.
    Tiled8x8,
    /// Backward-data only: one invocation per pixel, all (≤ 4) result channels in a vec4 (GPUs; conv1_1's image
    /// gradient, where the tiled GEMM would pad 3 rows to 64).
    Narrow,
    /// The CPU-adapter kernel: `channels` output channels x [`cpu_rows`] rows x 8 pixels per invocation.
    Cpu { channels: usize },
    /// The tensor-core kernel (f16 operands, f32 sums: [`super::coop`]), or with `twin` its software twin; it
    /// reads the tiled variant's weight layout.
    Coop { config: CoopConfig, twin: bool },
}

/// Most result channels the narrow backward-data kernel handles (one vec4).
pub const NARROW_MAX_CHANNELS: usize = 4;
/// Most rows per invocation of the CPU kernel: the frames' rows are padded to a multiple of it ([`Frame`]).
pub const CPU_MAX_ROWS: usize = 4;
/// Invocations per workgroup of the CPU kernel.
pub const CPU_WORKGROUP: usize = 16;

/// The CPU kernel's output channels per invocation for a result of `channels` channels: 8 (measured best on
/// lavapipe, see docs/PERFORMANCE.md), 4 for a 3-channel result (conv1_1's image gradient) rather than waste 5.
fn cpu_channels(channels: usize) -> usize {
    if channels <= 4 {
        4
    } else {
        8
    }
}

/// Every forward kernel (benchmarks time them side by side).
pub fn forward_variant_list() -> Vec<ConvVariant> {
    vec![ConvVariant::Tiled, ConvVariant::Tiled8x8, ConvVariant::Cpu { channels: 8 }, ConvVariant::Cpu { channels: 4 }]
}

/// Every backward-data kernel for a result of `channels` channels.
pub fn backward_variant_list(channels: usize) -> Vec<ConvVariant> {
    let mut v = forward_variant_list();
    if channels <= NARROW_MAX_CHANNELS {
        v.push(ConvVariant::Narrow);
    }
    v
}

/// Rows per invocation of the CPU kernel for an image `height` rows high: 4 (each loaded input row then
/// serves up to 3 output rows), fewer only where a 4-row band would be mostly past the image.
pub fn cpu_rows(height: usize) -> usize {
    if height >= 4 {
        4
    } else {
        height.next_power_of_two()
    }
}

/// The forward kernel for a conv of `shape` on this adapter (with tensor cores, the tile for its output rows:
/// [`super::coop::CoopConfig::for_rows`]).
pub fn forward_variant(shape: ConvShape, adapter: &AdapterFacts) -> ConvVariant {
    if let Some((config, twin)) = adapter.coop {
        ConvVariant::Coop { config: config.for_rows(shape.cout), twin }
    } else if adapter.is_cpu() {
        ConvVariant::Cpu { channels: cpu_channels(shape.cout) }
    } else {
        ConvVariant::Tiled
    }
}

/// The backward-data kernel for a conv of `shape` (its result has `shape.cin` channels) on this adapter. With
/// tensor cores, conv1_1's 3-channel image gradient still takes the narrow f32 kernel (a 3-row GEMM would waste
/// nearly all of a tile).
pub fn backward_variant(shape: ConvShape, adapter: &AdapterFacts) -> ConvVariant {
    if let (Some((config, twin)), false) = (adapter.coop, shape.cin <= NARROW_MAX_CHANNELS) {
        ConvVariant::Coop { config: config.for_rows(shape.cin), twin }
    } else if adapter.is_cpu() {
        ConvVariant::Cpu { channels: cpu_channels(shape.cin) }
    } else if shape.cin <= NARROW_MAX_CHANNELS {
        ConvVariant::Narrow
    } else {
        ConvVariant::Tiled
    }
}

/// OIHW `[cout][cin][3][3]` → what `variant`'s forward kernel reads: `[cin*9][cout]` (tiled) or, for the CPU
/// kernel, blocks of its channel count `[ceil(cout/MR)][cin][9][MR]` (zero-padded).
pub fn forward_weights(variant: ConvVariant, w_oihw: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    assert_eq!(w_oihw.len(), cout * cin * 9);
    match variant {
        ConvVariant::Tiled | ConvVariant::Tiled8x8 | ConvVariant::Coop { .. } => {
            let mut out = vec![0.0; w_oihw.len()];
            for co in 0..cout {
                for k in 0..cin * 9 {
                    out[k * cout + co] = w_oihw[co * cin * 9 + k];
                }
            }
            out
        }
        ConvVariant::Cpu { channels } => {
            cpu_blocks(channels, cin, cout, |co, ci, tap| w_oihw[(co * cin + ci) * 9 + tap])
        }
        // The narrow kernel is backward-data only; its forward would be the tiled one.
        ConvVariant::Narrow => forward_weights(ConvVariant::Tiled, w_oihw, cin, cout),
    }
}

/// OIHW → what `variant`'s backward-data kernel reads: the transposed convolution as a plain 3x3 convolution
/// from Cout to Cin channels, taps flipped (tap → 8 − tap). Tiled: `[cout*9][cin]`; narrow: `[cout*9]` vec4s of
/// the (≤ 4, zero-padded) result channels; CPU: `[ceil(cin/MR)][cout][9][MR]`.
pub fn backward_weights(variant: ConvVariant, w_oihw: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    assert_eq!(w_oihw.len(), cout * cin * 9);
    let flipped = |co: usize, ci: usize, tap: usize| w_oihw[(co * cin + ci) * 9 + (8 - tap)];
    match variant {
        ConvVariant::Tiled | ConvVariant::Tiled8x8 | ConvVariant::Coop { .. } => {
            let mut out = vec![0.0; w_oihw.len()];
            for co in 0..cout {
                for ci in 0..cin {
                    for tap in 0..9 {
                        out[(co * 9 + tap) * cin + ci] = flipped(co, ci, tap);
                    }
                }
            }
            out
        }
        ConvVariant::Narrow => {
            assert!(cin <= NARROW_MAX_CHANNELS, "the narrow kernel computes at most 4 channels");
            let mut out = vec![0.0; cout * 9 * 4];
            for co in 0..cout {
                for ci in 0..cin {
                    for tap in 0..9 {
                        out[(co * 9 + tap) * 4 + ci] = flipped(co, ci, tap);
                    }
                }
            }
            out
        }
        // Output channel m of the backward conv is the forward's input channel; its input is the forward's output.
        ConvVariant::Cpu { channels } => cpu_blocks(channels, cout, cin, |o, i, tap| flipped(i, o, tap)),
    }
}

/// `[ceil(outputs/mr)][inputs][9][mr]` with `w(output, input, tap)`, zero past the last output.
fn cpu_blocks(mr: usize, inputs: usize, outputs: usize, w: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
    let blocks = outputs.div_ceil(mr);
    let mut out = vec![0.0; blocks * inputs * 9 * mr];
    for o in 0..outputs {
        for i in 0..inputs {
            for tap in 0..9 {
                out[((o / mr * inputs + i) * 9 + tap) * mr + o % mr] = w(o, i, tap);
            }
        }
    }
    out
}

uniform! {
    struct TiledParams {
        cin: u32,
        cout: u32,
        height: u32,
        width: u32,
        stride: u32,
        plane: u32,
        /// Pixel groups: GEMM tiles of pixels (tiled, tensor cores), or groups of 256 pixels (narrow).
        pixel_groups: u32,
        /// 1: the epilogue applies the ReLU (forward) or the input ReLU's mask (backward-data).
        epilogue: u32,
        /// The first pixel tile of this launch (a GEMM built in pieces, [`crate::gpu::Pieces`]), else 0.
        tile_offset: u32,
    }
}

uniform! {
    struct CpuParams {
        cin: u32,
        cout: u32,
        height: u32,
        width: u32,
        stride: u32,
        plane: u32,
        chunks_per_row: u32,
        chunks: u32,
        /// 1: the epilogue applies the ReLU (forward) or the input ReLU's mask (backward-data).
        epilogue: u32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[
    kernel!("conv3x3", &[CONV3X3_IM2COL, GEMM_TILED], TiledParams, "input; weights; bias; mut output"),
    kernel!(
        "conv3x3_backward_data",
        &[CONV3X3_IM2COL, GEMM_TILED],
        TiledParams,
        "input; weights; mask_src; mut grad_in"
    ),
    kernel!(
        "conv3x3_backward_data_narrow",
        &[GRID_ENTRY],
        TiledParams,
        "grad_out; weights: array<vec4<f32>>; mask_src; mut grad_in"
    ),
    template!("conv3x3_cpu", &[GRID_ENTRY], CpuParams),
];

/// The CPU kernel's dispatch (`channels` result channels per invocation) over the forward or backward-data pass
/// of a conv of `shape`: backward reads its `cout` channels and writes its `cin`.
fn cpu_dispatch(
    ctx: &GpuContext,
    (channels, backward): (usize, bool),
    shape: ConvShape,
    epilogue: bool,
    buffers: &[&Buffer],
) -> Result<Dispatch> {
    let (inputs, outputs) = if backward { (shape.cout, shape.cin) } else { (shape.cin, shape.cout) };
    let frame = shape.frame();
    let rows = cpu_rows(frame.height);
    let chunks_per_row = frame.width.div_ceil(8);
    let chunks = chunks_per_row * frame.height.div_ceil(rows);
    let shader = cpu_shader(channels, rows, backward)?;
    let p = CpuParams {
        cin: u32_of(inputs),
        cout: u32_of(outputs),
        height: u32_of(frame.height),
        width: u32_of(frame.width),
        stride: u32_of(frame.stride),
        plane: u32_of(frame.plane()),
        chunks_per_row: u32_of(chunks_per_row),
        chunks: u32_of(chunks),
        epilogue: epilogue as u32,
        ..Default::default()
    };
    // One invocation per (channel block, pixel chunk).
    let invocations = chunks * outputs.div_ceil(channels);
    let (x, y) = grid_2d(invocations.div_ceil(CPU_WORKGROUP), max_dim(ctx));
    Dispatch::new(ctx, &shader, &p, buffers, [x, y, 1])
}

/// The operands' scales of a tensor-core conv: the ranges buffer [`coop::max_abs`] fills, and where each
/// operand's largest magnitude comes from (A: the weights, fixed; B: the input or gradient, measured).
#[derive(Clone, Copy, Debug)]
pub struct CoopOperands<'a> {
    pub ranges: &'a Buffer,
    pub weights: OperandRange,
    pub input: OperandRange,
}

/// A conv kernel ready to record: a [`ConvVariant`] whose tensor-core arm carries its operands' scales, so one
/// entry point per op serves every variant.
#[derive(Clone, Copy, Debug)]
pub enum ConvKernel<'a> {
    Tiled,
    Tiled8x8,
    Narrow,
    Cpu { channels: usize },
    Coop { config: CoopConfig, twin: bool, operands: CoopOperands<'a> },
}

impl<'a> ConvKernel<'a> {
    /// `variant` as a kernel; a tensor-core variant takes its operands from `operands` (called only for it).
    pub fn of(variant: ConvVariant, operands: impl FnOnce() -> Result<CoopOperands<'a>>) -> Result<Self> {
        Ok(match variant {
            ConvVariant::Tiled => ConvKernel::Tiled,
            ConvVariant::Tiled8x8 => ConvKernel::Tiled8x8,
            ConvVariant::Narrow => ConvKernel::Narrow,
            ConvVariant::Cpu { channels } => ConvKernel::Cpu { channels },
            ConvVariant::Coop { config, twin } => ConvKernel::Coop { config, twin, operands: operands()? },
        })
    }

    /// The kernel of an f32 variant (tests and benchmarks; a tensor-core variant is an error here).
    pub fn f32(variant: ConvVariant) -> Result<Self> {
        Self::of(variant, || Err(Error::Validation(format!("{variant:?} needs its operand ranges"))))
    }
}

/// The buffers of a forward conv: `weights` in the variant's [`forward_weights`] layout.
#[derive(Clone, Copy)]
pub struct ForwardIo<'a> {
    pub input: &'a Buffer,
    pub weights: &'a Buffer,
    pub bias: &'a Buffer,
    pub output: &'a Buffer,
}

/// The buffers of a backward-data conv: `weights` in the variant's [`backward_weights`] layout; `mask_src` the
/// conv's input when it is a ReLU output (the mask is fused).
#[derive(Clone, Copy)]
pub struct BackwardIo<'a> {
    pub grad_out: &'a Buffer,
    pub weights: &'a Buffer,
    pub mask_src: Option<&'a Buffer>,
    pub grad_in: &'a Buffer,
}

/// `output = relu?(conv3x3(input, weights) + bias)` with `kernel`.
pub fn conv3x3(
    ctx: &GpuContext,
    kernel: ConvKernel<'_>,
    shape: ConvShape,
    relu: bool,
    io: ForwardIo<'_>,
) -> Result<Dispatch> {
    conv3x3_pieced(ctx, kernel, shape, relu, io, PIECE_GFLOP)
}

/// [`conv3x3`] with a GEMM variant built in pieces of at most `piece_gflop` ([`gemm_pieces`]; tests make them
/// small).
pub fn conv3x3_pieced(
    ctx: &GpuContext,
    kernel: ConvKernel<'_>,
    shape: ConvShape,
    relu: bool,
    io: ForwardIo<'_>,
    piece_gflop: f64,
) -> Result<Dispatch> {
    let bufs = [io.input, io.weights, io.bias, io.output];
    match kernel {
        ConvKernel::Cpu { channels } => cpu_dispatch(ctx, (channels, false), shape, relu, &bufs),
        ConvKernel::Tiled | ConvKernel::Tiled8x8 | ConvKernel::Coop { .. } => {
            let gemm = GemmConv { name: "conv3x3", inputs: shape.cin, outputs: shape.cout, epilogue: relu };
            gemm.dispatch(ctx, kernel, shape, bufs, piece_gflop)
        }
        ConvKernel::Narrow => Err(Error::Validation("the narrow conv kernel is backward-data only".into())),
    }
}

/// An implicit-GEMM conv: the kernel `name` (f32 tiled, or on the tensor cores) reading `inputs` channels and
/// writing `outputs`, with its epilogue (ReLU, or the input ReLU's mask) or not.
struct GemmConv {
    name: &'static str,
    inputs: usize,
    outputs: usize,
    epilogue: bool,
}

impl GemmConv {
    /// The dispatch at `shape`'s size with `kernel` (a GEMM variant; its tensor-core arm's operands bound after
    /// `bufs`), in pieces of at most `piece_gflop` when it is larger.
    fn dispatch(
        &self,
        ctx: &GpuContext,
        kernel: ConvKernel<'_>,
        shape: ConvShape,
        bufs: [&Buffer; 4],
        piece_gflop: f64,
    ) -> Result<Dispatch> {
        let [a, b, c, d] = bufs;
        let (tile, shader, scales) = match kernel {
            ConvKernel::Coop { config, twin, operands } => {
                let uniform = coop::scale_uniform(ctx, operands.weights, operands.input);
                (config.tile(), coop::gemm_shader(self.name, config, twin)?, Some((operands.ranges, uniform)))
            }
            ConvKernel::Tiled8x8 => (GEMM_TILE, tiled_8x8_shader(self.name)?, None),
            _ => (GEMM_TILE, shader(self.name)?, None),
        };
        let mut buffers = vec![a, b, c, d];
        if let Some((ranges, uniform)) = &scales {
            buffers.extend([*ranges, uniform]);
        }
        let pixels = shape.height * shape.width;
        let gflop = 2.0 * shape.macs() as f64 / 1e9;
        let params = |pixel_tiles, tile_offset| TiledParams {
            tile_offset,
            ..tiled_params(self.inputs, self.outputs, shape.frame(), pixel_tiles, self.epilogue)
        };
        match gemm_pieces(tile, (self.outputs, pixels), gflop, piece_gflop, max_dim(ctx)) {
            Some(pieces) => {
                Dispatch::in_pieces(ctx, &shader, |first| params(pieces.tiles, first), &buffers, pieces, max_dim(ctx))
            }
            None => {
                let (groups, pixel_tiles) = gemm_grid_with(tile, self.outputs, pixels, max_dim(ctx));
                Dispatch::new(ctx, &shader, &params(pixel_tiles, 0), &buffers, groups)
            }
        }
    }
}

/// Kernel `name` on the 8x8 GEMM core.
fn tiled_8x8_shader(name: &'static str) -> Result<crate::gpu::Shader> {
    let wgsl = compose_with_core(name, GEMM_TILED_8X8)
        .ok_or_else(|| Error::Validation(format!("{name} is not on the tiled GEMM core")))?;
    Ok(crate::gpu::Shader::new(format!("{name}/8x8"), wgsl))
}

fn tiled_params(cin: usize, cout: usize, frame: Frame, pixel_groups: u32, epilogue: bool) -> TiledParams {
    TiledParams {
        cin: u32_of(cin),
        cout: u32_of(cout),
        height: u32_of(frame.height),
        width: u32_of(frame.width),
        stride: u32_of(frame.stride),
        plane: u32_of(frame.plane()),
        pixel_groups,
        epilogue: epilogue as u32,
        ..Default::default()
    }
}

/// `grad_in = conv3x3ᵀ(grad_out)`, times `(mask_src > 0)` when `mask_src` is given: the gradient w.r.t. the
/// input of a conv of `shape` from the gradient w.r.t. its pre-ReLU output. Give `mask_src` = the input's forward
/// values when the input is a ReLU output, so the result is already the next layer's pre-ReLU gradient.
/// `kernel` is of [`backward_variant`]'s choice (tests force each).
pub fn conv3x3_backward_data(
    ctx: &GpuContext,
    kernel: ConvKernel<'_>,
    shape: ConvShape,
    io: BackwardIo<'_>,
) -> Result<Dispatch> {
    conv3x3_backward_data_pieced(ctx, kernel, shape, io, PIECE_GFLOP)
}

/// [`conv3x3_backward_data`] with a GEMM variant built in pieces of at most `piece_gflop` ([`gemm_pieces`]).
pub fn conv3x3_backward_data_pieced(
    ctx: &GpuContext,
    kernel: ConvKernel<'_>,
    shape: ConvShape,
    io: BackwardIo<'_>,
    piece_gflop: f64,
) -> Result<Dispatch> {
    // Without a mask the kernels never read it; bind the weights there (any read-only buffer).
    let mask = io.mask_src.unwrap_or(io.weights);
    let frame = shape.frame();
    let bufs = [io.grad_out, io.weights, mask, io.grad_in];
    let masked = io.mask_src.is_some();
    match kernel {
        ConvKernel::Cpu { channels } => cpu_dispatch(ctx, (channels, true), shape, masked, &bufs),
        ConvKernel::Narrow => {
            if shape.cin > NARROW_MAX_CHANNELS {
                return Err(Error::Validation(format!("narrow backward-data of {} channels (at most 4)", shape.cin)));
            }
            let pixel_groups = (shape.height * shape.width).div_ceil(ELEMENTWISE_GROUP);
            let (x, y) = grid_2d(pixel_groups, max_dim(ctx));
            let params = tiled_params(shape.cout, shape.cin, frame, u32_of(pixel_groups), masked);
            Dispatch::new(ctx, &shader("conv3x3_backward_data_narrow")?, &params, &bufs, [x, y, 1])
        }
        ConvKernel::Tiled | ConvKernel::Tiled8x8 | ConvKernel::Coop { .. } => {
            let gemm =
                GemmConv { name: "conv3x3_backward_data", inputs: shape.cout, outputs: shape.cin, epilogue: masked };
            gemm.dispatch(ctx, kernel, shape, bufs, piece_gflop)
        }
    }
}

/// The CPU template rendered for `channels` per invocation, `rows` rows, forward or backward.
fn cpu_shader(channels: usize, rows: usize, backward: bool) -> Result<crate::gpu::Shader> {
    render(
        "conv3x3_cpu",
        &[
            ("MR", TemplateValue::Int(u32_of(channels))),
            ("ROWS", TemplateValue::Int(u32_of(rows))),
            ("WG", TemplateValue::Int(u32_of(CPU_WORKGROUP))),
            ("BACKWARD", TemplateValue::Bool(backward)),
        ],
    )
    .map(|s| s.trusted(true))
}

/// Every rendering of the CPU template the choices can make (unit tests validate each with naga).
pub fn cpu_renderings() -> Result<Vec<crate::gpu::Shader>> {
    let mut v = Vec::new();
    for channels in [4, 8] {
        for rows in [1, 2, 4] {
            for backward in [false, true] {
                v.push(cpu_shader(channels, rows, backward)?);
            }
        }
    }
    Ok(v)
}

/// The largest element index the CPU kernel reads from its input for a conv with `inputs` input channels at
/// `frame`, and the largest it writes for `outputs` output channels: the kernel's own index arithmetic, in
/// Rust, so tests can prove every access falls inside the buffers ([`Frame::buffer_floats`]) for any shape.
pub fn cpu_max_indices(frame: Frame, inputs: usize, outputs: usize, mr: usize) -> (usize, usize) {
    let rows = cpu_rows(frame.height);
    let chunks_per_row = frame.width.div_ceil(8);
    let bands = frame.height.div_ceil(rows);
    let (s, plane) = (frame.stride, frame.plane());
    // The last chunk of the last band, last input channel: rows y .. y + ROWS + 1, vec4s at - 1 .. + 2.
    let (y, x) = ((bands - 1) * rows, (chunks_per_row - 1) * 8);
    let at = (Frame::HEAD + (inputs - 1) * plane + (y + rows + 1) * s + x) / 4;
    let read = 4 * (at + 2) + 3;
    // Writes: rows < height only, channels < outputs, 2 vec4s.
    let last_row = frame.height - 1;
    let o = (Frame::HEAD + (last_row + 1) * s + x) / 4 + (outputs - 1) * (plane / 4);
    let written = 4 * (o + 1) + 3;
    let _ = mr;
    (read, written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu() -> AdapterFacts {
        AdapterFacts::example_lavapipe()
    }

    #[test]
    fn variants_follow_the_adapter_and_the_result_channels() {
        let shape = |cin, cout| ConvShape { cin, cout, height: 32, width: 32 };
        let gpu = AdapterFacts::example_gpu();
        assert_eq!(forward_variant(shape(3, 64), &gpu), ConvVariant::Tiled);
        assert_eq!(backward_variant(shape(3, 64), &gpu), ConvVariant::Narrow);
        assert_eq!(backward_variant(shape(4, 64), &gpu), ConvVariant::Narrow);
        assert_eq!(backward_variant(shape(5, 64), &gpu), ConvVariant::Tiled);
        assert_eq!(forward_variant(shape(3, 64), &cpu()), ConvVariant::Cpu { channels: 8 });
        assert_eq!(backward_variant(shape(3, 64), &cpu()), ConvVariant::Cpu { channels: 4 });
        assert_eq!(backward_variant(shape(64, 64), &cpu()), ConvVariant::Cpu { channels: 8 });
        // A GL CPU adapter (llvmpipe through EGL) is a CPU adapter too.
        let gl = AdapterFacts { backend: wgpu::Backend::Gl, trusted_modules: false, ..cpu() };
        assert_eq!(forward_variant(shape(64, 64), &gl), ConvVariant::Cpu { channels: 8 });
    }

    #[test]
    fn weight_layouts() {
        // cout=2, cin=3: w[co][ci][tap] = 100*co + 10*ci + tap.
        let w: Vec<f32> = (0..2 * 3 * 9).map(|i| (100 * (i / 27) + 10 * ((i / 9) % 3) + i % 9) as f32).collect();
        let f = forward_weights(ConvVariant::Tiled, &w, 3, 2);
        assert_eq!(f[(2 * 9 + 4) * 2 + 1], 124.0); // k = ci*9+tap = 22, co = 1
        let b = backward_weights(ConvVariant::Tiled, &w, 3, 2);
        // row (co*9 + (8-tap)), column ci: co=1, tap=0 → row 17, ci=2 → 120.
        assert_eq!(b[17 * 3 + 2], 120.0);
        assert_eq!(b[(9 + 8 - 5) * 3], 105.0);
        // CPU forward, blocks of 4 output channels: [block][ci][tap][4]; co = 1, ci = 2, tap = 4.
        let c = forward_weights(ConvVariant::Cpu { channels: 4 }, &w, 3, 2);
        assert_eq!(c.len(), 3 * 9 * 4);
        assert_eq!(c[(2 * 9 + 4) * 4 + 1], 124.0);
        assert_eq!(c[(2 * 9 + 4) * 4 + 2], 0.0, "padding channel");
        // CPU backward: outputs are the forward's input channels; ci = 2 (block 0, lane 2), input co = 1,
        // tap 0 ← forward tap 8.
        let cb = backward_weights(ConvVariant::Cpu { channels: 4 }, &w, 3, 2);
        assert_eq!(cb.len(), 2 * 9 * 4);
        assert_eq!(cb[(9) * 4 + 2], 128.0);
    }

    #[test]
    fn both_convs_on_the_8x8_core_validate_with_naga() {
        for name in ["conv3x3", "conv3x3_backward_data"] {
            let shader = tiled_8x8_shader(name).unwrap();
            crate::kernels::tests::validate(&shader.name, &shader.wgsl);
        }
    }

    #[test]
    fn every_cpu_rendering_validates_with_naga() {
        for shader in cpu_renderings().unwrap() {
            crate::kernels::tests::validate(&shader.name, &shader.wgsl);
        }
    }

    /// The CPU kernel's every read and write stays inside the framed buffers, for random and edge shapes
    /// (it runs without naga's bounds checks where the adapter allows).
    #[test]
    fn cpu_kernel_indices_stay_in_range() {
        let mut shapes = vec![(1, 1), (1, 8), (8, 1), (16, 16), (17, 9), (3, 5), (512, 341), (4, 4), (5, 13)];
        let mut seed = 7u64;
        for _ in 0..200 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shapes.push((1 + (seed >> 40) as usize % 300, 1 + (seed >> 20) as usize % 300));
        }
        for (h, w) in shapes {
            let frame = Frame::new(h, w);
            for (inputs, outputs) in [(3, 64), (64, 3), (512, 512), (1, 1)] {
                let (read, written) = cpu_max_indices(frame, inputs, outputs, 8);
                assert!(read < frame.buffer_floats(inputs), "{h}x{w}: read {read} ≥ {}", frame.buffer_floats(inputs));
                assert!(written < frame.buffer_floats(outputs), "{h}x{w}: write {written}");
            }
        }
    }
}

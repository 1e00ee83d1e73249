//! How a style problem is laid out in GPU memory: the canvas evaluated at once, or block by block when that does
//! not fit the memory budget or a buffer would exceed what the adapter binds (docs/MATHS.md, "Tiled evaluation"),
//! and the bytes of every buffer either way. Pure apart from reading the adapter's limits and the host's memory:
//! [`crate::Stylizer`] allocates exactly what [`Layout::items`] lists (a test checks it), and `neural-style bench`
//! and the setup line print it.

use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::kernels::AdapterFacts;
use crate::loss_terms::LossSpec;
use crate::network;
use crate::optim::average::ImageAverage;
use crate::optim::{lbfgs, Adam};
use crate::plan::{Plan, PlanSpec};
use crate::stylizer::{MemoryItem, Optimizer, StyleOptions};
use crate::tiling::{self, BlockGrid, Reach};
use crate::vgg::Pooling;
use neural_style_weights::VGG16_CONV_LAYERS;

/// Default budget on a GPU adapter: wgpu reports no memory size, and a budget above what the card has fails
/// allocating (wgpu's memory budget thresholds turn that into an out-of-memory error, never a lost device).
pub const GPU_DEFAULT_BUDGET: u64 = 8_000_000_000;
/// Default budget on a CPU adapter where the host's memory cannot be read.
pub const CPU_FALLBACK_BUDGET: u64 = 4_000_000_000;

/// What a problem may allocate: its budget in bytes, and the largest storage binding of the adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimits {
    pub budget: u64,
    pub max_binding: u64,
}

impl MemoryLimits {
    /// `--max-memory` when given; else on a CPU adapter half of the host's memory (its buffers are host memory),
    /// on a GPU [`GPU_DEFAULT_BUDGET`].
    pub fn new(max_memory: Option<u64>, is_cpu: bool, max_binding: u64) -> Self {
        let budget = max_memory.unwrap_or_else(|| {
            if is_cpu {
                host_memory().map_or(CPU_FALLBACK_BUDGET, |m| m / 2)
            } else {
                GPU_DEFAULT_BUDGET
            }
        });
        Self { budget, max_binding }
    }
}

/// The host's physical memory (Linux: /proc/meminfo's MemTotal), if it can be read. No memory-query crate is
/// among the dependencies this project can fetch; this is the one figure needed.
fn host_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The chosen layout of a problem on a `width` x `height` canvas.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// None: the canvas at once.
    pub grid: Option<BlockGrid>,
    /// Every buffer the problem allocates, grouped.
    pub items: Vec<MemoryItem>,
    /// What the canvas at once would allocate.
    pub untiled_bytes: u64,
    /// Why blocks: the budget, the binding limit, or `--tile-size`.
    pub why: String,
}

impl Layout {
    pub fn bytes(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum()
    }

    /// The setup line of a tiled layout: "8192x8192 in 36 blocks of 1536 px (+144 px margin, 1824x1824 evaluated
    /// each), 6.9 GB planned; at once would need 96 GB".
    pub fn describe(&self) -> Option<String> {
        let g = self.grid.as_ref()?;
        Some(format!(
            "tiled: {}x{} in {} blocks of {} px (+{} px margin: {}x{} evaluated each, {:.2}x the pixels), {:.2} GB \
             planned; at once would need {:.2} GB ({})",
            g.width,
            g.height,
            g.blocks.len(),
            g.owned_side.min(g.width.max(g.height)),
            g.margin,
            g.block.0,
            g.block.1,
            g.overlap(),
            self.bytes() as f64 / 1e9,
            self.untiled_bytes as f64 / 1e9,
            self.why
        ))
    }
}

/// The plan spec of a network at `width` x `height` reading `taps` (the shipped weights' convs).
fn spec_at(
    width: usize,
    height: usize,
    taps: &[usize],
    pooling: Pooling,
    input_affine: bool,
    backward: bool,
) -> PlanSpec {
    let mut taps = taps.to_vec();
    taps.sort_unstable();
    taps.dedup();
    PlanSpec {
        width,
        height,
        convs: VGG16_CONV_LAYERS.iter().map(|&(_, i, o)| (i, o)).collect(),
        pooling,
        input_affine,
        taps,
        backward,
    }
}

/// The buffers of the problem on a `width` x `height` canvas evaluated as `grid` says (None: at once).
pub fn items(
    (width, height): (usize, usize),
    opts: &StyleOptions,
    spec: &LossSpec,
    input_affine: bool,
    facts: &AdapterFacts,
    grid: Option<&BlockGrid>,
) -> Vec<MemoryItem> {
    let (nw, nh) = grid.map_or((width, height), |g| g.block);
    let plan = Plan::new(spec_at(nw, nh, &spec.taps(), opts.pooling, input_affine, true));
    let convs: Vec<(usize, usize)> = VGG16_CONV_LAYERS.iter().map(|&(_, i, o)| (i, o)).collect();
    let activations = match grid {
        None => format!("network activations and gradients ({} buffers by liveness)", plan.slots.len()),
        Some(_) => format!("one block's activations and gradients ({} buffers by liveness)", plan.slots.len()),
    };
    let mut items = vec![
        MemoryItem {
            what: "weights (forward + backward layouts, biases)".into(),
            bytes: network::weight_bytes(&convs, facts),
        },
        MemoryItem {
            what: activations,
            bytes: plan.bytes() + if facts.coop.is_some() { network::COOP_RANGES_BYTES } else { 0 },
        },
    ];
    for (what, floats) in spec.buffers(&plan.layers, (width, height), facts, grid.map(|g| g.blocks.len())) {
        match items.iter_mut().find(|i| i.what == what) {
            Some(i) => i.bytes += 4 * floats as u64,
            None => items.push(MemoryItem { what: what.into(), bytes: 4 * floats as u64 }),
        }
    }
    items.extend(canvas_items(Frame::new(height, width), opts, grid.is_some()));
    items
}

/// The canvas-sized buffers, whatever the blocks: (tiled) x and dL/dx, the image average, the optimiser's state.
fn canvas_items(frame: Frame, opts: &StyleOptions, tiled: bool) -> Vec<MemoryItem> {
    let mut items = Vec::new();
    if tiled {
        let bytes = crate::tiled::Tiled::canvas_bytes(frame);
        items.push(MemoryItem { what: "the canvas's x and dL/dx".into(), bytes });
    }
    let image = frame.buffer_floats(3);
    if opts.average_decay.is_some() {
        let floats = ImageAverage::buffer_floats(image);
        items.push(MemoryItem { what: "image average (b + a)".into(), bytes: 4 * floats as u64 });
    }
    items.push(match opts.optimizer {
        Optimizer::Adam => MemoryItem { what: "Adam m + v".into(), bytes: 4 * Adam::buffer_floats(image) as u64 },
        Optimizer::Lbfgs { history, .. } => MemoryItem {
            what: format!("L-BFGS: {history} pairs + {} vectors", lbfgs::buffer_vectors(history) - 2 * history),
            bytes: lbfgs::bytes(image, history),
        },
    });
    items
}

/// The reach of the deepest layer `spec` reads (what sets the blocks' margin and alignment).
pub fn reach(spec: &LossSpec) -> Reach {
    Reach::of(spec.taps().into_iter().max().unwrap_or(0))
}

/// The layout of the problem on a `width` x `height` canvas under `limits`: at once when everything fits the
/// budget and every buffer binds (and `opts.tile_size` does not ask for blocks), else the largest blocks that
/// do, or a one-line error with the numbers.
pub fn choose(
    (width, height): (usize, usize),
    opts: &StyleOptions,
    spec: &LossSpec,
    input_affine: bool,
    facts: &AdapterFacts,
    limits: MemoryLimits,
) -> Result<Layout> {
    let reach = reach(spec);
    let items_of = |grid: Option<&BlockGrid>| items((width, height), opts, spec, input_affine, facts, grid);
    let total = |items: &[MemoryItem]| items.iter().map(|i| i.bytes).sum::<u64>();
    let untiled_bytes = total(&items_of(None));
    // The canvas-sized buffers (x, dL/dx, the optimiser's vectors) must bind whatever the blocks.
    let canvas_binds = 4 * Frame::new(height, width).buffer_floats(3) as u64 <= limits.max_binding;
    let fits = |g: &BlockGrid| {
        let whole = g.is_whole() && opts.tile_size.is_none();
        let (w, h) = g.block;
        let plan = Plan::new(spec_at(w, h, &spec.taps(), opts.pooling, input_affine, true));
        let bytes = total(&items_of((!whole).then_some(g)));
        canvas_binds && plan.largest_tensor_bytes() <= limits.max_binding && bytes <= limits.budget
    };
    let whole_plan = Plan::new(spec_at(width, height, &spec.taps(), opts.pooling, input_affine, true));
    let why = if opts.tile_size.is_some() {
        "--tile-size".to_string()
    } else if whole_plan.largest_tensor_bytes() > limits.max_binding {
        format!(
            "its largest buffer, {} MiB, exceeds the {} MiB this adapter binds",
            whole_plan.largest_tensor_bytes() >> 20,
            limits.max_binding >> 20
        )
    } else {
        format!("over the {:.2} GB budget, --max-memory", limits.budget as f64 / 1e9)
    };
    let canvas_state = total(&canvas_items(Frame::new(height, width), opts, true));
    match tiling::choose_grid((width, height), reach, opts.tile_size, fits) {
        Some(g) if g.is_whole() && opts.tile_size.is_none() => {
            Ok(Layout { grid: None, items: items_of(None), untiled_bytes, why: String::new() })
        }
        Some(g) => Ok(Layout { items: items_of(Some(&g)), grid: Some(g), untiled_bytes, why }),
        None if canvas_binds && canvas_state > limits.budget => Err(Error::OutOfMemory(format!(
            ": a {width}x{height} canvas's x, dL/dx and optimiser state alone need {:.2} GB, over the {:.2} GB budget \
             (L-BFGS keeps 2 vectors per --lbfgs-history pair); lower --lbfgs-history or --image-size, or raise \
             --max-memory",
            canvas_state as f64 / 1e9,
            limits.budget as f64 / 1e9
        ))),
        None => {
            let smallest = BlockGrid::new(width, height, reach.align(), reach);
            let need = total(&items_of(Some(&smallest)));
            if !canvas_binds {
                return Err(Error::OutOfMemory(format!(
                    ": a {width}x{height} canvas's x alone ({} MiB) exceeds the {} MiB this adapter binds per buffer, \
                     in blocks or not; lower --image-size",
                    (4 * Frame::new(height, width).buffer_floats(3)) >> 20,
                    limits.max_binding >> 20
                )));
            }
            let why = format!("even in blocks of {} px it needs {:.2} GB", reach.align(), need as f64 / 1e9);
            Err(Error::OutOfMemory(format!(
                ": a {width}x{height} canvas does not fit the {:.2} GB budget ({why}; at once: {:.2} GB); raise \
                 --max-memory or lower --image-size",
                limits.budget as f64 / 1e9,
                untiled_bytes as f64 / 1e9
            )))
        }
    }
}

/// The blocks of a forward-only pass over a `width` x `height` style image reading `layers` (its Gram matrices),
/// beside `resident` bytes (the weights), and (`masked`, a `--style-image-masks` mask) the weighted features'
/// scratch and two mask buffers per layer: None when the image fits at once.
pub fn statistics_grid(
    (width, height): (usize, usize),
    layers: &[usize],
    (pooling, input_affine, masked): (Pooling, bool, bool),
    resident: u64,
    limits: MemoryLimits,
) -> Result<Option<BlockGrid>> {
    let reach = Reach::of(layers.iter().copied().max().unwrap_or(0));
    let fits = |g: &BlockGrid| {
        let (w, h) = g.block;
        let plan = Plan::new(spec_at(w, h, layers, pooling, input_affine, false));
        let image = 4 * Frame::new(height, width).buffer_floats(3) as u64;
        let shapes = || layers.iter().map(|&l| plan.layers[l]);
        let scratch = shapes().map(|s| s.buffer_floats()).max().unwrap_or(0);
        let masks = 4 * (scratch + shapes().map(|s| 2 * s.frame().buffer_floats(1)).sum::<usize>()) as u64;
        let bytes = resident + plan.bytes() + if g.is_whole() { 0 } else { image } + if masked { masks } else { 0 };
        image <= limits.max_binding && plan.largest_tensor_bytes() <= limits.max_binding && bytes <= limits.budget
    };
    match tiling::choose_grid((width, height), reach, None, fits) {
        Some(g) if g.is_whole() => Ok(None),
        Some(g) => Ok(Some(g)),
        None => Err(Error::OutOfMemory(format!(
            ": a {width}x{height} style image fits neither the {:.2} GB budget nor the {} MiB this adapter binds per \
             buffer, even in blocks of {} px; lower --style-scale or raise --max-memory",
            limits.budget as f64 / 1e9,
            limits.max_binding >> 20,
            reach.align()
        ))),
    }
}

//! The network's plan for one image size: the layers that run, the tensors they produce, the ordered forward
//! and backward steps, when each tensor is live, and which buffer (slot) holds it. Pure — computed from shapes
//! alone and unit-tested without a GPU. [`crate::network::Network`] turns a plan into buffers and dispatches;
//! the memory accounting (`neural-style bench`, [`crate::stylizer::memory_plan`]) reads its byte count.
//!
//! One iteration runs the forward steps, then the losses read the tapped layers, then the backward steps run
//! from the deepest tap down to the image. Buffers are shared by liveness: a tensor's slot returns to the pool
//! after the last step that reads it, and a later tensor takes the smallest free slot that fits (or grows the
//! largest free one). With this rule every post-ReLU output stays until its layer's backward (the ReLU masks and
//! the pools' arg-max need it), the four pool outputs share one slot, and each gradient lands in a dead
//! activation's slot.
//!
//! Tensors are framed ([`crate::frame`]): kernels write only data pixels and rely on a zero frame. A slot that
//! only ever holds tensors of one frame keeps its frame zero from allocation; a tensor whose slot also holds
//! tensors of another frame gets a [`Step::ClearFrame`] right before it is first written.

use crate::frame::Frame;
use crate::vgg::{self, Pooling, POOL_AFTER};

/// What a plan is computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanSpec {
    pub width: usize,
    pub height: usize,
    /// (input channels, output channels) of conv1_1, conv1_2, … (from the weights).
    pub convs: Vec<(usize, usize)>,
    pub pooling: Pooling,
    /// The weights expect a per-channel affine map of x (torchvision convention): one more tensor each way.
    pub input_affine: bool,
    /// Conv indices whose post-ReLU outputs the losses read; the plan runs up to the deepest.
    pub taps: Vec<usize>,
    /// Plan the backward pass to the image too (a style target needs only the forward).
    pub backward: bool,
}

/// Index of a tensor in [`Plan::tensors`].
pub type TensorId = usize;

/// Shape of a CHW tensor (batch 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Shape {
    /// Data values (C·H·W): what the losses average over.
    pub fn floats(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The frame its buffer uses ([`crate::frame`]).
    pub fn frame(&self) -> Frame {
        Frame::new(self.height, self.width)
    }

    /// Floats of a buffer holding it, frame included.
    pub fn buffer_floats(&self) -> usize {
        self.frame().buffer_floats(self.channels)
    }
}

/// What a tensor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// The optimised image x (mean-subtracted pixels): written by the caller, never reused.
    Image,
    /// x after the weights' input convention (torchvision weights only).
    NetworkInput,
    /// Post-ReLU output of conv `l`.
    Relu(usize),
    /// Output of the pooling after conv `l`.
    Pooled(usize),
    /// dL/d(pre-ReLU output of conv `l`): every writer applies the ReLU's mask.
    Grad(usize),
    /// dL/d(output of the pooling after conv `l`).
    GradPooled(usize),
    /// dL/d(network input) (torchvision weights only).
    GradNetworkInput,
    /// dL/dx, what the optimiser reads: never reused.
    GradImage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensor {
    pub kind: TensorKind,
    pub shape: Shape,
    /// The buffer that holds it.
    pub slot: usize,
}

/// One step of a pass. Conv and pool indices are VGG conv indices (0 = conv1_1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `output = input · scale + offset` per channel (the weights' input convention).
    InputAffine { input: TensorId, output: TensorId },
    /// `output = relu(conv_l(input) + bias)`.
    Conv { layer: usize, input: TensorId, output: TensorId },
    /// 2x2/2 pooling of conv `layer`'s output.
    Pool { layer: usize, input: TensorId, output: TensorId },
    /// Where the loss terms at relu `layer` add their gradient w.r.t. `features` into `grad` (ReLU mask fused).
    /// With `first_writes`, the first term overwrites `grad` (nothing wrote it yet) and later ones add.
    LossGradient { layer: usize, features: TensorId, grad: TensorId, first_writes: bool },
    /// `grad_in = conv_layerᵀ(grad_out)`, times `mask > 0` when the conv's input is a ReLU output.
    ConvBackward { layer: usize, grad_out: TensorId, mask: Option<TensorId>, grad_in: TensorId },
    /// Backward of the pooling after conv `layer` (`input` is its forward input: arg-max and ReLU mask).
    PoolBackward { layer: usize, input: TensorId, grad_out: TensorId, grad_in: TensorId },
    /// `grad_in = grad_out · scale` per channel.
    InputAffineBackward { grad_out: TensorId, grad_in: TensorId },
    /// Zero the frame of `tensor` (not its data pixels): its slot held a tensor of another frame before.
    ClearFrame { tensor: TensorId },
}

impl Step {
    /// (tensors read, tensors written).
    fn reads_writes(&self) -> (Vec<TensorId>, Vec<TensorId>) {
        match *self {
            Step::InputAffine { input, output }
            | Step::Conv { input, output, .. }
            | Step::Pool { input, output, .. } => (vec![input], vec![output]),
            Step::LossGradient { features, grad, first_writes, .. } => {
                (if first_writes { vec![features] } else { vec![features, grad] }, vec![grad])
            }
            Step::ConvBackward { grad_out, mask, grad_in, .. } => {
                (std::iter::once(grad_out).chain(mask).collect(), vec![grad_in])
            }
            Step::PoolBackward { input, grad_out, grad_in, .. } => (vec![input, grad_out], vec![grad_in]),
            Step::InputAffineBackward { grad_out, grad_in } => (vec![grad_out], vec![grad_in]),
            Step::ClearFrame { tensor } => (Vec::new(), vec![tensor]),
        }
    }
}

/// One buffer of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub floats: usize,
    /// It holds tensors of more than one frame: each of them has its frame cleared before it is written.
    pub mixed_frames: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub spec: PlanSpec,
    /// The deepest conv that runs.
    pub up_to: usize,
    /// (C, H, W) of every conv output up to `up_to`.
    pub layers: Vec<Shape>,
    pub tensors: Vec<Tensor>,
    /// Each slot (buffer): the frame of every tensor it holds, and its floats.
    pub slots: Vec<Slot>,
    pub forward: Vec<Step>,
    pub backward: Vec<Step>,
    pub image: TensorId,
    pub grad_image: Option<TensorId>,
    /// `relu[l]` = the tensor of relu l's output, for l ≤ `up_to`.
    pub relu: Vec<TensorId>,
}

impl Plan {
    /// Plans `spec`. Panics on a spec the caller should have refused (no taps, a tap beyond the network, an
    /// image too small to reach the deepest tap): [`crate::vgg::check_size`] and the option checks come first.
    pub fn new(spec: PlanSpec) -> Plan {
        let up_to = *spec.taps.iter().max().expect("a plan needs at least one tapped layer");
        assert!(up_to < spec.convs.len(), "tap {up_to} beyond the network");
        let couts: Vec<usize> = spec.convs.iter().map(|c| c.1).collect();
        let layers: Vec<Shape> = vgg::layer_shapes(&couts, spec.height, spec.width)[..=up_to]
            .iter()
            .map(|&(channels, height, width)| Shape { channels, height, width })
            .collect();
        assert!(layers.iter().all(|s| s.height > 0 && s.width > 0), "image too small for layer {up_to}");

        let mut b = Builder { tensors: Vec::new() };
        let image_shape = Shape { channels: 3, height: spec.height, width: spec.width };
        let image = b.add(TensorKind::Image, image_shape);
        let mut forward = Vec::new();
        let mut input = image;
        if spec.input_affine {
            let net_in = b.add(TensorKind::NetworkInput, image_shape);
            forward.push(Step::InputAffine { input, output: net_in });
            input = net_in;
        }
        let mut relu = Vec::new();
        let mut pooled_after = vec![None; up_to + 1];
        for (l, &shape) in layers.iter().enumerate() {
            let out = b.add(TensorKind::Relu(l), shape);
            forward.push(Step::Conv { layer: l, input, output: out });
            relu.push(out);
            input = out;
            if POOL_AFTER.contains(&l) && l < up_to {
                let pooled_shape = Shape { height: shape.height / 2, width: shape.width / 2, ..shape };
                let p = b.add(TensorKind::Pooled(l), pooled_shape);
                forward.push(Step::Pool { layer: l, input: out, output: p });
                pooled_after[l] = Some(p);
                input = p;
            }
        }

        let mut backward = Vec::new();
        let mut grad_image = None;
        if spec.backward {
            let mut grad = b.add(TensorKind::Grad(up_to), layers[up_to]);
            for l in (0..=up_to).rev() {
                if spec.taps.contains(&l) {
                    let first_writes = l == up_to;
                    backward.push(Step::LossGradient { layer: l, features: relu[l], grad, first_writes });
                }
                if l == 0 {
                    let gx = b.add(TensorKind::GradImage, image_shape);
                    if spec.input_affine {
                        let gni = b.add(TensorKind::GradNetworkInput, image_shape);
                        backward.push(Step::ConvBackward { layer: 0, grad_out: grad, mask: None, grad_in: gni });
                        backward.push(Step::InputAffineBackward { grad_out: gni, grad_in: gx });
                    } else {
                        backward.push(Step::ConvBackward { layer: 0, grad_out: grad, mask: None, grad_in: gx });
                    }
                    grad_image = Some(gx);
                    break;
                }
                let below = l - 1;
                let next = b.add(TensorKind::Grad(below), layers[below]);
                if let Some(p) = pooled_after[below] {
                    let gp = b.add(TensorKind::GradPooled(below), b.tensors[p].shape);
                    backward.push(Step::ConvBackward { layer: l, grad_out: grad, mask: None, grad_in: gp });
                    backward.push(Step::PoolBackward { layer: below, input: relu[below], grad_out: gp, grad_in: next });
                } else {
                    backward.push(Step::ConvBackward {
                        layer: l,
                        grad_out: grad,
                        mask: Some(relu[below]),
                        grad_in: next,
                    });
                }
                grad = next;
            }
        }

        let mut tensors = b.tensors;
        let tapped: Vec<TensorId> = spec.taps.iter().map(|&l| relu[l]).collect();
        let slots = assign_slots(&mut tensors, &forward, &tapped, &backward);
        let clears = |steps: Vec<Step>| -> Vec<Step> {
            let mut out = Vec::new();
            let mut cleared = vec![false; tensors.len()];
            for step in steps {
                for t in step.reads_writes().1 {
                    if slots[tensors[t].slot].mixed_frames && !cleared[t] {
                        out.push(Step::ClearFrame { tensor: t });
                        cleared[t] = true;
                    }
                }
                out.push(step);
            }
            out
        };
        let (forward, backward) = (clears(forward), clears(backward));
        Plan { spec, up_to, layers, tensors, slots, forward, backward, image, grad_image, relu }
    }

    /// Bytes of all slots (f32).
    pub fn bytes(&self) -> u64 {
        self.slots.iter().map(|s| 4 * s.floats as u64).sum()
    }

    pub fn shape(&self, t: TensorId) -> Shape {
        self.tensors[t].shape
    }

    /// The largest single tensor, in bytes (what the adapter's binding limit must hold).
    pub fn largest_tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| 4 * t.shape.buffer_floats() as u64).max().unwrap_or(0)
    }
}

struct Builder {
    tensors: Vec<Tensor>,
}

impl Builder {
    fn add(&mut self, kind: TensorKind, shape: Shape) -> TensorId {
        self.tensors.push(Tensor { kind, shape, slot: usize::MAX });
        self.tensors.len() - 1
    }
}

/// Assigns every tensor a slot by liveness over the step sequence forward → losses (reading `tapped`) →
/// backward, and returns the slots. A freed slot goes to the next tensor that fits (the smallest such slot),
/// else the largest free one grows, else a new slot is made. The image and its gradient get slots of their own
/// (the caller and the optimiser hold them across iterations).
fn assign_slots(tensors: &mut [Tensor], forward: &[Step], tapped: &[TensorId], backward: &[Step]) -> Vec<Slot> {
    // Step i's reads and writes; the losses are one step between the passes.
    let mut steps: Vec<(Vec<TensorId>, Vec<TensorId>)> = forward.iter().map(Step::reads_writes).collect();
    steps.push((tapped.to_vec(), Vec::new()));
    steps.extend(backward.iter().map(Step::reads_writes));

    let n = tensors.len();
    let mut first_write = vec![usize::MAX; n];
    let mut last_use = vec![0usize; n];
    for (i, (reads, writes)) in steps.iter().enumerate() {
        for &t in writes {
            first_write[t] = first_write[t].min(i);
            last_use[t] = last_use[t].max(i);
        }
        for &t in reads {
            last_use[t] = last_use[t].max(i);
        }
    }
    let pinned = |k: TensorKind| matches!(k, TensorKind::Image | TensorKind::GradImage);

    let mut floats: Vec<usize> = Vec::new();
    let mut last_frame: Vec<Option<Frame>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    for t in tensors.iter_mut().filter(|t| pinned(t.kind)) {
        t.slot = floats.len();
        floats.push(t.shape.buffer_floats());
        last_frame.push(Some(t.shape.frame()));
    }
    for i in 0..steps.len() {
        // New tensors first, then release what this step read last: a step never writes over its own inputs.
        for t in 0..n {
            if first_write[t] != i || pinned(tensors[t].kind) {
                continue;
            }
            let need = tensors[t].shape.buffer_floats();
            // Among the free slots that fit, prefer one whose last tenant had the same frame (no frame clear
            // needed), then the smallest.
            let frame = tensors[t].shape.frame();
            let fits = free
                .iter()
                .enumerate()
                .filter(|(_, &s)| floats[s] >= need)
                .min_by_key(|(_, &s)| (last_frame[s] != Some(frame), floats[s], s));
            let pick = match fits {
                Some((pos, _)) => Some(pos),
                // Nothing free is big enough: grow the largest free slot rather than add one.
                None => free.iter().enumerate().max_by_key(|(_, &s)| (floats[s], usize::MAX - s)).map(|(p, _)| p),
            };
            let slot = match pick {
                Some(pos) => free.swap_remove(pos),
                None => {
                    floats.push(0);
                    last_frame.push(None);
                    floats.len() - 1
                }
            };
            floats[slot] = floats[slot].max(need);
            last_frame[slot] = Some(frame);
            tensors[t].slot = slot;
        }
        for t in 0..n {
            if last_use[t] == i && first_write[t] != usize::MAX && !pinned(tensors[t].kind) {
                free.push(tensors[t].slot);
            }
        }
    }
    debug_assert!(tensors.iter().all(|t| t.slot != usize::MAX));
    (0..floats.len())
        .map(|s| {
            let mut frames = tensors.iter().filter(|t| t.slot == s).map(|t| t.shape.frame());
            let first = frames.next();
            Slot { floats: floats[s], mixed_frames: frames.any(|f| Some(f) != first) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use neural_style_weights::VGG16_CONV_LAYERS;

    fn spec(width: usize, height: usize, taps: &[usize], backward: bool) -> PlanSpec {
        PlanSpec {
            width,
            height,
            convs: VGG16_CONV_LAYERS.iter().map(|&(_, i, o)| (i, o)).collect(),
            pooling: Pooling::Max,
            input_affine: false,
            taps: taps.to_vec(),
            backward,
        }
    }

    const DEFAULT_TAPS: [usize; 6] = [0, 2, 4, 7, 8, 10];

    /// Every step reads only tensors that are written earlier (or are the image) and whose slot no other tensor
    /// took in between; returns the number of slot conflicts (must be 0).
    fn conflicts(p: &Plan) -> usize {
        let taps: Vec<TensorId> = p.spec.taps.iter().map(|&l| p.relu[l]).collect();
        let mut steps: Vec<(Vec<TensorId>, Vec<TensorId>)> = p.forward.iter().map(Step::reads_writes).collect();
        steps.push((taps, Vec::new()));
        steps.extend(p.backward.iter().map(Step::reads_writes));
        // Simulate: which tensor each slot holds.
        let mut holder: Vec<Option<TensorId>> = vec![None; p.slots.len()];
        holder[p.tensors[p.image].slot] = Some(p.image);
        let mut bad = 0;
        for (reads, writes) in &steps {
            for &r in reads {
                if holder[p.tensors[r].slot] != Some(r) {
                    bad += 1;
                }
            }
            for &w in writes {
                if reads.iter().any(|&r| r != w && p.tensors[r].slot == p.tensors[w].slot) {
                    bad += 1; // a step writing over one of its own inputs
                }
                holder[p.tensors[w].slot] = Some(w);
            }
        }
        bad
    }

    #[test]
    fn default_plan_runs_every_conv_and_reuses_buffers_safely() {
        for (w, h) in [(64, 64), (37, 23), (512, 341), (16, 16)] {
            let p = Plan::new(spec(w, h, &DEFAULT_TAPS, true));
            assert_eq!(p.up_to, 10);
            assert_eq!(p.forward.iter().filter(|s| matches!(s, Step::Conv { .. })).count(), 11);
            assert_eq!(p.forward.iter().filter(|s| matches!(s, Step::Pool { .. })).count(), 4);
            assert_eq!(p.backward.iter().filter(|s| matches!(s, Step::ConvBackward { .. })).count(), 11);
            assert_eq!(p.backward.iter().filter(|s| matches!(s, Step::LossGradient { .. })).count(), 6);
            assert_eq!(conflicts(&p), 0, "{w}x{h}");
            for (id, t) in p.tensors.iter().enumerate() {
                let slot = p.slots[t.slot];
                assert!(slot.floats >= t.shape.buffer_floats(), "{:?} does not fit its slot", t.kind);
                // A tensor in a slot of several frames is cleared before its first write, and only then.
                let steps: Vec<&Step> = p.forward.iter().chain(&p.backward).collect();
                let first = steps.iter().position(|s| s.reads_writes().1.contains(&id));
                let cleared = first.is_some_and(|i| *steps[i] == Step::ClearFrame { tensor: id });
                assert_eq!(cleared, slot.mixed_frames && first.is_some(), "{:?}", t.kind);
            }
        }
    }

    #[test]
    fn backward_order_is_deepest_first_with_losses_before_their_conv() {
        let p = Plan::new(spec(40, 40, &DEFAULT_TAPS, true));
        let layers: Vec<usize> = p
            .backward
            .iter()
            .filter_map(|s| match s {
                Step::ConvBackward { layer, .. } => Some(*layer),
                _ => None,
            })
            .collect();
        assert_eq!(layers, (0..=10).rev().collect::<Vec<_>>());
        // Only the deepest tap's first term overwrites its gradient.
        let firsts: Vec<(usize, bool)> = p
            .backward
            .iter()
            .filter_map(|s| match s {
                Step::LossGradient { layer, first_writes, .. } => Some((*layer, *first_writes)),
                _ => None,
            })
            .collect();
        assert_eq!(firsts, vec![(10, true), (8, false), (7, false), (4, false), (2, false), (0, false)]);
        // The loss gradient at a layer comes right before that layer's conv backward (frame clears aside).
        let ops: Vec<&Step> = p.backward.iter().filter(|s| !matches!(s, Step::ClearFrame { .. })).collect();
        for (i, s) in ops.iter().enumerate() {
            if let Step::LossGradient { layer, .. } = s {
                let next = ops[i + 1];
                let ok = matches!(next, Step::ConvBackward { layer: l, .. } | Step::LossGradient { layer: l, .. } if l == layer);
                assert!(ok, "after the loss gradient at {layer}: {next:?}");
            }
        }
        // A conv whose input is a pool output gets no mask; the pool backward applies it.
        assert!(p.backward.iter().any(|s| matches!(s, Step::ConvBackward { layer: 2, mask: None, .. })));
        assert!(p.backward.iter().any(|s| matches!(s, Step::ConvBackward { layer: 3, mask: Some(_), .. })));
    }

    /// At 64² every post-ReLU output keeps a buffer of its own until its layer's backward; the image and its
    /// gradient have theirs; the four pool outputs and every gradient reuse those, plus one more buffer.
    #[test]
    fn slots_at_64() {
        let p = Plan::new(spec(64, 64, &DEFAULT_TAPS, true));
        assert_eq!(p.slots.len(), 2 + 11 + 1);
        let holds = |slot: usize, kind: fn(TensorKind) -> bool| {
            p.tensors.iter().filter(|t| t.slot == slot && kind(t.kind)).count()
        };
        for l in 0..=10 {
            let slot = p.tensors[p.relu[l]].slot;
            assert_eq!(
                holds(slot, |k| matches!(k, TensorKind::Relu(_))),
                1,
                "relu{l} shares its buffer with another relu"
            );
        }
        let pinned = [p.tensors[p.image].slot, p.tensors[p.grad_image.unwrap()].slot];
        assert_ne!(pinned[0], pinned[1]);
        for slot in pinned {
            assert_eq!(p.tensors.iter().filter(|t| t.slot == slot).count(), 1);
        }
    }

    /// The plan costs at most a few percent more than the hand-made scheme it replaced (every relu its own
    /// buffer, one shared buffer as big as the largest pool output, pool input gradient and top gradient, the
    /// image and its gradient), counted with the same frames.
    #[test]
    fn bytes_near_the_hand_made_scheme() {
        for (w, h) in [(32, 32), (64, 64), (37, 23), (256, 171), (1024, 1024), (2048, 2048)] {
            let p = Plan::new(spec(w, h, &DEFAULT_TAPS, true));
            let s = &p.layers;
            let relus: usize = s.iter().map(Shape::buffer_floats).sum();
            let pool = |l: usize| Shape { height: s[l].height / 2, width: s[l].width / 2, ..s[l] }.buffer_floats();
            let pools = POOL_AFTER.iter().map(|&l| pool(l));
            let scratch = POOL_AFTER.iter().map(|&l| s[l].buffer_floats()).chain([s[10].buffer_floats()]);
            let image = Shape { channels: 3, height: h, width: w }.buffer_floats();
            let hand = 4 * (relus + pools.chain(scratch).max().unwrap() + 2 * image) as u64;
            assert!(p.bytes() as f64 <= 1.06 * hand as f64, "{w}x{h}: {} vs {hand}", p.bytes());
        }
    }

    #[test]
    fn forward_only_plans_free_untapped_layers() {
        // Style targets at relu1_1 and relu5_1 only: the layers between need not all stay.
        let p = Plan::new(spec(64, 64, &[0, 10], false));
        assert!(p.backward.is_empty() && p.grad_image.is_none());
        assert_eq!(conflicts(&p), 0);
        let full = Plan::new(spec(64, 64, &[0, 10], true));
        assert!(p.bytes() < full.bytes() / 2, "{} vs {}", p.bytes(), full.bytes());
        // A shallow plan stops at its deepest tap.
        let shallow = Plan::new(spec(64, 64, &[2], true));
        assert_eq!(shallow.up_to, 2);
        let ops = shallow.forward.iter().filter(|s| !matches!(s, Step::ClearFrame { .. })).count();
        assert_eq!(ops, 4); // conv1_1, conv1_2, pool, conv2_1
        assert_eq!(conflicts(&shallow), 0);
    }

    #[test]
    fn torchvision_weights_add_the_affine_steps() {
        let mut s = spec(33, 17, &DEFAULT_TAPS, true);
        s.input_affine = true;
        let p = Plan::new(s);
        assert!(matches!(p.forward[0], Step::InputAffine { .. }));
        assert!(matches!(p.backward.last(), Some(Step::InputAffineBackward { .. })));
        assert_eq!(conflicts(&p), 0);
    }
}

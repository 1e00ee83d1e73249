//! The geometry of exact tiled evaluation (docs/MATHS.md, "Tiled evaluation"): how far the network reaches, the
//! margin that makes a block's gradient exact on the pixels it owns, the blocks themselves, and the choice of their
//! size under a memory budget. Pure — computed from sizes alone and unit-tested without a GPU; the stylizer turns a
//! [`BlockGrid`] into dispatches ([`crate::tiled`]).
//!
//! Every block has the same outer size, so one network plan (one set of buffers, one dispatch list) serves them
//! all: a block touching the image's right edge ends exactly there, a block inside starts on the pooling grid, and
//! the outer width is the owned width plus both margins plus `width mod align`, so that both hold at once.

use crate::vgg::POOL_AFTER;

/// A rectangle of pixels: columns `x .. x + width`, rows `y .. y + height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

impl Rect {
    pub fn pixels(&self) -> usize {
        self.width * self.height
    }
}

/// How far relu `layer` reaches into its input: its feature at position q depends on the input pixels
/// `stride·q − left ..= stride·q + right` (and on no others).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    pub stride: usize,
    pub left: usize,
    pub right: usize,
}

impl Reach {
    /// Walks VGG16's convs (3x3, padding 1) and 2x2/2 poolings up to conv `layer`: a conv at stride s widens both
    /// sides by s; a pooling at stride s widens the right side by s (its window's second column) and doubles s.
    pub fn of(layer: usize) -> Reach {
        let mut r = Reach { stride: 1, left: 0, right: 0 };
        for l in 0..=layer {
            r.left += r.stride;
            r.right += r.stride;
            if POOL_AFTER.contains(&l) && l < layer {
                r.right += r.stride;
                r.stride *= 2;
            }
        }
        r
    }

    /// The margin that makes the gradient exact on a block's owned pixels: `left + right` (a pixel p is read by
    /// the features at s·q ∈ [p − right, p + left], which read [p − left − right, p + left + right]), rounded up
    /// to whole steps of the deepest stride so blocks start on the pooling grid.
    pub fn margin(&self) -> usize {
        (self.left + self.right).next_multiple_of(self.stride)
    }

    /// The step every block's start and every owned boundary is a multiple of (the deepest layer's stride).
    pub fn align(&self) -> usize {
        self.stride
    }
}

/// The stride of relu `layer` (1, 2, 4, 8 or 16 px of the image per feature position).
pub fn layer_stride(layer: usize) -> usize {
    1 << POOL_AFTER.iter().filter(|&&p| p < layer).count()
}

/// One block along one axis: its outer span starts at `outer_start` (the outer length is the grid's), and it owns
/// `owned_start .. owned_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub outer_start: usize,
    pub owned_start: usize,
    pub owned_end: usize,
}

/// The blocks along one axis of `n` pixels: each owns `owned` px (the last what is left), outer spans of one
/// length `outer`. One block (outer = n) when the margins would cover the axis anyway.
pub fn split_axis(n: usize, owned: usize, margin: usize, align: usize) -> (usize, Vec<Span>) {
    assert!(
        owned > 0 && owned.is_multiple_of(align) && margin.is_multiple_of(align),
        "owned {owned}, margin {margin}, align {align}"
    );
    let outer = owned + 2 * margin + n % align;
    if outer >= n || owned >= n {
        return (n, vec![Span { outer_start: 0, owned_start: 0, owned_end: n }]);
    }
    let spans = (0..n.div_ceil(owned))
        .map(|i| {
            let owned_start = i * owned;
            // Start a margin before what it owns, but neither before the image nor past where its end is the image's.
            let outer_start = owned_start.saturating_sub(margin).min(n - outer);
            Span { outer_start, owned_start, owned_end: ((i + 1) * owned).min(n) }
        })
        .collect();
    (outer, spans)
}

/// One block: the pixels it evaluates (`outer`, margin included) and those whose gradient and statistics it keeps
/// (`owned`; the owned rectangles partition the image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub outer: Rect,
    pub owned: Rect,
}

/// The blocks of a `width` x `height` image, row by row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockGrid {
    pub width: usize,
    pub height: usize,
    /// The owned side asked for (the last block of a row or column owns what is left).
    pub owned_side: usize,
    pub margin: usize,
    /// Outer (width, height) of every block.
    pub block: (usize, usize),
    pub blocks: Vec<Block>,
}

impl BlockGrid {
    /// Blocks owning `owned_side` px (a multiple of `reach.align()`) with `reach`'s margin.
    pub fn new(width: usize, height: usize, owned_side: usize, reach: Reach) -> BlockGrid {
        let (margin, align) = (reach.margin(), reach.align());
        let (bw, xs) = split_axis(width, owned_side, margin, align);
        let (bh, ys) = split_axis(height, owned_side, margin, align);
        let blocks = ys
            .iter()
            .flat_map(|y| {
                xs.iter().map(move |x| Block {
                    outer: Rect { x: x.outer_start, y: y.outer_start, width: bw, height: bh },
                    owned: Rect {
                        x: x.owned_start,
                        y: y.owned_start,
                        width: x.owned_end - x.owned_start,
                        height: y.owned_end - y.owned_start,
                    },
                })
            })
            .collect();
        BlockGrid { width, height, owned_side, margin, block: (bw, bh), blocks }
    }

    /// One block covering the whole image (the untiled evaluation).
    pub fn is_whole(&self) -> bool {
        self.blocks.len() == 1
    }

    /// Where `block` owns at a layer of stride `stride` whose feature map in the block is `layer_w` x `layer_h`,
    /// in the block's own coordinates at that layer. Owned boundaries inside the image are multiples of every
    /// stride; at the image's far edge the block's layer ends where the image's does (poolings round down alike).
    pub fn owned_at(&self, block: &Block, stride: usize, (layer_w, layer_h): (usize, usize)) -> Rect {
        let (o, b) = (block.owned, block.outer);
        let start = |owned: usize, outer: usize| (owned - outer) / stride;
        let end = |owned_end: usize, outer: usize, n: usize, layer: usize| {
            if owned_end == n {
                layer
            } else {
                (owned_end - outer) / stride
            }
        };
        let (x0, y0) = (start(o.x, b.x), start(o.y, b.y));
        let x1 = end(o.x + o.width, b.x, self.width, layer_w);
        let y1 = end(o.y + o.height, b.y, self.height, layer_h);
        Rect { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }
    }

    /// Pixels evaluated per pixel of the image in one pass (≥ 1: the margins' overlap).
    pub fn overlap(&self) -> f64 {
        (self.blocks.len() * self.block.0 * self.block.1) as f64 / (self.width * self.height) as f64
    }
}

/// The grid that `fits` and evaluates the fewest pixels (blocks x outer area: the margins' overlap is the cost;
/// among equals the larger blocks), over owned sides that are multiples of `reach.align()`; when `asked`, the
/// largest owned side up to it (rounded down to the alignment) that fits. None when nothing fits. The whole image (one block) when it fits
/// and no size was asked for.
pub fn choose_grid(
    (width, height): (usize, usize),
    reach: Reach,
    asked: Option<usize>,
    fits: impl Fn(&BlockGrid) -> bool,
) -> Option<BlockGrid> {
    let align = reach.align();
    if let Some(side) = asked {
        let largest = side.max(align) / align;
        return (1..=largest).rev().map(|k| BlockGrid::new(width, height, k * align, reach)).find(|g| fits(g));
    }
    let whole = BlockGrid::new(width, height, width.max(height).next_multiple_of(align), reach);
    if fits(&whole) {
        return Some(whole);
    }
    let evaluated = |g: &BlockGrid| g.blocks.len() * g.block.0 * g.block.1;
    (1..=width.max(height).div_ceil(align))
        .rev()
        .map(|k| BlockGrid::new(width, height, k * align, reach))
        .filter(|g| fits(g))
        .min_by_key(|g| (evaluated(g), usize::MAX - g.owned_side))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu5_1_reads_132_pixels_and_needs_a_144_px_margin() {
        let r = Reach::of(10);
        assert_eq!((r.stride, r.left, r.right), (16, 58, 73));
        assert_eq!(r.left + r.right + 1, 132, "the receptive field of relu5_1");
        assert_eq!((r.margin(), r.align()), (144, 16));
        // relu1_1: one 3x3 conv.
        assert_eq!(Reach::of(0), Reach { stride: 1, left: 1, right: 1 });
        // relu4_2 (the content layer): stride 8.
        let c = Reach::of(8);
        assert_eq!((c.stride, c.left + c.right + 1), (8, 76));
        assert_eq!([0, 1, 2, 3, 4, 6, 7, 9, 10].map(layer_stride), [1, 1, 2, 2, 4, 4, 8, 8, 16]);
    }

    /// The reach walked by brute force: which input pixels change relu `layer`'s feature q (1-D, receptive fields
    /// as index sets through each conv and pooling).
    #[test]
    fn reach_matches_the_receptive_field_by_enumeration() {
        for layer in 0..11 {
            let r = Reach::of(layer);
            let q = 10;
            // Positions at the current layer's input that feature q depends on, walked back from the top.
            let mut needed: Vec<usize> = vec![q];
            for l in (0..=layer).rev() {
                if POOL_AFTER.contains(&l) && l < layer {
                    needed = needed.iter().flat_map(|&p| [2 * p, 2 * p + 1]).collect();
                }
                needed = needed.iter().flat_map(|&p| [p.wrapping_sub(1), p, p + 1]).collect();
            }
            let (lo, hi) = (*needed.iter().min().unwrap(), *needed.iter().max().unwrap());
            assert_eq!((lo, hi), (r.stride * q - r.left, r.stride * q + r.right), "layer {layer}");
        }
    }

    /// Every block starts on the pooling grid, the owned spans partition the axis, and each owned span has a whole
    /// margin inside its block on every side that is not the image's edge.
    #[test]
    fn axis_splits_are_aligned_partitions_with_whole_margins() {
        for n in [100, 257, 1000, 1999, 2000, 4096, 8191] {
            for owned in [16, 48, 400, 1536] {
                let (margin, align) = (144, 16);
                let (outer, spans) = split_axis(n, owned, margin, align);
                assert!(outer <= n);
                let mut next = 0;
                for s in &spans {
                    assert_eq!(s.owned_start, next, "n {n} owned {owned}");
                    next = s.owned_end;
                    assert!(s.owned_end > s.owned_start);
                    assert_eq!(s.outer_start % align, 0);
                    assert!(s.outer_start + outer <= n);
                    assert!(s.outer_start == 0 || s.owned_start - s.outer_start >= margin, "{s:?}");
                    let end = s.outer_start + outer;
                    assert!(end == n || end - s.owned_end >= margin, "n {n} owned {owned} {s:?} outer {outer}");
                    assert!(s.owned_start % align == 0);
                }
                assert_eq!(next, n);
                if spans.len() > 1 {
                    assert_eq!(outer % align, n % align, "a block at the far edge ends there");
                }
            }
        }
    }

    #[test]
    fn owned_regions_at_each_layer_partition_the_layer() {
        let reach = Reach::of(10);
        for (w, h, side) in [(1000, 700, 208), (2000, 1333, 400), (517, 301, 32)] {
            let g = BlockGrid::new(w, h, side, reach);
            assert!(g.blocks.len() > 1, "{w}x{h}");
            for stride in [1, 2, 4, 8, 16] {
                let (lw, lh) = (w / stride, h / stride);
                let mut seen = vec![0u8; lw * lh];
                for b in &g.blocks {
                    let block_layer = (g.block.0 / stride, g.block.1 / stride);
                    let r = g.owned_at(b, stride, block_layer);
                    assert!(r.x + r.width <= block_layer.0 && r.y + r.height <= block_layer.1);
                    for y in 0..r.height {
                        for x in 0..r.width {
                            let (gx, gy) = (b.outer.x / stride + r.x + x, b.outer.y / stride + r.y + y);
                            seen[gy * lw + gx] += 1;
                        }
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{w}x{h} stride {stride}");
            }
        }
    }

    #[test]
    fn the_grid_is_the_largest_that_fits_or_none() {
        let reach = Reach::of(10);
        // Fits whole: one block.
        let g = choose_grid((1000, 800), reach, None, |_| true).unwrap();
        assert!(g.is_whole());
        assert_eq!(g.block, (1000, 800));
        // A budget of 720 px blocks: of the owned sides whose outer blocks fit (up to 416), the one evaluating the
        // fewest pixels, which is not the largest: 400 px blocks cover 2000 px in 5 with no short last block.
        let small = |g: &BlockGrid| g.block.0 <= 720 && g.block.1 <= 720;
        let g = choose_grid((2000, 1500), reach, None, small).unwrap();
        assert!(g.block.0 <= 720 && g.block.1 <= 720);
        let evaluated = |g: &BlockGrid| g.blocks.len() * g.block.0 * g.block.1;
        for side in (16..=416).step_by(16) {
            assert!(evaluated(&g) <= evaluated(&BlockGrid::new(2000, 1500, side, reach)), "{side}");
        }
        assert_eq!(g.owned_side, 400);
        let bigger = BlockGrid::new(2000, 1500, 432, reach);
        assert!(bigger.block.0 > 720 || bigger.block.1 > 720);
        // Asked for: at most that, rounded down to the alignment.
        let g = choose_grid((1000, 800), reach, Some(100), |_| true).unwrap();
        assert_eq!(g.owned_side, 96);
        assert_eq!(g.blocks.len(), 11 * 9);
        // Nothing fits.
        assert!(choose_grid((1000, 800), reach, None, |g| g.block.0 < 100).is_none());
    }
}

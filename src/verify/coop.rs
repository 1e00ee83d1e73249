//! The tensor-core kernels (conv forward and backward-data, Gram, style gradient) and their software twin.

use super::conv::{conv3x3, conv3x3_backward_data, conv3x3_in_pieces};
use super::gram::gram;
use super::losses::style_grad;
use super::*;
use crate::kernels::coop;

/// The tensor-core kernels checked: for each tiling, the software twin (any adapter) and, where the adapter has
/// the fragments, the cooperative matrices themselves.
fn coop_variants(full: bool) -> Vec<(&'static str, CoopConfig, bool)> {
    // With the half tile narrow GEMMs take (CoopConfig::for_rows: 64 x 64 from 16x16 fragments).
    let tilings = if full {
        vec![coop::tiling(16, 32), coop::tiling(16, 32).for_rows(64), coop::tiling(8, 8)]
    } else {
        vec![coop::tiling(16, 32)]
    };
    let mut v: Vec<_> = tilings.iter().map(|&c| ("gemm_coop twin", c, true)).collect();
    v.extend(
        [coop::tiling(16, 32), coop::tiling(16, 32).for_rows(64), coop::tiling(8, 8)].map(|c| ("gemm_coop", c, false)),
    );
    v
}

/// The tensor-core kernels (conv forward and backward-data, Gram, style gradient) against the f64 reference,
/// grouped as kernel `gemm_coop twin` (runs anywhere) and `gemm_coop` (needs the cooperative matrices).
pub fn cases(full: bool) -> Vec<Case> {
    let conv_shapes: Vec<(usize, usize, usize, usize)> = if full {
        vec![(3, 64, 33, 31), (64, 128, 17, 9), (1, 7, 7, 13), (128, 64, 5, 11), (512, 512, 3, 5), (4, 130, 19, 23)]
    } else {
        vec![(64, 128, 9, 7)]
    };
    let gram_shapes: Vec<(usize, usize, usize)> = if full {
        vec![(64, 17, 9), (3, 33, 31), (65, 12, 25), (128, 4099, 1), (512, 7, 13)]
    } else {
        vec![(64, 17, 9)]
    };
    let style_shapes: Vec<(usize, usize, usize)> =
        if full { vec![(64, 17, 9), (3, 7, 13), (128, 5, 7), (512, 3, 2), (65, 31, 1)] } else { vec![(64, 17, 9)] };
    let mut v = Vec::new();
    for (kernel, config, twin) in coop_variants(full) {
        let needs_fragment = (!twin).then_some(config.fragment);
        let mut push = |name: String, run: Box<dyn Fn(&GpuContext) -> Check + Send + Sync>| {
            v.push(Case { kernel, checks: Vec::new(), name, needs_fragment, run })
        };
        let conv_variant = ConvVariant::Coop { config, twin };
        for (i, &(cin, cout, height, width)) in conv_shapes.iter().enumerate() {
            let s = ConvShape { cin, cout, height, width };
            let name = format!("conv3x3 ({conv_variant:?}) {cin}->{cout} {height}x{width}");
            push(name, Box::new(move |ctx| conv3x3(ctx, s, true, conv_variant, 1600 + i as u64)));
            let name = format!("conv3x3_backward_data ({conv_variant:?}) {cin}->{cout} {height}x{width}");
            push(name, Box::new(move |ctx| conv3x3_backward_data(ctx, s, conv_variant, false, 1700 + i as u64)));
        }
        // Built in pieces along the pixel tiles (large images): 5 pieces of 2 tiles and 1, launched three ways.
        let s = ConvShape { cin: 16, cout: 70, height: 37, width: 29 };
        let name = format!("conv3x3 + backward-data ({conv_variant:?}) 16->70 37x29 in pieces");
        push(name, Box::new(move |ctx| conv3x3_in_pieces(ctx, s, conv_variant, 1750)));
        for (i, &(c, h, w)) in gram_shapes.iter().enumerate() {
            let variant = GramVariant::Coop { config, twin };
            let name = format!("gram ({variant:?}) {c}x{h}x{w} (+rerun bit-identical)");
            push(name, Box::new(move |ctx| gram(ctx, c, h, w, variant, 1800 + i as u64)));
        }
        for (i, &(c, h, w)) in style_shapes.iter().enumerate() {
            let variant = StyleGradVariant::Coop { config, twin };
            let name = format!("style_grad ({variant:?}) {c}x{h}x{w}");
            push(name, Box::new(move |ctx| style_grad(ctx, c, h, w, variant, 1900 + i as u64)));
        }
    }
    v
}

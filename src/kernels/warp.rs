//! Host wrappers of the video's image-space kernels (docs/MATHS.md, "Video"): `warp_bilinear` (an image warped by
//! a flow), `flow_reliability` (where a backward flow can be trusted) and `reliability_smooth` (its Gaussian).
//! Their buffers are dense row-major planes, not framed: they run once per frame, beside the network.

use super::grid::elementwise_grid;
use super::shared::{BILINEAR, ELEMENTWISE};
use super::uniform::{u32_of, uniform};
use super::{check_floats, kernel, max_dim, shader, Dispatch, Kernel};
use crate::error::Result;
use crate::gpu::GpuContext;

uniform! {
    struct WarpParams {
        channels: u32,
        height: u32,
        width: u32,
    }
}

uniform! {
    struct ReliabilityParams {
        height: u32,
        width: u32,
    }
}

uniform! {
    struct SmoothParams {
        height: u32,
        width: u32,
        vertical: u32,
    }
}

/// The kernels this module wraps.
pub(super) const KERNELS: &[Kernel] = &[
    kernel!("warp_bilinear", &[ELEMENTWISE, BILINEAR], WarpParams, "image; flow; mut out"),
    kernel!("flow_reliability", &[ELEMENTWISE, BILINEAR], ReliabilityParams, "backward; forward; mut reliable"),
    kernel!("reliability_smooth", &[ELEMENTWISE], SmoothParams, "src; mut dst"),
];

/// `out` = the `channels` planes of `image` (each `width` x `height`) warped by `flow` (x plane, y plane):
/// each output pixel p samples the image at p + flow(p).
pub fn warp_bilinear(
    ctx: &GpuContext,
    (channels, height, width): (usize, usize, usize),
    image: &wgpu::Buffer,
    flow: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    let n = channels * height * width;
    check_floats("warp_bilinear", "image", image, n)?;
    check_floats("warp_bilinear", "flow", flow, 2 * height * width)?;
    check_floats("warp_bilinear", "out", out, n)?;
    let p =
        WarpParams { channels: u32_of(channels), height: u32_of(height), width: u32_of(width), ..Default::default() };
    Dispatch::new(ctx, &shader("warp_bilinear")?, &p, &[image, flow, out], elementwise_grid(n, max_dim(ctx)))
}

/// `reliable` = 1 where the backward flow agrees with the forward flow and is smooth, else 0 (not yet
/// smoothed).
pub fn flow_reliability(
    ctx: &GpuContext,
    (height, width): (usize, usize),
    backward: &wgpu::Buffer,
    forward: &wgpu::Buffer,
    reliable: &wgpu::Buffer,
) -> Result<Dispatch> {
    let n = height * width;
    check_floats("flow_reliability", "backward", backward, 2 * n)?;
    check_floats("flow_reliability", "forward", forward, 2 * n)?;
    check_floats("flow_reliability", "out", reliable, n)?;
    let p = ReliabilityParams { height: u32_of(height), width: u32_of(width), ..Default::default() };
    let groups = elementwise_grid(n, max_dim(ctx));
    Dispatch::new(ctx, &shader("flow_reliability")?, &p, &[backward, forward, reliable], groups)
}

/// One pass of the reliability map's Gaussian: along rows, or along columns when `vertical`.
pub fn reliability_smooth(
    ctx: &GpuContext,
    (height, width): (usize, usize),
    vertical: bool,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Dispatch> {
    let n = height * width;
    check_floats("reliability_smooth", "src", src, n)?;
    check_floats("reliability_smooth", "dst", dst, n)?;
    let p = SmoothParams {
        height: u32_of(height),
        width: u32_of(width),
        vertical: u32::from(vertical),
        ..Default::default()
    };
    Dispatch::new(ctx, &shader("reliability_smooth")?, &p, &[src, dst], elementwise_grid(n, max_dim(ctx)))
}

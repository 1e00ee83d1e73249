//! Optical flow between two frames on the GPU: DIS (Kroeger et al., ECCV 2016) coarse to fine, as fixed in
//! docs/MATHS.md, "Video: optical flow, warping, the temporal loss", **Flow**, by the kernels of
//! [`crate::kernels::flow`]; and the Middlebury `.flo` file format.
//!
//! A [`FlowEstimator`] is made once for a frame size: it allocates every pyramid level's buffers and builds the
//! whole list of dispatches then (the context only caches pipelines), so each flow is two uploads, one submission
//! and one read. Flows are dense: the u plane (x, to the right) then the v plane (y, down), in pixels, saying where
//! each pixel of the first frame is in the second.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext, Read as BufferRead};
use crate::kernels::flow::{self as kernels, patch_count, pyramid_levels, MIN_LEVEL_SIDE};

pub use crate::kernels::flow::{patch_positions, MAX_LEVEL, PATCH, PATCH_STRIDE};

/// One frame's grey pyramid on the GPU, level 0 (full size) first.
struct Pyramid {
    levels: Vec<wgpu::Buffer>,
}

/// The flow from one pyramid to the other: per level its initial flow (the coarser level's upsampled, zeros at
/// the coarsest), its patches' flows and its dense flow; level 0's dense flow is the result.
struct FlowChain {
    dispatches: Vec<Dispatch>,
    /// Kept alive for the dispatches that bind them.
    _buffers: Vec<wgpu::Buffer>,
    result: wgpu::Buffer,
}

/// The DIS flow between frames of one size, its buffers and dispatches made once.
pub struct FlowEstimator<'c> {
    ctx: &'c GpuContext,
    width: usize,
    height: usize,
    /// The two frames, planar RGB 0–255.
    rgb: [wgpu::Buffer; 2],
    /// Grey conversion and pyramids of both frames (both directions read them).
    pyramid_dispatches: Vec<Dispatch>,
    _pyramids: [Pyramid; 2],
    /// Frame 0 → frame 1, and frame 1 → frame 0.
    forward: FlowChain,
    backward: FlowChain,
}

impl<'c> FlowEstimator<'c> {
    /// An estimator for `width` x `height` frames; both sides must be at least 16 px (the coarsest level's).
    pub fn new(ctx: &'c GpuContext, width: usize, height: usize) -> Result<Self> {
        let levels = pyramid_levels(width, height);
        if levels.is_empty() {
            return Err(Error::InvalidOption(format!(
                "optical flow needs frames of at least {MIN_LEVEL_SIDE}x{MIN_LEVEL_SIDE} px; these are {width}x{height}"
            )));
        }
        let rgb = [
            ctx.storage_buffer("flow frame 0", 3 * width * height)?,
            ctx.storage_buffer("flow frame 1", 3 * width * height)?,
        ];
        let mut pyramid_dispatches = Vec::new();
        let pyramids = [
            Pyramid::new(ctx, &levels, &rgb[0], &mut pyramid_dispatches)?,
            Pyramid::new(ctx, &levels, &rgb[1], &mut pyramid_dispatches)?,
        ];
        let forward = FlowChain::new(ctx, &levels, (&pyramids[0], &pyramids[1]))?;
        let backward = FlowChain::new(ctx, &levels, (&pyramids[1], &pyramids[0]))?;
        Ok(Self { ctx, width, height, rgb, pyramid_dispatches, _pyramids: pyramids, forward, backward })
    }

    /// The frame size (width, height) this estimator takes.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The flow from `frame0` to `frame1` (each planar RGB, 3·H·W values in 0–255): 2·H·W values, the u plane then
    /// the v plane.
    pub fn flow(&self, frame0: &[f32], frame1: &[f32]) -> Result<Vec<f32>> {
        let mut flows = self.run(frame0, frame1, &[&self.forward])?;
        Ok(flows.remove(0))
    }

    /// The flows both ways between `frame0` and `frame1`, (frame 0 → 1, frame 1 → 0), in one submission: the
    /// pyramids are built once for both.
    pub fn flow_pair(&self, frame0: &[f32], frame1: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut flows = self.run(frame0, frame1, &[&self.forward, &self.backward])?;
        let backward = flows.pop().expect("two flows");
        Ok((flows.pop().expect("two flows"), backward))
    }

    /// The buffers the flows of [`FlowEstimator::pair_then`] land in, (frame 0 → 1, frame 1 → 0): dispatches
    /// that bind them use the flows where they are.
    pub fn flow_buffers(&self) -> (&wgpu::Buffer, &wgpu::Buffer) {
        (&self.forward.result, &self.backward.result)
    }

    /// The flows both ways, then `then` (dispatches binding [`FlowEstimator::flow_buffers`]), in one submission,
    /// reading `reads` at the end; the flows stay on the GPU.
    pub fn pair_then(
        &self,
        (frame0, frame1): (&[f32], &[f32]),
        then: &[&Dispatch],
        reads: &[BufferRead<'_>],
    ) -> Result<Vec<Vec<f32>>> {
        self.check_frames(frame0, frame1)?;
        self.upload(frame0, frame1);
        let flows = [&self.forward, &self.backward].into_iter().flat_map(|c| &c.dispatches);
        let encoder = self.ctx.encode(self.pyramid_dispatches.iter().chain(flows).chain(then.iter().copied()));
        self.ctx.submit_and_read(encoder, reads)
    }

    fn check_frames(&self, frame0: &[f32], frame1: &[f32]) -> Result<()> {
        let expected = 3 * self.width * self.height;
        for (i, frame) in [frame0, frame1].iter().enumerate() {
            if frame.len() != expected {
                return Err(Error::InvalidOption(format!(
                    "optical flow: frame {i} has {} values, a {}x{} RGB frame has {expected}",
                    frame.len(),
                    self.width,
                    self.height
                )));
            }
        }
        Ok(())
    }

    fn upload(&self, frame0: &[f32], frame1: &[f32]) {
        self.ctx.queue.write_buffer(&self.rgb[0], 0, bytemuck::cast_slice(frame0));
        self.ctx.queue.write_buffer(&self.rgb[1], 0, bytemuck::cast_slice(frame1));
    }

    /// Uploads both frames, runs the pyramids and `chains` in one submission and reads each chain's flow.
    fn run(&self, frame0: &[f32], frame1: &[f32], chains: &[&FlowChain]) -> Result<Vec<Vec<f32>>> {
        self.check_frames(frame0, frame1)?;
        self.upload(frame0, frame1);
        let dispatches = self.pyramid_dispatches.iter().chain(chains.iter().flat_map(|c| &c.dispatches));
        let encoder = self.ctx.encode(dispatches);
        let n = 2 * self.width * self.height;
        let reads: Vec<BufferRead<'_>> = chains.iter().map(|c| BufferRead::new(&c.result, 0, n)).collect();
        self.ctx.submit_and_read(encoder, &reads)
    }
}

impl Pyramid {
    /// Buffers for a frame's grey levels, and (appended to `dispatches`) the grey conversion of `rgb` into level
    /// 0 and each level's 2x2 means into the next.
    fn new(
        ctx: &GpuContext,
        levels: &[(usize, usize)],
        rgb: &wgpu::Buffer,
        dispatches: &mut Vec<Dispatch>,
    ) -> Result<Self> {
        let buffers = levels
            .iter()
            .enumerate()
            .map(|(s, &(w, h))| ctx.storage_buffer(&format!("flow grey level {s}"), w * h))
            .collect::<Result<Vec<_>>>()?;
        dispatches.push(kernels::grey(ctx, levels[0], rgb, &buffers[0])?);
        for s in 1..levels.len() {
            dispatches.push(kernels::downsample(ctx, levels[s - 1], &buffers[s - 1], &buffers[s])?);
        }
        Ok(Self { levels: buffers })
    }
}

impl FlowChain {
    /// The coarse-to-fine dispatches of the flow from pyramid `from` to `to`: per level from the coarsest, the
    /// patch search from the initial flow, the densification, and (but at level 0) the upsampling that makes the
    /// next level's initial flow.
    fn new(ctx: &GpuContext, levels: &[(usize, usize)], (from, to): (&Pyramid, &Pyramid)) -> Result<Self> {
        let coarsest = levels.len() - 1;
        let mut dispatches = Vec::new();
        let mut buffers = Vec::new();
        // Storage buffers start zeroed: the coarsest level's initial flow stays so.
        let mut init =
            ctx.storage_buffer("flow initial (coarsest: zeros)", 2 * levels[coarsest].0 * levels[coarsest].1)?;
        for s in (0..levels.len()).rev() {
            let (w, h) = levels[s];
            let images = (&from.levels[s], &to.levels[s]);
            let patches =
                ctx.storage_buffer(&format!("flow patches level {s}"), 2 * patch_count(w) * patch_count(h))?;
            let dense = ctx.storage_buffer(&format!("flow level {s}"), 2 * w * h)?;
            dispatches.push(kernels::patch_search(ctx, (w, h), images, &init, &patches)?);
            dispatches.push(kernels::densify(ctx, (w, h), images, &patches, &dense)?);
            buffers.push(init);
            buffers.push(patches);
            if s == 0 {
                return Ok(Self { dispatches, _buffers: buffers, result: dense });
            }
            let finer = levels[s - 1];
            init = ctx.storage_buffer(&format!("flow initial level {}", s - 1), 2 * finer.0 * finer.1)?;
            dispatches.push(kernels::upsample(ctx, (w, h), finer, &dense, &init)?);
            buffers.push(dense);
        }
        unreachable!("the loop returns at level 0")
    }
}

/// The magic number that starts a Middlebury `.flo` file ("PIEH" as bytes).
const FLO_MAGIC: f32 = 202_021.25;

/// Writes a flow (`width` x `height`, the u plane then the v plane) as a Middlebury `.flo` file: the f32 magic
/// 202021.25, the i32 width and height, then rows of interleaved (u, v) f32, all little-endian.
pub fn write_flo(path: &Path, width: usize, height: usize, flow: &[f32]) -> Result<()> {
    let plane = width * height;
    if flow.len() != 2 * plane {
        return Err(Error::InvalidOption(format!(
            "a {width}x{height} flow has {} values, not {}",
            flow.len(),
            2 * plane
        )));
    }
    let side = |n: usize| i32::try_from(n).map_err(|_| Error::InvalidOption(format!("a flow side of {n} px")));
    let mut bytes = Vec::with_capacity(12 + 8 * plane);
    bytes.extend(FLO_MAGIC.to_le_bytes());
    bytes.extend(side(width)?.to_le_bytes());
    bytes.extend(side(height)?.to_le_bytes());
    for i in 0..plane {
        bytes.extend(flow[i].to_le_bytes());
        bytes.extend(flow[plane + i].to_le_bytes());
    }
    // Atomic, like every output: a temporary file beside it, renamed.
    crate::image_io::write_bytes_atomic(path, &bytes)
}

/// Reads a Middlebury `.flo` file: (width, height, the u plane then the v plane).
pub fn read_flo(path: &Path) -> Result<(usize, usize, Vec<f32>)> {
    let io = |e: std::io::Error| Error::Io(format!("reading {}: {e}", path.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(path).map_err(io)?.read_to_end(&mut bytes).map_err(io)?;
    let bad = |why: String| Error::Io(format!("{} is not a .flo file: {why}", path.display()));
    let word = |i: usize| -> [u8; 4] { bytes[4 * i..4 * i + 4].try_into().expect("4 bytes") };
    if bytes.len() < 12 || f32::from_le_bytes(word(0)) != FLO_MAGIC {
        return Err(bad("no PIEH header".into()));
    }
    let (w, h) = (i32::from_le_bytes(word(1)), i32::from_le_bytes(word(2)));
    let (Ok(width), Ok(height)) = (usize::try_from(w), usize::try_from(h)) else {
        return Err(bad(format!("a size of {w}x{h}")));
    };
    let plane = width.checked_mul(height).filter(|p| bytes.len() == 12 + 8 * p);
    let Some(plane) = plane else {
        return Err(bad(format!("{} bytes for a {width}x{height} flow", bytes.len())));
    };
    let mut flow = vec![0.0; 2 * plane];
    for i in 0..plane {
        flow[i] = f32::from_le_bytes(word(3 + 2 * i));
        flow[plane + i] = f32::from_le_bytes(word(4 + 2 * i));
    }
    Ok((width, height, flow))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flo_files_round_trip_and_lay_out_as_middlebury() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.flo");
        let (w, h) = (3, 2);
        let flow: Vec<f32> = (0..2 * w * h).map(|i| i as f32 * 0.5 - 2.0).collect();
        write_flo(&path, w, h, &flow).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"PIEH", "the magic float reads as PIEH");
        assert_eq!(bytes.len(), 12 + 8 * w * h);
        // Interleaved: pixel 1's (u, v) after pixel 0's.
        assert_eq!(f32::from_le_bytes(bytes[20..24].try_into().unwrap()), flow[1]);
        assert_eq!(f32::from_le_bytes(bytes[24..28].try_into().unwrap()), flow[w * h + 1]);
        assert_eq!(read_flo(&path).unwrap(), (w, h, flow.clone()));
        assert!(write_flo(&path, w, h, &flow[1..]).is_err());
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        assert!(read_flo(&path).unwrap_err().to_string().contains("not a .flo file"));
        std::fs::write(&path, b"nope").unwrap();
        assert!(read_flo(&path).is_err());
    }
}

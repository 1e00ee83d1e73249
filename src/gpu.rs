//! GPU context: adapter choice, device limits and features, the pipeline cache, buffer helpers and typed errors.
//!
//! Adapter choice, in order: `GpuOptions::adapter` (the CLI's `--adapter`), then `$NEURAL_STYLE_ADAPTER` (both a
//! case-insensitive substring of the adapter name), else the fastest kind present: discrete > integrated >
//! virtual/other > CPU. `WGPU_BACKEND` (wgpu's own variable) restricts the backends searched.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

/// Environment variable naming the adapter (substring of its name).
pub const ADAPTER_ENV: &str = "NEURAL_STYLE_ADAPTER";

#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Substring of the adapter name; `None` → `$NEURAL_STYLE_ADAPTER` → fastest kind.
    pub adapter: Option<String>,
}

/// One adapter as `neural-style devices` shows it.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
}

impl fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.info;
        let l = &self.limits;
        let has = |feat: wgpu::Features| if self.features.contains(feat) { "yes" } else { "no" };
        writeln!(f, "{}", i.name)?;
        writeln!(f, "  backend: {:?}   type: {:?}", i.backend, i.device_type)?;
        writeln!(f, "  driver: {} {}", i.driver, i.driver_info)?;
        writeln!(
            f,
            "  features: f16 {}  subgroups {}  timestamps {}",
            has(wgpu::Features::SHADER_F16),
            has(wgpu::Features::SUBGROUP),
            has(wgpu::Features::TIMESTAMP_QUERY)
        )?;
        writeln!(
            f,
            "  limits: storage binding {} MiB, buffer {} MiB, workgroup memory {} KiB, invocations/workgroup {}, \
             workgroups/dim {}",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension
        )?;
        write!(
            f,
            "  usable by neural-style: {}",
            match check_adapter_usable(&self.info, &self.limits) {
                Ok(()) => "yes".to_string(),
                Err(why) => format!("no ({why})"),
            }
        )
    }
}

/// What the kernels need from any adapter; an adapter below this is refused with a clear message.
pub fn check_adapter_usable(_info: &wgpu::AdapterInfo, limits: &wgpu::Limits) -> std::result::Result<(), String> {
    if limits.max_compute_invocations_per_workgroup < 256
        || limits.max_compute_workgroup_size_x < 256
        || limits.max_compute_workgroup_size_y < 16
    {
        return Err("needs 256 invocations per workgroup".into());
    }
    if limits.max_compute_workgroup_storage_size < 16 * 1024 {
        return Err("needs 16 KiB of workgroup memory".into());
    }
    if limits.max_storage_buffers_per_shader_stage < 6 {
        return Err("needs 6 storage buffers per shader stage".into());
    }
    Ok(())
}

fn adapters_on(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let desc =
        wgpu::InstanceDescriptor { backends, ..wgpu::InstanceDescriptor::new_without_display_handle() }.with_env();
    let instance = wgpu::Instance::new(desc);
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

/// Every adapter of every backend wgpu sees (after `WGPU_BACKEND`), for `devices` and `selftest --all-adapters`.
pub fn enumerate_adapters() -> Vec<wgpu::Adapter> {
    adapters_on(wgpu::Backends::all())
}

/// The adapters the engine chooses from: with `WGPU_BACKEND` set, exactly those backends; otherwise the
/// native APIs (Vulkan, Metal, DX12) first and GL only when none of them has an adapter. (Opening GL on Linux
/// starts EGL, which costs time and makes Mesa print warnings, for an adapter that would rank last anyway.)
pub fn candidate_adapters() -> Vec<wgpu::Adapter> {
    if wgpu::Backends::from_env().is_some() {
        return adapters_on(wgpu::Backends::all());
    }
    let native = adapters_on(wgpu::Backends::PRIMARY);
    if native.is_empty() {
        adapters_on(wgpu::Backends::GL)
    } else {
        native
    }
}

/// Every adapter wgpu sees, as `neural-style devices` reports them.
pub fn list_adapters() -> Vec<AdapterReport> {
    enumerate_adapters()
        .iter()
        .map(|a| AdapterReport { info: a.get_info(), features: a.features(), limits: a.limits() })
        .collect()
}

/// Rank of a device type: lower is preferred.
pub fn device_type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Picks the index of the adapter to use among `(name, type, backend)` rows: the first whose name contains
/// `wanted` (case-insensitive), or the best-ranked kind; Vulkan/Metal/DX12 are preferred over GL within a kind.
pub fn pick_adapter(
    rows: &[(String, wgpu::DeviceType, wgpu::Backend)],
    wanted: Option<&str>,
) -> std::result::Result<usize, String> {
    if rows.is_empty() {
        return Err(String::new());
    }
    if let Some(w) = wanted {
        let w = w.to_lowercase();
        return rows.iter().position(|(name, _, _)| name.to_lowercase().contains(&w)).ok_or_else(|| {
            let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            format!(" matching \"{w}\" (available: {})", names.join(", "))
        });
    }
    let backend_rank = |b: wgpu::Backend| u32::from(b == wgpu::Backend::Gl);
    Ok((0..rows.len()).min_by_key(|&i| (device_type_rank(rows[i].1), backend_rank(rows[i].2), i)).unwrap())
}

/// Key of a cached pipeline: kernel file name plus its `override` constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: &'static str,
    pub constants: Vec<(&'static str, u32)>,
}

/// The device, its queue, and everything derived from the adapter.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    /// Errors no scope caught (validation, OOM inside a submit); checked after each wait.
    uncaptured: Arc<Mutex<Option<wgpu::Error>>>,
    lost: Arc<Mutex<Option<String>>>,
}

impl GpuContext {
    pub fn new(opts: &GpuOptions) -> Result<Self> {
        let adapters = candidate_adapters();
        let rows: Vec<_> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                (i.name, i.device_type, i.backend)
            })
            .collect();
        let env = std::env::var(ADAPTER_ENV).ok().filter(|s| !s.is_empty());
        let wanted = opts.adapter.clone().or(env);
        let idx = pick_adapter(&rows, wanted.as_deref()).map_err(|why| {
            if rows.is_empty() {
                Error::NoAdapter(
                    " (install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers` for the CPU, \
                     or check WGPU_BACKEND)"
                        .into(),
                )
            } else {
                Error::NoAdapter(why)
            }
        })?;
        Self::from_adapter(adapters.into_iter().nth(idx).expect("index from pick_adapter"))
    }

    /// Opens a device on this adapter with its real limits and the optional features we use.
    pub fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let adapter_limits = adapter.limits();
        check_adapter_usable(&info, &adapter_limits)
            .map_err(|why| Error::DeviceRequest { adapter: info.name.clone(), reason: why })?;

        // Ask for the adapter's real limits (lavapipe: 128 MiB storage bindings; an H200: 2 GiB), and the
        // optional features we have kernels for.
        let wanted_features = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
        let features = adapter.features() & wanted_features;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("neural-style"),
            required_features: features,
            required_limits: adapter_limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::DeviceRequest { adapter: info.name.clone(), reason: e.to_string() })?;

        let uncaptured: Arc<Mutex<Option<wgpu::Error>>> = Arc::new(Mutex::new(None));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap();
            if slot.is_none() {
                *slot = Some(e);
            }
        }));
        let lost: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                *lost_sink.lock().unwrap() = Some(format!("{reason:?}: {msg}"));
            }
        });
        let limits = device.limits();
        Ok(Self { device, queue, info, features, limits, pipelines: Mutex::new(HashMap::new()), uncaptured, lost })
    }

    pub fn adapter_name(&self) -> &str {
        &self.info.name
    }

    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The cached pipeline for `key`, compiled from `kernels/<key.kernel>.wgsl` on first use.
    pub fn pipeline(&self, key: &PipelineKey) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self.pipelines.lock().unwrap().get(key) {
            return Ok(p.clone());
        }
        let source = crate::kernels::source(key.kernel)
            .ok_or_else(|| Error::Validation(format!("unknown kernel {}", key.kernel)))?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(key.kernel),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let constants: Vec<(&str, f64)> = key.constants.iter().map(|&(n, v)| (n, f64::from(v))).collect();
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(key.kernel),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Validation(format!("kernel {}: {e}", key.kernel)));
        }
        let p = Arc::new(pipeline);
        self.pipelines.lock().unwrap().insert(key.clone(), p.clone());
        Ok(p)
    }

    /// A storage buffer of `len` f32 (or u32) elements; OOM becomes [`Error::OutOfMemory`].
    pub fn storage_buffer(&self, label: &str, len: usize) -> Result<wgpu::Buffer> {
        let size = (len.max(1) * 4) as u64;
        if size > self.limits.max_buffer_size {
            return Err(Error::OutOfMemory(format!(
                ": buffer {label} needs {} MiB, the adapter allows {} MiB per buffer; try a smaller --image-size",
                size >> 20,
                self.limits.max_buffer_size >> 20
            )));
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::OutOfMemory(format!(
                " allocating {label} ({} MiB): {e}; try a smaller --image-size (or --style-scale)",
                size >> 20
            )));
        }
        Ok(buf)
    }

    /// A storage buffer holding `data`.
    pub fn buffer_from(&self, label: &str, data: &[f32]) -> Result<wgpu::Buffer> {
        let buf = self.storage_buffer(label, data.len())?;
        if !data.is_empty() {
            self.queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
        }
        Ok(buf)
    }

    /// A uniform buffer holding `params` (a `#[repr(C)]` Pod struct).
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, params: &T) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(params);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.len().next_multiple_of(16) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buf, 0, bytes);
        buf
    }

    /// Fills a buffer with NaN (tests poison outputs so an unwritten element fails).
    pub fn poison(&self, buf: &wgpu::Buffer) {
        let n = (buf.size() / 4) as usize;
        self.queue.write_buffer(buf, 0, bytemuck::cast_slice(&vec![f32::NAN; n]));
    }

    /// A command encoder holding `dispatches` in one compute pass, in order.
    pub fn encode<'d>(
        &self,
        dispatches: impl IntoIterator<Item = &'d crate::kernels::Dispatch>,
    ) -> wgpu::CommandEncoder {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        encoder
    }

    /// Records `dispatches` into one compute pass and submits them; waits for completion.
    pub fn run(&self, dispatches: &[&crate::kernels::Dispatch]) -> Result<()> {
        self.submit_and_wait(self.encode(dispatches.iter().copied()).finish())
    }

    /// Submits a command buffer and blocks until it has run; surfaces device loss and uncaptured errors.
    pub fn submit_and_wait(&self, commands: wgpu::CommandBuffer) -> Result<()> {
        let idx = self.queue.submit([commands]);
        self.wait(Some(idx))
    }

    pub fn wait(&self, idx: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let res = self.device.poll(wgpu::PollType::Wait { submission_index: idx, timeout: None });
        self.check()?;
        res.map_err(|e| Error::DeviceLost(e.to_string()))?;
        Ok(())
    }

    /// Returns the first error the device reported outside an error scope, if any.
    pub fn check(&self) -> Result<()> {
        if let Some(msg) = self.lost.lock().unwrap().clone() {
            return Err(Error::DeviceLost(msg));
        }
        if let Some(e) = self.uncaptured.lock().unwrap().take() {
            return Err(match e {
                wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory(String::new()),
                wgpu::Error::Validation { description, .. } => Error::Validation(description),
                wgpu::Error::Internal { description, .. } => Error::Gpu(description),
            });
        }
        Ok(())
    }

    /// A buffer the CPU can map to read results back (`COPY_DST | MAP_READ`).
    pub fn staging_buffer(&self, label: &str, len: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Maps a staging buffer whose copy has been submitted, and returns its first `len` f32.
    pub fn map_f32(&self, staging: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let slice = staging.slice(..(len * 4) as u64);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait(None)?;
        rx.recv_timeout(Duration::from_secs(60))
            .map_err(|_| Error::DeviceLost("buffer map never completed".into()))?
            .map_err(|e| Error::Gpu(format!("buffer map failed: {e}")))?;
        let view = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("buffer map failed: {e:?}")))?;
        let out = bytemuck::cast_slice::<u8, f32>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Copies `len` f32 starting at element `offset` back to the CPU.
    pub fn read_f32(&self, buf: &wgpu::Buffer, offset: usize, len: usize) -> Result<Vec<f32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let staging = self.staging_buffer("readback", len);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buf, (offset * 4) as u64, &staging, 0, (len * 4) as u64);
        self.queue.submit([encoder.finish()]);
        self.map_f32(&staging, len)
    }

    /// Whole buffer as f32.
    pub fn read_all(&self, buf: &wgpu::Buffer) -> Result<Vec<f32>> {
        self.read_f32(buf, 0, (buf.size() / 4) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::{Backend, DeviceType};

    fn rows() -> Vec<(String, DeviceType, Backend)> {
        vec![
            ("llvmpipe (LLVM 15.0.6, 256 bits)".into(), DeviceType::Cpu, Backend::Vulkan),
            ("NVIDIA H200".into(), DeviceType::DiscreteGpu, Backend::Vulkan),
            ("llvmpipe GL".into(), DeviceType::Cpu, Backend::Gl),
            ("Intel UHD".into(), DeviceType::IntegratedGpu, Backend::Vulkan),
        ]
    }

    #[test]
    fn picks_fastest_kind_by_default() {
        assert_eq!(pick_adapter(&rows(), None), Ok(1));
        let cpu_only = vec![rows()[2].clone(), rows()[0].clone()];
        // Vulkan preferred over GL within the same kind.
        assert_eq!(pick_adapter(&cpu_only, None), Ok(1));
    }

    #[test]
    fn substring_is_case_insensitive_and_errors_name_the_choices() {
        assert_eq!(pick_adapter(&rows(), Some("intel")), Ok(3));
        assert_eq!(pick_adapter(&rows(), Some("LLVMPIPE")), Ok(0));
        let err = pick_adapter(&rows(), Some("radeon")).unwrap_err();
        assert!(err.contains("radeon") && err.contains("NVIDIA H200"), "{err}");
        assert!(pick_adapter(&[], None).is_err());
    }
}

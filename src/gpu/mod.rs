//! The GPU context: the device and queue, the adapter's real limits and optional features, typed errors, the
//! pipeline cache and buffer helpers. It knows nothing of kernels: a kernel wrapper hands it WGSL source
//! ([`Shader`]) and gets back a cached pipeline, then records [`Dispatch`]es.

mod adapter;
mod pipeline;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use adapter::{
    candidate_adapters, check_adapter_usable, device_type_rank, enumerate_adapters, list_adapters, pick_adapter,
    AdapterReport, ADAPTER_ENV,
};
use pipeline::PipelineKey;
pub use pipeline::{Dispatch, Pieces, Shader};

use crate::error::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Substring of the adapter name; `None` → `$NEURAL_STYLE_ADAPTER` → fastest kind.
    pub adapter: Option<String>,
    /// Choose kernel variants as for this kind of device instead of the adapter's own (tests and benchmarks
    /// run the GPU kernels on lavapipe, or the CPU-shaped ones on a GPU). `None` → `$NEURAL_STYLE_KERNELS`
    /// (`cpu` or `gpu`) → the adapter's device type.
    pub kernels_for: Option<wgpu::DeviceType>,
}

/// The sides (8, 16) of the square f16 x f16 -> f32 cooperative-matrix configurations an adapter offers.
pub fn cooperative_fragments(adapter: &wgpu::Adapter) -> Vec<u32> {
    if !adapter.features().contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return Vec::new();
    }
    let mut sides: Vec<u32> = adapter
        .cooperative_matrix_properties()
        .iter()
        .filter(|p| {
            p.m_size == p.n_size
                && p.n_size == p.k_size
                && matches!(p.m_size, 8 | 16)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
        .map(|p| p.m_size)
        .collect();
    sides.sort_unstable();
    sides.dedup();
    sides
}

/// The most bytes one binding may hold, whatever the adapter reports: 2³¹ − 1 rounded down to whole f32. wgpu
/// hands array lengths to shaders as u32 bytes and naga clamps indices with them; on Metal the binding limit is
/// the device's largest buffer (often past 4 GiB), where those lengths would wrap and accesses land on the wrong
/// elements. Below 2³¹ every element index also fits an i32.
pub const MAX_BINDING_BYTES: u64 = (1 << 31) - 4;

/// The device's limits as the engine uses them: storage bindings and buffers at most [`MAX_BINDING_BYTES`] (every
/// buffer the engine makes is bound whole).
pub fn engine_limits(mut limits: wgpu::Limits) -> wgpu::Limits {
    limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(MAX_BINDING_BYTES);
    limits.max_buffer_size = limits.max_buffer_size.min(MAX_BINDING_BYTES);
    limits
}

/// Environment variable forcing the kernel family: `cpu` or `gpu`.
pub const KERNELS_ENV: &str = "NEURAL_STYLE_KERNELS";

/// The device type `$NEURAL_STYLE_KERNELS` asks kernels to be chosen for, if set to `cpu` or `gpu`.
pub fn kernels_for_env() -> Option<wgpu::DeviceType> {
    match std::env::var(KERNELS_ENV).ok()?.to_ascii_lowercase().as_str() {
        "cpu" => Some(wgpu::DeviceType::Cpu),
        "gpu" => Some(wgpu::DeviceType::DiscreteGpu),
        _ => None,
    }
}

/// The device, its queue, and everything derived from the adapter.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    /// The device's limits with bindings clamped to [`MAX_BINDING_BYTES`] ([`engine_limits`]).
    pub limits: wgpu::Limits,
    /// The device type kernel variants are chosen for ([`GpuOptions::kernels_for`]; normally the adapter's).
    pub kernels_for: wgpu::DeviceType,
    /// Sides of the square f16 x f16 -> f32 cooperative-matrix fragments the device was opened with (empty:
    /// no tensor cores through wgpu).
    pub coop_fragments: Vec<u32>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    /// Errors no scope caught (validation, OOM inside a submit); checked after each wait.
    uncaptured: Arc<Mutex<Option<wgpu::Error>>>,
    lost: Arc<Mutex<Option<String>>>,
    /// Times the host has blocked on the GPU (each wait for a submission, each buffer map).
    host_waits: AtomicU64,
    /// Bytes of the storage buffers made so far (an upper bound of what is live: dropped buffers stay counted).
    allocated: AtomicU64,
    /// The buffer results are read back through, kept and grown: a new one per read would cost an allocation
    /// (50 MB for a 2048² image) and a map setup every time.
    readback: Mutex<Option<wgpu::Buffer>>,
}

/// A map of a staging buffer asked for and not yet taken ([`GpuContext::request_map`]).
pub struct MapRequest {
    rx: std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
    len: usize,
}

/// Part of a storage buffer to read back: `len` f32 from element `offset`.
#[derive(Clone, Copy, Debug)]
pub struct Read<'b> {
    pub buffer: &'b wgpu::Buffer,
    pub offset: usize,
    pub len: usize,
}

impl<'b> Read<'b> {
    pub fn new(buffer: &'b wgpu::Buffer, offset: usize, len: usize) -> Self {
        Self { buffer, offset, len }
    }
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
        let mut ctx = Self::from_adapter(adapters.into_iter().nth(idx).expect("index from pick_adapter"))?;
        if let Some(t) = opts.kernels_for.or_else(kernels_for_env) {
            ctx.kernels_for = t;
        }
        Ok(ctx)
    }

    /// Opens a device on this adapter with its real limits and the optional features we use.
    pub fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let adapter_limits = adapter.limits();
        check_adapter_usable(&info, &adapter_limits)
            .map_err(|why| Error::DeviceRequest { adapter: info.name.clone(), reason: why })?;

        // Ask for the adapter's real limits (lavapipe: 128 MiB storage bindings; an H200: 2 GiB), and the
        // optional features present: kernel variants are chosen from what the device then has.
        let wanted_features = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
        let mut features = adapter.features() & wanted_features;
        // Tensor cores: wgpu's cooperative matrices are experimental (an explicit opt-in) and only square
        // f16 x f16 -> f32 fragments of side 8 or 16 are usable from WGSL.
        let coop_fragments = cooperative_fragments(&adapter);
        let coop =
            !coop_fragments.is_empty() && features.contains(wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP);
        if coop {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        let request = |features: wgpu::Features, experimental: bool| {
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("neural-style"),
                required_features: features,
                required_limits: adapter_limits.clone(),
                // SAFETY of the opt-in: only the cooperative-matrix feature is experimental, and every shader
                // using it is validated by naga in the tests and checked against the f32 path on first use.
                experimental_features: if experimental {
                    unsafe { wgpu::ExperimentalFeatures::enabled() }
                } else {
                    wgpu::ExperimentalFeatures::disabled()
                },
                ..Default::default()
            }))
        };
        let (device, queue, coop_fragments) = match request(features, coop) {
            Ok((d, q)) => (d, q, if coop { coop_fragments } else { Vec::new() }),
            // An adapter that lists cooperative matrices but will not open a device with them: without.
            Err(_) if coop => {
                features.remove(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
                let (d, q) = request(features, false)
                    .map_err(|e| Error::DeviceRequest { adapter: info.name.clone(), reason: e.to_string() })?;
                (d, q, Vec::new())
            }
            Err(e) => return Err(Error::DeviceRequest { adapter: info.name.clone(), reason: e.to_string() }),
        };

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
        let limits = engine_limits(device.limits());
        let kernels_for = kernels_for_env().unwrap_or(info.device_type);
        Ok(Self {
            device,
            queue,
            info,
            features,
            limits,
            kernels_for,
            coop_fragments,
            pipelines: Mutex::new(HashMap::new()),
            uncaptured,
            lost,
            host_waits: AtomicU64::new(0),
            allocated: AtomicU64::new(0),
            readback: Mutex::new(None),
        })
    }

    pub fn adapter_name(&self) -> &str {
        &self.info.name
    }

    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Whether this adapter may run [`Shader::trusted`] modules without naga's runtime checks: only where the
    /// driver itself keeps out-of-range accesses inside the bound buffers. wgpu turns on Vulkan's
    /// `robustBufferAccess` wherever the device has it (a core feature every conformant driver, lavapipe
    /// included, supports); other backends keep the checks.
    pub fn trusts_modules(&self) -> bool {
        self.info.backend == wgpu::Backend::Vulkan
    }

    /// The cached pipeline of `shader` with these `override` constants, compiled on first use.
    pub fn pipeline(&self, shader: &Shader, constants: &[(&'static str, u32)]) -> Result<Arc<wgpu::ComputePipeline>> {
        let trusted = shader.trusted && self.trusts_modules();
        let key = PipelineKey { name: shader.name.clone(), trusted, constants: constants.to_vec() };
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&shader.name),
            source: wgpu::ShaderSource::Wgsl(shader.wgsl.clone()),
        };
        let module = if trusted {
            // SAFETY: trusted shaders index only in range (their index arithmetic is unit-tested) and have
            // constant trip counts; the driver's robust buffer access still bounds every access.
            unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        } else {
            self.device.create_shader_module(desc)
        };
        let constants_f64: Vec<(&str, f64)> = constants.iter().map(|&(n, v)| (n, f64::from(v))).collect();
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&shader.name),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            // Every kernel writes its workgroup memory before reading it (said at each `var<workgroup>`), so the
            // zeroing wgpu adds by default is skipped: on Metal, DX12, GL and pre-1.3 Vulkan naga emits it as one
            // invocation storing every word, then a barrier, in every workgroup.
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants_f64,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Validation(format!("kernel {}: {e}", shader.name)));
        }
        let p = Arc::new(pipeline);
        self.pipelines.lock().unwrap().insert(key, p.clone());
        Ok(p)
    }

    /// The largest storage buffer a kernel can bind, in bytes.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
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
                " allocating {label} ({} MiB, after {} MiB of this run's buffers): {}; try a smaller --image-size \
                 (or --style-scale)",
                size >> 20,
                self.allocated_bytes() >> 20,
                crate::error::one_line(&e.to_string())
            )));
        }
        self.allocated.fetch_add(size, Ordering::Relaxed);
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
    pub fn encode<'d>(&self, dispatches: impl IntoIterator<Item = &'d Dispatch>) -> wgpu::CommandEncoder {
        self.encode_within(dispatches, None)
    }

    /// [`GpuContext::encode`], no launch holding more than `gflop_limit` of a GEMM built in pieces
    /// ([`Dispatch::record_within`]).
    pub fn encode_within<'d>(
        &self,
        dispatches: impl IntoIterator<Item = &'d Dispatch>,
        gflop_limit: Option<f64>,
    ) -> wgpu::CommandEncoder {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in dispatches {
                d.record_within(&mut pass, gflop_limit);
            }
        }
        encoder
    }

    /// Command encoders holding `dispatches` in order, one compute pass each, a new one after every dispatch
    /// `cut_after` picks: each becomes its own command buffer (kept short for a display's watchdog; the caller
    /// decides where, and the most work one launch holds, `gflop_limit`: see [`crate::submission`]). Under a
    /// limit, a dispatch launched in parts gets a command buffer per launch (macOS's watchdog acts per command
    /// buffer, not between launches).
    pub fn encode_cut<'d>(
        &self,
        dispatches: impl IntoIterator<Item = &'d Dispatch>,
        cut_after: impl Fn(&Dispatch) -> bool,
        gflop_limit: Option<f64>,
    ) -> Vec<wgpu::CommandEncoder> {
        let mut encoders = Vec::new();
        let mut block: Vec<&Dispatch> = Vec::new();
        for d in dispatches {
            if gflop_limit.is_some() && d.launch_count(gflop_limit) > 1 {
                if !block.is_empty() {
                    encoders.push(self.encode_within(block.drain(..), gflop_limit));
                }
                for launch in d.launches(gflop_limit) {
                    let mut encoder = self.device.create_command_encoder(&Default::default());
                    d.record_launch(&mut encoder.begin_compute_pass(&Default::default()), launch);
                    encoders.push(encoder);
                }
                continue;
            }
            block.push(d);
            if cut_after(d) {
                encoders.push(self.encode_within(block.drain(..), gflop_limit));
            }
        }
        if !block.is_empty() || encoders.is_empty() {
            encoders.push(self.encode_within(block, gflop_limit));
        }
        encoders
    }

    /// Submits command encoders in one call, in order.
    pub fn submit(&self, encoders: Vec<wgpu::CommandEncoder>) -> wgpu::SubmissionIndex {
        self.queue.submit(encoders.into_iter().map(wgpu::CommandEncoder::finish))
    }

    /// Records `dispatches` into one compute pass and submits them; waits for completion.
    pub fn run(&self, dispatches: &[&Dispatch]) -> Result<()> {
        self.submit_and_wait(self.encode(dispatches.iter().copied()).finish())
    }

    /// Submits a command buffer and blocks until it has run; surfaces device loss and uncaptured errors.
    pub fn submit_and_wait(&self, commands: wgpu::CommandBuffer) -> Result<()> {
        let idx = self.queue.submit([commands]);
        self.wait(Some(idx))
    }

    /// Blocks until submission `idx` (None: everything submitted) has run; surfaces device loss and errors.
    pub fn wait(&self, idx: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.host_waits.fetch_add(1, Ordering::Relaxed);
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
                wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory(format!(
                    " while running (the GPU had {} MiB of this run's buffers); try a smaller --image-size, \
                     --style-scale or --lbfgs-history",
                    self.allocated_bytes() >> 20
                )),
                wgpu::Error::Validation { description, .. } => Error::Validation(description),
                wgpu::Error::Internal { description, .. } => Error::Gpu(description),
            });
        }
        Ok(())
    }

    /// Bytes of storage buffers this context has made (counted when made, never uncounted).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// How many times the host has blocked on the GPU so far ([`GpuContext::wait`], and each read, which waits
    /// once for its copy and map).
    pub fn host_waits(&self) -> u64 {
        self.host_waits.load(Ordering::Relaxed)
    }

    /// Appends copies of `reads` to `enc`, submits it, waits once and returns each read's f32 in order. The copies
    /// go through one staging buffer the context keeps (grown to the largest read so far).
    pub fn submit_and_read(&self, enc: wgpu::CommandEncoder, reads: &[Read<'_>]) -> Result<Vec<Vec<f32>>> {
        self.submit_all_and_read(vec![enc], reads)
    }

    /// [`GpuContext::submit_and_read`] for several command encoders, submitted in one call in order (the copies
    /// go at the end of the last).
    pub fn submit_all_and_read(
        &self,
        mut encoders: Vec<wgpu::CommandEncoder>,
        reads: &[Read<'_>],
    ) -> Result<Vec<Vec<f32>>> {
        let total: usize = reads.iter().map(|r| r.len).sum();
        if total == 0 {
            let idx = self.submit(encoders);
            return self.wait(Some(idx)).map(|()| vec![Vec::new(); reads.len()]);
        }
        if encoders.is_empty() {
            encoders.push(self.device.create_command_encoder(&Default::default()));
        }
        let mut slot = self.readback.lock().unwrap();
        if slot.as_ref().is_none_or(|b| b.size() < (total * 4) as u64) {
            *slot = Some(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: (total.next_power_of_two() * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let staging = slot.as_ref().expect("created above");
        let enc = encoders.last_mut().expect("one encoder at least");
        let mut at = 0;
        for r in reads.iter().filter(|r| r.len > 0) {
            enc.copy_buffer_to_buffer(r.buffer, (r.offset * 4) as u64, staging, (at * 4) as u64, (r.len * 4) as u64);
            at += r.len;
        }
        self.submit(encoders);
        let flat = match self.map_f32(staging, total) {
            Ok(f) => f,
            Err(e) => {
                // Never leave the shared buffer mapped (or half-mapped) for the next read.
                *slot = None;
                return Err(e);
            }
        };
        let mut rest = flat.as_slice();
        Ok(reads
            .iter()
            .map(|r| {
                let (this, next) = rest.split_at(r.len);
                rest = next;
                this.to_vec()
            })
            .collect())
    }

    /// A buffer the CPU can map to read results back (`COPY_DST | MAP_READ`), for reads a caller keeps in
    /// flight itself ([`GpuContext::request_map`]).
    pub fn staging_buffer(&self, label: &str, len: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Asks for the first `len` f32 of a staging buffer whose copy has been submitted, without waiting: the map
    /// completes with the next wait that covers that submission ([`GpuContext::mapped_f32`] takes it).
    pub fn request_map(&self, staging: &wgpu::Buffer, len: usize) -> MapRequest {
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..(len * 4) as u64).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        MapRequest { rx, len }
    }

    /// The values of a [`GpuContext::request_map`] whose copy went in submission `idx`: at once when a wait since
    /// has completed the map, else after waiting for that submission only (later ones keep the GPU busy).
    pub fn mapped_f32(
        &self,
        staging: &wgpu::Buffer,
        request: MapRequest,
        idx: wgpu::SubmissionIndex,
    ) -> Result<Vec<f32>> {
        self.device.poll(wgpu::PollType::Poll).map_err(|e| Error::DeviceLost(e.to_string()))?;
        let done = request.rx.try_recv().ok();
        if done.is_none() {
            self.wait(Some(idx))?;
        }
        // On failure the stylizer that owns `staging` is done (the run stops with the error).
        self.take_mapped(staging, request, done)
    }

    /// The values of a map once its submission has run (`done`: its outcome, if already received).
    fn take_mapped(
        &self,
        staging: &wgpu::Buffer,
        request: MapRequest,
        done: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    ) -> Result<Vec<f32>> {
        let done = match done {
            Some(r) => r,
            None => request
                .rx
                .recv_timeout(Duration::from_secs(60))
                .map_err(|_| Error::DeviceLost("buffer map never completed".into()))?,
        };
        // Our buffers are never destroyed while mapped: a failed map means the device is gone.
        done.map_err(|e| Error::DeviceLost(format!("buffer map failed: {e}")))?;
        let slice = staging.slice(..(request.len * 4) as u64);
        let view = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("buffer map failed: {e:?}")))?;
        let out = bytemuck::cast_slice::<u8, f32>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Maps a staging buffer whose copy has been submitted, and returns its first `len` f32 (one wait, for
    /// everything submitted). On failure the caller drops the buffer: its map state is unknown.
    fn map_f32(&self, staging: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let request = self.request_map(staging, len);
        self.wait(None)?;
        self.take_mapped(staging, request, None)
    }

    /// Copies `len` f32 starting at element `offset` back to the CPU (one wait).
    pub fn read_f32(&self, buf: &wgpu::Buffer, offset: usize, len: usize) -> Result<Vec<f32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let enc = self.device.create_command_encoder(&Default::default());
        Ok(self.submit_and_read(enc, &[Read::new(buf, offset, len)])?.remove(0))
    }

    /// Whole buffer as f32.
    pub fn read_all(&self, buf: &wgpu::Buffer) -> Result<Vec<f32>> {
        self.read_f32(buf, 0, (buf.size() / 4) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_clamped_below_two_gib_whatever_the_adapter_reports() {
        // An Apple GPU reports its largest buffer (here 16 GiB) as its binding limit.
        let metal = wgpu::Limits {
            max_storage_buffer_binding_size: 16 << 30,
            max_buffer_size: 16 << 30,
            ..wgpu::Limits::default()
        };
        let l = engine_limits(metal);
        assert_eq!(l.max_storage_buffer_binding_size, MAX_BINDING_BYTES);
        assert_eq!(l.max_buffer_size, MAX_BINDING_BYTES);
        const { assert!(MAX_BINDING_BYTES < 1 << 31 && MAX_BINDING_BYTES.is_multiple_of(4)) };
        // lavapipe's 128 MiB stays as it is.
        let lavapipe = wgpu::Limits { max_storage_buffer_binding_size: 128 << 20, ..wgpu::Limits::default() };
        assert_eq!(engine_limits(lavapipe).max_storage_buffer_binding_size, 128 << 20);
    }
}

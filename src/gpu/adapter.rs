//! Which adapter the engine runs on: enumerating what wgpu sees, refusing adapters below the engine's needs,
//! and picking one. Order: `GpuOptions::adapter` (the CLI's `--adapter`), then `$NEURAL_STYLE_ADAPTER` (both a
//! case-insensitive substring of the adapter name), else the fastest kind present: discrete > integrated >
//! virtual/other > CPU. `WGPU_BACKEND` (wgpu's own variable) restricts the backends searched.

use std::fmt;

/// Environment variable naming the adapter (substring of its name).
pub const ADAPTER_ENV: &str = "NEURAL_STYLE_ADAPTER";

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

/// Allocations past 95 % of the memory budget the driver reports fail with out-of-memory instead of spilling
/// into system memory (5–20x slower, and silent); past 99 % the device is lost rather than thrashing. wgpu applies
/// these where the backend reports a budget: D3D12, and Vulkan with `VK_EXT_memory_budget` (NVIDIA, AMD, Intel and
/// Mesa drivers have it).
pub const MEMORY_BUDGET: wgpu::MemoryBudgetThresholds =
    wgpu::MemoryBudgetThresholds { for_resource_creation: Some(95), for_device_loss: Some(99) };

fn adapters_on(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let desc = wgpu::InstanceDescriptor {
        backends,
        memory_budget_thresholds: MEMORY_BUDGET,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    }
    .with_env();
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

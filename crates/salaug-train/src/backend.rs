//! The backend chosen by cargo feature, for the `salaug` binary, the benchmarks and the tests:
//! the only file of salaug that names a backend for a program. The libraries (salaug-core,
//! salaug-models, salaug-augment and the rest of this crate) are generic over the backend.
//! With several backend features on, the first of `flex`, `ndarray`, `wgpu`, `cuda` wins.
//! [`parse_device`] turns the device names of `train.devices` into its devices.

/// The backend selected by the enabled cargo feature.
#[cfg(feature = "flex")]
pub type Selected = burn::backend::Flex;
/// The backend selected by the enabled cargo feature.
#[cfg(all(not(feature = "flex"), feature = "ndarray"))]
pub type Selected = burn::backend::NdArray;
/// The backend selected by the enabled cargo feature.
#[cfg(all(not(feature = "flex"), not(feature = "ndarray"), feature = "wgpu"))]
pub type Selected = burn::backend::Wgpu;
/// The backend selected by the enabled cargo feature.
#[cfg(all(
    not(feature = "flex"),
    not(feature = "ndarray"),
    not(feature = "wgpu"),
    feature = "cuda"
))]
pub type Selected = burn::backend::Cuda;

/// The name of the selected backend (`flex`, `ndarray`, `wgpu` or `cuda`).
pub const NAME: &str = if cfg!(feature = "flex") {
    "flex"
} else if cfg!(feature = "ndarray") {
    "ndarray"
} else if cfg!(feature = "wgpu") {
    "wgpu"
} else {
    "cuda"
};

/// The device names the selected backend takes (for messages).
pub const DEVICE_NAMES: &str = if cfg!(any(feature = "flex", feature = "ndarray")) {
    "default, cpu"
} else if cfg!(feature = "wgpu") {
    "default, wgpu:N (discrete GPU N), wgpu:integrated:N, wgpu:virtual:N, wgpu:cpu"
} else {
    "default, cuda, cuda:N"
};

/// A device of the selected backend.
pub type Device = burn::tensor::Device<Selected>;

/// The device named `name` (`train.devices`, `--devices`), checked against the selected
/// backend: a name of another backend's devices is an error that says which build takes it.
pub fn parse_device(name: &str) -> Result<Device, String> {
    runtime_present()?;
    let name = name.trim();
    if name == "default" {
        return Ok(Device::default());
    }
    let family = name.split(':').next().unwrap_or_default();
    let index = |s: &str| -> Result<usize, String> {
        s.parse()
            .map_err(|_| format!("device `{name}`: `{s}` is not a device index"))
    };
    let parsed: Option<Result<Device, String>> = select(name, &index);
    match parsed {
        Some(device) => device,
        None if ["cpu", "cuda", "wgpu"].contains(&family) => Err(format!(
            "device `{name}` is not a device of this build's backend ({NAME}, which takes \
             {DEVICE_NAMES}); {}",
            match family {
                "cuda" => "build salaug with `--no-default-features --features cuda`",
                "wgpu" => "build salaug with `--no-default-features --features wgpu`",
                _ => "a CPU backend is built by default (`--features flex`)",
            }
        )),
        None => Err(format!(
            "unknown device `{name}` (this build's backend {NAME} takes {DEVICE_NAMES})"
        )),
    }
}

/// The devices named by `names` (one [`parse_device`] each).
pub fn parse_devices(names: &[String]) -> anyhow::Result<Vec<Device>> {
    names
        .iter()
        .map(|n| parse_device(n).map_err(|e| anyhow::anyhow!("train.devices: {e}")))
        .collect()
}

#[cfg(any(feature = "flex", feature = "ndarray"))]
fn select(
    name: &str,
    _index: &dyn Fn(&str) -> Result<usize, String>,
) -> Option<Result<Device, String>> {
    (name == "cpu").then(|| Ok(Device::default()))
}

#[cfg(all(not(feature = "flex"), not(feature = "ndarray"), feature = "wgpu"))]
fn select(
    name: &str,
    index: &dyn Fn(&str) -> Result<usize, String>,
) -> Option<Result<Device, String>> {
    use burn::backend::wgpu::WgpuDevice;
    let parts: Vec<&str> = name.split(':').collect();
    Some(match parts.as_slice() {
        ["wgpu", "cpu"] => Ok(WgpuDevice::Cpu),
        ["wgpu", n] => index(n).map(WgpuDevice::DiscreteGpu),
        ["wgpu", "integrated", n] => index(n).map(WgpuDevice::IntegratedGpu),
        ["wgpu", "virtual", n] => index(n).map(WgpuDevice::VirtualGpu),
        _ => return None,
    })
}

#[cfg(all(
    not(feature = "flex"),
    not(feature = "ndarray"),
    not(feature = "wgpu"),
    feature = "cuda"
))]
fn select(
    name: &str,
    index: &dyn Fn(&str) -> Result<usize, String>,
) -> Option<Result<Device, String>> {
    use burn::backend::cuda::CudaDevice;
    let parts: Vec<&str> = name.split(':').collect();
    let i = match parts.as_slice() {
        ["cuda"] => Ok(0),
        ["cuda", n] => index(n),
        _ => return None,
    };
    Some(i.and_then(|i| {
        // cudarc reports the devices of the driver it loads; without one, the run fails at
        // its first step with burn's message.
        let count = std::panic::catch_unwind(|| {
            <Selected as burn::tensor::backend::Backend>::device_count(0)
        })
        .unwrap_or(usize::MAX);
        if i >= count {
            Err(format!(
                "device `{name}`: this machine has {count} CUDA device(s) (cuda:0 to cuda:{})",
                count.saturating_sub(1)
            ))
        } else {
            Ok(CudaDevice::new(i))
        }
    }))
}

/// Whether this machine can run the selected backend: the CUDA build needs the NVIDIA
/// driver's `libcuda.so.1` (cudarc loads it at the first kernel, and burn panics in a device
/// thread when it is absent); the other builds run anywhere.
fn runtime_present() -> Result<(), String> {
    #[cfg(all(
        not(feature = "flex"),
        not(feature = "ndarray"),
        not(feature = "wgpu"),
        feature = "cuda"
    ))]
    {
        const NAMES: [&str; 3] = ["libcuda.so.1", "libcuda.so", "libnvcuda.so.1"];
        // SAFETY: loading the driver library runs its initialisers, as cudarc does when it
        // loads the same file; nothing of it is called here, and it is unloaded at once.
        let found = NAMES
            .iter()
            .any(|n| unsafe { libloading::Library::new(*n) }.is_ok());
        if !found {
            return Err(format!(
                "this is the CUDA build, and this machine has no NVIDIA driver library ({}; \
                 LD_LIBRARY_PATH={}); run the default CPU build (`--features flex`) here",
                NAMES.join(", "),
                std::env::var("LD_LIBRARY_PATH").unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// Tunes the C allocator for tensor workloads; programs call it first thing in `main`.
///
/// CPU backends allocate a fresh buffer for almost every tensor, many of them megabytes large.
/// glibc serves large requests with `mmap` and trims the heap top back to the kernel when it
/// is freed, so each step pays page faults and the kernel's zeroing of every new page again.
/// With the mmap threshold at its maximum (32 MiB) and heap trimming off, freed buffers are
/// reused instead. On the training step of `cargo xtask bench peer` (small CNN, saliency) this
/// was 15–25 % faster and its peak memory lower (docs/benchmarks.md). A library leaves this to
/// the program; elsewhere than glibc it does nothing.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_are_checked_against_the_backend() {
        assert!(parse_device("default").is_ok());
        #[cfg(any(feature = "flex", feature = "ndarray"))]
        {
            assert!(parse_device("cpu").is_ok());
            let e = parse_device("cuda:1").unwrap_err();
            assert!(
                e.contains("`cuda:1`") && e.contains("--features cuda"),
                "{e}"
            );
            let e = parse_device("wgpu:0").unwrap_err();
            assert!(e.contains("--features wgpu") && e.contains(NAME), "{e}");
        }
        let e = parse_device("tpu:0").unwrap_err();
        assert!(
            e.contains("unknown device `tpu:0`") && e.contains(DEVICE_NAMES),
            "{e}"
        );
        let e = parse_devices(&["default".into(), "gpu".into()]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("train.devices: unknown device `gpu`"),
            "{e}"
        );
    }
}

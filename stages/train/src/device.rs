//! Where training and prediction run: `cpu` (burn's flex backend), `cuda`, `cuda:N`, or
//! `auto` (the first GPU when this build and machine have one, else the CPU).

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`; use cpu, cuda, cuda:N or auto")]
    Unknown(String),
    #[error(
        "device `{0}` asks for CUDA, but this build has no CUDA support; rebuild with \
         `cargo build --release --features cuda`, or use `device: cpu`"
    )]
    NotBuilt(String),
    #[error(
        "device `{requested}` asks for CUDA, but {reason}; install the NVIDIA driver (libcuda.so.1) and CUDA's \
         NVRTC (libnvrtc.so), or use `device: cpu`"
    )]
    NoGpu { requested: String, reason: String },
}

/// Parses and checks a device name. CUDA is checked here, before any kernel runs:
/// burn-cuda loads the driver lazily and panics in a worker thread when it is missing.
pub fn resolve(name: &str) -> Result<Device, DeviceError> {
    let name = name.trim();
    let cuda_index = match name {
        "cpu" => return Ok(Device::Cpu),
        "auto" => return Ok(if gpus().is_ok_and(|n| n > 0) { Device::Cuda(0) } else { Device::Cpu }),
        "cuda" => 0,
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => i,
            _ => return Err(DeviceError::Unknown(name.to_string())),
        },
    };
    match gpus() {
        Ok(n) if cuda_index < n => Ok(Device::Cuda(cuda_index)),
        Ok(n) => Err(DeviceError::NoGpu {
            requested: name.to_string(),
            reason: format!("the driver reports {n} GPU(s) (indices from 0)"),
        }),
        Err(Missing::NotBuilt) => Err(DeviceError::NotBuilt(name.to_string())),
        Err(Missing::Driver(reason)) => Err(DeviceError::NoGpu { requested: name.to_string(), reason }),
    }
}

enum Missing {
    #[cfg_attr(feature = "cuda", allow(dead_code))]
    NotBuilt,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    Driver(String),
}

#[cfg(not(feature = "cuda"))]
fn gpus() -> Result<usize, Missing> {
    Err(Missing::NotBuilt)
}

#[cfg(feature = "cuda")]
fn gpus() -> Result<usize, Missing> {
    use cudarc::driver::{result, sys};
    // SAFETY: only probes whether the shared libraries can be opened.
    if !unsafe { sys::is_culib_present() } {
        return Err(Missing::Driver("the NVIDIA driver library (libcuda.so.1) is not installed".into()));
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(Missing::Driver("CUDA's runtime compiler library (libnvrtc.so) is not installed".into()));
    }
    result::init().map_err(|e| Missing::Driver(format!("the driver failed to start ({e})")))?;
    result::device::get_count()
        .map(|n| n.max(0) as usize)
        .map_err(|e| Missing::Driver(format!("the driver cannot count GPUs ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_cuda_is_refused_clearly_without_a_gpu() {
        assert_eq!(resolve("cpu").unwrap(), Device::Cpu);
        assert!(matches!(resolve("gpu"), Err(DeviceError::Unknown(_))));
        assert!(matches!(resolve("cuda:x"), Err(DeviceError::Unknown(_))));
        // This machine has no GPU: `auto` falls back to the CPU and `cuda` is an error that
        // says why, in either build.
        if gpus().is_err() {
            assert_eq!(resolve("auto").unwrap(), Device::Cpu);
            let message = resolve("cuda:0").unwrap_err().to_string();
            if cfg!(feature = "cuda") {
                assert!(message.contains("is not installed") || message.contains("driver"), "{message}");
            } else {
                assert!(message.contains("--features cuda"), "{message}");
            }
        }
    }
}

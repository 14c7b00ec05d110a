//! Where training and prediction run: `cpu` (burn's flex backend), `cuda`, `cuda:N`, or
//! `auto` (the first GPU when this build and machine have one, else the CPU). Names are
//! parsed with the config; the machine is asked only where a stage runs.

use crate::TrainError;
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

/// A device as a config or the command line names it: `cpu`, `auto`, `cuda` (= `cuda:0`)
/// or `cuda:N`. Parsing looks at no hardware: a pipeline validated or exported here may
/// run on pods with GPUs. [`DeviceName::resolve`] checks it where the stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceName {
    Cpu,
    Auto,
    Cuda(usize),
}

impl std::str::FromStr for DeviceName {
    type Err = TrainError;

    fn from_str(text: &str) -> Result<Self, TrainError> {
        match text.trim() {
            "cpu" => Ok(DeviceName::Cpu),
            "auto" => Ok(DeviceName::Auto),
            "cuda" => Ok(DeviceName::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(DeviceName::Cuda(i)),
                _ => Err(TrainError::UnknownDevice(other.to_string())),
            },
        }
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceName::Cpu => f.write_str("cpu"),
            DeviceName::Auto => f.write_str("auto"),
            DeviceName::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl Serialize for DeviceName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for DeviceName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DeviceName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`cpu`, `cuda`, `cuda:N` or `auto` (the first GPU when this build and machine have one)",
            "pattern": "^(cpu|auto|cuda(:[0-9]+)?)$"
        })
    }
}

impl DeviceName {
    /// Why this machine cannot use it, for `validate` to warn (the pods may have a GPU).
    pub fn host_warnings(self) -> Vec<String> {
        match self.resolve() {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("this machine cannot run it: {e}")],
        }
    }

    /// The device on this machine. CUDA is checked here, before any kernel runs: burn-cuda
    /// loads the driver lazily and panics in a worker thread when it is missing.
    pub fn resolve(self) -> Result<Device, TrainError> {
        let index = match self {
            DeviceName::Cpu => return Ok(Device::Cpu),
            DeviceName::Auto => return Ok(if gpus().is_ok_and(|n| n > 0) { Device::Cuda(0) } else { Device::Cpu }),
            DeviceName::Cuda(i) => i,
        };
        let requested = self.to_string();
        match gpus() {
            Ok(n) if index < n => Ok(Device::Cuda(index)),
            Ok(n) => {
                Err(TrainError::NoGpu { requested, reason: format!("the driver reports {n} GPU(s) (indices from 0)") })
            }
            Err(Missing::NotBuilt) => Err(TrainError::NotBuilt(requested)),
            Err(Missing::Driver(reason)) => Err(TrainError::NoGpu { requested, reason }),
        }
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
        let parse = |t: &str| t.parse::<DeviceName>();
        assert_eq!(parse("cpu").unwrap().resolve().unwrap(), Device::Cpu);
        assert_eq!(parse("cuda").unwrap(), DeviceName::Cuda(0));
        assert_eq!(parse("cuda:2").unwrap().to_string(), "cuda:2");
        assert!(matches!(parse("gpu"), Err(TrainError::UnknownDevice(_))));
        assert!(matches!(parse("cuda:x"), Err(TrainError::UnknownDevice(_))));
        // Without a GPU `auto` falls back to the CPU and `cuda` is an error that says why,
        // in either build.
        if gpus().is_err() {
            assert_eq!(DeviceName::Auto.resolve().unwrap(), Device::Cpu);
            let message = DeviceName::Cuda(0).resolve().unwrap_err().to_string();
            if cfg!(feature = "cuda") {
                assert!(message.contains("is not installed") || message.contains("driver"), "{message}");
            } else {
                assert!(message.contains("--features cuda"), "{message}");
            }
        }
    }
}

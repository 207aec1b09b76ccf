//! Device names as users type them.

use tch::Device;

use crate::{Error, Result};

/// Parses `cpu`, `cuda`, `cuda:N` or `auto` (CUDA if available, else CPU).
/// Asking for CUDA on a machine without it is an error rather than a silent fallback.
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim().to_ascii_lowercase();
    let cuda = |i: usize| {
        if tch::Cuda::is_available() && i < tch::Cuda::device_count() as usize {
            Ok(Device::Cuda(i))
        } else {
            Err(Error::Device(s.clone()))
        }
    };
    match s.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" | "gpu" => cuda(0),
        other => match other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(i) => cuda(i),
            None => Err(Error::Device(s.clone())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device("CPU").unwrap(), Device::Cpu);
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        if !tch::Cuda::is_available() {
            assert!(parse_device("cuda").is_err());
            assert_eq!(parse_device("auto").unwrap(), Device::Cpu);
        }
    }
}

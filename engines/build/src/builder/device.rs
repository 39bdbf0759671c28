//! The machine `offramp build` builds for, as the manifest records it
//! (`build.target_device`): the CPU's model, or the GPU as the TensorRT
//! loader will name it.

use std::process::Command;

pub(super) fn cpu_name() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name") || l.starts_with("Model"))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    });
    format!(
        "{} CPU ({})",
        std::env::consts::ARCH,
        model.unwrap_or_else(|| "unknown model".into())
    )
}

/// The GPU as [`offramp_engines::manifest::device_identity`] names it, the way the
/// TensorRT loader will see it: from CUDA when this build has it, else from
/// `nvidia-smi`, else the device tree's model (which the loader will refuse
/// as a mismatch rather than run a plan on the wrong GPU).
pub(super) fn gpu_name() -> String {
    #[cfg(feature = "tensorrt")]
    if let Ok(id) = offramp_engines_tensorrt::cuda_device_identity() {
        return id;
    }
    if let Ok(out) = Command::new("nvidia-smi")
        .args(["--query-gpu=name,compute_cap", "--format=csv,noheader"])
        .output()
    {
        if out.status.success() {
            if let Some(id) = parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout)) {
                return id;
            }
        }
    }
    std::fs::read_to_string("/proc/device-tree/model")
        .map(|s| s.trim_end_matches('\0').trim().to_string())
        .unwrap_or_else(|_| "unknown NVIDIA GPU".into())
}

/// `NVIDIA H100 80GB HBM3, 9.0` → `NVIDIA H100 80GB HBM3 (compute 9.0)`.
pub fn parse_nvidia_smi(csv: &str) -> Option<String> {
    let line = csv.lines().next()?;
    let (name, cap) = line.rsplit_once(',')?;
    let (maj, min) = cap.trim().split_once('.')?;
    Some(offramp_engines::manifest::device_identity(
        name,
        maj.parse().ok()?,
        min.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_names() {
        assert_eq!(
            parse_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0\n").as_deref(),
            Some("NVIDIA H100 80GB HBM3 (compute 9.0)")
        );
        assert_eq!(parse_nvidia_smi("garbage"), None);
    }
}

//! `offramp bundle --target jetson`: one file to copy onto the robot. It
//! holds the aarch64 binary, the engine set's ONNX segments and manifest
//! (TensorRT plans are built on the device, for its GPU and TensorRT), the
//! zenoh configs, the systemd units with restart policy and real-time
//! priority, an env file, an install script, and BUNDLE.json listing every
//! file with its SHA-256.

use crate::args::print_report;
use anyhow::Context;
use flate2::write::GzEncoder;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const SERVICE: &str = include_str!("../../../../deploy/jetson/offramp.service");
const BRIDGE_SERVICE: &str = include_str!("../../../../deploy/jetson/offramp-bridge.service");
const ENV: &str = include_str!("../../../../deploy/jetson/offramp.env");
const INSTALL: &str = include_str!("../../../../deploy/jetson/install.sh");
/// config/zenoh/ as shipped: the secured configurations and the recipe
/// for their certificates.
const ZENOH_CONFIGS: [(&str, &str, u32); 6] = [
    (
        "runtime-tls.json5",
        include_str!("../../../../config/zenoh/runtime-tls.json5"),
        0o644,
    ),
    (
        "runtime-offload-tls.json5",
        include_str!("../../../../config/zenoh/runtime-offload-tls.json5"),
        0o644,
    ),
    (
        "bridge-tls.json5",
        include_str!("../../../../config/zenoh/bridge-tls.json5"),
        0o644,
    ),
    (
        "operator-tls.json5",
        include_str!("../../../../config/zenoh/operator-tls.json5"),
        0o644,
    ),
    (
        "offload-server-tls.json5",
        include_str!("../../../../config/zenoh/offload-server-tls.json5"),
        0o644,
    ),
    (
        "make-certs.sh",
        include_str!("../../../../config/zenoh/make-certs.sh"),
        0o755,
    ),
];

/// ELF e_machine of AArch64.
const EM_AARCH64: u16 = 183;

#[derive(Serialize)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Serialize)]
pub struct BundleReport {
    pub target: String,
    pub out: String,
    pub offramp_version: &'static str,
    /// The newest glibc symbol version the binary needs (JetPack 5: 2.31).
    pub glibc_required: Option<String>,
    pub files: Vec<FileEntry>,
}

/// The default binary: the `jetson` profile's cross build under
/// CARGO_TARGET_DIR or ./target.
fn default_binary() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    dir.join("aarch64-unknown-linux-gnu/jetson/offramp")
}

/// Checks the ELF header: 64-bit little-endian AArch64 executable.
fn check_aarch64(bytes: &[u8], path: &Path) -> anyhow::Result<()> {
    let what = || path.display().to_string();
    anyhow::ensure!(
        bytes.len() > 20 && &bytes[..4] == b"\x7fELF",
        "{}: not an ELF file",
        what()
    );
    anyhow::ensure!(
        bytes[4] == 2 && bytes[5] == 1,
        "{}: not a 64-bit little-endian ELF",
        what()
    );
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    anyhow::ensure!(
        machine == EM_AARCH64,
        "{}: built for ELF machine {machine}, not AArch64 ({EM_AARCH64}); \
         cross-build it first (README, \"Jetson\")",
        what()
    );
    Ok(())
}

/// The highest `GLIBC_x.y` version string in the binary.
pub fn glibc_required(bytes: &[u8]) -> Option<String> {
    let mut best: Option<(u32, u32)> = None;
    let pat = b"GLIBC_2.";
    let mut i = 0;
    while let Some(p) = bytes[i..].windows(pat.len()).position(|w| w == pat) {
        let start = i + p + pat.len();
        let digits: Vec<u8> = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        if let Ok(minor) = std::str::from_utf8(&digits).unwrap_or("").parse::<u32>() {
            if best.is_none_or(|b| (2, minor) > b) {
                best = Some((2, minor));
            }
        }
        i = start;
    }
    best.map(|(a, b)| format!("{a}.{b}"))
}

#[derive(clap::Args)]
pub struct Args {
    /// Only `jetson` (aarch64-unknown-linux-gnu; JetPack 5, 6 and 7).
    #[arg(long, default_value = "jetson")]
    pub target: String,
    #[arg(long)]
    pub out: PathBuf,
    /// The aarch64 binary (default: $CARGO_TARGET_DIR or ./target,
    /// aarch64-unknown-linux-gnu/jetson/offramp).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    #[arg(long, default_value = "engines/models/demo")]
    pub engines: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    print_report(a.json, &run(&a)?, |r| {
        println!(
            "wrote {} ({} files; binary needs glibc {})",
            r.out,
            r.files.len(),
            r.glibc_required.as_deref().unwrap_or("?")
        )
    })
}

pub fn run(a: &Args) -> anyhow::Result<BundleReport> {
    anyhow::ensure!(
        a.target == "jetson",
        "--target {}: the only bundle target is `jetson` (aarch64, JetPack 5 and 6)",
        a.target
    );
    let binary = a.binary.clone().unwrap_or_else(default_binary);
    let bin = std::fs::read(&binary).with_context(|| {
        format!(
            "reading the aarch64 binary {} (build it with `cargo zigbuild --profile jetson -p offramp \
             --target aarch64-unknown-linux-gnu.2.31`, or pass --binary)",
            binary.display()
        )
    })?;
    check_aarch64(&bin, &binary)?;
    let set = offramp_engines::EngineSet::open(&a.engines)?;
    let set_name = a
        .engines
        .canonicalize()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "engines".into());
    // The manifest, the ONNX segments, and model.toml (what `offramp build
    // --backend tensorrt` reads on the device); nothing built for this
    // machine (plans, caches) travels.
    let mut engine_files = vec![set.manifest_path.clone()];
    for entry in std::fs::read_dir(&a.engines)? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "onnx")
            || p.file_name().is_some_and(|n| n == "model.toml")
        {
            engine_files.push(p);
        }
    }
    engine_files.sort();

    let file =
        std::fs::File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, flate2::Compression::default()));
    let mut files = Vec::new();
    let mut add = |path: String, data: &[u8], mode: u32| -> anyhow::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, format!("offramp/{path}"), data)?;
        files.push(FileEntry {
            path,
            bytes: data.len() as u64,
            sha256: format!("{:x}", Sha256::digest(data)),
        });
        Ok(())
    };
    add("bin/offramp".into(), &bin, 0o755)?;
    for f in &engine_files {
        let data = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        add(
            format!("engines/{set_name}/{}", name.unwrap_or_default()),
            &data,
            0o644,
        )?;
    }
    add("config/offramp.env".into(), ENV.as_bytes(), 0o644)?;
    for (name, text, mode) in ZENOH_CONFIGS {
        add(format!("config/zenoh/{name}"), text.as_bytes(), mode)?;
    }
    add("systemd/offramp.service".into(), SERVICE.as_bytes(), 0o644)?;
    add(
        "systemd/offramp-bridge.service".into(),
        BRIDGE_SERVICE.as_bytes(),
        0o644,
    )?;
    add("install.sh".into(), INSTALL.as_bytes(), 0o755)?;
    let mut report = BundleReport {
        target: "jetson (aarch64-unknown-linux-gnu)".into(),
        out: a.out.display().to_string(),
        offramp_version: env!("CARGO_PKG_VERSION"),
        glibc_required: glibc_required(&bin),
        files,
    };
    let listing = serde_json::to_vec_pretty(&report)?;
    let mut h = tar::Header::new_gnu();
    h.set_size(listing.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "offramp/BUNDLE.json", &listing[..])?;
    tar.into_inner()?.finish()?;
    report.files.sort_by(|x, y| x.path.cmp(&y.path));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_and_elf_checks() {
        let blob = b"xxGLIBC_2.17\0GLIBC_2.31\0GLIBC_2.4\0GLIBC_PRIVATE";
        assert_eq!(glibc_required(blob).as_deref(), Some("2.31"));
        assert_eq!(glibc_required(b"none"), None);
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        let e = check_aarch64(&elf, Path::new("bin"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("machine 62"), "{e}");
        elf[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        check_aarch64(&elf, Path::new("bin")).unwrap();
        assert!(check_aarch64(b"#!/bin/sh", Path::new("s")).is_err());
    }
}

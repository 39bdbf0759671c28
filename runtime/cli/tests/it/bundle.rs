//! `offramp bundle`: what goes onto the robot. (scripts/test.sh bundles the
//! real cross-built binary; here a minimal AArch64 ELF stands in for it.)

use crate::common;

use common::{demo_dir, offramp};
use sha2::{Digest, Sha256};
use std::io::Read;

fn fake_aarch64_elf(path: &std::path::Path) -> Vec<u8> {
    let mut b = vec![0u8; 256];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // 64-bit
    b[5] = 1; // little endian
    b[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    b.extend_from_slice(b"GLIBC_2.17\0GLIBC_2.28\0GLIBC_2.31\0");
    std::fs::write(path, &b).unwrap();
    b
}

/// `offramp bundle --target jetson` of `bin` and the demo set into `out`.
fn bundle(bin: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> (bool, String, String) {
    let d = demo_dir();
    let mut args = vec![
        "bundle",
        "--target",
        "jetson",
        "--binary",
        bin.to_str().unwrap(),
        "--engines",
        d.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    offramp(&args)
}

#[test]
fn bundle_holds_binary_engines_configs_units_and_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("offramp-aarch64");
    let bin_bytes = fake_aarch64_elf(&bin);
    let out = dir.path().join("b.tar.gz");
    let (ok, stdout, err) = bundle(&bin, &out, &["--json"]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["glibc_required"], "2.31");

    let gz = flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap());
    let mut tar = tar::Archive::new(gz);
    let mut entries = std::collections::BTreeMap::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mode = e.header().mode().unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        entries.insert(path, (mode, data));
    }
    for want in [
        "offramp/bin/offramp",
        "offramp/install.sh",
        "offramp/systemd/offramp.service",
        "offramp/systemd/offramp-bridge.service",
        "offramp/config/offramp.env",
        "offramp/config/zenoh/bridge-tls.json5",
        "offramp/config/zenoh/runtime-tls.json5",
        "offramp/config/zenoh/operator-tls.json5",
        "offramp/config/zenoh/runtime-offload-tls.json5",
        "offramp/config/zenoh/offload-server-tls.json5",
        "offramp/config/zenoh/make-certs.sh",
        "offramp/engines/demo/manifest.toml",
        "offramp/engines/demo/model.toml",
        "offramp/BUNDLE.json",
    ] {
        assert!(
            entries.contains_key(want),
            "{want} missing: {:?}",
            entries.keys()
        );
    }
    // The engine set travels as ONNX: one file per exit segment and head.
    let onnx = entries.keys().filter(|k| k.ends_with(".onnx")).count();
    assert!(onnx >= 5, "{onnx} ONNX files");
    assert_eq!(entries["offramp/bin/offramp"].0 & 0o777, 0o755);
    assert_eq!(entries["offramp/install.sh"].0 & 0o777, 0o755);
    assert_eq!(entries["offramp/bin/offramp"].1, bin_bytes);
    // The unit restarts and runs real-time.
    let unit = String::from_utf8(entries["offramp/systemd/offramp.service"].1.clone()).unwrap();
    for line in [
        "Restart=always",
        "CPUSchedulingPolicy=fifo",
        "ExecStart=/opt/offramp/bin/offramp run",
    ] {
        assert!(unit.contains(line), "{line}");
    }
    // BUNDLE.json's checksums are the files'.
    let listing: serde_json::Value =
        serde_json::from_slice(&entries["offramp/BUNDLE.json"].1).unwrap();
    for f in listing["files"].as_array().unwrap() {
        let data = &entries[&format!("offramp/{}", f["path"].as_str().unwrap())].1;
        assert_eq!(f["sha256"], format!("{:x}", Sha256::digest(data)), "{f}");
    }
}

#[test]
fn bundle_refuses_a_host_binary_and_other_targets() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.tar.gz");
    let host = env!("CARGO_BIN_EXE_offramp");
    let (ok, _, err) = offramp(&["bundle", "--binary", host, "--out", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("not AArch64"), "{err}");
    let (ok, _, err) = offramp(&["bundle", "--target", "pi", "--out", "x.tgz"]);
    assert!(!ok);
    assert!(err.contains("--target pi"), "{err}");
    let (ok, _, err) = offramp(&[
        "bundle",
        "--binary",
        "/nonexistent/offramp",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("/nonexistent/offramp") && err.contains("zigbuild"),
        "{err}"
    );
}

/// install.sh refuses a bundle whose binary needs a newer glibc than the
/// machine has (a JetPack 6 build on JetPack 5), before touching anything;
/// one this machine's glibc can load gets past that check.
#[test]
fn install_script_checks_glibc_first() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("offramp-aarch64");
    let mut elf = fake_aarch64_elf(&bin);
    let run_install = |elf: &[u8], name: &str| {
        std::fs::write(&bin, elf).unwrap();
        let out = dir.path().join(format!("{name}.tar.gz"));
        let (ok, _, err) = bundle(&bin, &out, &[]);
        assert!(ok, "{err}");
        let unpacked = dir.path().join(name);
        std::fs::create_dir_all(&unpacked).unwrap();
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap());
        tar::Archive::new(gz).unpack(&unpacked).unwrap();
        std::process::Command::new("bash")
            .arg(unpacked.join("offramp/install.sh"))
            .output()
            .unwrap()
    };
    elf.extend_from_slice(b"GLIBC_2.99\0");
    let o = run_install(&elf, "too-new");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("needs glibc 2.99") && err.contains("JetPack 5 bundle"),
        "{err}"
    );
    // A 2.31 binary passes the glibc check and stops at the next one (root
    // or the machine's architecture). On an aarch64 machine as root it would
    // really install: not here.
    if std::env::consts::ARCH == "aarch64" {
        return;
    }
    let o = run_install(&fake_aarch64_elf(&bin), "ok");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(!err.contains("glibc"), "{err}");
    assert!(err.contains("root") || err.contains("aarch64"), "{err}");
}

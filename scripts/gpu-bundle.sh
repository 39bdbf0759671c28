#!/usr/bin/env bash
# Makes the GPU check's bundle on a development machine, for a Linux x86_64
# machine with an NVIDIA GPU that has neither cargo nor network access (an
# air-gapped lab workstation, a locked-down cloud GPU box):
#
#   scripts/gpu-bundle.sh [OUT.tar.gz]      (default $OFFRAMP_CACHE/reports/offramp-gpu.tar.gz)
#
# then, there:
#
#   tar xzf offramp-gpu.tar.gz && offramp-gpu/scripts/gpu-check.sh --prebuilt offramp-gpu
#
# It holds, stripped: `offramp` (every feature, TensorRT and CUDA included,
# both loaded at run time), the CUDA preprocessing and TensorRT backend test
# executables and the shim's CPU test double they run against; and the files
# those read: the demo set, the tiny test model, the shim's sources (built
# there against the TensorRT found), gpu-check.sh and check-trt-shim.sh.
# BUNDLE.json lists every file with its size and SHA-256, the commit, and
# the glibc the executables need. Refuses a bundle over 60 MiB.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cache=${OFFRAMP_CACHE:-$HOME/.cache/offramp}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
out=${1:-$cache/reports/offramp-gpu.tar.gz}
limit_mib=60
# One feature set with the test step, so nothing is compiled twice.
flags=(--release --workspace --all-features)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
b=$work/offramp-gpu
mkdir -p "$b/bin" "$b/tests" "$b/lib" "$b/scripts" "$b/engines/models/testdata" "$b/engines/tensorrt"

echo "==> building offramp and the GPU test executables (${flags[*]})"
cargo build -q "${flags[@]}" --bins
msgs=$work/cargo.json
cargo test -q "${flags[@]}" --no-run --test cuda_preprocess --test tensorrt \
  --message-format=json >"$msgs"
# The executables and the directory build.rs wrote the shim's test double to.
python3 - "$msgs" "$b" <<'PY'
import json, shutil, sys
msgs, b = sys.argv[1], sys.argv[2]
tests, double = {}, None
for line in open(msgs):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        tests[m["target"]["name"]] = m["executable"]
    if m.get("reason") == "build-script-executed" and "offramp-engines-tensorrt" in m["package_id"]:
        double = m["out_dir"] + "/libofframp_trt_double.so"
missing = {"cuda_preprocess", "tensorrt"} - tests.keys()
if missing or double is None:
    sys.exit(f"cargo did not report {sorted(missing) or 'the TensorRT test double'}")
for name, exe in tests.items():
    shutil.copy(exe, f"{b}/tests/{name}")
shutil.copy(double, f"{b}/lib/libofframp_trt_double.so")
PY
cp "$CARGO_TARGET_DIR/release/offramp" "$b/bin/offramp"
for f in "$b"/bin/* "$b"/tests/* "$b"/lib/*; do
  strip "$f"
done

cp -r engines/models/demo "$b/engines/models/demo"
cp -r engines/models/testdata/tiny "$b/engines/models/testdata/tiny"
cp -r engines/tensorrt/shim "$b/engines/tensorrt/shim"
cp scripts/gpu-check.sh scripts/check-trt-shim.sh "$b/scripts/"

glibc=$(for f in "$b"/bin/* "$b"/tests/*; do readelf -V "$f"; done |
  grep -o 'GLIBC_2\.[0-9]*' | sort -uV | tail -n1)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
python3 - "$b" "$commit" "$glibc" <<'PY'
import hashlib, json, os, sys
b, commit, glibc = sys.argv[1:]
files = []
for root, _, names in os.walk(b):
    for n in sorted(names):
        p = os.path.join(root, n)
        data = open(p, "rb").read()
        files.append({"path": os.path.relpath(p, b), "bytes": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()})
json.dump({"commit": commit, "target": "x86_64-unknown-linux-gnu", "needs": glibc,
           "run": "scripts/gpu-check.sh --prebuilt DIR [REPORT.json]",
           "files": sorted(files, key=lambda f: f["path"])},
          open(os.path.join(b, "BUNDLE.json"), "w"), indent=2)
PY

mkdir -p "$(dirname "$out")"
tar -C "$work" -czf "$out" offramp-gpu
bytes=$(stat -c %s "$out")
unpacked=$(du -sb "$b" | cut -f1)
printf '{"bundle": "%s", "bytes": %d, "unpacked_bytes": %d, "limit_bytes": %d, "needs": "%s", "commit": "%s"}\n' \
  "$out" "$bytes" "$unpacked" $((limit_mib << 20)) "$glibc" "$commit"
if ((bytes > limit_mib << 20)); then
  echo "the GPU bundle is $((bytes >> 20)) MiB, over its $limit_mib MiB" >&2
  exit 1
fi

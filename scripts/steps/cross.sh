#!/usr/bin/env bash
# The Jetson binary: one aarch64 build linked against glibc 2.31, which runs
# on JetPack 5 (glibc 2.31), 6 (2.35) and 7 (2.39) alike, since glibc is
# backward compatible, and without the simulator or the QEMU harness (the
# robot's build: --no-default-features) but with the TensorRT backend and
# CUDA preprocessing, both loaded at run time (the TensorRT shim is built on
# the robot by the bundle's install script). Checks the glibc it needs,
# smoke-tests it under qemu-aarch64 (the exit chain on replayed frames,
# recording and calibrating on recorded frames, the wire protocol against
# the host build of the firmware, the TensorRT shim
# loader against an aarch64 build of the shim's test double), and bundles it.
source "$(dirname "$0")/env.sh"
want=2.31

step "aarch64 build for the Jetson (glibc $want: JetPack 5, 6 and 7)"
cargo zigbuild -q --profile jetson -p offramp --no-default-features --features tensorrt,cuda \
  --target "aarch64-unknown-linux-gnu.$want"
bin=$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/jetson/offramp
glibc=$(readelf -V "$bin" | grep -o 'GLIBC_2\.[0-9]*' | sort -V | tail -n1)
echo "$(file -b "$bin" | cut -d, -f1-2) needs $glibc"
if [ "$(printf '%s\nGLIBC_%s\n' "$glibc" "$want" | sort -V | tail -n1)" != "GLIBC_$want" ]; then
  echo "the Jetson binary needs $glibc, newer than glibc $want"
  exit 1
fi

step "smoke test under qemu-aarch64"
[ -x "$offramp" ] || cargo build -q "${profile_flags[@]}"
replay=$reports/smoke-replay
rm -rf "$replay"
"$offramp" sim record --episodes 1 --out "$replay"
qemu_arm=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
"${qemu_arm[@]}" "$bin" --version
"${qemu_arm[@]}" "$bin" --log warn run --engines engines/models/demo --camera "replay:$replay" \
  --fps 10 --frames 20 --json | tee "$reports/aarch64-run.json"
"${qemu_arm[@]}" "$bin" --log warn firmware session --seconds 1 --json |
  tee "$reports/aarch64-firmware-session.json"
# Calibration on recorded episodes in the robot's build (no simulator): the
# frames re-recorded through a camera source, thresholds solved on them.
cal=$reports/aarch64-calibrate
rm -rf "$cal" && mkdir -p "$cal" && cp engines/models/demo/* "$cal/"
"${qemu_arm[@]}" "$bin" --log warn record --camera "replay:$replay" --out "$cal/frames" \
  --frames 1000 --fps 200 --json | tee "$reports/aarch64-record.json"
"${qemu_arm[@]}" "$bin" --log warn calibrate --engines "$cal" --episodes "$cal/frames" \
  --budget-ratio 0.5 --iterations 1 --json >"$reports/aarch64-calibrate.json"
grep -q '"thresholds"' "$reports/aarch64-calibrate.json"
# The shim loader: the test double built for aarch64 and glibc $want stands in
# for a shim built on a Jetson; build-shim --check loads it, checks its ABI
# and opens a "libnvinfer" through it.
dbl=$reports/aarch64-trt-double
mkdir -p "$dbl"
"$CARGO_ZIGBUILD_ZIG_PATH" cc -target "aarch64-linux-gnu.$want" -std=gnu11 -O1 -Wall -Wextra -Werror \
  -shared -fPIC engines/tensorrt/shim/trt_double.c -o "$dbl/libofframp_trt_shim.so" -lpthread
printf 'offramp-trt-double-library 1\nversion 100300\ndevice Orin\ncompute 8 7\n' >"$dbl/libnvinfer.txt"
"${qemu_arm[@]}" "$bin" --log warn build-shim --check "$dbl/libofframp_trt_shim.so" \
  --library "$dbl/libnvinfer.txt" | tee "$reports/aarch64-trt-shim.json"
grep -q '"library": "10.3.0"' "$reports/aarch64-trt-shim.json"
# And the refusal a robot without a shim gives, naming how to build one.
if "${qemu_arm[@]}" "$bin" --log warn build-shim --check /nonexistent/libofframp_trt_shim.so 2>"$dbl/err.txt"; then
  echo "build-shim --check accepted a missing shim"
  exit 1
fi
grep -q "cannot open the TensorRT shim /nonexistent/libofframp_trt_shim.so" "$dbl/err.txt"

step "bundle"
"$offramp" bundle --target jetson --binary "$bin" --out "$reports/offramp-jetson.tar.gz"
tar tzf "$reports/offramp-jetson.tar.gz"

step "GPU check bundle (x86_64): made, sized, and run dry here (no GPU, no cargo)"
scripts/gpu-bundle.sh "$reports/offramp-gpu.tar.gz" | tee "$reports/gpu-bundle.json"
dry=$(mktemp -d)
tar -C "$dry" -xzf "$reports/offramp-gpu.tar.gz"
set +e
env PATH=/usr/local/bin:/usr/bin:/bin "$dry/offramp-gpu/scripts/gpu-check.sh" \
  --prebuilt "$dry/offramp-gpu" "$reports/gpu-check-dry.json"
st=$?
set -e
# It must end naming the missing GPU, after everything else ran and passed.
python3 - "$reports/gpu-check-dry.json" "$st" <<'PY'
import json, sys
r, st = json.load(open(sys.argv[1])), int(sys.argv[2])
problems = []
if st != 1:
    problems.append(f"exit status {st}, not 1")
if r["failed"]:
    problems.append(f"failed: {r['failed']}")
if not any("NVIDIA GPU" in m for m in r["missing"]):
    problems.append(f"the missing GPU is not named: {r['missing']}")
for k in ("cuda_preprocess", "tensorrt_backend_tests"):
    if not r["stages"].get(k, "").startswith("ok"):
        problems.append(f"stage {k}: {r['stages'].get(k)}")
if problems:
    sys.exit("GPU bundle dry run: " + "; ".join(problems))
print("GPU bundle dry run: ran everything but the GPU's parts; missing:", "; ".join(r["missing"]))
PY
rm -rf "$dry"

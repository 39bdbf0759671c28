#!/usr/bin/env bash
# The GPU path in one command, on any Linux machine with an NVIDIA GPU and
# driver (a Jetson, a workstation, a cloud GPU):
#
#   scripts/gpu-check.sh [REPORT.json]
#   scripts/gpu-check.sh --prebuilt DIR [REPORT.json]
#
# --prebuilt runs from the bundle scripts/gpu-bundle.sh makes on a
# development machine (DIR: where it was unpacked): no cargo, no Rust
# toolchain, no network. Without a GPU it still runs everything else (the
# CUDA tests' error paths, the TensorRT backend's tests) and ends naming what
# is missing: CI runs it so.
#
#   1. the GPU and driver (nvidia-smi, libcuda);
#   2. the CUDA preprocessing tests on the GPU (NVRTC kernels vs the CPU
#      preprocessing, within 1e-5) and the TensorRT backend's tests;
#   3. with TensorRT installed (headers, libnvinfer, trtexec): the TensorRT
#      shim built here (`offramp build-shim`), TensorRT plans of the demo set
#      (`offramp build --backend tensorrt`), the exit chain on them, and
#      `offramp bench engines --tensorrt` beside the CPU backend;
#   4. one JSON report (default $OFFRAMP_CACHE/reports/gpu-check.json).
#
# Unattended, under 10 minutes on a warm build cache (the first build of
# offramp takes longer). Exits non-zero naming what is missing or failed;
# every stage that can run still runs and is reported.
# TensorRT's and CUDA's places: TENSORRT_INCLUDE_DIR, CUDA_HOME (default
# /usr/local/cuda), trtexec on PATH or in /usr/src/tensorrt/bin.
set -uo pipefail
prebuilt=""
if [ "${1:-}" = --prebuilt ]; then
  [ -n "${2:-}" ] && [ -x "$2/bin/offramp" ] || {
    echo "--prebuilt ${2:-}: not an unpacked GPU bundle (no bin/offramp; make one with scripts/gpu-bundle.sh)" >&2
    exit 2
  }
  prebuilt=$(cd "$2" && pwd)
  shift 2
fi
# A report path as given, from where the command was run.
report=""
case ${1:-} in
  "") ;;
  /*) report=$1 ;;
  *) report=$PWD/$1 ;;
esac
here=${prebuilt:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$here"
cache=${OFFRAMP_CACHE:-$HOME/.cache/offramp}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
report=${report:-$cache/reports/gpu-check.json}
work=$cache/gpu-check
mkdir -p "$(dirname "$report")" "$work"
log=$work/log.txt
: >"$log"
cuda_home=${CUDA_HOME:-/usr/local/cuda}

missing=()
failed=()
declare -A stage
note() { printf '==> %s\n' "$*" | tee -a "$log"; }
json_str() { python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))'; }

# 1. GPU and driver.
gpu=""
if command -v nvidia-smi >/dev/null 2>&1; then
  gpu=$(nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>>"$log" | head -n1)
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
  missing+=("the NVIDIA driver (libcuda.so.1 is not in the loader's cache)")
fi
if [ -z "$gpu" ]; then
  missing+=("an NVIDIA GPU (nvidia-smi is absent or lists none)")
fi
note "GPU: ${gpu:-none}"

# NVRTC (12 or 13). offramp finds the loader's and the toolkit's itself
# (libnvrtc.so, .so.13, .so.12, .so.11.2, then $CUDA_HOME): those are only
# reported. Where there is none, the newest in the nvidia-* Python wheels
# (what a PyTorch install brings) is handed to it in OFFRAMP_NVRTC_LIB.
newest() {
  local best="" c
  for c in "$@"; do
    [ -f "$c" ] || continue
    if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$(basename "$best")" "$(basename "$c")" | sort -V | tail -n1)" = "$(basename "$c")" ]; then
      best=$c
    fi
  done
  printf '%s' "$best"
}
nvrtc=$(newest $(ldconfig -p 2>/dev/null | awk '/libnvrtc\.so(\.[0-9.]+)? / {print $NF}') \
  "$cuda_home"/lib64/libnvrtc.so.[0-9]* "$cuda_home"/targets/*/lib/libnvrtc.so.[0-9]*)
if [ -z "$nvrtc" ] && [ -z "${OFFRAMP_NVRTC_LIB:-}" ]; then
  nvrtc=$(newest $(python3 -c 'import glob, site, sys
for d in sys.path + site.getsitepackages():
    print(*glob.glob(d + "/nvidia/*/lib/libnvrtc.so.[0-9]*"))' 2>/dev/null))
  [ -n "$nvrtc" ] && export OFFRAMP_NVRTC_LIB=$nvrtc
fi
nvrtc=${OFFRAMP_NVRTC_LIB:-$nvrtc}
[ -n "$nvrtc" ] && note "NVRTC: $nvrtc"

# 2. Build offramp with the GPU features (or take the bundle's), and run the
# CUDA preprocessing tests.
if [ -n "$prebuilt" ]; then
  # The glibc the bundle was built against, against this machine's.
  needs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["needs"])' "$prebuilt/BUNDLE.json" 2>>"$log")
  have=GLIBC_$(ldd --version 2>/dev/null | head -n1 | grep -o '[0-9]*\.[0-9]*$')
  if [ -n "$needs" ] && [ "$(printf '%s\n%s\n' "$needs" "$have" | sort -V | tail -n1)" != "$have" ]; then
    missing+=("glibc: the bundle needs $needs, this machine has $have (make the bundle on a machine with an older glibc)")
  fi
  offramp=$prebuilt/bin/offramp
  stage[build]="prebuilt ($(python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); print(b["commit"], "needs", b["needs"])' "$prebuilt/BUNDLE.json" 2>>"$log"))"
  cuda_tests=("$prebuilt/tests/cuda_preprocess")
  trt_tests=("$prebuilt/tests/tensorrt")
  # The test executables read the bundle's files, not the checkout they were built from.
  export OFFRAMP_REPO=$prebuilt OFFRAMP_TRT_DOUBLE=$prebuilt/lib/libofframp_trt_double.so
else
  note "building offramp (features tensorrt, cuda)"
  if cargo build --release -p offramp --features tensorrt,cuda >>"$log" 2>&1; then
    stage[build]=ok
  else
    stage[build]=failed
    failed+=("cargo build (see $log)")
  fi
  offramp=$CARGO_TARGET_DIR/release/offramp
  cuda_tests=(cargo test --release -p offramp-runtime --features cuda --test cuda_preprocess --)
  trt_tests=(cargo test --release -p offramp-engines-tensorrt --test tensorrt --)
fi
if ((${#missing[@]} == 0)); then
  note "CUDA preprocessing tests on the GPU"
  # OFFRAMP_REQUIRE_GPU turns the tests' skip-without-GPU into a failure.
  if OFFRAMP_REQUIRE_GPU=1 "${cuda_tests[@]}" --include-ignored >>"$log" 2>&1; then
    stage[cuda_preprocess]=ok
  else
    stage[cuda_preprocess]=failed
    failed+=("the CUDA preprocessing tests (see $log)")
  fi
elif [ -n "$prebuilt" ]; then
  # No GPU: the bundle's tests still run their error paths here (the
  # executable loads, CUDA's absence is named), the GPU parts skipped.
  note "CUDA preprocessing tests without a GPU (error paths only)"
  if "${cuda_tests[@]}" --include-ignored >>"$log" 2>&1; then
    stage[cuda_preprocess]="ok without a GPU (GPU parts skipped)"
  else
    stage[cuda_preprocess]=failed
    failed+=("the CUDA preprocessing tests (see $log)")
  fi
else
  stage[cuda_preprocess]=skipped
fi
note "TensorRT backend tests (the real Rust backend against the shim's CPU test double)"
if "${trt_tests[@]}" >>"$log" 2>&1; then
  stage[tensorrt_backend_tests]=ok
else
  stage[tensorrt_backend_tests]=failed
  failed+=("the TensorRT backend tests (see $log)")
fi

# 3. TensorRT.
trt_include=${TENSORRT_INCLUDE_DIR:-}
if [ -z "$trt_include" ]; then
  for d in /usr/include/aarch64-linux-gnu /usr/include/x86_64-linux-gnu /usr/include /usr/local/tensorrt/include; do
    [ -f "$d/NvInferRuntime.h" ] && { trt_include=$d; break; }
  done
fi
[ -n "$trt_include" ] || missing+=("TensorRT's headers (NvInferRuntime.h; package libnvinfer-dev, or set TENSORRT_INCLUDE_DIR)")
[ -f "$cuda_home/include/cuda_runtime_api.h" ] || missing+=("the CUDA toolkit's headers ($cuda_home/include; set CUDA_HOME)")
trtexec=$(command -v trtexec || true)
[ -n "$trtexec" ] || { [ -x /usr/src/tensorrt/bin/trtexec ] && trtexec=/usr/src/tensorrt/bin/trtexec; }
[ -n "$trtexec" ] || missing+=("trtexec (TensorRT's builder; on PATH or /usr/src/tensorrt/bin)")
ldconfig -p 2>/dev/null | grep -q 'libnvinfer\.so\.' || missing+=("libnvinfer (TensorRT's runtime library)")

shim_json=null
bench_json=null
if [ -n "$trt_include" ] && [ -f "$cuda_home/include/cuda_runtime_api.h" ] && { [ "${stage[build]}" = ok ] || [ -n "$prebuilt" ]; }; then
  note "TensorRT shim against $trt_include"
  CUDA_INCLUDE_DIR=$cuda_home/include scripts/check-trt-shim.sh "$trt_include" >>"$log" 2>&1 || failed+=("the shim compile check (see $log)")
  rm -f "$work/libofframp_trt_shim.so"
  if "$offramp" build-shim --tensorrt-include "$trt_include" --cuda "$cuda_home" \
    --out "$work/libofframp_trt_shim.so" >"$work/shim.json" 2>>"$log"; then
    stage[shim]=ok
  elif [ -f "$work/libofframp_trt_shim.so" ]; then
    # Built and loaded, but libnvinfer did not open (listed as missing above
    # when it is not installed).
    stage[shim]="built; libnvinfer not opened"
    ldconfig -p 2>/dev/null | grep -q 'libnvinfer\.so\.' && failed+=("opening libnvinfer through the shim (see $work/shim.json)")
  else
    stage[shim]=failed
    failed+=("offramp build-shim (see $log)")
  fi
  [ -s "$work/shim.json" ] && shim_json=$(cat "$work/shim.json")
  export OFFRAMP_TRT_SHIM=$work/libofframp_trt_shim.so
  if [ "${stage[shim]:-}" = ok ] && [ -n "$trtexec" ]; then
    export PATH=$(dirname "$trtexec"):$PATH
    note "TensorRT plans of the demo set"
    rm -rf "$work/demo-trt"
    if "$offramp" build --backend tensorrt --precision fp16 --onnx engines/models/demo \
      --out "$work/demo-trt" >>"$log" 2>&1; then
      stage[plans]=ok
      note "the exit chain on the plans, and bench engines beside the CPU backend"
      if "$offramp" bench engines --engines engines/models/demo --tensorrt "$work/demo-trt" \
        --iters 200 >"$work/bench.json" 2>>"$log"; then
        stage[bench]=ok
        bench_json=$(cat "$work/bench.json")
      else
        stage[bench]=failed
        failed+=("offramp bench engines --tensorrt (see $log)")
      fi
    else
      stage[plans]=failed
      failed+=("offramp build --backend tensorrt (see $log)")
    fi
  fi
fi

stages=$(for k in "${!stage[@]}"; do printf '"%s": "%s",' "$k" "${stage[$k]}"; done)
list() { local first=1; printf '['; for x in "$@"; do ((first)) || printf ','; first=0; printf '%s' "$x" | json_str; done; printf ']'; }
cat >"$report" <<JSON
{
  "gpu": $(printf '%s' "$gpu" | json_str),
  "nvrtc": $(printf '%s' "$nvrtc" | json_str),
  "stages": {${stages%,}},
  "missing": $(list ${missing[@]+"${missing[@]}"}),
  "failed": $(list ${failed[@]+"${failed[@]}"}),
  "shim": $shim_json,
  "bench_engines": $bench_json,
  "log": $(printf '%s' "$log" | json_str)
}
JSON
note "report: $report"
status=0
for m in ${missing[@]+"${missing[@]}"}; do echo "missing: $m" >&2; status=1; done
for f in ${failed[@]+"${failed[@]}"}; do echo "failed: $f" >&2; status=1; done
exit "$status"

# Sourced by every step: where builds and reports live, and the tools.
# Builds are cached outside the clone, under $OFFRAMP_CACHE
# (default ~/.cache/offramp), never in it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
cache=${OFFRAMP_CACHE:-$HOME/.cache/offramp}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
export OFFRAMP_FW_TARGET_DIR=${OFFRAMP_FW_TARGET_DIR:-$cache/fw-target}
export OFFRAMP_FW_ELF=$OFFRAMP_FW_TARGET_DIR/thumbv7m-none-eabi/release/offramp-fw-qemu
reports=$cache/reports
mkdir -p "$reports"
export PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$cache/bin:$PATH
# One profile and one feature set for tests, benches and the demo, so that
# the workspace is compiled once (the test build also builds the binary).
profile_flags=(--release --workspace --all-features)
offramp=$CARGO_TARGET_DIR/release/offramp
# The Python test environment (onnxruntime, Pillow, eclipse-zenoh), made by
# the setup step; the ignored tests that need it run in the test step.
venv=$cache/venv
[ -x "$venv/bin/python" ] && export OFFRAMP_PYTHON=$venv/bin/python
# The onnxruntime backend's library: the one the Python wheel ships.
for lib in "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*; do
  [ -f "$lib" ] && export OFFRAMP_ONNXRUNTIME_LIB=${OFFRAMP_ONNXRUNTIME_LIB:-$lib}
done
# NVRTC of CUDA 13 and 12, from the nvidia-cuda-nvrtc wheels: the CUDA
# preprocessing test compiles its kernels with each.
nvrtc_libs=("$venv"/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13
  "$venv"/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12)
if [ -f "${nvrtc_libs[0]}" ] && [ -f "${nvrtc_libs[1]}" ]; then
  export OFFRAMP_NVRTC_TEST_LIBS="${nvrtc_libs[0]}:${nvrtc_libs[1]}"
fi
# zig (the cross linker, with glibc 2.31 stubs) and cargo-zigbuild, from PyPI.
zig_venv=$cache/zig-venv
if [ -x "$zig_venv/bin/python" ]; then
  CARGO_ZIGBUILD_ZIG_PATH=$("$zig_venv/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))' 2>/dev/null || true)
  export CARGO_ZIGBUILD_ZIG_PATH
fi
step() { printf '\n==> %s\n' "$*"; }

#!/usr/bin/env bash
# Installs what the tests need, each only if missing: Debian packages, rustup
# targets and components, cargo tools, and from PyPI zig + cargo-zigbuild (the
# aarch64 cross linker) and the Python test environment.
source "$(dirname "$0")/env.sh"

step "cargo tools (in the background while packages download)"
install_tool() { # crate version binary
  # Read the version whole: `--version | grep -q` under pipefail fails
  # whenever grep exits before the tool finishes writing (SIGPIPE).
  local have
  have=$("$3" --version 2>/dev/null || true)
  case "$have" in
    *"$2"*) ;;
    # --force: replace a binary of another version (or one not installed by
    # cargo) rather than refuse.
    *) cargo install -q "$1" --version "$2" --locked --force ;;
  esac
}
(install_tool defmt-print 1.2.0 defmt-print && install_tool cargo-fuzz 0.13.2 cargo-fuzz) \
  >"$cache/cargo-tools.log" 2>&1 &
tools_pid=$!

step "system packages"
missing=()
command -v qemu-system-arm >/dev/null || missing+=(qemu-system-arm)
command -v cc >/dev/null || missing+=(build-essential)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# The v4l feature's bindings are generated with bindgen, which needs libclang.
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || missing+=(libclang-dev)
# The TLS test makes its certificates with config/zenoh/make-certs.sh.
command -v openssl >/dev/null || missing+=(openssl)
# The aarch64 (Jetson) binary runs under qemu-user with Debian's arm64 libc.
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || missing+=(libc6-arm64-cross)
command -v readelf >/dev/null || missing+=(binutils)
command -v file >/dev/null || missing+=(file)
# `import-lerobot` decodes LeRobot's mp4 videos (its test encodes some).
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
qemu-system-arm --version | head -n1

step "rust targets and components"
rustup target add thumbv7m-none-eabi thumbv7em-none-eabihf aarch64-unknown-linux-gnu
rustup component add rustfmt clippy

step "zig and cargo-zigbuild (PyPI)"
if ! "$zig_venv/bin/cargo-zigbuild" --version 2>/dev/null | grep -q "0.24.1" ||
  ! "$zig_venv/bin/python" -m ziglang version 2>/dev/null | grep -q '^0.17.1'; then
  python3 -m venv "$zig_venv"
  "$zig_venv/bin/pip" install -q --disable-pip-version-check ziglang==0.17.1 cargo-zigbuild==0.24.1
fi
mkdir -p "$cache/bin"
ln -sf "$zig_venv/bin/cargo-zigbuild" "$cache/bin/cargo-zigbuild"
"$zig_venv/bin/cargo-zigbuild" --version

# onnxruntime is the reference the engine tests compare against, and the
# other column of the engine bench. Used by tests only, never at run time.
step "python test environment"
# eclipse-zenoh is the independent zenoh client of the ROS 2 cmd_vel test.
if ! "$venv/bin/python" -c 'import onnxruntime, onnx, numpy, PIL, skimage, zenoh' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check onnx==1.19.1 onnxruntime==1.23.2 numpy==2.4.6 \
    pillow==11.3.0 scikit-image==0.25.2 eclipse-zenoh==1.10.2
fi
"$venv/bin/python" -c 'import onnxruntime; print("onnxruntime", onnxruntime.__version__)'
# NVRTC of CUDA 13 and 12 (the runtime compiler; no GPU needed): the GPU
# preprocessing kernels are compiled with both in the tests.
nvrtc_libs=("$venv"/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13
  "$venv"/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12)
if [ ! -f "${nvrtc_libs[0]}" ] || [ ! -f "${nvrtc_libs[1]}" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check nvidia-cuda-nvrtc==13.5.37 \
    nvidia-cuda-nvrtc-cu12==12.9.86
  nvrtc_libs=("$venv"/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13
    "$venv"/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12)
  for lib in "${nvrtc_libs[@]}"; do
    [ -f "$lib" ] || { echo "the NVRTC wheels did not install $lib"; exit 1; }
  done
fi

step "waiting for the cargo tools"
if ! wait "$tools_pid"; then
  cat "$cache/cargo-tools.log"
  exit 1
fi
defmt-print --version
cargo fuzz --version

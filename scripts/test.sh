#!/usr/bin/env bash
# Every test of offramp, on a fresh Debian/Ubuntu machine with a Rust toolchain.
# Installs what the tests need (apt packages, rustup targets, cargo tools; each
# only if missing), then: format and lint every crate (host workspace, both
# firmware boards, fuzz targets), build the firmware images, run all tests
# (including the QEMU firmware tests), fuzz the wire decoder briefly, and
# measure the firmware in QEMU.
#
# Builds are cached outside the clone, under $OFFRAMP_CACHE
# (default ~/.cache/offramp).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cache=${OFFRAMP_CACHE:-$HOME/.cache/offramp}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
export OFFRAMP_FW_TARGET_DIR=${OFFRAMP_FW_TARGET_DIR:-$cache/fw-target}
fuzz_target_dir=$cache/fuzz-target
reports=$cache/reports
fuzz_seconds=${OFFRAMP_FUZZ_SECONDS:-15}
mkdir -p "$reports"
export PATH=$HOME/.cargo/bin:$PATH

step() { printf '\n==> %s\n' "$*"; }

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

# cargo install only when the pinned version is not there already.
install_tool() { # crate version binary
  if ! "$3" --version 2>/dev/null | grep -q "$2"; then
    cargo install "$1" --version "$2" --locked
  fi
  "$3" --version
}
step "cargo tools"
install_tool defmt-print 1.2.0 defmt-print
install_tool cargo-fuzz 0.13.2 cargo-fuzz
install_tool cargo-zigbuild 0.24.1 cargo-zigbuild
# zig (the cross linker, with glibc 2.31 stubs for JetPack 5) from PyPI.
zig_venv=$cache/zig-venv
if ! "$zig_venv/bin/python" -m ziglang version 2>/dev/null | grep -q '^0.17.1'; then
  python3 -m venv "$zig_venv"
  "$zig_venv/bin/pip" install -q --disable-pip-version-check ziglang==0.17.1
fi
export CARGO_ZIGBUILD_ZIG_PATH
CARGO_ZIGBUILD_ZIG_PATH=$("$zig_venv/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
echo "zig $("$CARGO_ZIGBUILD_ZIG_PATH" version)"

# onnxruntime is the reference the engine tests compare against, and the
# other column of the engine bench. Used by tests only, never at run time.
step "python test environment"
venv=$cache/venv
# eclipse-zenoh is the independent zenoh client of the ROS 2 cmd_vel test.
if ! "$venv/bin/python" -c 'import onnxruntime, onnx, numpy, PIL, skimage, zenoh' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check onnx==1.19.1 onnxruntime==1.23.2 numpy==2.4.6 \
    pillow==11.3.0 scikit-image==0.25.2 eclipse-zenoh==1.10.2
fi
export OFFRAMP_PYTHON=$venv/bin/python
"$OFFRAMP_PYTHON" -c 'import onnxruntime; print("onnxruntime", onnxruntime.__version__)'

step "format"
cargo fmt --all --check
for dir in firmware/boards/lm3s6965-qemu firmware/boards/stm32f411-blackpill firmware/protocol/fuzz; do
  (cd "$dir" && cargo fmt --check)
done

step "lint (host workspace)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p offramp-protocol --all-targets --features std -- -D warnings
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "TensorRT shim"
# CI has no TensorRT headers (no registry ships them), so the shim is compiled
# where TENSORRT_INCLUDE_DIR points at them (see README, "TensorRT backend").
if [[ -n "${TENSORRT_INCLUDE_DIR:-}" ]]; then
  cargo clippy -p offramp-engines --features tensorrt --all-targets -- -D warnings
  echo "shim compiled against $TENSORRT_INCLUDE_DIR"
else
  echo "skipped: TENSORRT_INCLUDE_DIR is not set (the backend builds without its shim and says so at run time)"
fi

step "firmware images (their own targets and workspaces)"
for dir in firmware/boards/lm3s6965-qemu firmware/boards/stm32f411-blackpill; do
  (cd "$dir" &&
    CARGO_TARGET_DIR=$OFFRAMP_FW_TARGET_DIR cargo clippy --release -- -D warnings &&
    CARGO_TARGET_DIR=$OFFRAMP_FW_TARGET_DIR cargo build --release)
done
(cd firmware/boards/stm32f411-blackpill &&
  CARGO_TARGET_DIR=$OFFRAMP_FW_TARGET_DIR cargo clippy --release --features fault-injection -- -D warnings)
export OFFRAMP_FW_ELF=$OFFRAMP_FW_TARGET_DIR/thumbv7m-none-eabi/release/offramp-fw-qemu
for elf in "$OFFRAMP_FW_ELF" "$OFFRAMP_FW_TARGET_DIR/thumbv7em-none-eabihf/release/offramp-fw-stm32f411"; do
  size=$(stat -c %s "$elf")
  echo "built $(basename "$elf") ($size bytes ELF)"
done

step "tests"
log=$(mktemp)
cargo test --workspace --all-features 2>&1 | tee "$log"
read -r passed failed < <(awk '/^test result:/ {
    for (i = 2; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) }
  } END { print p + 0, f + 0 }' "$log")

step "fuzz (${fuzz_seconds}s per target)"
fuzz_log=$(mktemp)
for t in decode firmware_rx; do
  # cargo-fuzz needs nightly-only flags; the stable toolchain accepts them
  # with RUSTC_BOOTSTRAP. A crash fails the run and leaves its input under
  # firmware/protocol/fuzz/artifacts/.
  if ! (cd firmware/protocol/fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$fuzz_target_dir \
    cargo fuzz run "$t" -- -max_total_time="$fuzz_seconds") >"$fuzz_log" 2>&1; then
    tail -n 60 "$fuzz_log"
    echo "fuzz target $t failed"
    exit 1
  fi
  echo "$t: $(grep -E '^Done' "$fuzz_log")"
done

step "firmware bench (QEMU, guest clock)"
cargo run -q -p offramp -- firmware bench --elf "$OFFRAMP_FW_ELF" --commands 100 --trials 10 \
  | tee "$reports/firmware-bench.json"

step "engine bench (tract vs onnxruntime, one run)"
bench_set=$cache/reports/tiny-engines
rm -rf "$bench_set"
cargo run -q -p offramp -- build --onnx engines/testdata/tiny --out "$bench_set"
cargo run -q --release -p offramp -- bench engines --engines "$bench_set" --iters 1000 \
  | tee "$reports/engine-bench.json"

step "simulator bench (render + physics, frames per second)"
cargo run -q --release -p offramp -- sim bench --frames 20000 | tee "$reports/sim-bench.json"

step "runtime bench (overhead, early exit vs full model, deadline under CPU hogs)"
cargo run -q --release -p offramp -- bench runtime --engines engines/demo --frames 10000 \
  --deadline-ms 10 | tee "$reports/runtime-bench.json"

step "zenoh bench (offramp's action path vs bare zenoh, one run)"
cargo run -q --release -p offramp -- bench zenoh --iters 2000 --demo-episodes 0 \
  | tee "$reports/zenoh-bench.json"

step "profile (per-exit latency and energy; power source: auto)"
cargo run -q --release -p offramp -- profile --engines engines/demo --frames 2000 \
  --report "$reports/profile"

step "aarch64 builds for the Jetson (JetPack 5: glibc 2.31; JetPack 6: glibc 2.34), qemu-aarch64 smoke tests, bundle"
# One target dir per glibc: zig's C wrappers differ, and sharing one dir
# would rebuild every -sys crate each time the variant flips.
qemu_arm=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
for variant in "jetpack5 2.31 $CARGO_TARGET_DIR" "jetpack6 2.34 $cache/target-jetpack6"; do
  read -r name want dir <<<"$variant"
  CARGO_TARGET_DIR=$dir cargo zigbuild -q --profile jetson -p offramp \
    --target "aarch64-unknown-linux-gnu.$want"
  bin=$dir/aarch64-unknown-linux-gnu/jetson/offramp
  glibc=$(readelf -V "$bin" | grep -o 'GLIBC_2\.[0-9]*' | sort -V | tail -n1)
  echo "$name: $(file -b "$bin" 2>/dev/null | cut -d, -f1-2) needs $glibc"
  if [ "$(printf '%s\nGLIBC_%s\n' "$glibc" "$want" | sort -V | tail -n1)" != "GLIBC_$want" ]; then
    echo "the $name binary needs $glibc, newer than glibc $want"
    exit 1
  fi
  "${qemu_arm[@]}" "$bin" --version
  "${qemu_arm[@]}" "$bin" --log warn demo --episodes 1 --bridge thread --json \
    | tee "$reports/aarch64-$name-demo.json"
  cargo run -q --release -p offramp -- bundle --target jetson --binary "$bin" \
    --out "$reports/offramp-jetson-$name.tar.gz"
  tar tzf "$reports/offramp-jetson-$name.tar.gz"
done

step "main job: offramp demo (simulator -> exit chain -> zenoh -> bridge -> firmware -> wheels)"
cargo run -q --release -p offramp -- demo --episodes "${DEMO_EPISODES:-50}" --json \
  --report "$reports/demo-latency.svg" | tee "$reports/demo.json"
echo
echo "tests: ${passed} passed, ${failed} failed"

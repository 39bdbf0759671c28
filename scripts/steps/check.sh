#!/usr/bin/env bash
# Formatting and clippy (-D warnings) on every crate and feature, the board
# firmware images (their own targets and workspaces), and the TensorRT shim
# against every TensorRT header set given (or found on this machine).
source "$(dirname "$0")/env.sh"

step "format"
cargo fmt --all --check
for dir in firmware/boards/lm3s6965-qemu firmware/boards/stm32f411-blackpill firmware/protocol/fuzz runtime/fuzz; do
  (cd "$dir" && cargo fmt --check)
done

step "lint (host workspace, every feature, every target)"
cargo clippy --workspace --all-targets --all-features -- -D warnings
# The robot's build: no simulator, no QEMU harness.
cargo clippy -p offramp --no-default-features --all-targets -- -D warnings

step "TensorRT shim"
# The Rust backend builds and is linted above with every feature (it loads
# the shim at run time). The C++ shim needs TensorRT's headers, which no
# registry ships: it is compile-checked against OFFRAMP_TRT_HEADERS (':'
# separated include dirs) or the system's, and the script says when there
# are none (see docs/jetson.md).
scripts/check-trt-shim.sh

step "firmware images"
for dir in firmware/boards/lm3s6965-qemu firmware/boards/stm32f411-blackpill; do
  (cd "$dir" &&
    CARGO_TARGET_DIR=$OFFRAMP_FW_TARGET_DIR cargo clippy -q --release -- -D warnings &&
    CARGO_TARGET_DIR=$OFFRAMP_FW_TARGET_DIR cargo build -q --release)
done
(cd firmware/boards/stm32f411-blackpill &&
  CARGO_TARGET_DIR=$OFFRAMP_FW_TARGET_DIR cargo clippy -q --release --features fault-injection -- -D warnings)
for elf in "$OFFRAMP_FW_ELF" "$OFFRAMP_FW_TARGET_DIR/thumbv7em-none-eabihf/release/offramp-fw-stm32f411"; do
  echo "built $(basename "$elf") ($(stat -c %s "$elf") bytes ELF)"
done

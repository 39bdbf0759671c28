#!/usr/bin/env bash
# The Jetson binary: one aarch64 build linked against glibc 2.31, which runs
# on JetPack 5 (glibc 2.31), 6 (2.35) and 7 (2.39) alike, since glibc is
# backward compatible, and without the simulator or the QEMU harness (the
# robot's build: --no-default-features). Checks the glibc it needs,
# smoke-tests it under qemu-aarch64 (the exit chain on replayed frames, the
# wire protocol against the host build of the firmware), and bundles it.
source "$(dirname "$0")/env.sh"
want=2.31

step "aarch64 build for the Jetson (glibc $want: JetPack 5, 6 and 7)"
cargo zigbuild -q --profile jetson -p offramp --no-default-features \
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

step "bundle"
"$offramp" bundle --target jetson --binary "$bin" --out "$reports/offramp-jetson.tar.gz"
tar tzf "$reports/offramp-jetson.tar.gz"

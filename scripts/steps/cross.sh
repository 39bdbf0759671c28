#!/usr/bin/env bash
# The Jetson binary: one aarch64 build linked against glibc 2.31, which runs
# on JetPack 5 (glibc 2.31), 6 (2.35) and 7 (2.39) alike, since glibc is
# backward compatible. Checks the glibc it needs, smoke-tests it under
# qemu-aarch64 (the demo closes the loop with the bridge on a thread), and
# bundles it.
source "$(dirname "$0")/env.sh"
want=2.31

step "aarch64 build for the Jetson (glibc $want: JetPack 5, 6 and 7)"
cargo zigbuild -q --profile jetson -p offramp --target "aarch64-unknown-linux-gnu.$want"
bin=$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/jetson/offramp
glibc=$(readelf -V "$bin" | grep -o 'GLIBC_2\.[0-9]*' | sort -V | tail -n1)
echo "$(file -b "$bin" | cut -d, -f1-2) needs $glibc"
if [ "$(printf '%s\nGLIBC_%s\n' "$glibc" "$want" | sort -V | tail -n1)" != "GLIBC_$want" ]; then
  echo "the Jetson binary needs $glibc, newer than glibc $want"
  exit 1
fi

step "smoke test under qemu-aarch64"
qemu_arm=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
"${qemu_arm[@]}" "$bin" --version
"${qemu_arm[@]}" "$bin" --log warn demo --episodes 1 --bridge thread --json |
  tee "$reports/aarch64-demo.json"

step "bundle"
[ -x "$offramp" ] || cargo build -q "${profile_flags[@]}"
"$offramp" bundle --target jetson --binary "$bin" --out "$reports/offramp-jetson.tar.gz"
tar tzf "$reports/offramp-jetson.tar.gz"

#!/usr/bin/env bash
# Fuzzes the wire decoder and the firmware's receive path briefly (raw bytes,
# and framed messages past COBS and CRC), each from its committed seeds
# (firmware/protocol/fuzz/seeds/, tools/fuzz/make_seeds.py); what the fuzzer
# finds grows a corpus outside the clone. A crash fails the step and leaves
# its input under firmware/protocol/fuzz/artifacts/.
source "$(dirname "$0")/env.sh"
fuzz_seconds=${OFFRAMP_FUZZ_SECONDS:-15}

step "fuzz (${fuzz_seconds}s per target)"
fuzz_log=$(mktemp)
for t in decode firmware_rx firmware_msgs; do
  mkdir -p "$cache/fuzz-corpus/$t"
  # cargo-fuzz needs nightly-only flags; the stable toolchain accepts them
  # with RUSTC_BOOTSTRAP.
  if ! (cd firmware/protocol/fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$cache/fuzz-target \
    cargo fuzz run "$t" "$cache/fuzz-corpus/$t" "seeds/$t" -- -max_total_time="$fuzz_seconds") >"$fuzz_log" 2>&1; then
    tail -n 60 "$fuzz_log"
    echo "fuzz target $t failed"
    exit 1
  fi
  echo "$t: $(grep -E '^Done' "$fuzz_log")"
done

#!/usr/bin/env bash
# Fuzzes every parser that takes bytes from outside (docs/testing.md#fuzzing):
#
#   scripts/fuzz.sh                  every target, 15 s each (CI's step)
#   scripts/fuzz.sh --long [SECONDS] every target for SECONDS (default 1200)
#   scripts/fuzz.sh [--long [S]] TARGET ...   only these targets
#   OFFRAMP_FUZZ_RUNS=10000000 scripts/fuzz.sh --long   also stop each at N runs
#
# Firmware targets (firmware/protocol/fuzz): decode, firmware_rx,
# firmware_msgs. Runtime targets (runtime/fuzz): link_msgs, offload_msgs,
# bridge, npy, flight_record, lerobot_info, manifest, model_toml.
#
# Each starts from its committed seeds (seeds/<target>/) and grows a corpus
# outside the clone ($OFFRAMP_CACHE/fuzz-corpus/<target>). A crash fails the
# run and leaves its input under the fuzz crate's artifacts/<target>/. The
# last line per target is libFuzzer's "Done N runs in S second(s)"; the run
# ends with a JSON summary (target, runs, seconds) in
# $OFFRAMP_CACHE/reports/fuzz.json.
source "$(dirname "$0")/steps/env.sh"
seconds=${OFFRAMP_FUZZ_SECONDS:-15}
if [ "${1:-}" = --long ]; then
  shift
  seconds=1200
  if [[ "${1:-}" =~ ^[0-9]+$ ]]; then seconds=$1; shift; fi
fi
firmware=(decode firmware_rx firmware_msgs)
runtime=(link_msgs offload_msgs bridge npy flight_record lerobot_info manifest model_toml)
targets=("$@")
((${#targets[@]})) || targets=("${firmware[@]}" "${runtime[@]}")

step "fuzz (${seconds}s per target)"
log=$(mktemp)
summary=()
for t in "${targets[@]}"; do
  # The firmware's targets run with AddressSanitizer (the protocol crate is
  # no_std with its own buffers); the runtime's are safe Rust over large
  # dependencies: no sanitizer, debug assertions (overflow checks) on.
  if [[ " ${firmware[*]} " == *" $t "* ]]; then
    dir=firmware/protocol/fuzz flags=()
  elif [[ " ${runtime[*]} " == *" $t "* ]]; then
    dir=runtime/fuzz flags=(--fuzz-dir . -s none -a)
  else
    echo "unknown fuzz target '$t' (${firmware[*]} ${runtime[*]})"
    exit 2
  fi
  mkdir -p "$cache/fuzz-corpus/$t"
  # cargo-fuzz needs nightly-only flags; the stable toolchain accepts them
  # with RUSTC_BOOTSTRAP.
  if ! (cd "$dir" && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$cache/fuzz-target \
    cargo fuzz run "${flags[@]}" "$t" "$cache/fuzz-corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" ${OFFRAMP_FUZZ_RUNS:+-runs=$OFFRAMP_FUZZ_RUNS} -print_final_stats=1) >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $t failed"
    exit 1
  fi
  done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -n1)
  echo "$t: $done_line"
  runs=$(sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/' <<<"$done_line")
  secs=$(sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\2/' <<<"$done_line")
  summary+=("{\"target\": \"$t\", \"runs\": $runs, \"seconds\": $secs}")
done
(IFS=,; echo "[${summary[*]}]") >"$reports/fuzz.json"
cat "$reports/fuzz.json"

#!/usr/bin/env bash
# Fuzzes every parser that takes bytes from outside (docs/testing.md#fuzzing):
#
#   scripts/fuzz.sh                  every target, 10 s each (CI's step)
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
# ends with a JSON summary (target, runs, seconds, edges covered) in
# $OFFRAMP_CACHE/reports/fuzz.json.
source "$(dirname "$0")/steps/env.sh"
seconds=${OFFRAMP_FUZZ_SECONDS:-10}
long=
if [ "${1:-}" = --long ]; then
  shift
  long=1 seconds=1200
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
  # Debug assertions (overflow checks) are on everywhere. The brief runs
  # build the firmware's targets with AddressSanitizer and the runtime's
  # unoptimised (they link zenoh and tract: a fraction of the build time);
  # the long runs build everything optimised and without a sanitizer, which
  # runs several times as many inputs (the code fuzzed is safe Rust: the
  # protocol crate forbids unsafe, and a panic or an overflow is what a
  # crash is).
  if [[ " ${firmware[*]} " == *" $t "* ]]; then
    dir=firmware/protocol/fuzz flags=()
    [ -z "$long" ] || flags+=(-s none)
  elif [[ " ${runtime[*]} " == *" $t "* ]]; then
    dir=runtime/fuzz flags=(--fuzz-dir . -s none -a)
    [ -n "$long" ] || flags+=(--dev)
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
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n1 | cut -d' ' -f2)
  summary+=("{\"target\": \"$t\", \"runs\": $runs, \"seconds\": $secs, \"edges\": ${cov:-0}}")
done
(IFS=,; echo "[${summary[*]}]") >"$reports/fuzz.json"
cat "$reports/fuzz.json"

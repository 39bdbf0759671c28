#!/usr/bin/env bash
# The benches, each printing JSON into $OFFRAMP_CACHE/reports: firmware in
# QEMU, engines (tract vs onnxruntime), memory, simulator, runtime, zenoh,
# profile.
# Uses the release binary the test step built.
source "$(dirname "$0")/env.sh"
[ -x "$offramp" ] || cargo build -q "${profile_flags[@]}"

step "firmware bench (QEMU, guest clock)"
"$offramp" firmware bench --elf "$OFFRAMP_FW_ELF" --commands 100 --trials 10 |
  tee "$reports/firmware-bench.json"

step "engine bench (tract vs onnxruntime, one run)"
bench_set=$reports/tiny-engines
rm -rf "$bench_set"
"$offramp" build --onnx engines/models/testdata/tiny --out "$bench_set"
"$offramp" bench engines --engines "$bench_set" --iters 1000 | tee "$reports/engine-bench.json"

step "engine bench at real size (a ViT-S/16-size export: init, build, tract vs onnxruntime on 1 and 2 threads; memory of run)"
scale=$reports/vit-s
rm -rf "$scale"
"$OFFRAMP_PYTHON" tools/onnx/make_scale_model.py "$scale"
"$offramp" init --onnx "$scale/full.onnx" --out "$scale/src"
"$offramp" build --onnx "$scale/src" --out "$scale/set"
for t in 1 2; do
  "$offramp" bench engines --engines "$scale/set" --iters 20 --threads "$t" |
    tee "$reports/engine-bench-vit-s-threads$t.json"
done
# Memory of the robot's loop on it (peak_rss_mb against weights_mb), and of
# the same process on the demo set (next to no weights).
"$offramp" run --engines "$scale/set" --camera sim --frames 100 --fps 1000 --threads 1 --json |
  tee "$reports/run-vit-s.json"
"$offramp" run --engines engines/models/demo --camera sim --frames 100 --fps 1000 --threads 1 --json |
  tee "$reports/run-demo.json"
# The segments (87 MB) are not kept; the JSON is.
rm -rf "$scale"

step "memory bench (a cache head over a long stream: resident memory, frame cost, evictions)"
cache_set=$reports/kv-cache-engines
rm -rf "$cache_set"
"$offramp" build --onnx engines/models/testdata/kv-cache --out "$cache_set"
"$offramp" bench memory --engines "$cache_set" --frames 20000 --threads 1 |
  tee "$reports/memory-bench.json"

step "simulator bench (render + physics, frames per second)"
"$offramp" sim bench --frames 20000 | tee "$reports/sim-bench.json"

step "runtime bench (overhead, early exit vs full model, deadline under CPU hogs)"
"$offramp" bench runtime --engines engines/models/demo --frames 10000 --deadline-ms 10 |
  tee "$reports/runtime-bench.json"

step "zenoh bench (offramp's action path vs bare zenoh, one run)"
"$offramp" bench zenoh --iters 2000 --demo-episodes 0 | tee "$reports/zenoh-bench.json"

step "profile (per-exit latency and energy; power source: auto)"
"$offramp" profile --engines engines/models/demo --frames 2000 --report "$reports/profile"

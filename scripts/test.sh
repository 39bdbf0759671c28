#!/usr/bin/env bash
# Every test of offramp on a fresh Debian/Ubuntu machine with a Rust
# toolchain. A short driver over steps that each run alone too:
#
#   scripts/test.sh                 all steps, in order
#   scripts/test.sh check test      only these
#
#   setup  Debian packages, rustup targets, cargo tools, zig, Python test env
#   check  rustfmt, clippy -D warnings on every crate and feature, firmware images
#   test   every test, ignored ones (QEMU, Python references) included
#   fuzz   every parser of outside bytes, briefly (scripts/fuzz.sh --long: longer)
#   bench  firmware, engines, simulator, runtime, zenoh benches; profile (JSON)
#   cross  the aarch64 Jetson binary (glibc 2.31), qemu-aarch64 smoke test, bundle;
#          the GPU check's prebuilt bundle, sized and run dry
#   demo   the main job, offramp demo
#
# Builds are cached under $OFFRAMP_CACHE (default ~/.cache/offramp), reports
# land in its reports/ folder. Each step's wall time is printed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
all=(setup check test fuzz bench cross demo)
steps=("$@")
((${#steps[@]})) || steps=("${all[@]}")
for s in "${steps[@]}"; do
  [ -f "$here/steps/$s.sh" ] || { echo "unknown step '$s' (steps: ${all[*]})"; exit 2; }
done
times=()
status=0
for s in "${steps[@]}"; do
  t0=$SECONDS
  if ! bash "$here/steps/$s.sh"; then
    status=1
    times+=("$s $((SECONDS - t0))s FAILED")
    break
  fi
  times+=("$s $((SECONDS - t0))s")
done
printf '\n==> step times\n'
printf '  %s\n' "${times[@]}"
totals=${OFFRAMP_CACHE:-$HOME/.cache/offramp}/test.totals
# The test runner's totals close the run (CI reads the last line).
if [[ " ${steps[*]} " == *" test "* && -f $totals ]]; then
  tail -n1 "$totals"
fi
exit "$status"

#!/usr/bin/env bash
# The main job, as README.md gives it: simulator → exit chain → zenoh →
# bridge → firmware → wheels, DEMO_EPISODES episodes (default 10) in real time.
source "$(dirname "$0")/env.sh"
[ -x "$offramp" ] || cargo build -q "${profile_flags[@]}"

step "main job: offramp demo"
"$offramp" demo --episodes "${DEMO_EPISODES:-10}" --json --report "$reports/demo-latency.svg" |
  tee "$reports/demo.json"

#!/usr/bin/env bash
# Every test, the ignored ones included (QEMU firmware, the Python references,
# the ROS 2 client): they need what the setup and check steps provide. Prints
# the totals on its last line, and keeps the log for the driver.
source "$(dirname "$0")/env.sh"

step "tests (release, every feature, ignored ones included)"
log=$cache/test.log
rm -f "$cache/test.totals"
set +e
cargo test "${profile_flags[@]}" -- --include-ignored 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
read -r passed failed ignored < <(awk '/^test result:/ {
    for (i = 2; i <= NF; i++) {
      if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1); if ($i == "ignored;") g += $(i-1)
    }
  } END { print p + 0, f + 0, g + 0 }' "$log")
echo "${ignored} ignored"
echo "tests: ${passed} passed, ${failed} failed" | tee "$cache/test.totals"
exit "$status"

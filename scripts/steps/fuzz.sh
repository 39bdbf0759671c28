#!/usr/bin/env bash
# Every fuzz target briefly (scripts/fuzz.sh: 10 s each, from the committed
# seeds; OFFRAMP_FUZZ_SECONDS changes it).
exec bash "$(dirname "$0")/../fuzz.sh"

#!/usr/bin/env bash
# Reproduces engines/models/demo: behaviour cloning on expert demonstrations, then
# DAgger rounds in which the previous model drives (a random exit per
# episode, the expert taking 20-30% of the steps) while the expert labels
# every frame. From round 4 on, half the episodes are driven instead by the
# 6.5x operating point (the criterion calibrated for a 0.154 budget, which
# stops ~93% of frames at exit 1), and exit 1's auxiliary loss counts 3x:
# that is the policy a low budget deploys, so its states need labels.
# CPU only; about 140 minutes on 2 cores (ROUNDS=3, 105 minutes, gives the
# three-round model). Needs PyTorch, onnx and numpy in $PYTHON (pip install
# torch onnx numpy).
#
#   PYTHON=~/venv/bin/python tools/train/reproduce_demo.sh [WORK_DIR]
#
# Seeds: training 100000+, DAgger 300000+/400000+/500000+/600000+,
# calibration 200000+, evaluation 0+ (disjoint).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-python3}
work=${1:-/tmp/offramp-train-work}
rounds=${ROUNDS:-4}
# Channels per exit segment. The committed model narrows only exit 1's
# segment (24 wide, 13 % of the full model's MACs); 48 throughout gives
# the earlier, uniformly wide model.
widths=${WIDTHS:-24,48,48,48}
mkdir -p "$work"
off() { cargo run -q --release -p offramp -- "$@"; }

off sim record --episodes 1000 --first-seed 100000 --out "$work/bc"
"$py" tools/train/train_demo.py --data "$work/bc" --out "$work/model-1" \
  --checkpoint "$work/model-1.pt" --epochs 12 --widths "$widths"
data=("$work/bc")
for r in $(seq 1 "$rounds"); do
  rm -rf "$work/set-$r"
  off build --onnx "$work/model-$r" --out "$work/set-$r"
  share=$([[ $r == 1 ]] && echo 0.3 || echo 0.2)
  learner=(--learner "$work/set-$r")
  weights=1,1,1,1
  if ((r >= 4)); then
    off calibrate --engines "$work/set-$r" --budget-ratio 0.154 --sim-episodes 200
    learner+=(--learner-criterion-share 0.5)
    weights=3,1,1,1
  fi
  off sim record --episodes 800 --first-seed $((200000 + 100000 * r)) \
    "${learner[@]}" --expert-share "$share" --out "$work/dagger-$r"
  data+=("$work/dagger-$r")
  epochs=$([[ $r == 1 ]] && echo 6 || echo 4)
  lr=1e-3
  "$py" tools/train/train_demo.py --data "${data[@]}" --init "$work/model-$r.pt" \
    --checkpoint "$work/model-$((r + 1)).pt" --epochs "$epochs" --lr "$lr" --widths "$widths" --exit-weights "$weights" --out "$work/model-$((r + 1))"
done
final="$work/model-$((rounds + 1))"
cp "$final"/*.onnx "$final"/model.toml engines/models/demo/
off build --onnx engines/models/demo --out engines/models/demo
off calibrate --engines engines/models/demo --budget-ratio 0.5 --sim-episodes 200

#!/usr/bin/env bash
# Reproduces engines/models/demo: behaviour cloning on expert demonstrations, then
# DAgger rounds in which the previous model drives (a random exit per
# episode, the expert taking 20-30% of the steps) while the expert labels
# every frame. From round 4 on, half the episodes are driven instead by the
# 6.5x operating point (the criterion calibrated for a 0.154 budget, which
# stops ~93% of frames at exit 1), and exit 1's auxiliary loss counts 3x:
# that is the policy a low budget deploys, so its states need labels.
# CPU only; about 66 minutes on 2 cores (ROUNDS=3, about 50, stops after the
# third round). Then engines/models/demo-bumper: that model fine-tuned for
# config/sim/bumper.toml (a crash ends the episode) with learned exit heads,
# about 8 minutes more (BUMPER=0 skips it; DEMO=committed skips the demo
# model's training and fine-tunes engines/models/demo as the working tree
# has it: as committed, that reproduces the committed bumper set byte for
# byte; after a training run, check the committed one out first). Needs PyTorch, onnx
# and numpy in $PYTHON (pip install torch==2.15.0 onnx==1.23.2 numpy==2.4.6:
# the versions the committed bumper set reproduces with; docs/demo-model.md
# says how closely a run from scratch reproduces the demo model).
#
#   PYTHON=~/venv/bin/python tools/train/reproduce_demo.sh [WORK_DIR]
#   DEMO=committed PYTHON=~/venv/bin/python tools/train/reproduce_demo.sh [WORK_DIR]
#
# Seeds: training 100000+ (the bumper task's expert episodes 120000+, its
# exit heads' episodes 110000+), DAgger 300000+/400000+/500000+/600000+
# (the bumper rounds 650000+, 660000+), calibration 200000+, evaluation 0+,
# validation 700000+ (disjoint).
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

demo=${DEMO:-train}
if [[ $demo == committed ]]; then
  final=engines/models/demo
elif [[ $demo == train ]]; then
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
else
  echo "DEMO=$demo: train or committed" >&2
  exit 1
fi
[[ ${BUMPER:-1} == 1 ]] || exit 0

# engines/models/demo-bumper: the same model fine-tuned for the task where a
# crash ends the episode (config/sim/bumper.toml), then given learned exit
# heads. Expert demonstrations on that task and a DAgger round driven by the
# model (a random exit per episode, the expert taking 20 % of the steps),
# 3 epochs at lr 5e-4 on both (BUMPER_ROUNDS=2 adds a second round: on 1,000
# validation episodes it left the full model at 90.3 % against 91.1 % after
# one, so one is kept); then the exit heads on 400 episodes the fine-tuned
# model drives (tools/train/train_exit_heads.py) and a calibration for a
# 0.154 budget. About 8 minutes on 2 cores.
bumper=config/sim/bumper.toml
bset="$work/bumper-set-0"
rm -rf "$bset"
off build --onnx "$final" --out "$bset"
off sim record --episodes 600 --first-seed 120000 --config "$bumper" --out "$work/bumper-bc"
bdata=("$work/bumper-bc")
init=(--init-onnx "$final")
brounds=${BUMPER_ROUNDS:-1}
((brounds >= 1)) || { echo "BUMPER_ROUNDS=$brounds: at least 1" >&2; exit 1; }
for r in $(seq 1 "$brounds"); do
  off sim record --episodes 1200 --first-seed $((640000 + 10000 * r)) --learner "$bset" \
    --expert-share 0.2 --config "$bumper" --out "$work/bumper-dagger-$r"
  bdata+=("$work/bumper-dagger-$r")
  "$py" tools/train/train_demo.py --data "${bdata[@]}" "${init[@]}" --epochs 3 --lr 5e-4 \
    --widths "$widths" --checkpoint "$work/bumper-$r.pt" --out "$work/bumper-$r"
  init=(--init "$work/bumper-$r.pt")
  bset="$work/bumper-set-$r"
  rm -rf "$bset"
  off build --onnx "$work/bumper-$r" --out "$bset"
done
off sim record --episodes 400 --first-seed 110000 --learner "$bset" --expert-share 0 \
  --config "$bumper" --out "$work/bumper-heads"
"$py" tools/train/train_exit_heads.py --engines "$work/bumper-$brounds" --data "$work/bumper-heads" \
  --out engines/models/demo-bumper
off build --onnx engines/models/demo-bumper --out engines/models/demo-bumper
off calibrate --engines engines/models/demo-bumper --budget-ratio 0.154 --sim-episodes 200 --config "$bumper"

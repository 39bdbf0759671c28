#!/usr/bin/env python3
"""Adds learned exit heads to a trained demo engine set: for every exit but
the last, a small head on the exit's pooled feature that predicts whether
stopping there is safe, i.e. whether this exit's action agrees with the final
exit's (DySL-VLA's learned exits). The backbone and the shared action head
stay frozen, so the actions are the set's own; only the exit heads learn.

    cargo run --release -p offramp -- sim record --episodes 400 --first-seed 110000 \\
        --learner engines/models/demo --expert-share 0 --out /tmp/heads-data
    python3 tools/train/train_exit_heads.py --engines engines/models/demo \\
        --data /tmp/heads-data --out /tmp/demo-learned
    cargo run --release -p offramp -- build --onnx /tmp/demo-learned --out /tmp/demo-learned

The frames come from episodes the set itself drove (a random fixed exit per
episode), so the heads see the states the deployed policy visits. Labels:
with the shared recurrent head's state carried along the episode by the
final exit's feature, exit i agrees when its action is within the
simulator's "frame right" bounds of the final exit's (|dv| <= 0.1 m/s,
|domega| <= 0.35 rad/s). The output is the set's ONNX files with a
`confidence` output ([1, 1], in [0, 1]) on every segment but the last, and
its model.toml switched to `criterion.kind = "learned"`; the calibration
(`offramp calibrate`) is the same budget solve as for any criterion.
"""
import argparse
import os
import re
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "onnx"))
import model_toml  # noqa: E402
from train_demo import (  # noqa: E402
    FEAT, HIDDEN, N_EXITS, N_INSTR, OPSET, H, W, Model, episode_spans, finish_onnx, load, load_onnx_weights,
    preprocess,
)

# The simulator's "frame right" bounds (runtime/calibrate/src/eval.rs).
AGREE_V, AGREE_OMEGA = 0.1, 0.35


class ExitHead(nn.Module):
    """Confidence that stopping at this exit is safe, from its pooled feature."""

    def __init__(self, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(FEAT), nn.Linear(FEAT, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, feature):
        return self.net(feature)


class WithConfidence(nn.Module):
    """A segment plus its exit head: the segment's outputs, then `confidence`."""

    def __init__(self, segment, head):
        super().__init__()
        self.segment, self.head = segment, head

    def forward(self, *inputs):
        outs = self.segment(*inputs)
        return (*outs, torch.sigmoid(self.head(outs[1])))


def widths_of(engines):
    """Each segment's width, read from its exported model.toml comment."""
    text = open(os.path.join(engines, "model.toml")).read()
    m = re.search(r"segment widths ([0-9]+(?:,[0-9]+)*)", text)
    if not m:
        raise SystemExit(f"{engines}/model.toml: no 'segment widths' in its header comment")
    return tuple(int(w) for w in m.group(1).split(","))


@torch.no_grad()
def features_and_labels(model, frames, instr, episodes, agree_v, agree_omega, batch=512):
    """Each exit's feature [N_EXITS, F, FEAT] and whether exits 1..N-1 agree
    with the final exit [N_EXITS - 1, F]."""
    instr_1h = torch.from_numpy(np.eye(N_INSTR, dtype=np.float32)[instr])
    feats = []
    for s in range(0, len(frames), batch):
        feats.append(model.features(preprocess(frames[s : s + batch]), instr_1h[s : s + batch])[1:])
    feats = torch.cat(feats, dim=1)
    agree = torch.zeros(N_EXITS - 1, len(frames), dtype=torch.bool)
    for s, e in episode_spans(episodes):
        h = torch.zeros(1, HIDDEN)
        for t in range(s, e):
            out = [model.head(feats[i, t : t + 1], h) for i in range(N_EXITS)]
            last, h = out[-1]
            for i in range(N_EXITS - 1):
                d = (out[i][0] - last).abs()[0]
                agree[i, t] = bool(d[0] <= agree_v and d[1] <= agree_omega)
    return feats, agree


def auc(score, label):
    """Area under the ROC curve: the Mann-Whitney statistic, ties ranked
    at their mean."""
    score, label = np.asarray(score, dtype=np.float64), np.asarray(label, dtype=bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    values, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    # Mean 1-based rank of each distinct value.
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = mean_rank[inverse]
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", required=True, help="a trained set's ONNX directory (segment*.onnx, head.onnx, model.toml)")
    ap.add_argument("--data", required=True, nargs="+", help="recordings of the set driving (`offramp sim record --learner`)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--agree-v", type=float, default=AGREE_V, help="m/s: agreeing actions differ by at most this in v")
    ap.add_argument(
        "--agree-omega", type=float, default=AGREE_OMEGA, help="rad/s: agreeing actions differ by at most this in omega"
    )
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)

    model = Model(widths_of(args.engines))
    load_onnx_weights(model, args.engines)
    model.eval()
    frames, instr, _, episodes = load(args.data)
    t0 = time.time()
    feats, agree = features_and_labels(model, frames, instr, episodes, args.agree_v, args.agree_omega)
    print(f"{len(frames)} frames: features and labels in {time.time() - t0:.0f}s; "
          f"agreeing with the final exit: {[round(float(a.float().mean()), 3) for a in agree]}")

    n_eps = int(episodes.max()) + 1
    held = torch.from_numpy(episodes >= n_eps - max(1, n_eps // 5))
    heads = nn.ModuleList(ExitHead() for _ in range(N_EXITS - 1))
    opt = torch.optim.AdamW(heads.parameters(), lr=args.lr, weight_decay=0.01)
    fit = ~held
    for epoch in range(args.epochs):
        perm = torch.randperm(int(fit.sum()))
        idx = torch.nonzero(fit)[:, 0][perm]
        for s in range(0, len(idx), 256):
            b = idx[s : s + 256]
            loss = sum(
                nn.functional.binary_cross_entropy_with_logits(heads[i](feats[i, b])[:, 0], agree[i, b].float())
                for i in range(N_EXITS - 1)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        for i in range(N_EXITS - 1):
            c = torch.sigmoid(heads[i](feats[i, held])[:, 0]).numpy()
            y = agree[i, held].numpy()
            print(f"exit {i + 1}: held-out episodes AUC {auc(c, y):.3f}, agree {y.mean():.3f}, "
                  f"mean confidence {c.mean():.3f}")

    os.makedirs(args.out, exist_ok=True)
    image, instruction = torch.zeros(1, 3, H, W), torch.zeros(1, N_INSTR)
    x = None
    with torch.no_grad():
        for i, seg in enumerate(model.segments):
            path = os.path.join(args.out, f"segment{i}.onnx")
            inputs = (image, instruction) if i == 0 else (x,)
            if i < N_EXITS - 1:
                in_names = ["image", "instruction"] if i == 0 else [f"hidden{i - 1}"]
                out_names = [f"hidden{i}", "feature"] + (["feature_ref"] if i == 0 else []) + ["confidence"]
                torch.onnx.export(
                    WithConfidence(seg, heads[i]), inputs, path, opset_version=OPSET, dynamo=False,
                    input_names=in_names, output_names=out_names,
                )
            else:
                shutil.copy(os.path.join(args.engines, f"segment{i}.onnx"), path)
            x = seg(*inputs)[0]
    shutil.copy(os.path.join(args.engines, "head.onnx"), os.path.join(args.out, "head.onnx"))
    for i in range(N_EXITS - 1):
        finish_onnx(os.path.join(args.out, f"segment{i}.onnx"))
    src = os.path.join(args.engines, "model.toml")
    m, comment = model_toml.load(src)
    if m.get("feature") != "feature" or "head" not in m:
        raise SystemExit(f'{src}: expected feature = "feature" and a [head] (a train_demo.py export)')
    text = model_toml.render(
        m["model"],
        m["exits"],
        [
            "# Learned exits: each exit head's confidence that its action agrees with",
            f"# the final exit's within {args.agree_v:g} m/s and {args.agree_omega:g} rad/s",
            f"# (tools/train/train_exit_heads.py, seed {args.seed}).",
            ("kind", "learned"),
        ],
        comment=comment,
        confidence_output="confidence",
        preprocess=m.get("preprocess"),
        head=m["head"],
    )
    with open(os.path.join(args.out, "model.toml"), "w") as f:
        f.write(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference for the key/value cache: an exit chain with a temporal attention
head run frame by frame with onnxruntime, its cache kept and evicted here,
written independently of the runtime from the rule in docs/model-format.md.

    python3 tools/reference/kv_cache_loop.py --set DIR --input in.f32 \
        --exits exits.txt --output actions.f32

DIR is an engine set whose head has a `[head.cache]` (its manifest.toml and
ONNX segments). The input file is raw little-endian f32: per frame, every
model input in order. exits.txt has one line per frame: the exit the frame
commits, or `reset` before the frame (a new episode). The output gets each
frame's action (f32), then per frame the cache's occupancy and the entries
evicted so far. Needs onnxruntime and numpy.
"""
import argparse
import os
import sys
import tomllib

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "onnx"))
from ort_chain import session  # noqa: E402  (one thread, CPU provider)

MASKED = np.float32(-10000.0)


class Cache:
    """Slots [0, sinks) sinks, then saddles, then the ring of recent entries."""

    def __init__(self, spec, head_inputs):
        self.spec = spec
        self.sinks, self.saddles, self.recent = spec["sinks"], spec["saddles"], spec["recent"]
        self.slots = self.sinks + self.saddles + self.recent
        self.decay = np.float32(spec.get("saddle_decay", 0.9))
        self.bias = np.float32(spec.get("recency_bias", 0.0))
        shape = {t["name"]: t["shape"] for t in head_inputs}
        self.names = list(spec["past_keys"]) + list(spec["past_values"])
        self.shapes = {n: shape[n] for n in self.names}
        self.reset()

    def reset(self):
        self.buf = {n: np.zeros(s, np.float32) for n, s in self.shapes.items()}
        self.made = [None] * self.slots  # commit count of each held slot
        self.score = [np.float32(0)] * self.slots
        self.commits, self.ring = 0, 0

    def held(self):
        return [s for s in range(self.slots) if self.made[s] is not None]

    def inputs(self):
        held = sorted(self.held(), key=lambda s: self.made[s])
        mask = np.full((self.slots,), MASKED, np.float32)
        pos = np.zeros((self.slots,), np.float32)
        for i, s in enumerate(held):
            rank = np.float32(len(held) - i)
            pos[s] = rank
            mask[s] = -self.bias * rank
        feeds = dict(self.buf)
        feeds[self.spec["mask"]] = mask.reshape(self.shape_of(self.spec["mask"]))
        if "positions" in self.spec:
            feeds[self.spec["positions"]] = pos.reshape(self.shape_of(self.spec["positions"]))
        return feeds

    def shape_of(self, name):
        return self.head_shapes[name]

    def move(self, src, dst):
        for n in self.names:
            self.buf[n][..., dst, :] = self.buf[n][..., src, :]
        self.made[dst], self.score[dst] = self.made[src], self.score[src]
        self.made[src] = None

    def commit(self, present, attention):
        """present: name of the past tensor -> the current entry [.., 1, dim];
        attention: the committed frame's weights, [.., slots(+1)]."""
        rows = attention.reshape(-1, attention.shape[-1])[:, : self.slots]
        mean = np.zeros(self.slots, np.float32)
        for row in rows:
            mean += row / np.float32(len(rows))
        for s in self.held():
            self.score[s] = self.decay * self.score[s] + mean[s]
        evicted = 0
        if self.commits < self.sinks:
            slot = self.commits
        else:
            slot = self.sinks + self.saddles + self.ring
            self.ring = (self.ring + 1) % self.recent
            if self.made[slot] is not None:
                saddles = range(self.sinks, self.sinks + self.saddles)
                free = [s for s in saddles if self.made[s] is None]
                if free:
                    self.move(slot, free[0])
                else:
                    evicted = 1
                    weakest = min(saddles, key=lambda s: (self.score[s], self.made[s]), default=None)
                    if weakest is not None and self.score[slot] > self.score[weakest]:
                        self.move(slot, weakest)
                    else:
                        self.made[slot] = None
        for n in self.names:
            self.buf[n][..., slot, :] = present[n][..., 0, :]
        self.made[slot], self.score[slot] = self.commits, np.float32(0)
        self.commits += 1
        return evicted


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--exits", required=True)
    ap.add_argument("--output", required=True)
    a = ap.parse_args()
    with open(os.path.join(a.set, "manifest.toml"), "rb") as f:
        m = tomllib.load(f)
    head_spec = m["head"]
    spec = head_spec["cache"]
    segs = [session(os.path.join(a.set, e["artifact"])) for e in m["exits"]]
    head = session(os.path.join(a.set, head_spec["artifact"]))
    cache = Cache(spec, head_spec["inputs"])
    cache.head_shapes = {t["name"]: t["shape"] for t in head_spec["inputs"]}
    present_of = dict(zip(spec["present_keys"] + spec["present_values"], spec["past_keys"] + spec["past_values"]))
    out_names = [t["name"] for t in head_spec["outputs"]]

    sizes = [int(np.prod(t["shape"])) for t in m["inputs"]]
    flat = np.fromfile(a.input, dtype="<f4")
    per_frame = sum(sizes)
    lines = [l.strip() for l in open(a.exits) if l.strip()]
    actions, stats, evicted, frame = [], [], 0, 0
    for line in lines:
        if line == "reset":
            cache.reset()
            continue
        exit_ = int(line)
        x, at = flat[frame * per_frame : (frame + 1) * per_frame], 0
        feeds = {}
        for t, n in zip(m["inputs"], sizes):
            feeds[t["name"]] = x[at : at + n].reshape(t["shape"])
            at += n
        for i in range(exit_ + 1):
            seg = m["exits"][i]
            names = [t["name"] for t in seg["outputs"]]
            outs = segs[i].run(names, {t["name"]: feeds[t["name"]] for t in seg["inputs"]})
            feeds.update(zip(names, outs))
        hfeeds = cache.inputs()
        hfeeds[head_spec["feature_input"]] = feeds[m["exits"][exit_]["feature"]]
        houts = dict(zip(out_names, head.run(out_names, hfeeds)))
        actions.append(houts[head_spec["action_output"]].reshape(-1))
        present = {present_of[n]: houts[n] for n in present_of}
        evicted += cache.commit(present, houts[spec["attention"]])
        stats.append([len(cache.held()), evicted])
        frame += 1
    out = np.concatenate([np.concatenate(actions), np.array(stats, np.float32).reshape(-1)])
    out.astype("<f4").tofile(a.output)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes multi-exit models the way exporters name them, for tests of
`offramp init` and `offramp build` (no renaming by hand).

    python3 tools/onnx/make_exports.py --out engines/models/testdata/exports --seed 23

Each directory holds what `torch.onnx.export` gives a user who exports their
model their own way, and no `model.toml` (`offramp init` drafts it):

- `renamed/segment{0..3}.onnx`: one export per segment. Segment k > 0 reads
  the carried tokens as `x_in` and every segment writes them as `x_out`; each
  exit's action is `action{k}` [1, 2]; the instruction is one int64 token id
  of shape [1] (embedded by a Gather).
- `two-carried/block{0..3}.onnx`: two tensors cross each boundary under
  unrelated names (`tokens_k` [1, 17, 32] and `summary_k` [1, 32] out,
  `ctx` and `h` in, in the other order); actions `act`; a one-hot
  instruction [1, 4]; every tensor's batch axis dynamic ("batch"), as
  `dynamic_axes` exports it.
- `tokens/full.onnx`: one full export of a discrete-token model: per-exit
  logits `logits{k}` [1, 2, 7] over 7 bins of v and omega, and token ids of
  shape [6] (no batch axis) that the first and the last block read.
- `vit/full.onnx`: one full export of a 4-block transformer without an
  instruction, exits after each block (`a{k}` [1, 2]), whose scalars and
  shape vectors are `Constant` nodes shared between blocks, as the
  TorchScript exporter deduplicates them; its batch axis dynamic.

Weights are random (seeded). Needs only `onnx` and `numpy`.
"""
import argparse
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_model import D, PATCH, TOKENS, Graph, tensor  # noqa: E402

EXITS = 4
VOCAB = 10
BINS = 7


def ids(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.INT64, shape)


def named(g, x, out):
    g.nodes.append(helper.make_node("Identity", [x], [out]))
    return out


def patches(g, image):
    grid = 16 // PATCH
    p = g.op("Reshape", [image, g.const([1, 3, grid, PATCH, grid, PATCH], np.int64)])
    p = g.op("Transpose", [p], perm=[0, 2, 4, 1, 3, 5])
    p = g.op("Reshape", [p, g.const([1, grid * grid, 3 * PATCH * PATCH], np.int64)])
    return g.linear(p, 3 * PATCH * PATCH, D)


def stem(g, token, image="image"):
    x = g.op("Concat", [token, patches(g, image)], axis=1)
    return g.op("Add", [x, g.weight([1, TOKENS, D], 0.02)])


def pooled(g, x):
    return g.op("ReduceMean", [x], axes=[1], keepdims=0)


def action(g, x):
    return g.op("Tanh", [g.linear(pooled(g, x), D, 2)])


def renamed(rng, out):
    for k in range(EXITS):
        g = Graph(rng, f"s{k}_")
        if k == 0:
            emb = g.op("Gather", [g.weight([VOCAB, D], 1.0), "instruction"], axis=0)  # [1, D]
            token = g.op("Reshape", [emb, g.const([1, 1, D], np.int64)])
            x, ins = g.block(stem(g, token)), [tensor("image", [1, 3, 16, 16]), ids("instruction", [1])]
        else:
            x, ins = g.block("x_in"), [tensor("x_in", [1, TOKENS, D])]
        named(g, x, "x_out")
        named(g, action(g, "x_out"), f"action{k}")
        g.save(os.path.join(out, f"segment{k}.onnx"), ins, [tensor("x_out", [1, TOKENS, D]), tensor(f"action{k}", [1, 2])])


def dynamic(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, ["batch"] + list(shape[1:]))


def two_carried(rng, out):
    for k in range(EXITS):
        g = Graph(rng, f"b{k}_")
        if k == 0:
            token = g.op("Reshape", [g.op("MatMul", ["instruction", g.weight([4, D])]), g.const([1, 1, D], np.int64)])
            x = g.block(stem(g, token))
            ins = [dynamic("image", [1, 3, 16, 16]), dynamic("instruction", [1, 4])]
        else:
            # The summary is added back to every token before the block.
            x = g.op("Add", ["h", g.op("Reshape", ["ctx", g.const([1, 1, D], np.int64)])])
            x = g.block(x)
            ins = [dynamic("ctx", [1, D]), dynamic("h", [1, TOKENS, D])]
        named(g, x, f"tokens_{k}")
        named(g, pooled(g, x), f"summary_{k}")
        named(g, action(g, x), "act")
        g.save(os.path.join(out, f"block{k}.onnx"), ins,
               [dynamic(f"tokens_{k}", [1, TOKENS, D]), dynamic(f"summary_{k}", [1, D]), dynamic("act", [1, 2])])


def tokens(rng, out):
    g = Graph(rng, "")
    emb = g.op("Gather", [g.weight([VOCAB, D], 1.0), "instruction"], axis=0)  # [6, D]
    token = g.op("Reshape", [g.op("ReduceMean", [emb], axes=[0], keepdims=1), g.const([1, 1, D], np.int64)])
    x = stem(g, token)
    outs = []
    for k in range(EXITS):
        x = g.block(x)
        if k == EXITS - 1:
            # The last block reads the ids again (split carries them).
            again = g.op("ReduceMean", [g.op("Gather", [g.weight([VOCAB, D], 1.0), "instruction"], axis=0)], axes=[0], keepdims=1)
            x = g.op("Add", [x, g.op("Reshape", [again, g.const([1, 1, D], np.int64)])])
        logits = g.op("Reshape", [g.linear(pooled(g, x), D, 2 * BINS), g.const([1, 2, BINS], np.int64)])
        outs.append(named(g, logits, f"logits{k}"))
    g.save(os.path.join(out, "full.onnx"), [tensor("image", [1, 3, 16, 16]), ids("instruction", [6])],
           [tensor(o, [1, 2, BINS]) for o in outs])


class SharedConstants(Graph):
    """A graph whose constants are `Constant` nodes, one per value, read by
    every block that uses the value (as the TorchScript exporter writes
    them)."""

    def __init__(self, rng, prefix):
        super().__init__(rng, prefix)
        self.consts = {}

    def const(self, value, dtype=np.float32):
        a = np.array(value, dtype=dtype)
        key = (a.dtype.str, a.shape, a.tobytes())
        if key not in self.consts:
            n = self.name("Constant")
            self.nodes.append(helper.make_node("Constant", [], [n], value=numpy_helper.from_array(a, n + "_value")))
            self.consts[key] = n
        return self.consts[key]


def vit(rng, out):
    g = SharedConstants(rng, "")
    x = g.op("Add", [patches(g, "image"), g.weight([1, TOKENS - 1, D], 0.02)])
    x = g.op("Concat", [g.weight([1, 1, D], 0.02), x], axis=1)
    outs = []
    for k in range(EXITS):
        x = g.block(x)
        outs.append(named(g, action(g, g.layer_norm(x)), f"a{k}"))
    g.save(os.path.join(out, "full.onnx"), [dynamic("image", [1, 3, 16, 16])], [dynamic(o, [1, 2]) for o in outs])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=23)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    for name, make in [("renamed", renamed), ("two-carried", two_carried), ("tokens", tokens), ("vit", vit)]:
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        make(rng, d)
        print(f"wrote {d}")


if __name__ == "__main__":
    main()

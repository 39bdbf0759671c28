#!/usr/bin/env python3
"""Writes a multi-exit model of real size, as one full export, for benches:

    python3 tools/onnx/make_scale_model.py OUT [--blocks 12 --width 384 --heads 6 --size 224]

A ViT-S/16-size vision transformer (224x224 input, 16x16 patches: 196
patch tokens and a class token, width 384, 6 heads, MLP 1536, 12 blocks,
about 21.7 M parameters and 4.6 GMAC a frame) with an exit after blocks 3,
6, 9 and 12 (`a0`..`a3`, a [1, 2] action each from the pooled tokens),
written into OUT/full.onnx the way the TorchScript exporter writes one:
scalars and shape vectors as `Constant` nodes shared between blocks
(tools/onnx/make_exports.py), weights as initializers, opset 17. Random
weights (seeded): it measures speed and memory, not driving. Then:

    offramp init --onnx OUT/full.onnx --out OUT/src && offramp build --onnx OUT/src --out OUT/set

Needs only onnx and numpy; the file is about 87 MB, so it is made where it
is used, not committed.
"""
import argparse
import os
import sys

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_exports import SharedConstants  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--blocks", type=int, default=12)
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--exits", type=int, default=4)
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    d, heads, patch = a.width, a.heads, a.patch
    grid = a.size // patch
    tokens = grid * grid + 1
    dh = d // heads
    g = SharedConstants(np.random.default_rng(a.seed), "")

    def layer_norm(x):
        return g.op("LayerNormalization", [x, g.const(np.ones(d)), g.const(np.zeros(d))], axis=-1, epsilon=1e-6)

    def linear(x, i, o):
        return g.linear(x, i, o)

    def block(x):
        h = layer_norm(x)
        qkv = linear(h, d, 3 * d)
        q, k, v = (g.op("Slice", [qkv, g.const([i * d], np.int64), g.const([(i + 1) * d], np.int64), g.const([2], np.int64)]) for i in range(3))
        split = lambda t: g.op("Transpose", [g.op("Reshape", [t, g.const([1, tokens, heads, dh], np.int64)])], perm=[0, 2, 1, 3])
        q, k, v = split(q), split(k), split(v)
        scores = g.op("Div", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])]), g.const(np.sqrt(dh))])
        att = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        att = g.op("Reshape", [g.op("Transpose", [att], perm=[0, 2, 1, 3]), g.const([1, tokens, d], np.int64)])
        x = g.op("Add", [x, linear(att, d, d)])
        m = linear(layer_norm(x), d, 4 * d)
        e = g.op("Erf", [g.op("Div", [m, g.const(np.sqrt(2.0))])])
        m = g.op("Mul", [g.op("Mul", [m, g.const(0.5)]), g.op("Add", [e, g.const(1.0)])])
        return g.op("Add", [x, linear(m, 4 * d, d)])

    p = g.op("Conv", ["image", g.weight([d, 3, patch, patch], 0.02), g.weight([d], 0.02)], strides=[patch, patch])
    p = g.op("Transpose", [g.op("Reshape", [p, g.const([1, d, grid * grid], np.int64)])], perm=[0, 2, 1])
    x = g.op("Add", [g.op("Concat", [g.weight([1, 1, d], 0.02), p], axis=1), g.weight([1, tokens, d], 0.02)])
    every = a.blocks // a.exits
    outs = []
    for b in range(a.blocks):
        x = block(x)
        if (b + 1) % every == 0 and len(outs) < a.exits:
            pooled = g.op("ReduceMean", [layer_norm(x)], axes=[1], keepdims=0)
            a_k = f"a{len(outs)}"
            g.nodes.append(helper.make_node("Tanh", [linear(pooled, d, 2)], [a_k]))
            outs.append(a_k)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "full.onnx")
    g.save(path, [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, a.size, a.size])],
           [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 2]) for o in outs])
    params = sum(int(np.prod(t.dims)) for t in g.inits)
    print(f"wrote {path}: {a.blocks} blocks, width {d}, {tokens} tokens, {params / 1e6:.1f} M parameters")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes a tiny multi-exit model in the DeeR shape as ONNX segments, for tests.

    python3 tools/onnx/make_tiny_model.py --out engines/models/testdata/tiny --seed 7
    python3 tools/onnx/make_tiny_model.py --out engines/models/testdata/tiny-discrete --seed 7 --discrete 5
    python3 tools/onnx/make_tiny_model.py --out engines/models/testdata/kv-cache --seed 7 --cache 2,3,4

Inputs: image [1,3,16,16] and a one-hot instruction [1,4]. Segment 0 embeds
4x4 patches plus an instruction token and runs one transformer block; each
later segment runs one more block. Segment i outputs the token states
(`hidden<i>`, read by segment i+1) and their mean (`feature`, read by the
head). The head is a GRU cell shared by all exits: feature + h_in -> action
[1,3] + h_out. With --discrete K the head instead ends in a softmax over K
action bins (`action` [1,K], class probabilities) and the criterion is
max-confidence. With --cache S,K,W the head is instead a two-layer temporal
attention head over a key/value cache of S sinks, K saddles and W recent
slots (`[head.cache]`): feature + past_key_values.{l}.key/.value
[2, slots, 16] + cache_mask + cache_positions [1, slots] -> action [1,3] +
present.{l}.key/.value [2, 1, 16] + cache_attention [4, 1, slots + 1].
Weights are random (seeded): this model exists to check that backends,
criteria and the cache compute what they should, not to drive a robot.
Needs only `onnx` and `numpy`.
"""
import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_toml  # noqa: E402

EXITS = [f"segment{i}.onnx" for i in range(3)]

D, TOKENS, HEADS, HIDDEN, ACTIONS, PATCH = 32, 17, 2, 32, 3, 4
OPSET = 17


class Graph:
    def __init__(self, rng, prefix):
        self.nodes, self.inits, self.rng, self.prefix, self.n = [], [], rng, prefix, 0

    def name(self, base):
        self.n += 1
        return f"{self.prefix}{base}_{self.n}"

    def weight(self, shape, scale=None):
        scale = scale if scale is not None else 1.0 / np.sqrt(shape[0])
        w = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        n = self.name("w")
        self.inits.append(numpy_helper.from_array(w, n))
        return n

    def const(self, value, dtype=np.float32):
        n = self.name("c")
        self.inits.append(numpy_helper.from_array(np.array(value, dtype=dtype), n))
        return n

    def op(self, kind, inputs, **attrs):
        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def linear(self, x, d_in, d_out):
        return self.op("Add", [self.op("MatMul", [x, self.weight([d_in, d_out])]), self.weight([d_out], 0.02)])

    def layer_norm(self, x):
        return self.op("LayerNormalization", [x, self.const(np.ones(D)), self.const(np.zeros(D))], axis=-1, epsilon=1e-5)

    def gelu(self, x):
        # 0.5 x (1 + erf(x / sqrt 2)), as torch exports it
        e = self.op("Erf", [self.op("Div", [x, self.const(np.sqrt(2.0))])])
        return self.op("Mul", [self.op("Mul", [x, self.const(0.5)]), self.op("Add", [e, self.const(1.0)])])

    def block(self, x):
        dh = D // HEADS
        h = self.layer_norm(x)
        qkv = self.linear(h, D, 3 * D)
        q, k, v = (self.op("Slice", [qkv, self.const([i * D], np.int64), self.const([(i + 1) * D], np.int64), self.const([2], np.int64)]) for i in range(3))
        split = lambda t: self.op("Transpose", [self.op("Reshape", [t, self.const([1, TOKENS, HEADS, dh], np.int64)])], perm=[0, 2, 1, 3])
        q, k, v = split(q), split(k), split(v)
        scores = self.op("Div", [self.op("MatMul", [q, self.op("Transpose", [k], perm=[0, 1, 3, 2])]), self.const(np.sqrt(dh))])
        att = self.op("MatMul", [self.op("Softmax", [scores], axis=-1), v])
        att = self.op("Reshape", [self.op("Transpose", [att], perm=[0, 2, 1, 3]), self.const([1, TOKENS, D], np.int64)])
        x = self.op("Add", [x, self.linear(att, D, D)])
        m = self.linear(self.gelu(self.linear(self.layer_norm(x), D, 2 * D)), 2 * D, D)
        return self.op("Add", [x, m])

    def save(self, path, inputs, outputs):
        g = helper.make_graph(self.nodes, os.path.basename(path), inputs, outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="offramp-tiny")
        m.ir_version = 8  # what opset 17 needs; newer IRs are refused by older runtimes
        onnx.checker.check_model(m, full_check=True)
        onnx.save(m, path)


def tensor(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def segment(rng, index, path):
    g = Graph(rng, f"s{index}_")
    if index == 0:
        grid = 16 // PATCH
        p = g.op("Reshape", ["image", g.const([1, 3, grid, PATCH, grid, PATCH], np.int64)])
        p = g.op("Transpose", [p], perm=[0, 2, 4, 1, 3, 5])
        p = g.op("Reshape", [p, g.const([1, grid * grid, 3 * PATCH * PATCH], np.int64)])
        patches = g.linear(p, 3 * PATCH * PATCH, D)
        token = g.op("Reshape", [g.op("MatMul", ["instruction", g.weight([4, D])]), g.const([1, 1, D], np.int64)])
        x = g.op("Concat", [token, patches], axis=1)
        x = g.op("Add", [x, g.weight([1, TOKENS, D], 0.02)])
        inputs = [tensor("image", [1, 3, 16, 16]), tensor("instruction", [1, 4])]
    else:
        x = f"hidden{index - 1}"
        inputs = [tensor(x, [1, TOKENS, D])]
    out = f"hidden{index}"  # read by the next segment under this name
    g.nodes.append(helper.make_node("Identity", [g.block(x)], [out]))
    g.nodes.append(helper.make_node("ReduceMean", [out], ["feature"], axes=[1], keepdims=0))
    g.save(path, inputs, [tensor(out, [1, TOKENS, D]), tensor("feature", [1, D])])


def head(rng, path, bins=None):
    g = Graph(rng, "head_")
    gate = lambda: g.op("Sigmoid", [g.op("Add", [g.linear("feature", D, HIDDEN), g.op("MatMul", ["h_in", g.weight([HIDDEN, HIDDEN])])])])
    z, r = gate(), gate()
    hn = g.op("MatMul", ["h_in", g.weight([HIDDEN, HIDDEN])])
    n = g.op("Tanh", [g.op("Add", [g.linear("feature", D, HIDDEN), g.op("Mul", [r, hn])])])
    one_minus_z = g.op("Sub", [g.const(1.0), z])
    h = g.op("Add", [g.op("Mul", [one_minus_z, n]), g.op("Mul", [z, "h_in"])])
    g.nodes.append(helper.make_node("Identity", [h], ["h_out"]))
    if bins is None:
        a = g.linear("h_out", HIDDEN, ACTIONS)
        g.nodes.append(helper.make_node("Tanh", [a], ["action"]))
        width = ACTIONS
    else:
        # Logits scaled up so that some frames are confident and some not.
        a = g.op("Mul", [g.linear("h_out", HIDDEN, bins), g.const(4.0)])
        g.nodes.append(helper.make_node("Softmax", [a], ["action"], axis=-1))
        width = bins
    g.save(path, [tensor("feature", [1, D]), tensor("h_in", [1, HIDDEN])], [tensor("action", [1, width]), tensor("h_out", [1, HIDDEN])])


CACHE_LAYERS = 2


def cache_head(rng, path, slots):
    """One query (the current frame) attends over the cache and itself, per
    layer; the attention logits get the runtime's mask plus a learned
    multiple of each slot's recency rank."""
    g = Graph(rng, "head_")
    dh = D // HEADS
    x = "feature"
    heads = lambda t: g.op("Reshape", [t, g.const([HEADS, 1, dh], np.int64)])
    bias = g.op("Add", ["cache_mask", g.op("Mul", ["cache_positions", g.const(-0.05)])])
    bias = g.op("Concat", [bias, g.const(np.zeros((1, 1)))], axis=-1)
    atts, outs = [], []
    for layer in range(CACHE_LAYERS):
        h = g.layer_norm(x)
        q, k, v = (heads(g.linear(h, D, D)) for _ in range(3))
        key, value = f"present.{layer}.key", f"present.{layer}.value"
        g.nodes.append(helper.make_node("Identity", [k], [key]))
        g.nodes.append(helper.make_node("Identity", [v], [value]))
        keys = g.op("Concat", [f"past_key_values.{layer}.key", key], axis=1)
        values = g.op("Concat", [f"past_key_values.{layer}.value", value], axis=1)
        logits = g.op("Div", [g.op("MatMul", [q, g.op("Transpose", [keys], perm=[0, 2, 1])]), g.const(np.sqrt(dh))])
        att = g.op("Softmax", [g.op("Add", [logits, bias])], axis=-1)
        atts.append(att)
        o = g.op("Reshape", [g.op("MatMul", [att, values]), g.const([1, D], np.int64)])
        x = g.op("Add", [x, g.linear(o, D, D)])
        outs += [tensor(key, [HEADS, 1, dh]), tensor(value, [HEADS, 1, dh])]
    g.nodes.append(helper.make_node("Concat", atts, ["cache_attention"], axis=0))
    g.nodes.append(helper.make_node("Tanh", [g.linear(x, D, ACTIONS)], ["action"]))
    ins = [tensor("feature", [1, D])]
    for layer in range(CACHE_LAYERS):
        ins += [tensor(f"past_key_values.{layer}.{kv}", [HEADS, slots, dh]) for kv in ("key", "value")]
    ins += [tensor("cache_mask", [1, slots]), tensor("cache_positions", [1, slots])]
    outs = [tensor("action", [1, ACTIONS])] + outs + [tensor("cache_attention", [CACHE_LAYERS * HEADS, 1, slots + 1])]
    g.save(path, ins, outs)


def cache_toml(sinks, saddles, recent):
    names = lambda fmt: "[" + ", ".join(f'"{fmt.format(layer)}"' for layer in range(CACHE_LAYERS)) + "]"
    return f"""# Source description read by `offramp build --onnx`.
model = "tiny-kv-cache-test"
exits = ["segment0.onnx", "segment1.onnx", "segment2.onnx"]
feature = "feature"

[head]
artifact = "head.onnx"
feature_input = "feature"
action_output = "action"

# The temporal attention head's cache: the runtime owns it and evicts.
[head.cache]
past_keys = {names("past_key_values.{}.key")}
past_values = {names("past_key_values.{}.value")}
present_keys = {names("present.{}.key")}
present_values = {names("present.{}.value")}
mask = "cache_mask"
positions = "cache_positions"
attention = "cache_attention"
sinks = {sinks}
saddles = {saddles}
recent = {recent}
saddle_decay = 0.9

[criterion]
kind = "action-consistency"
continuous_dims = [0, 1]

[preprocess]                        # so that it runs on camera frames (the simulator's)
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
instruction = "instruction"
"""


CRITERION = [("kind", "action-consistency"), ("continuous_dims", [0, 1])]
MODEL_TOML = model_toml.render("tiny-test", EXITS, CRITERION)

# The discrete model: a preprocessing section (so that it runs on camera
# frames, e.g. the simulator's) and the max-confidence criterion.
DISCRETE_TOML = model_toml.render(
    "tiny-discrete-test",
    EXITS,
    ["# The head's action is class probabilities: stop when 1 - max p is small.", ("kind", "max-confidence")],
    preprocess={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "instruction": "instruction"},
    preprocess_comment=False,
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--discrete", type=int, metavar="K", help="softmax head over K action bins")
    ap.add_argument("--cache", metavar="S,K,W", help="a temporal attention head over a cache of S sinks, K saddles, W recent slots")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for i in range(3):
        segment(rng, i, os.path.join(args.out, f"segment{i}.onnx"))
    if args.cache:
        sinks, saddles, recent = (int(v) for v in args.cache.split(","))
        cache_head(rng, os.path.join(args.out, "head.onnx"), sinks + saddles + recent)
        text = cache_toml(sinks, saddles, recent)
    else:
        head(rng, os.path.join(args.out, "head.onnx"), args.discrete)
        text = MODEL_TOML if args.discrete is None else DISCRETE_TOML
    with open(os.path.join(args.out, "model.toml"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes one full-model ONNX export per model shape offramp accepts, for tests.

    python3 tools/onnx/make_shapes.py --out engines/models/testdata/shapes --seed 11

Each shape is what a PyTorch user exports in one go: the whole multi-exit
model in one graph, every exit's output a named graph output. `offramp split`
cuts it into segments (the commands are in each directory's `split.txt`), and
`offramp build` turns those into an engine set. Writes, per shape directory:

- `per-exit/full.onnx`: the usual early-exit layout, no head. Inputs image
  [1,3,16,16] and a one-hot instruction [1,4]; four transformer blocks; exit i
  emits its own action `a<i>` [1,2]. Two tensors cross the first boundary
  (`hidden0` and the pooled `pooled0`, which segment 1 adds back).
- `recurrent/full.onnx` + `head.onnx`: DeeR's layout. The blocks emit a
  feature `f<i>` per exit; a GRU head shared by all exits (its own file, since
  it runs once per exit with a state) turns feature + state into the action.
- `recurrent/stateless-head.onnx` + `with-stateless.toml`: the same export
  with a stateless head (feature -> action, no state), the third layout.
- `skip/full.onnx`: per-exit actions from four MLP blocks that each read an
  instruction embedding computed once in the stem, and the last block the
  instruction input itself: tensors a segment reads from two or more
  segments back, which `split` passes through.
- `cameras/full.onnx`: two cameras, each with its own preprocessing: a
  front image [1,3,16,16] patchified as above, and a wrist image [1,3,8,8]
  fused late, at the third block only (a model input segment 0 does not
  read, passed through to the segment that does). Per-exit actions, one-hot
  instruction.
- `learned/full.onnx`: learned exits. Per-exit actions `a<i>` as in
  `per-exit`, and exits 0-2 also emit a confidence `c<i>` [1,1] (a sigmoid
  exit head on the pooled tokens) that the learned criterion reads.
- `tokens/full.onnx` + `tokenizer.json`: discrete action tokens (RT-2 style).
  The instruction is token ids (int64 [1,6]) embedded by a Gather, and again
  by the last block; exit i emits logits `t<i>` [1,2,7] over 7 bins of each
  of v and omega.

Weights are random (seeded): these models check the contract, not driving.
Needs only `onnx` and `numpy`.
"""
import argparse
import json
import os
import sys

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402
from make_tiny_model import D, PATCH, TOKENS, Graph, tensor  # noqa: E402

EXITS = 4
BINS = 7
IDS = 6
VOCAB = ["[PAD]", "[UNK]", "go", "to", "the", "red", "green", "blue", "yellow", "landmark"]
INSTRUCTIONS = [f"go to the {c} landmark" for c in ["red", "green", "blue", "yellow"]]


def patches(g, image="image"):
    grid = 16 // PATCH
    p = g.op("Reshape", [image, g.const([1, 3, grid, PATCH, grid, PATCH], np.int64)])
    p = g.op("Transpose", [p], perm=[0, 2, 4, 1, 3, 5])
    p = g.op("Reshape", [p, g.const([1, grid * grid, 3 * PATCH * PATCH], np.int64)])
    return g.linear(p, 3 * PATCH * PATCH, D)


def name(g, x, out):
    g.nodes.append(helper.make_node("Identity", [x], [out]))
    return out


def pooled(g, x):
    return g.op("ReduceMean", [x], axes=[1], keepdims=0)


def stem(g, token, image="image"):
    x = g.op("Concat", [token, patches(g, image)], axis=1)
    return g.op("Add", [x, g.weight([1, TOKENS, D], 0.02)])


def one_hot_token(g):
    return g.op("Reshape", [g.op("MatMul", ["instruction", g.weight([4, D])]), g.const([1, 1, D], np.int64)])


def per_exit(rng, out):
    g = Graph(rng, "")
    x = name(g, g.block(stem(g, one_hot_token(g))), "hidden0")
    p0 = name(g, pooled(g, x), "pooled0")
    outs = [name(g, g.op("Tanh", [g.linear(p0, D, 2)]), "a0")]
    # Segment 1 reads both carried tensors: the tokens and their mean.
    x = g.op("Add", [g.block(x), g.op("Reshape", [p0, g.const([1, 1, D], np.int64)])])
    for i in range(1, EXITS):
        if i > 1:
            x = g.block(x)
        x = name(g, x, f"hidden{i}")
        outs.append(name(g, g.op("Tanh", [g.linear(pooled(g, x), D, 2)]), f"a{i}"))
    g.save(os.path.join(out, "full.onnx"), [tensor("image", [1, 3, 16, 16]), tensor("instruction", [1, 4])],
           [tensor(a, [1, 2]) for a in outs])


def recurrent(rng, out):
    g = Graph(rng, "")
    x = g.block(stem(g, one_hot_token(g)))
    feats = []
    for i in range(EXITS):
        if i > 0:
            x = g.block(x)
        x = name(g, x, f"hidden{i}")
        feats.append(name(g, pooled(g, x), f"f{i}"))
    g.save(os.path.join(out, "full.onnx"), [tensor("image", [1, 3, 16, 16]), tensor("instruction", [1, 4])],
           [tensor(f, [1, D]) for f in feats])
    tiny.head(rng, os.path.join(out, "head.onnx"))


def skip(rng, out):
    g = Graph(rng, "")
    x = g.op("Reshape", ["image", g.const([1, 3 * 16 * 16], np.int64)])
    emb = name(g, g.op("MatMul", ["instruction", g.weight([4, D])]), "emb")
    h = g.op("Relu", [g.op("Add", [g.linear(x, 3 * 16 * 16, D), emb])])
    outs = []
    for i in range(EXITS):
        if i > 0:
            h = g.op("Add", [g.linear(h, D, D), emb])
            if i == EXITS - 1:
                h = g.op("Add", [h, g.op("MatMul", ["instruction", g.weight([4, D])])])
            h = g.op("Relu", [h])
        h = name(g, h, f"h{i}")
        outs.append(name(g, g.op("Tanh", [g.linear(h, D, 2)]), f"a{i}"))
    g.save(os.path.join(out, "full.onnx"), [tensor("image", [1, 3, 16, 16]), tensor("instruction", [1, 4])],
           [tensor(a, [1, 2]) for a in outs])


def cameras(rng, out):
    g = Graph(rng, "")
    x = stem(g, one_hot_token(g), "front")
    outs = []
    for i in range(EXITS):
        x = g.block(x)
        if i == 2:
            # Late fusion: the wrist camera enters at the third block only.
            wrist = g.op("Reshape", ["wrist", g.const([1, 3 * 8 * 8], np.int64)])
            x = g.op("Add", [x, g.op("Reshape", [g.linear(wrist, 3 * 8 * 8, D), g.const([1, 1, D], np.int64)])])
        x = name(g, x, f"hidden{i}")
        outs.append(name(g, g.op("Tanh", [g.linear(pooled(g, x), D, 2)]), f"a{i}"))
    g.save(os.path.join(out, "full.onnx"),
           [tensor("front", [1, 3, 16, 16]), tensor("wrist", [1, 3, 8, 8]), tensor("instruction", [1, 4])],
           [tensor(a, [1, 2]) for a in outs])


def learned(rng, out):
    g = Graph(rng, "")
    x = stem(g, one_hot_token(g))
    outs, confs = [], []
    for i in range(EXITS):
        x = name(g, g.block(x), f"hidden{i}")
        p = pooled(g, x)
        outs.append(name(g, g.op("Tanh", [g.linear(p, D, 2)]), f"a{i}"))
        if i < EXITS - 1:
            confs.append(name(g, g.op("Sigmoid", [g.linear(p, D, 1)]), f"c{i}"))
    g.save(os.path.join(out, "full.onnx"), [tensor("image", [1, 3, 16, 16]), tensor("instruction", [1, 4])],
           [tensor(a, [1, 2]) for a in outs] + [tensor(c, [1, 1]) for c in confs])


CAMERAS = """model = "cameras-test"
[preprocess]
instruction = "instruction"

# View k of a frame feeds images[k]: the front camera, then the wrist camera.
[[preprocess.images]]
input = "front"
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]

[[preprocess.images]]
input = "wrist"
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]

[criterion]
kind = "action-consistency"
continuous_dims = [0, 1]
"""


def stateless_head(rng, path):
    g = Graph(rng, "head_")
    h = g.op("Relu", [g.linear("feature", D, 32)])
    g.nodes.append(helper.make_node("Tanh", [g.linear(h, 32, 2)], ["action"]))
    g.save(path, [tensor("feature", [1, D])], [tensor("action", [1, 2])])


def tokens(rng, out):
    g = Graph(rng, "")
    emb = g.op("Gather", [g.weight([len(VOCAB), D], 1.0), "instruction"], axis=0)  # [1, IDS, D]
    token = g.op("ReduceMean", [emb], axes=[1], keepdims=1)  # [1, 1, D]
    x = g.block(stem(g, token))
    outs = []
    for i in range(EXITS):
        if i > 0:
            x = g.block(x)
        if i == EXITS - 1:
            # The last block reads the token ids again, through an embedding
            # of its own: `split` carries them to it as f32 and casts back.
            again = g.op("Gather", [g.weight([len(VOCAB), D], 1.0), "instruction"], axis=0)
            x = g.op("Add", [x, g.op("ReduceMean", [again], axes=[1], keepdims=1)])
        x = name(g, x, f"hidden{i}")
        logits = g.op("Mul", [g.linear(pooled(g, x), D, 2 * BINS), g.const(3.0)])
        outs.append(name(g, g.op("Reshape", [logits, g.const([1, 2, BINS], np.int64)]), f"t{i}"))
    ids = helper.make_tensor_value_info("instruction", TensorProto.INT64, [1, IDS])
    g.save(os.path.join(out, "full.onnx"), [tensor("image", [1, 3, 16, 16]), ids],
           [tensor(t, [1, 2, BINS]) for t in outs])
    tokenizer = {
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": IDS, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": IDS}, "direction": "Right", "pad_to_multiple_of": None,
                    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": [],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(VOCAB)}, "unk_token": "[UNK]"},
    }
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f, indent=1)


PREPROCESS = """[preprocess]
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
instruction = "instruction"
"""

LEARNED = f"""model = "learned-test"
{PREPROCESS}
[criterion]
kind = "learned"
"""


WITH = {
    "per-exit": (
        "--exit-outputs a0,a1,a2,a3 --cuts 'hidden0,pooled0;hidden1;hidden2'",
        f"""model = "per-exit-test"
{PREPROCESS}
[criterion]
kind = "action-consistency"
continuous_dims = [0, 1]
""",
    ),
    "recurrent": (
        "--exit-outputs f0,f1,f2,f3 --cuts 'hidden0;hidden1;hidden2' --head head.onnx",
        f"""model = "recurrent-test"
{PREPROCESS}
[head]
artifact = "head.onnx"
feature_input = "feature"
state_input = "h_in"
state_output = "h_out"
action_output = "action"

[criterion]
kind = "action-consistency"
continuous_dims = [0, 1]
""",
    ),
    "tokens": (
        "--exit-outputs t0,t1,t2,t3 --cuts 'hidden0;hidden1;hidden2'",
        f"""model = "tokens-test"
{PREPROCESS}tokenizer = "tokenizer.json"
instruction_texts = {json.dumps(INSTRUCTIONS)}

[action]
kind = "tokens"
scores = "logits"
bins = [{[round(float(v), 4) for v in np.linspace(-0.1, 0.5, BINS)]}, {[round(float(v), 4) for v in np.linspace(-1.2, 1.2, BINS)]}]

[criterion]
kind = "margin"
""",
    ),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    for shape, make in [("per-exit", per_exit), ("recurrent", recurrent), ("tokens", tokens)]:
        out = os.path.join(args.out, shape)
        os.makedirs(out, exist_ok=True)
        make(rng, out)
        flags, with_toml = WITH[shape]
        with open(os.path.join(out, "with.toml"), "w") as f:
            f.write("# The model description `offramp split --with` completes (exits, exit outputs).\n")
            f.write(with_toml)
        with open(os.path.join(out, "split.txt"), "w") as f:
            f.write(f"offramp split --onnx full.onnx {flags} --with with.toml --out <dir>\n")
    # The stateless head: its own generator, so the files above stay as
    # they are.
    out = os.path.join(args.out, "recurrent")
    stateless_head(np.random.default_rng(args.seed + 1), os.path.join(out, "stateless-head.onnx"))
    with open(os.path.join(out, "with-stateless.toml"), "w") as f:
        f.write("# The model description `offramp split --with` completes, for the stateless head.\n")
        f.write(WITH["recurrent"][1].replace('"recurrent-test"', '"stateless-test"')
                .replace('artifact = "head.onnx"', 'artifact = "stateless-head.onnx"')
                .replace('state_input = "h_in"\nstate_output = "h_out"\n', ""))
    for shape, make, seed, with_toml, flags in [
        ("skip", skip, 2, WITH["per-exit"][1].replace('"per-exit-test"', '"skip-test"'), ""),
        ("cameras", cameras, 3, CAMERAS, " --cuts 'hidden0;hidden1;hidden2'"),
        ("learned", learned, 4, LEARNED, " --confidence-outputs c0,c1,c2 --cuts 'hidden0;hidden1;hidden2'"),
    ]:
        # Each its own generator, so that the files of the others stay as
        # they are.
        d = os.path.join(args.out, shape)
        os.makedirs(d, exist_ok=True)
        make(np.random.default_rng(args.seed + seed), d)
        with open(os.path.join(d, "with.toml"), "w") as f:
            f.write("# The model description `offramp split --with` completes (exits, exit outputs).\n")
            f.write(with_toml)
        with open(os.path.join(d, "split.txt"), "w") as f:
            f.write(f"offramp split --onnx full.onnx --exit-outputs a0,a1,a2,a3{flags} --with with.toml --out <dir>\n")
    with open(os.path.join(out, "split.txt"), "a") as f:
        f.write(f"offramp split --onnx full.onnx {WITH['recurrent'][0].replace('head.onnx', 'stateless-head.onnx')} --with with-stateless.toml --out <dir>\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference for the engine tests: runs an ONNX exit chain with onnxruntime.

    python3 tools/onnx/ort_chain.py --onnx DIR --input in.f32 --output out.f32

DIR holds model.toml and the segments (the input of `offramp build`). The
input file is raw little-endian f32: each model input in segment 0's order,
then the head's initial state. For every exit the output file gets, in order,
every segment output, then the head's outputs on that exit's feature with the
initial state (not committed, as the runtime evaluates exits). Needs
onnxruntime and numpy.
"""
import argparse
import os
import sys
import tomllib

import numpy as np
import onnxruntime as ort


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    a = ap.parse_args()
    with open(os.path.join(a.onnx, "model.toml"), "rb") as f:
        src = tomllib.load(f)
    segs = [session(os.path.join(a.onnx, e)) for e in src["exits"]]
    head = session(os.path.join(a.onnx, src["head"]["artifact"]))
    flat = np.fromfile(a.input, dtype="<f4")
    feeds, off = {}, 0
    for i in segs[0].get_inputs():
        n = int(np.prod(i.shape))
        feeds[i.name] = flat[off:off + n].reshape(i.shape)
        off += n
    state_in = next(i for i in head.get_inputs() if i.name == src["head"]["state_input"])
    n = int(np.prod(state_in.shape))
    state = flat[off:off + n].reshape(state_in.shape)
    if off + n != flat.size:
        sys.exit(f"{a.input}: {flat.size} values, expected {off + n}")
    out = []
    available = feeds
    for s in segs:
        names = [o.name for o in s.get_outputs()]
        res = s.run(names, {i.name: available[i.name] for i in s.get_inputs()})
        available = dict(zip(names, res))
        out.extend(r.ravel() for r in res)
        h = head.run([o.name for o in head.get_outputs()],
                     {src["head"]["feature_input"]: available[src["feature"]], src["head"]["state_input"]: state})
        out.extend(r.ravel() for r in h)
    np.concatenate(out).astype("<f4").tofile(a.output)


if __name__ == "__main__":
    main()

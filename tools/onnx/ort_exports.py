#!/usr/bin/env python3
"""Reference for the export tests: runs per-segment exports as their
model.toml chains them, with onnxruntime, on the files as exported.

    python3 tools/onnx/ort_exports.py --onnx DIR --input in.f32 --output out.f32

DIR holds model.toml and the segment files. Each exit is a file name or a
table (`file`, `action`, `inputs` = {this segment's input = the previous
segment's output}); `action_output` names the action of exits that do not.
The input file is raw little-endian f32: each input of segment 0 in its
graph order, a dynamic dimension read as 1 (int64 inputs, token ids, are
given as f32 integers and cast). The output file gets each exit's action,
in exit order, as raw little-endian f32. Needs onnxruntime and numpy.
"""
import argparse
import os
import sys
import tomllib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ort_chain import session  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    a = ap.parse_args()
    with open(os.path.join(a.onnx, "model.toml"), "rb") as f:
        desc = tomllib.load(f)
    exits = [e if isinstance(e, dict) else {"file": e} for e in desc["exits"]]
    flat = np.fromfile(a.input, dtype="<f4")
    prev, off, actions = {}, 0, []
    for k, e in enumerate(exits):
        s = session(os.path.join(a.onnx, e["file"]))
        feeds = {}
        for i in s.get_inputs():
            if k == 0:
                shape = [d if isinstance(d, int) else 1 for d in i.shape]
                n = int(np.prod(shape))
                v = flat[off:off + n].reshape(shape)
                feeds[i.name] = v.astype(np.int64) if i.type == "tensor(int64)" else v
                off += n
            else:
                feeds[i.name] = prev[e.get("inputs", {}).get(i.name, i.name)]
        names = [o.name for o in s.get_outputs()]
        prev = dict(zip(names, s.run(names, feeds)))
        actions.append(prev[e.get("action", desc.get("action_output"))])
    if off != flat.size:
        sys.exit(f"{a.input}: {flat.size} values, expected {off}")
    np.concatenate([np.asarray(x, dtype="<f4").ravel() for x in actions]).tofile(a.output)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference for the split tests: runs a full multi-exit export with onnxruntime.

    python3 tools/onnx/ort_full.py --onnx full.onnx --input in.f32 --outputs a0,a1 --output out.f32

The input file is raw little-endian f32: each graph input in order, a
dynamic dimension read as 1 (int64 inputs, token ids, are given as f32
integers and cast). The output file gets
the named graph outputs, in the order given, as raw little-endian f32. Needs
onnxruntime and numpy.
"""
import argparse
import sys

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--outputs", required=True)
    ap.add_argument("--output", required=True)
    a = ap.parse_args()
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    s = ort.InferenceSession(a.onnx, o, providers=["CPUExecutionProvider"])
    flat = np.fromfile(a.input, dtype="<f4")
    feeds, off = {}, 0
    for i in s.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]  # a dynamic axis: 1
        n = int(np.prod(shape))
        v = flat[off:off + n].reshape(shape)
        feeds[i.name] = v.astype(np.int64) if i.type == "tensor(int64)" else v
        off += n
    if off != flat.size:
        sys.exit(f"{a.input}: {flat.size} values, expected {off}")
    names = a.outputs.split(",")
    outs = s.run(names, feeds)
    np.concatenate([np.asarray(x, dtype="<f4").ravel() for x in outs]).tofile(a.output)


if __name__ == "__main__":
    main()

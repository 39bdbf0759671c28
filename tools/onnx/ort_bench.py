#!/usr/bin/env python3
"""onnxruntime side of `offramp bench engines`: times each ONNX file on
--threads intra-op threads (default 1) with zero inputs, prints JSON
{file: {"p50_us":…, "mean_us":…, "n":…}}.

    python3 tools/onnx/ort_bench.py --iters 500 --threads 1 seg0.onnx seg1.onnx …
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    out = {}
    for path in a.files:
        o = ort.SessionOptions()
        o.intra_op_num_threads = a.threads
        o.inter_op_num_threads = 1
        o.add_session_config_entry("session.intra_op.allow_spinning", "0")
        s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
        # Token-id inputs (int64) get id 0, valid in any vocabulary.
        feeds = {
            i.name: np.zeros(i.shape, dtype=np.int64) if i.type == "tensor(int64)" else np.full(i.shape, 0.1, dtype=np.float32)
            for i in s.get_inputs()
        }
        for _ in range(a.warmup):
            s.run(None, feeds)
        t = []
        for _ in range(a.iters):
            t0 = time.perf_counter_ns()
            s.run(None, feeds)
            t.append((time.perf_counter_ns() - t0) / 1e3)
        t.sort()
        out[path] = {"n": len(t), "p50_us": t[len(t) // 2], "p99_us": t[int(len(t) * 0.99)], "mean_us": sum(t) / len(t)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""onnxruntime's time per node of a model, one thread, to set beside `examples/nn_profile`.

    pip install onnxruntime numpy
    python3 benches/nn_ort_profile.py models/PP-OCRv6_det_small.onnx 1,3,960,736 [TOP]

The input is the same deterministic pattern `nn_profile` feeds; the times are means over
six runs (the first one included), from onnxruntime's own profiler.
"""
import collections
import json
import os
import sys
import tempfile

import numpy as np
import onnxruntime as ort


def main():
    model, shape = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    n = int(np.prod(shape))
    x = ((np.arange(n) * 7919 % 1000).astype(np.float32) / 500.0 - 1.0).reshape(shape)
    name = session.get_inputs()[0].name
    runs = 6
    for _ in range(runs):
        session.run(None, {name: x})
    events = json.load(open(session.end_profiling()))
    per_node = collections.defaultdict(float)
    info = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"]] += e["dur"] / 1000 / runs
            args = e["args"]
            shapes = [list(d.values())[0] for d in args.get("input_type_shape", [])][:2]
            out = [list(d.values())[0] for d in args.get("output_type_shape", [])]
            info[e["name"]] = (args["op_name"], shapes, out)
    per_kind = collections.Counter()
    for node, ms in per_node.items():
        per_kind[info[node][0]] += ms
    print(f"{model} {shape}: {sum(per_node.values()):.1f} ms per run")
    for kind, ms in per_kind.most_common():
        print(f"  {kind:<20} {ms:8.2f} ms")
    print("slowest nodes:")
    for node, ms in sorted(per_node.items(), key=lambda kv: -kv[1])[:top]:
        op, ins, out = info[node]
        print(f"  {ms:8.3f} ms  {op} {ins} -> {out}")


if __name__ == "__main__":
    main()

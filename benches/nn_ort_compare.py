#!/usr/bin/env python3
"""onnxruntime on the shapes of `cargo bench -p ocr-benches -- nn`, 2 threads, median of 10.

    pip install onnxruntime numpy && python3 benches/nn_ort_compare.py
"""
import os
import statistics
import time

import numpy as np
import onnxruntime as ort

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")


def bench(model, shape, runs=10):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    s = ort.InferenceSession(os.path.join(MODELS, model), opts, providers=["CPUExecutionProvider"])
    n = int(np.prod(shape))
    x = ((np.arange(n) * 7919 % 1000).astype(np.float32) / 500.0 - 1.0).reshape(shape)
    name = s.get_inputs()[0].name
    s.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, {name: x})
        times.append(time.perf_counter() - t)
    print(f"{model:32s} {str(shape):20s} median {statistics.median(times) * 1000:8.2f} ms")


for tier in ("small", "tiny"):
    bench(f"PP-OCRv6_det_{tier}.onnx", (1, 3, 640, 640))
    bench(f"PP-OCRv6_rec_{tier}.onnx", (1, 3, 48, 320))
    bench(f"PP-OCRv6_rec_{tier}.onnx", (6, 3, 48, 320))
    # A full page: a 2550×3300 scan's detector input, and a batch of its lines.
    bench(f"PP-OCRv6_det_{tier}.onnx", (1, 3, 2016, 1536), runs=5)
    bench(f"PP-OCRv6_rec_{tier}.onnx", (6, 3, 48, 1472), runs=5)

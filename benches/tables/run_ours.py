"""Runs OUR engine (`ocr recognize FILE --format json`) over a table set and writes common-format
predictions (common.from_ocr_json), for score_pubtabnet.py / score_icdar2013.py.

    cargo build --release -p ocr-server
    python3 benches/tables/run_ours.py --set pubtabnet --out /work/tableruns/pubtabnet/ours \
        [--bin target/release/ocr] [--corpus /work/shared/corpus] [--ocr-args "--tool extract-tables"]
    python3 benches/tables/run_ours.py --set icdar2013 --out /work/tableruns/icdar2013/ours

One `ocr` process per document, sequentially; `seconds` is that process's wall time, so unlike
the peers' warm figures it includes process start and model load. The raw job JSON is kept
beside each prediction as <doc>.job.json. Needs no package beyond the standard library.
"""
import argparse
import glob
import json
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import doc_filename, from_ocr_json, write_pred  # noqa: E402


def docs(corpus, which, split):
    if which == "icdar2013":
        rel = [os.path.relpath(p, corpus) for p in sorted(glob.glob(os.path.join(corpus, "icdar2013_tables", "*", "*.pdf")))]
        return [(r, r) for r in rel]  # (doc id, file): the id is the path, as in the manifest
    out = []
    with open(os.path.join(corpus, "MANIFEST.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d.get("category") == "table_image" and (split == "all" or d.get("split") == split):
                out.append((d["id"], d["file"]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", required=True, choices=["pubtabnet", "icdar2013"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--corpus", default="/work/shared/corpus")
    ap.add_argument("--split", default="public")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "release", "ocr"))
    ap.add_argument("--ocr-args", default="", help="extra arguments for `ocr recognize`")
    ap.add_argument("--engine", default="ours")
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for doc, rel in docs(a.corpus, a.set, a.split):
        job_path = os.path.join(a.out, doc_filename(doc)[:-5] + ".job.json")
        cmd = [a.bin, "recognize", os.path.join(a.corpus, rel), "--format", "json", "-o", job_path] + shlex.split(a.ocr_args)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=a.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        secs = round(time.perf_counter() - t0, 4)
        try:
            with open(job_path, encoding="utf-8") as f:
                pred = from_ocr_json(json.load(f), doc, a.engine, secs)
        except (OSError, ValueError) as e:
            pred = {"doc": doc, "engine": a.engine, "seconds": secs, "tables": [], "error": f"rc={rc}: {e}"}
        if rc not in (0, 3) and "error" not in pred:
            pred["error"] = f"rc={rc}"
        write_pred(a.out, pred)
        print(f"{doc}\t{secs}\t{len(pred['tables'])} tables" + (f"\t{pred['error']}" if "error" in pred else ""), flush=True)


if __name__ == "__main__":
    main()

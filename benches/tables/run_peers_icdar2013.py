"""camelot (lattice, stream) and pdfplumber (default table settings) over the ICDAR 2013 table
competition PDFs of the shared corpus (icdar2013_tables/{eu,us}/*.pdf), every page, whole document:
no GT region is given to the tools (the competition's "complete process" setting).

    /work/tableenv/bin/python benches/tables/run_peers_icdar2013.py \
        --corpus /work/shared/corpus --out /work/tableruns/icdar2013 \
        [--engines camelot-lattice camelot-stream pdfplumber]

Writes OUT/<engine>/<doc>.json in the common format (common.py) and OUT/<engine>/run_meta.json.
Engines run one after the other, documents sequentially, in this one process (imports done before
timing). `seconds` per document = the library call(s) for all pages:
  camelot-lattice / camelot-stream: camelot.read_pdf(path, pages="all", flavor=...) (lattice
      renders pages with its default pdfium backend; no ghostscript needed); cells = table.df, one
      per grid position (camelot puts a spanning cell's text in its top-left position);
  pdfplumber: pdfplumber.open + page.find_tables() per page + Table.extract() (exactly what
      page.extract_tables() does, but keeping the bbox); a merged cell gets rowspan/colspan from its
      bbox against the table's row tops / column x0s, positions it covers (None) are left out.
bbox: PDF points on the page as displayed (/Rotate applied), origin top-left (camelot's
bottom-left table._bbox is flipped with the displayed page height).
"""
import argparse
import glob
import json
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cell, grid_to_cells, write_pred  # noqa: E402

ENGINES = ["camelot-lattice", "camelot-stream", "pdfplumber"]


def page_heights(path):
    import pypdfium2 as pdfium
    doc = pdfium.PdfDocument(path)
    try:
        return [doc[i].get_size()[1] for i in range(len(doc))]  # displayed size (rotation applied)
    finally:
        doc.close()


def run_camelot(path, flavor):
    import camelot
    heights = page_heights(path)
    t0 = time.perf_counter()
    tables = camelot.read_pdf(path, pages="all", flavor=flavor)
    secs = time.perf_counter() - t0
    out = []
    for t in tables:
        page = int(t.page)
        h = heights[page - 1]
        x1, y1, x2, y2 = t._bbox
        rows = [[str(v).strip() for v in row] for row in t.df.values.tolist()]
        out.append({"page": page, "bbox": [round(x1, 2), round(h - y2, 2), round(x2, 2), round(h - y1, 2)],
                    "cells": grid_to_cells(rows)})
    return out, secs


def plumber_cells(table, grid):
    eps = 0.01
    tops = sorted({c[1] for c in table.cells})
    x0s = sorted({c[0] for c in table.cells})
    cells = []
    for r, (row, texts) in enumerate(zip(table.rows, grid)):
        for c, (bb, text) in enumerate(zip(row.cells, texts)):
            if bb is None:
                continue
            rs = sum(1 for y in tops if bb[1] - eps <= y < bb[3] - eps)
            cs = sum(1 for x in x0s if bb[0] - eps <= x < bb[2] - eps)
            cells.append(cell(r, c, " ".join((text or "").split()), rs, cs))
    return cells


def run_pdfplumber(path):
    import pdfplumber
    found = []
    t0 = time.perf_counter()
    with pdfplumber.open(path) as pdf:
        for page in pdf.pages:
            for t in page.find_tables():
                found.append((page.page_number, t.bbox, t, t.extract()))
            page.close()  # frees the page's cached objects
    secs = time.perf_counter() - t0
    # span bookkeeping (ours, not pdfplumber's) outside the timing
    out = [{"page": pno, "bbox": [round(v, 2) for v in bbox], "cells": plumber_cells(t, grid)}
           for pno, bbox, t, grid in found]
    return out, secs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="/work/shared/corpus")
    ap.add_argument("--out", required=True)
    ap.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    import camelot  # noqa: F401  (import cost outside the timings)
    import pdfplumber  # noqa: F401
    from importlib.metadata import version

    pdfs = sorted(glob.glob(os.path.join(a.corpus, "icdar2013_tables", "*", "*.pdf")))
    if not pdfs:
        sys.exit("no PDFs under icdar2013_tables/")
    for engine in a.engines:
        out_dir = os.path.join(a.out, engine)
        os.makedirs(out_dir, exist_ok=True)
        failures = []
        for path in pdfs:
            doc = os.path.relpath(path, a.corpus)
            pred = {"doc": doc, "engine": engine, "seconds": None, "tables": []}
            try:
                if engine.startswith("camelot-"):
                    tables, secs = run_camelot(path, engine.split("-", 1)[1])
                else:
                    tables, secs = run_pdfplumber(path)
                pred["tables"], pred["seconds"] = tables, round(secs, 4)
            except Exception as e:  # noqa: BLE001 - a failing document is recorded, not fatal
                pred["error"] = f"{type(e).__name__}: {e}"
                failures.append(doc)
            write_pred(out_dir, pred)
            print(f"{engine}\t{doc}\t{pred['seconds']}\t{len(pred['tables'])} tables"
                  + (f"\t{pred['error']}" if "error" in pred else ""), flush=True)
        meta = {"engine": engine, "docs": len(pdfs), "failures": failures,
                "versions": {p: version(p) for p in ("camelot-py", "pdfplumber", "pdfminer.six", "pypdfium2",
                                                     "opencv-python-headless")}}
        with open(os.path.join(out_dir, "run_meta.json"), "w") as f:
            json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()

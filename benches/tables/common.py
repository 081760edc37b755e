"""Common prediction format for the table benchmarks (PubTabNet TEDS, ICDAR 2013 adjacency).

One JSON file per document, named after its corpus id (`/` -> `__`, plus `.json`):

    {"doc": "<manifest id>", "engine": "<name>", "seconds": <engine time for the document>,
     "tables": [{"page": <1-based>, "bbox": [x0, y0, x1, y1] or null,
                 "cells": [{"row": 0, "col": 0, "rowspan": 1, "colspan": 1, "text": "..."}],
                 "html": "<table>...</table>"   (optional: the engine's own HTML, scored if present)
                }]}

`bbox` is in PDF points (1/72 inch) of the page as displayed (the PDF's /Rotate applied), origin
top-left, y downwards. Optional extra keys: a cell's "header" (bool), a document's "error".

Library use: `from common import ...` (the scripts here put this folder on sys.path).
Command line: convert `ocr recognize FILE --format json` output of OUR engine:

    python benches/tables/common.py from-ours JOB.json --doc ID --seconds S --out DIR [--engine ours]
"""
import argparse
import json
import os
from html import escape


def doc_filename(doc_id):
    return doc_id.replace("/", "__") + ".json"


def write_pred(out_dir, pred):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, doc_filename(pred["doc"]))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(pred, f, ensure_ascii=False, indent=1)
    return path


def load_preds(pred_dir):
    """{doc id: prediction} for every *.json in pred_dir that looks like the common format."""
    out = {}
    for name in sorted(os.listdir(pred_dir)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(pred_dir, name), encoding="utf-8") as f:
            d = json.load(f)
        if isinstance(d, dict) and "doc" in d and "tables" in d:
            out[d["doc"]] = d
    return out


def cell(row, col, text, rowspan=1, colspan=1, **extra):
    c = {"row": int(row), "col": int(col), "rowspan": max(1, int(rowspan)),
         "colspan": max(1, int(colspan)), "text": text or ""}
    c.update(extra)
    return c


def grid_to_cells(rows):
    """A list of rows (lists of strings or None) -> cells, one per grid position, spans 1.
    None marks a position covered by a merged cell and is skipped."""
    return [cell(r, c, t) for r, row in enumerate(rows) for c, t in enumerate(row) if t is not None]


def html_to_cells(table_html):
    """Cells (with grid positions resolved through rowspan/colspan) of the first <table>."""
    from lxml import html as lh
    root = lh.fromstring(table_html)
    tables = [root] if root.tag == "table" else root.xpath(".//table")
    if not tables:
        return []
    occupied, cells, r = set(), [], 0
    for tr in tables[0].iter("tr"):
        c = 0
        for td in tr:
            if td.tag not in ("td", "th"):
                continue
            while (r, c) in occupied:
                c += 1
            rs, cs = int(td.get("rowspan", 1) or 1), int(td.get("colspan", 1) or 1)
            for i in range(rs):
                for j in range(cs):
                    occupied.add((r + i, c + j))
            cells.append(cell(r, c, " ".join(td.text_content().split()), rs, cs,
                              **({"header": True} if td.tag == "th" or tr.getparent().tag == "thead" else {})))
            c += cs
        r += 1
    return cells


def cells_to_html(cells):
    """HTML for TEDS: <table>, leading rows whose cells all have header=true in <thead>, the rest in
    <tbody>, one <td> per cell in its first row with rowspan/colspan (PubTabNet's convention)."""
    if not cells:
        return "<table></table>"
    by_row = {}
    for c in sorted(cells, key=lambda c: (c["row"], c["col"])):
        by_row.setdefault(c["row"], []).append(c)
    n_rows = max(c["row"] + c.get("rowspan", 1) for c in cells)
    head = 0
    while head < n_rows and by_row.get(head) and all(c.get("header") for c in by_row[head]):
        head += 1

    def rows_html(rng):
        out = []
        for r in rng:
            tds = []
            for c in by_row.get(r, []):
                attrs = ""
                if c.get("rowspan", 1) > 1:
                    attrs += f' rowspan="{c["rowspan"]}"'
                if c.get("colspan", 1) > 1:
                    attrs += f' colspan="{c["colspan"]}"'
                tds.append(f"<td{attrs}>{escape(c.get('text') or '')}</td>")
            out.append("<tr>" + "".join(tds) + "</tr>")
        return "".join(out)

    s = "<table>"
    if head:
        s += "<thead>" + rows_html(range(head)) + "</thead>"
    if head < n_rows:
        s += "<tbody>" + rows_html(range(head, n_rows)) + "</tbody>"
    return s + "</table>"


def table_html(table):
    """The HTML to score for one table: the engine's own if given, else built from the cells."""
    return table.get("html") or cells_to_html(table.get("cells", []))


def largest_table(pred):
    tables = (pred or {}).get("tables") or []
    return max(tables, key=lambda t: len(t.get("cells", [])), default=None)


def from_ocr_json(job, doc, engine="ours", seconds=None):
    """OUR engine's job JSON (`ocr recognize FILE --format json`, ocr-formats/schema/job.schema.json)
    -> common format. Page `index` is 0-based there, 1-based here; block bbox is in pixels at the
    page's dpi (origin top-left, PDF /Rotate already applied), converted to points (x 72/dpi)."""
    tables = []
    for page in job.get("pages", []):
        dpi = float(page.get("dpi") or 72.0) or 72.0
        k = 72.0 / dpi
        for block in page.get("blocks", []):
            if block.get("kind") != "table" or not block.get("table"):
                continue
            t = block["table"]
            cells = [cell(c["row"], c["column"], c.get("text", ""), c.get("row_span", 1),
                          c.get("column_span", 1), **({"header": True} if c.get("header") else {}))
                     for c in t.get("cells", [])]
            bb = block.get("bbox")
            entry = {"page": int(page["index"]) + 1,
                     "bbox": [round(v * k, 2) for v in bb] if bb and len(bb) == 4 else None,
                     "cells": cells}
            if t.get("html"):
                entry["html"] = t["html"]
            tables.append(entry)
    out = {"doc": doc, "engine": engine, "seconds": seconds, "tables": tables}
    if job.get("status") == "failed" or job.get("error"):
        out["error"] = job.get("error") or "failed"
    return out


def _main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("from-ours", help="convert an `ocr recognize --format json` output")
    p.add_argument("job")
    p.add_argument("--doc", required=True, help="corpus id, e.g. pubtabnet/PMC1626454_002_00.png")
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--engine", default="ours")
    p.add_argument("--out", required=True, help="prediction directory")
    a = ap.parse_args()
    with open(a.job, encoding="utf-8") as f:
        job = json.load(f)
    print(write_pred(a.out, from_ocr_json(job, a.doc, a.engine, a.seconds)))


if __name__ == "__main__":
    _main()

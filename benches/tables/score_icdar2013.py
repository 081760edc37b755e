"""ICDAR 2013 Table Competition structure measure (Göbel et al. 2013): adjacency relations between
cell contents, per document, for one or more common-format prediction dirs side by side.

    /work/tableenv/bin/python benches/tables/score_icdar2013.py \
        camelot-lattice=/work/tableruns/icdar2013/camelot-lattice \
        camelot-stream=/work/tableruns/icdar2013/camelot-stream \
        pdfplumber=/work/tableruns/icdar2013/pdfplumber ours=/work/tableruns/icdar2013/ours \
        [--corpus /work/shared/corpus] [--norm alnum|ascii-ws] [--per-doc] [--json scores.json]

Relations. A table is a grid of cells (start/end row and column). For every non-blank cell, one
relation to the nearest non-blank cell to its right in each row it spans, and one to the nearest
non-blank cell below in each column it spans (blank cells are skipped; a pair of cells counts once
per direction). A relation is (content A, content B, direction) with contents normalised:
  alnum (default): Unicode NFKD, accents dropped, only letters and digits kept, case-folded (the
      competition compares cell contents after removing whitespace; this also absorbs dash,
      quote and case differences);
  ascii-ws: NFKD, accents dropped, non-ASCII dropped, whitespace removed, case kept (what the
      published re-implementations of the competition's comparison tool do).
A cell is blank when its raw text has no non-whitespace character. Per document, the GT relations of
all its tables are compared (multiset intersection) with the relations of all predicted tables on
pages that hold a GT table (--all-pages: every predicted table). precision = correct / predicted,
recall = correct / GT, F1; reported per document, micro over all documents, and as the mean of the
per-document F1 (a document with nothing predicted scores 0).

GT (`*-str.xml`): table -> region(page, col-increment, row-increment) -> cell(start-row, start-col,
end-row, end-col, content); end-* default to start-*; the misspelt `col-end` (us-002) is read as
end-col. Regions of one table on one page are one grid with the increments added (us-035a splits a
table side by side into three regions at col-increment 0/2/4); regions on different pages are
separate grids.

Table detection. GT region boxes (`*-reg.xml`, else the union of the cells' boxes) are PDF points,
origin bottom-left, on the page as displayed (checked on eu-015, a /Rotate 90 document); they are
flipped to the common format's top-left origin with the displayed page height (pypdfium2). A GT
table is "found" when a predicted table with a bbox on the same page overlaps one of its regions
(intersection > 0); "IoU>=.5" counts the stricter case. Predicted tables without bbox never count.
"""
import argparse
import collections
import glob
import json
import os
import re
import statistics
import sys
import unicodedata
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import load_preds  # noqa: E402


# ---------------------------------------------------------------------------------------- relations
def normalise(text, mode):
    s = "".join(ch for ch in unicodedata.normalize("NFKD", text or "") if not unicodedata.combining(ch))
    if mode == "alnum":
        return "".join(ch for ch in s if ch.isalnum()).casefold()
    return "".join(ch for ch in s if ord(ch) < 128 and not ch.isspace())


def relations(cells, mode):
    """cells: [(r0, c0, r1, c1, text)] (inclusive ends) -> Counter of (normA, normB, 'h'|'v')."""
    grid = {}
    for i, (r0, c0, r1, c1, _) in enumerate(cells):
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                grid.setdefault((r, c), i)  # first cell wins on (rare) overlaps
    if not grid:
        return collections.Counter()
    max_r = max(r for r, _ in grid)
    max_c = max(c for _, c in grid)
    blank = [not (t or "").strip() for *_, t in cells]
    pairs = set()
    for i, (r0, c0, r1, c1, _) in enumerate(cells):
        if blank[i]:
            continue
        for r in range(r0, r1 + 1):  # to the right, in each row the cell spans
            for c in range(c1 + 1, max_c + 1):
                j = grid.get((r, c))
                if j is not None and j != i and not blank[j]:
                    pairs.add((i, j, "h"))
                    break
        for c in range(c0, c1 + 1):  # below, in each column the cell spans
            for r in range(r1 + 1, max_r + 1):
                j = grid.get((r, c))
                if j is not None and j != i and not blank[j]:
                    pairs.add((i, j, "v"))
                    break
    norm = [normalise(t, mode) for *_, t in cells]
    return collections.Counter((norm[i], norm[j], d) for i, j, d in pairs)


def pred_relations(table, mode):
    cells = [(c["row"], c["col"], c["row"] + max(1, c.get("rowspan", 1)) - 1,
              c["col"] + max(1, c.get("colspan", 1)) - 1, c.get("text", "")) for c in table.get("cells", [])]
    return relations(cells, mode)


# ---------------------------------------------------------------------------------------------- GT
def page_heights(pdf):
    import pypdfium2 as pdfium
    doc = pdfium.PdfDocument(pdf)
    try:
        return [doc[i].get_size()[1] for i in range(len(doc))]
    finally:
        doc.close()


def _num(v):
    """A GT coordinate; tolerates stray characters (us-018 has x1="26ß")."""
    m = re.search(r"-?\d+(?:\.\d+)?", v or "")
    return float(m.group(0)) if m else 0.0


def _int(el, *names, default=None):
    for n in names:
        if el.get(n) is not None:
            return int(el.get(n))
    return default


def load_gt(pdf, mode):
    """-> {"relations": Counter, "pages": set, "tables": [[(page, bbox top-left)], ...], "n_cells"}"""
    base = pdf[:-4]
    heights = page_heights(pdf)
    root = ET.parse(base + "-str.xml").getroot()
    grids = collections.defaultdict(list)  # (table index, page) -> cells
    cell_boxes = collections.defaultdict(list)
    for ti, t in enumerate(root.findall("table")):
        for reg in t.findall("region"):
            page = _int(reg, "page", default=1)
            ri, ci = _int(reg, "row-increment", default=0), _int(reg, "col-increment", default=0)
            for c in reg.findall("cell"):
                r0, c0 = _int(c, "start-row", default=0), _int(c, "start-col", default=0)
                r1 = max(r0, _int(c, "end-row", default=r0))
                c1 = max(c0, _int(c, "end-col", "col-end", default=c0))
                grids[(ti, page)].append((r0 + ri, c0 + ci, r1 + ri, c1 + ci, c.findtext("content") or ""))
                bb = c.find("bounding-box")
                if bb is not None:
                    cell_boxes[(ti, page)].append([_num(bb.get(k)) for k in ("x1", "y1", "x2", "y2")])
    rels = collections.Counter()
    for cells in grids.values():
        rels += relations(cells, mode)

    def flip(page, b):
        h = heights[page - 1]
        x1, y1, x2, y2 = b
        return [min(x1, x2), h - max(y1, y2), max(x1, x2), h - min(y1, y2)]

    tables = []
    if os.path.exists(base + "-reg.xml"):
        for t in ET.parse(base + "-reg.xml").getroot().findall("table"):
            regs = []
            for reg in t.findall("region"):
                bb = reg.find("bounding-box")
                if bb is not None:
                    page = _int(reg, "page", default=1)
                    regs.append((page, flip(page, [_num(bb.get(k)) for k in ("x1", "y1", "x2", "y2")])))
            tables.append(regs)
    else:
        by_t = collections.defaultdict(list)
        for (ti, page), boxes in cell_boxes.items():
            b = [min(x[0] for x in boxes), min(x[1] for x in boxes), max(x[2] for x in boxes), max(x[3] for x in boxes)]
            by_t[ti].append((page, flip(page, b)))
        tables = list(by_t.values())
    return {"relations": rels, "pages": {p for _, p in grids}, "tables": tables,
            "n_cells": sum(len(v) for v in grids.values())}


# ------------------------------------------------------------------------------------------ scoring
def inter_area(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def area(a):
    return max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])


def prf(correct, n_pred, n_gt):
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_gt if n_gt else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def score_engine(gts, preds, mode, all_pages):
    docs, tot = {}, collections.Counter()
    for doc, gt in gts.items():
        p = preds.get(doc)
        tables = (p or {}).get("tables") or []
        pr, pr_all = collections.Counter(), collections.Counter()
        for t in tables:
            rel = pred_relations(t, mode)
            pr_all += rel
            if t.get("page") in gt["pages"]:
                pr += rel
        used = pr_all if all_pages else pr
        correct = sum((used & gt["relations"]).values())
        n_pred, n_gt = sum(used.values()), sum(gt["relations"].values())
        correct_all = sum((pr_all & gt["relations"]).values())
        found = found_iou = 0
        for regs in gt["tables"]:
            hit = hit_iou = False
            for page, gb in regs:
                for t in tables:
                    tb = t.get("bbox")
                    if t.get("page") != page or not tb:
                        continue
                    i = inter_area(gb, tb)
                    if i > 0:
                        hit = True
                        if i / (area(gb) + area(tb) - i) >= 0.5:
                            hit_iou = True
            found += hit
            found_iou += hit_iou
        P, R, F = prf(correct, n_pred, n_gt)
        docs[doc] = {"gt": n_gt, "pred": n_pred, "correct": correct, "precision": P, "recall": R, "f1": F,
                     "gt_tables": len(gt["tables"]), "found": found, "found_iou50": found_iou,
                     "pred_tables": len(tables), "pred_tables_gt_pages": sum(t.get("page") in gt["pages"] for t in tables),
                     "seconds": (p or {}).get("seconds"), "missing": p is None, "error": (p or {}).get("error")}
        tot.update({"gt": n_gt, "pred": n_pred, "correct": correct, "pred_all": sum(pr_all.values()),
                    "correct_all": correct_all, "gt_tables": len(gt["tables"]), "found": found,
                    "found_iou50": found_iou, "pred_tables": len(tables),
                    "pred_tables_gt_pages": docs[doc]["pred_tables_gt_pages"]})
    P, R, F = prf(tot["correct"], tot["pred"], tot["gt"])
    secs = [d["seconds"] for d in docs.values() if d["seconds"] is not None]
    return {"docs": docs, "totals": dict(tot), "micro": {"precision": P, "recall": R, "f1": F},
            "precision_all_pages": prf(tot["correct_all"], tot["pred_all"], tot["gt"])[0],
            "mean_doc_f1": statistics.fmean(d["f1"] for d in docs.values()),
            "median_s": statistics.median(secs) if secs else None,
            "failed": sum(bool(d["error"]) or d["missing"] for d in docs.values())}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preds", nargs="+", help="label=dir")
    ap.add_argument("--corpus", default="/work/shared/corpus")
    ap.add_argument("--norm", choices=["alnum", "ascii-ws"], default="alnum")
    ap.add_argument("--all-pages", action="store_true", help="count predicted tables on every page")
    ap.add_argument("--per-doc", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()

    pdfs = sorted(glob.glob(os.path.join(a.corpus, "icdar2013_tables", "*", "*.pdf")))
    gts = {os.path.relpath(p, a.corpus): load_gt(p, a.norm) for p in pdfs}
    results = {}
    for spec in a.preds:
        label, _, path = spec.partition("=")
        if not path:
            label, path = os.path.basename(os.path.normpath(spec)), spec
        results[label] = score_engine(gts, load_preds(path), a.norm, a.all_pages)

    n_gt_rel = sum(sum(g["relations"].values()) for g in gts.values())
    n_tab = sum(len(g["tables"]) for g in gts.values())
    print(f"ICDAR 2013 ({len(gts)} documents, {n_tab} GT tables, {n_gt_rel} GT relations); "
          f"norm={a.norm}; predictions {'on all pages' if a.all_pages else 'on GT-table pages'}\n")
    print("| engine | P % | R % | F1 % (micro) | mean doc F1 % | correct / pred / GT rel | "
          "GT tables found (overlap / IoU>=.5) | pred tables (GT pages / all) | P all pages % | failed docs | median s/doc |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, r in results.items():
        t, m = r["totals"], r["micro"]
        med = f"{r['median_s']:.2f}" if r["median_s"] is not None else "-"
        print(f"| {label} | {100 * m['precision']:.1f} | {100 * m['recall']:.1f} | {100 * m['f1']:.1f} | "
              f"{100 * r['mean_doc_f1']:.1f} | {t['correct']} / {t['pred']} / {t['gt']} | "
              f"{t['found']} / {t['found_iou50']} of {t['gt_tables']} | {t['pred_tables_gt_pages']} / {t['pred_tables']} | "
              f"{100 * r['precision_all_pages']:.1f} | {r['failed']} | {med} |")
    if a.per_doc:
        labels = list(results)
        print("\nper document F1 % (P / R):\n")
        print("| document | GT rel | " + " | ".join(labels) + " |")
        print("|---|---|" + "---|" * len(labels))
        for doc, g in gts.items():
            row = []
            for l in labels:
                d = results[l]["docs"][doc]
                row.append(f"{100 * d['f1']:.0f} ({100 * d['precision']:.0f}/{100 * d['recall']:.0f})"
                           + (" ERR" if d["error"] else "") + (" MISSING" if d["missing"] else ""))
            print(f"| {doc} | {sum(g['relations'].values())} | " + " | ".join(row) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"norm": a.norm, "all_pages": a.all_pages, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

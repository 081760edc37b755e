"""TEDS (structure + content) and TEDS-struct (structure only) on the PubTabNet items of the shared
corpus, for one or more common-format prediction dirs side by side.

    /work/tableenv/bin/python benches/tables/score_pubtabnet.py \
        rapidtable=/work/tableruns/pubtabnet/rapidtable ours=/work/tableruns/pubtabnet/ours \
        [--corpus /work/shared/corpus] [--split public] [--json scores.json] [--per-item]

TEDS code: PubTabNet's own (corpus pubtabnet/_teds_metric.py if present, else
../eval/teds_vendor.py beside the corpus). Per item the largest predicted table (most cells) is
scored; its HTML is the engine's own ("html" key: RapidTable's output, our table.html) or else is
built from the cells (common.cells_to_html). No table / no prediction file scores 0. The GT HTML
is the corpus `.gt.html` as is (it keeps PubTabNet's <b>/<i> tokens inside cells, which count in
full TEDS; the extra "TEDS no-fmt" column strips those tags from both sides first, since
engines that output plain text lose them). Seconds: median of the prediction's per-item `seconds`.
"""
import argparse
import importlib.util
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import largest_table, load_preds, table_html  # noqa: E402


def load_teds_module(corpus):
    cands = [os.path.join(corpus, "pubtabnet", "_teds_metric.py"),
             os.path.join(os.path.dirname(os.path.abspath(corpus)), "eval", "teds_vendor.py"),
             "/work/shared/eval/teds_vendor.py"]
    for c in cands:
        if os.path.exists(c):
            spec = importlib.util.spec_from_file_location("teds_metric", c)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod, c
    sys.exit("no TEDS code found: " + ", ".join(cands))


# Inline formatting tags of PubTabNet's GT cells; "TEDS no-fmt" strips them (text kept) on both sides.
FORMAT_TAGS = ["b", "i", "sup", "sub", "u", "strike", "em", "strong", "overline", "underline", "span"]


def wrap(h):
    """TEDS.evaluate wants <html><body><table>...; accept bare <table> or a full document."""
    if "<body" in h.lower():
        return h
    return "<html><body>" + h + "</body></html>"


def gt_items(corpus, split):
    with open(os.path.join(corpus, "MANIFEST.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d.get("category") == "table_image" and (split == "all" or d.get("split") == split):
                yield d


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preds", nargs="+", help="label=dir")
    ap.add_argument("--corpus", default="/work/shared/corpus")
    ap.add_argument("--split", default="public")
    ap.add_argument("--json", help="write per-item and mean scores here")
    ap.add_argument("--per-item", action="store_true", help="also print a per-item table")
    a = ap.parse_args()

    mod, teds_path = load_teds_module(a.corpus)
    teds_full, teds_struct = mod.TEDS(structure_only=False), mod.TEDS(structure_only=True)
    teds_nofmt = mod.TEDS(structure_only=False, ignore_nodes=FORMAT_TAGS)
    items = list(gt_items(a.corpus, a.split))
    gts = {}
    for d in items:
        with open(os.path.join(a.corpus, d["gt"]), encoding="utf-8") as f:
            gts[d["id"]] = wrap(f.read())

    results = {}
    for spec in a.preds:
        label, _, path = spec.partition("=")
        if not path:
            label, path = os.path.basename(os.path.normpath(spec)), spec
        preds = load_preds(path)
        per = {}
        for d in items:
            p = preds.get(d["id"])
            t = largest_table(p)
            h = wrap(table_html(t)) if t else ""
            per[d["id"]] = {"teds": teds_full.evaluate(h, gts[d["id"]]) if h else 0.0,
                            "teds_nofmt": teds_nofmt.evaluate(h, gts[d["id"]]) if h else 0.0,
                            "teds_struct": teds_struct.evaluate(h, gts[d["id"]]) if h else 0.0,
                            "seconds": (p or {}).get("seconds"), "predicted": p is not None,
                            "cells": len(t.get("cells", [])) if t else 0}
        secs = [v["seconds"] for v in per.values() if v["seconds"] is not None]
        results[label] = {"dir": path, "items": per,
                          "teds_mean": statistics.fmean(v["teds"] for v in per.values()),
                          "teds_struct_mean": statistics.fmean(v["teds_struct"] for v in per.values()),
                          "teds_nofmt_mean": statistics.fmean(v["teds_nofmt"] for v in per.values()),
                          "median_s": statistics.median(secs) if secs else None,
                          "n_pred": sum(v["predicted"] for v in per.values()), "n": len(per)}

    print(f"PubTabNet ({a.split}, {len(items)} items); TEDS code: {teds_path}\n")
    print("| engine | n (pred/all) | TEDS % | TEDS-struct % | TEDS no-fmt % | median s/item |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        med = f"{r['median_s']:.2f}" if r["median_s"] is not None else "-"
        print(f"| {label} | {r['n_pred']}/{r['n']} | {100 * r['teds_mean']:.1f} | "
              f"{100 * r['teds_struct_mean']:.1f} | {100 * r['teds_nofmt_mean']:.1f} | {med} |")
    if a.per_item:
        labels = list(results)
        print("\nper item, TEDS / TEDS-struct %:\n")
        print("| item | " + " | ".join(labels) + " |")
        print("|---|" + "---|" * len(labels))
        for d in items:
            cells = [f"{100 * results[l]['items'][d['id']]['teds']:.1f} / "
                     f"{100 * results[l]['items'][d['id']]['teds_struct']:.1f}" for l in labels]
            print(f"| {d['id']} | " + " | ".join(cells) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"teds_code": teds_path, "split": a.split, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

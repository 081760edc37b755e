#!/usr/bin/env python3
"""Medians of `run.sh`'s two passes: whole-process and engine-only seconds per page, the
ratio to RapidOCR, and peak RSS.  usage: summarize.py OUT"""
import collections
import glob
import json
import re
import statistics as st
import sys

out = sys.argv[1]


def load(d):
    return {r["id"]: r for r in map(json.loads, open(d + "/timings.jsonl"))}


def rss(r):
    return r.get("peak_rss_mb") or r.get("rss_mb") or 0


runs = {e: [load(d) for d in sorted(glob.glob(f"{out}/{e}[0-9]"))] for e in ["rapid", "ours"]}
engine = collections.defaultdict(list)
current = None
for line in open(f"{out}/timings.log"):
    if line.startswith("FILE "):
        current = line[5:].strip()
    m = re.search(r"recognised in ([0-9.]+) s", line)
    if m and current:
        engine[current].append(float(m.group(1)))
for cat in ["printed_page", "typed_page"]:
    ids = [i for i, r in runs["ours"][0].items() if r["category"] == cat]

    def med(e, i):
        return st.median(run[i]["wall_s"] for run in runs[e] if i in run)

    ours = [med("ours", i) for i in ids]
    rapid = [med("rapid", i) for i in ids]
    ratios = [a / b for a, b in zip(ours, rapid)]
    print(f"{cat} ({len(ids)} pages): ours {st.median(ours):.2f} s, RapidOCR {st.median(rapid):.2f} s, "
          f"ratio of medians {st.median(ours) / st.median(rapid):.3f}, median ratio {st.median(ratios):.3f}, "
          f"faster on {sum(r < 1 for r in ratios)}/{len(ids)}")
    eng = [st.median(v) for i in ids for k, v in engine.items() if k.endswith(i)]
    if eng:
        print(f"   ours engine-only {st.median(eng):.2f} s, ratio {st.median(eng) / st.median(rapid):.3f}")
    ro = [max(rss(run[i]) for run in runs["ours"] if i in run) for i in ids]
    rr = [max(rss(run[i]) for run in runs["rapid"] if i in run) for i in ids]
    print(f"   peak RSS ours {st.median(ro):.0f} MB, RapidOCR {st.median(rr):.0f} MB, "
          f"ratio {st.median(ro) / st.median(rr):.3f}")

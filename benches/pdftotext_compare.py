#!/usr/bin/env python3
"""`ocr recognize` against poppler's `pdftotext` on the born-digital PDFs of the shared corpus.

For each PDF: both tools' text, compared with whitespace collapsed (layout differs, words should
not): character error rate of ours against pdftotext's, bag-of-words F1 (insensitive to reading
order), and the median of N timed runs per tool, divided by the page count. Both run as whole
processes, one at a time, so the times compare like for like.

    cargo build --release -p ocr-server
    python3 benches/pdftotext_compare.py [--corpus ../shared/corpus] [--runs 3] [--json out.json]
"""
import argparse, collections, json, os, statistics, subprocess, sys, time

def levenshtein(a, b):
    try:
        from rapidfuzz.distance import Levenshtein
        return Levenshtein.distance(a, b)
    except ImportError:
        prev = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            cur = [i]
            for j, cb in enumerate(b, 1):
                cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
            prev = cur
        return prev[-1]

def norm(text):
    return " ".join(text.replace("\f", " ").split())

def bow_f1(a, b):
    ca, cb = collections.Counter(a.split()), collections.Counter(b.split())
    common = sum((ca & cb).values())
    if not ca and not cb:
        return 1.0
    if not common:
        return 0.0
    p, r = common / sum(ca.values()), common / sum(cb.values())
    return 2 * p * r / (p + r)

def timed(cmd, runs):
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True)
        times.append(time.perf_counter() - t)
        out = proc
    return statistics.median(times), out

def pages(path):
    info = subprocess.run(["pdfinfo", path], capture_output=True, text=True).stdout
    for line in info.splitlines():
        if line.startswith("Pages:"):
            return int(line.split()[1])
    return 1

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=os.path.join(here, "../../shared/corpus"))
    ap.add_argument("--ocr", default=os.path.join(here, "../target/release/ocr"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    items = [json.loads(l) for l in open(os.path.join(args.corpus, "MANIFEST.jsonl"))]
    pdfs = sorted({i["file"] for i in items if i["category"] == "pdf_born_digital"})
    rows = []
    print(f"{'file':55} {'pages':>5} {'CER':>7} {'BoW-F1':>7} {'ours s/p':>9} {'pdftotext s/p':>13}")
    for rel in pdfs:
        path = os.path.join(args.corpus, rel)
        n = pages(path)
        t_ours, ours = timed([args.ocr, "recognize", path], args.runs)
        t_ref, ref = timed(["pdftotext", "-enc", "UTF-8", path, "-"], args.runs)
        a, b = norm(ours.stdout.decode("utf-8", "replace")), norm(ref.stdout.decode("utf-8", "replace"))
        cer = levenshtein(a, b) / max(len(b), 1) if b else (0.0 if not a else 1.0)
        row = dict(file=rel, pages=n, cer=cer, bow_f1=bow_f1(a, b), ours_s_per_page=t_ours / n,
                   pdftotext_s_per_page=t_ref / n, ours_exit=ours.returncode, ref_chars=len(b))
        rows.append(row)
        print(f"{rel[-55:]:55} {n:5d} {cer:7.2%} {row['bow_f1']:7.3f} {t_ours / n:9.4f} {t_ref / n:13.4f}"
              + ("" if ours.returncode == 0 else f"  (exit {ours.returncode})"))
    with_text = [r for r in rows if r["ref_chars"] > 0]
    total_chars = sum(r["ref_chars"] for r in with_text)
    summary = dict(
        files=len(rows), pages=sum(r["pages"] for r in rows),
        mean_cer=statistics.mean(r["cer"] for r in with_text),
        median_cer=statistics.median(r["cer"] for r in with_text),
        char_weighted_cer=sum(r["cer"] * r["ref_chars"] for r in with_text) / total_chars,
        mean_bow_f1=statistics.mean(r["bow_f1"] for r in with_text),
        median_ours_s_per_page=statistics.median(r["ours_s_per_page"] for r in rows),
        median_pdftotext_s_per_page=statistics.median(r["pdftotext_s_per_page"] for r in rows),
    )
    print(json.dumps(summary, indent=1))
    if args.json:
        json.dump(dict(summary=summary, rows=rows), open(args.json, "w"), indent=1)

if __name__ == "__main__":
    sys.exit(main())

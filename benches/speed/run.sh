#!/bin/sh
# Page speed and peak memory side by side with RapidOCR, as issue 3 asks: two interleaved
# passes over the public printed and typed pages, 2 threads each, through the shared harness.
#
#   python3 -m venv VENV && VENV/bin/pip install rapidocr==3.10.0 onnxruntime \
#       opencv-python-headless numpy rapidfuzz
#   cargo build --release -p ocr-server --bin ocr
#   sh benches/speed/run.sh VENV OUT && python3 benches/speed/summarize.py OUT
# (SPEED_LIMIT=N takes the first N pages of each category: a quick check of the set-up.)
set -e
venv=$(cd "$1" && pwd); out=$(mkdir -p "$2" && cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../../shared/eval"
: > "$out/timings.log"
for pass in 1 2; do
  python3 run_engine.py --engine rapidocr --python "$venv/bin/python" --manifest ../corpus/MANIFEST.jsonl \
    --split public --max-pages 3 --threads 2 --dpi 200 --out "$out/rapid$pass" \
    --limit-per-category ${SPEED_LIMIT:-0} --category printed_page typed_page > "$out/rapid$pass.log" 2>&1
  OCR_SPEED_LOG="$out/timings.log" python3 run_engine.py --engine cmd --cmd "$here/ours.sh {file} {out} {category}" \
    --manifest ../corpus/MANIFEST.jsonl --split public --max-pages 3 --threads 2 --dpi 200 \
    --out "$out/ours$pass" --limit-per-category ${SPEED_LIMIT:-0} --category printed_page typed_page > "$out/ours$pass.log" 2>&1
done

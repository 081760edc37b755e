#!/bin/sh
# For ../shared/eval/run_engine.py: --engine cmd --cmd "benches/eval_ocr.sh {file} {out} {category}" --pdf-mode raster
# usage: ours.sh FILE OUT CATEGORY [extra args]
f="$1"; o="$2"; c="$3"; shift 3
case "$c" in *_line) L=--single-line;; *) L=;; esac
exec "$(dirname "$0")/../target/release/ocr" recognize "$f" -o "$o" $L "$@"

#!/bin/sh
# One page through the release binary, its engine-only time (`--timings`) appended to the log.
echo "FILE $1" >> "$OCR_SPEED_LOG"
exec "$(dirname "$0")/../../target/release/ocr" recognize "$1" -o "$2" --timings 2>>"$OCR_SPEED_LOG"

#!/usr/bin/env bash
# Load test of the server from a second process on loopback: wrk with 8 connections uploading a
# one-page image for 60 s against `ocr serve` (release build), next to the CLI's time for the
# same page. Prints wrk's summary (throughput, latency percentiles, non-2xx count), the server's
# peak RSS and its page metrics. Needs wrk (apt-get install wrk).
# Usage: bash benches/load.sh [IMAGE] [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=$(realpath "${1:-fixtures/images/letter.png}")
SECONDS_=${2:-60}
CONNS=${3:-8}
cargo build --release -q -p ocr-server
B=$PWD/target/release/ocr
W=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$W"' EXIT
cd "$W"
TOKEN=$($B accounts create --plan paid --credits 100000000 --json --data data |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
python3 - "$IMAGE" "$TOKEN" <<'PY'
import sys
image, token = sys.argv[1], sys.argv[2]
b = "----ocrloadboundary"
body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="page"\r\n'
        'Content-Type: application/octet-stream\r\n\r\n').encode() + open(image, "rb").read() + \
       f'\r\n--{b}\r\nContent-Disposition: form-data; name="tier"\r\n\r\ncpu\r\n--{b}--\r\n'.encode()
open("body.bin", "wb").write(body)
open("post.lua", "w").write(f'''
local f = io.open("body.bin", "rb"); local body = f:read("*all"); f:close()
wrk.method = "POST"; wrk.body = body; wrk.path = "/api/v1/ocr/"
wrk.headers["Content-Type"] = "multipart/form-data; boundary={b}"
wrk.headers["Authorization"] = "Bearer {token}"
done = function(summary, latency, requests)
  io.write(string.format("latency p50 %.3f s  p90 %.3f s  p99 %.3f s  max %.3f s\\n",
    latency:percentile(50)/1e6, latency:percentile(90)/1e6, latency:percentile(99)/1e6, latency.max/1e6))
end
''')
PY
$B serve --data data --listen 127.0.0.1:0 >serve.out 2>serve.err &
PID=$!
until grep -q listening serve.out; do sleep 0.2; done
BASE=$(sed 's/listening on //' serve.out)
wrk -t2 -c"$CONNS" -d"${SECONDS_}s" --timeout 120s -s post.lua "$BASE"
echo "server peak RSS: $(grep VmHWM /proc/$PID/status | awk '{print $2/1024 " MB"}')"
curl -s "$BASE/metrics" | grep -E '^ocr_pages_total|^ocr_http_requests_total\{method="POST"'
kill $PID; wait $PID || true
echo "CLI, one process per page (model load included), 10 runs:"
for i in $(seq 1 10); do /usr/bin/time -f "%e %M" "$B" recognize "$IMAGE" -o /dev/null 2>&1 | tail -1; done |
  sort -n | awk '{t[NR]=$1; if ($2>m) m=$2} END {printf "median %.2f s/page (%.2f pages/s), peak RSS %.0f MB\n", t[int((NR+1)/2)], 1/t[int((NR+1)/2)], m/1024}'

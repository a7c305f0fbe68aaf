#!/usr/bin/env bash
# The whole test suite: Rust (fmt, clippy, unit + integration tests) and Python (the package built
# and installed with maturin, then pytest against the real ML libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PYTHON

bash scripts/install_deps.sh

echo "== cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --workspace

echo "== python package"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps .
"$PYTHON" -m ruff format --check python tests bench scripts examples
echo "== pytest"
"$PYTHON" -m pytest -q tests

#!/usr/bin/env bash
# Builds the picklefence wheel with the native `picklefence` command in it:
#   bash scripts/build_wheel.sh [OUT_DIR]      (default: target/wheels; prints the wheel's path)
# maturin builds the extension module; the CLI binary, built from the same sources, then
# replaces the Python console script (scripts/wheel_native_command.py says why).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
out="${1:-target/wheels}"
rm -rf "$out"
cargo build --release --quiet -p picklefence-cli >&2
"$PYTHON" -m maturin build --release --quiet --out "$out" >&2
wheel=$(ls "$out"/picklefence-*-abi3-*.whl)
"$PYTHON" scripts/wheel_native_command.py "$wheel" target/release/picklefence >&2
echo "$wheel"

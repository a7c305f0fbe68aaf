#!/usr/bin/env bash
# The whole test suite: Rust (fmt, clippy, unit, integration, differential and property tests),
# the Python package (built and installed with maturin, then pytest against real torch, numpy,
# scikit-learn, joblib and pandas; the guard's own tests again on every other CPython 3.9-3.13
# the machine has), a short run of every fuzz target, and the benchmark harness
# in quick mode (it checks the harness works; it does not gate on timings).
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

echo "== python package (maturin, release; the native command in the wheel)"
wheel=$(bash scripts/build_wheel.sh target/wheels-ci)
"$PYTHON" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"
"$PYTHON" -m ruff format --check python tests bench scripts examples
"$PYTHON" -m ruff check python tests bench scripts examples
"$PYTHON" -m mypy python/picklefence
"$PYTHON" scripts/roles_table.py --check

echo "== pytest"
"$PYTHON" -m pytest -q tests

echo "== the guard's tests on every other CPython here (the same abi3 wheel)"
bash scripts/other_pythons.sh "$wheel"

echo "== fuzz smoke (every target briefly)"
bash scripts/fuzz_smoke.sh "${FUZZ_SECONDS:-10}"

echo "== benchmark harness (quick)"
"$PYTHON" bench/compare.py --quick
"$PYTHON" bench/bench_ray.py --quick

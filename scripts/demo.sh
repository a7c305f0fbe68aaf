#!/usr/bin/env bash
# picklefence end to end: make benign and malicious example models, scan them with the
# `picklefence` command, then load them through picklefence.activate_safe_ml_environment():
# the benign ones load, the malicious ones are refused, and their payload never runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
OUT="examples/generated"
BIN="target/release/picklefence"

step() { printf '\n== %s\n' "$*"; }

step "installing the Python libraries the examples are made with (numpy, torch, scikit-learn, ...)"
bash scripts/install_deps.sh

step "building the picklefence command (cargo build --release -p picklefence-cli)"
cargo build --release --quiet -p picklefence-cli

step "generating example models into $OUT/"
rm -rf "$OUT"
"$PYTHON" examples/make_examples.py "$OUT"

step "picklefence scan $OUT"
status=0
"$BIN" scan "$OUT" || status=$?
echo "exit code: $status (0 clean, 1 unsafe files found, 2 errors)"
if [ "$status" -ne 1 ]; then
    echo "demo: expected exit code 1: the malicious examples must be found" >&2
    exit 1
fi

step "picklefence disasm $OUT/evil_stack_global.pkl (the payload without a GLOBAL opcode)"
"$BIN" disasm "$OUT/evil_stack_global.pkl" || true

step "the Python package"
if "$PYTHON" -c "import picklefence; picklefence.activate_safe_ml_environment" 2>/dev/null; then
    echo "picklefence is installed: $("$PYTHON" -c 'import picklefence; print(picklefence.__version__)')"
else
    echo "installing it from this checkout (scripts/build_wheel.sh: the native module and command)"
    wheel=$(bash scripts/build_wheel.sh target/wheels-demo)
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "$wheel"
fi

step "loading the examples under picklefence.activate_safe_ml_environment()"
"$PYTHON" examples/demo_load.py "$OUT"

if [ -e "$OUT/PWNED" ]; then
    echo "demo: $OUT/PWNED exists: a payload ran" >&2
    exit 1
fi
step "done: every malicious file was found by the scanner and refused by the loader; no payload ran"

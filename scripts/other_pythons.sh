#!/usr/bin/env bash
# The guard's own tests (pure pickle paths: the hook, the API, the pre-scan, concatenated streams;
# no torch, numpy or pandas) on every CPython the abi3 wheel claims that this machine has besides
# the main one, each in a fresh virtualenv with the wheel the main run installed (and pytest,
# joblib, numpy, lz4 and zstandard, which some of those tests build their inputs with).
#
#   scripts/other_pythons.sh WHEEL
#
# The stubs test runs on the main CPython only (it needs mypy). A version not on the machine is
# named and skipped; the script fails if any present version fails.
set -euo pipefail
cd "$(dirname "$0")/.."
wheel=$1
main=$("${PYTHON:-python3}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pyenv_root=$(pyenv root 2>/dev/null || true)
ran=()
for version in 3.9 3.10 3.11 3.12 3.13; do
    [ "$version" = "$main" ] && continue
    interpreter=""
    candidates=("python$version")
    if [ -n "$pyenv_root" ]; then
        candidates+=("$pyenv_root"/versions/"$version".*/bin/python"$version")
    fi
    for candidate in "${candidates[@]}"; do
        if "$candidate" -c "import sys" >/dev/null 2>&1; then
            interpreter=$candidate
            break
        fi
    done
    if [ -z "$interpreter" ]; then
        echo "CPython $version: not on this machine, skipped"
        continue
    fi
    venv="target/venv-$version"
    rm -rf "$venv"
    "$interpreter" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check pytest joblib numpy lz4 zstandard "$wheel"
    echo "-- CPython $version ($interpreter)"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider \
        tests/test_hook.py tests/test_api.py tests/test_native_prescan.py tests/test_concatenated_streams.py \
        --deselect tests/test_api.py::test_stubs_match_runtime
    ran+=("$version")
done
echo "the guard's tests passed on CPython ${ran[*]:-(none)} besides $main"

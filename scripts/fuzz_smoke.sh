#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ briefly, so that a regression (a panic, a hang over 1 s on
# one input, memory over 2 GiB) shows up. Installs cargo-fuzz if it is missing and generates the
# seed corpora if there are none.
#
#   scripts/fuzz_smoke.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 20 s, every target)
#
# Long runs: FUZZ_RUNS=10000000 stops each target after that many executions (the time limit still
# applies; pass a large SECONDS), FUZZ_MAX_LEN caps the input length, FUZZ_NICE sets the priority.
#
# The toolchain is stable; cargo-fuzz needs nightly flags, hence RUSTC_BOOTSTRAP=1. The targets are
# safe Rust, so they run without a sanitizer (`-s none`), with debug assertions and overflow checks
# on (fuzz/Cargo.toml). Exit status: 0 when every target ran clean, 1 otherwise; a crashing input is
# left in fuzz/artifacts/<target>/ (reproduce with `cargo fuzz run -s none <target> <file>`).
set -uo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-${FUZZ_SECONDS:-20}}
shift || true
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz_smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked || cargo install cargo-fuzz || exit 1
fi

if [ ! -d fuzz/corpus ] || [ -z "$(ls -A fuzz/corpus 2>/dev/null)" ]; then
    if command -v python3 >/dev/null 2>&1; then
        echo "fuzz_smoke: generating seed corpora"
        python3 scripts/make_fuzz_seeds.py fuzz/corpus || echo "fuzz_smoke: seed generation failed; fuzzing from empty corpora"
    fi
fi

cd fuzz
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "fuzz_smoke: building ${#targets[@]} targets"
nice_level=${FUZZ_NICE:-10}
extra=()
[ -n "${FUZZ_RUNS:-}" ] && extra+=("-runs=$FUZZ_RUNS")
[ -n "${FUZZ_MAX_LEN:-}" ] && extra+=("-max_len=$FUZZ_MAX_LEN")
nice -n "$nice_level" cargo fuzz build -s none -O || exit 1

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="artifacts/$target/${FUZZ_LOG_NAME:-smoke}.log"
    echo "fuzz_smoke: $target for ${seconds}s ${extra[*]}"
    nice -n "$nice_level" cargo fuzz run -s none -O "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 "${extra[@]}" \
        -dict=dicts/pickle.dict -artifact_prefix="artifacts/$target/" -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    runs=$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -1 | grep -o 'cov: [0-9]*' || true)
    if [ "$status" -ne 0 ]; then
        echo "fuzz_smoke: $target FAILED (exit $status); see fuzz/$log"
        grep -m5 -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | sed 's/^/    /'
        failed+=("$target")
    else
        echo "fuzz_smoke: $target ok: ${runs:-?} runs, ${cov:-cov: ?}"
    fi
done

cd "$root"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz_smoke: ${#failed[@]} failed: ${failed[*]}"
    exit 1
fi
echo "fuzz_smoke: all ${#targets[@]} targets ran clean"

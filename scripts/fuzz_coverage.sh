#!/usr/bin/env bash
# Source coverage of the fuzz corpora: runs each target's corpus (fuzz/corpus/<target>) through a
# coverage-instrumented build and prints llvm-cov's line/region table for the files the target is
# aimed at, plus the crate total.
#
#   scripts/fuzz_coverage.sh [TARGET...]        (default: every target)
#
# Needs llvm-profdata and llvm-cov no older than the profile format of this rustc: rustup's
# llvm-tools, or Debian's llvm-19 (`apt-get install llvm-19`; it reads this rustc's profiles).
# Writes fuzz/coverage/<target>/coverage.txt.
set -uo pipefail

cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

tools=""
for dir in "$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin" /usr/lib/llvm-2[0-9]/bin /usr/lib/llvm-19/bin; do
    if [ -x "$dir/llvm-profdata" ] && [ -x "$dir/llvm-cov" ]; then
        tools=$dir
        break
    fi
done
if [ -z "$tools" ]; then
    echo "fuzz_coverage: no llvm-profdata/llvm-cov new enough (install llvm-19 or rustup's llvm-tools)" >&2
    exit 2
fi

# The files each target is aimed at (a regex over paths under crates/picklefence/src).
declare -A aimed=(
    [decode_slice]='decoder.rs' [decode_stream]='decoder.rs'
    [analyze]='analyzer' [analyze_stream]='analyzer'
    [scan_bytes]='.' [identify]='formats/mod.rs'
    [policy_toml]='policy/' [joblib]='joblib.rs'
    [torch_legacy]='formats/torch.rs' [zip_parse]='formats/zip.rs'
    [tar_members]='formats/tar.rs' [npy_header]='formats/npy.rs'
)

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

status=0
for target in "${targets[@]}"; do
    out="coverage/$target"
    rm -rf "$out"
    # cargo-fuzz's own merge step wants rustup's llvm-tools; the raw profiles are what we need.
    nice -n 5 cargo fuzz coverage -s none "$target" "corpus/$target" >/dev/null 2>&1
    if ! ls "$out"/raw/*.profraw >/dev/null 2>&1; then
        echo "fuzz_coverage: $target: no profiles were written" >&2
        status=1
        continue
    fi
    "$tools/llvm-profdata" merge -sparse "$out"/raw/*.profraw -o "$out/coverage.profdata" || { status=1; continue; }
    binary=$(find target -path '*coverage*' -type f -name "$target" -perm -u+x | head -1)
    "$tools/llvm-cov" report "$binary" -instr-profile="$out/coverage.profdata" \
        --ignore-filename-regex='(\.cargo|/rustc/|/fuzz/)' >"$out/coverage.txt"
    echo "== $target ($(ls "corpus/$target" | wc -l) corpus inputs)"
    head -3 "$out/coverage.txt" | sed -n 1p
    grep -E "^[^ ]*(${aimed[$target]:-.})" "$out/coverage.txt" | grep -v '^-' | grep -v '^Filename' | sed 's/^/  /' | head -12
    grep '^TOTAL' "$out/coverage.txt"
done
exit $status

#!/usr/bin/env bash
# The steps of the picklefence GitHub Action (action.yml), as one script the test suite runs.
#
#   PF_PATHS        paths to scan, space-separated (default: .)
#   PF_SARIF        where to write the SARIF report (default: picklefence.sarif)
#   PF_POLICY       a named policy or a TOML policy file (default: the ML allowlist)
#   PF_FAIL         "true" (default): exit 1 when a file is unsafe; "false": only report
#   PF_INSTALL      pip requirement to install first (default: picklefence); empty: use the
#                   picklefence command already on PATH
#
# Exit status: the scan's (0 clean, 1 unsafe, 2 read or usage error), or 0 for unsafe files
# when PF_FAIL is "false". The SARIF file is written in every case, for code-scanning upload.
set -uo pipefail

paths=${PF_PATHS:-.}
sarif=${PF_SARIF:-picklefence.sarif}
fail=${PF_FAIL:-true}
install=${PF_INSTALL-picklefence}

if [ -n "$install" ]; then
    python -m pip install --quiet "$install" || exit 2
fi
command -v picklefence >/dev/null 2>&1 || { echo "picklefence: command not found" >&2; exit 2; }

policy=()
if [ -n "${PF_POLICY:-}" ]; then
    policy=(--policy "$PF_POLICY")
fi
read -r -a targets <<< "$paths"
picklefence scan --format sarif --no-progress "${policy[@]}" "${targets[@]}" > "$sarif"
status=$?
if [ "$status" -ne 0 ]; then
    # For the job log: what is unsafe or unreadable, as text.
    picklefence scan --quiet --no-progress "${policy[@]}" "${targets[@]}" || true
fi
echo "picklefence: SARIF report written to $sarif (exit status $status)"
if [ "$status" -eq 1 ] && [ "$fail" = "false" ]; then
    exit 0
fi
exit "$status"

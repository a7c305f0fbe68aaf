"""Issue 2's speed targets, measured side by side in one run.

For each workload: the median time of `pickle.loads` on the bytes, and the median time of the Rust
analyzer on the same bytes (slice and streaming), from the `time_scan` example built in release
mode. Prints a markdown table of ratios (scan time / loads time) and peak memory.

    python bench/core_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def workloads(quick: bool) -> dict[str, bytes]:
    n = 100_000 if quick else 1_000_000
    out = {
        f"{n} small ints": pickle.dumps(list(range(n)), protocol=4),
        f"{n} 2-tuples": pickle.dumps([(i, i + 1) for i in range(n)], protocol=4),
    }
    try:
        import numpy as np

        size = (5 if quick else 50) * 1024 * 1024
        out[f"{size >> 20} MB ndarray"] = pickle.dumps(np.ones(size // 8), protocol=4)
        big = (20 if quick else 200) * 1024 * 1024
        out[f"{big >> 20} MB of arrays"] = pickle.dumps(
            [np.ones(big // 8 // 10) for _ in range(10)], protocol=5
        )
    except ImportError:
        print("numpy missing: ndarray workloads skipped", file=sys.stderr)
    return out


def time_loads(data: bytes, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        pickle.loads(data)
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times)


def build_timer() -> Path:
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "picklefence", "--example", "time_scan"],
        cwd=ROOT,
        check=True,
    )
    return ROOT / "target" / "release" / "examples" / "time_scan"


def time_scan(timer: Path, path: Path, runs: int, mode: str) -> dict:
    result = subprocess.run(
        [str(timer), str(path), str(runs), mode], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    timer = build_timer()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in workloads(args.quick).items():
            path = Path(tmp) / "w.pkl"
            path.write_bytes(data)
            loads_ns = time_loads(data, args.runs)
            slice_run = time_scan(timer, path, args.runs, "slice")
            stream_run = time_scan(timer, path, args.runs, "stream")
            rows.append(
                (
                    name,
                    len(data) / 1e6,
                    loads_ns / 1e6,
                    slice_run["median_ns"] / 1e6,
                    stream_run["median_ns"] / 1e6,
                    slice_run["median_ns"] / loads_ns,
                    stream_run["peak_rss_kib"] / 1024,
                )
            )
    print(
        "| workload | MB | pickle.loads ms | scan (slice) ms | scan (stream) ms | scan/loads"
        " | stream peak RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| {} | {:.1f} | {:.2f} | {:.2f} | {:.2f} | {:.4f} | {:.1f} |".format(*row))


if __name__ == "__main__":
    main()

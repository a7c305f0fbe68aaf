"""Startup of the `picklefence` command (issue 17), side by side in one run: the command the wheel
installs (the native binary), `target/release/picklefence`, and the Python launcher the wheel
used to install (`python -m picklefence`: the interpreter and the package imported before the
Rust CLI starts). Each runs `--version` and a scan of a 12 MB pickle, alternating, as fresh
processes; the table gives medians and the ratio to the release binary (goal: the installed
command within 2x).

    python bench/bench_startup.py [--rounds N]

Not a test: prints the table (and writes bench/results/startup.md) and exits 0.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()
    commands: Dict[str, List[str]] = {
        "installed `picklefence`": [str(Path(sysconfig.get_path("scripts")) / "picklefence")],
        "`target/release/picklefence`": [str(ROOT / "target" / "release" / "picklefence")],
        "Python launcher (`python -m picklefence`)": [sys.executable, "-m", "picklefence"],
    }
    for argv in commands.values():
        if not Path(argv[0]).exists():
            raise SystemExit(
                f"{argv[0]} is missing: build and install the wheel first (scripts/build_wheel.sh)"
            )
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.pkl"
        model.write_bytes(pickle.dumps({f"w{i}": list(range(300)) for i in range(24000)}, protocol=4))
        tasks = {
            "--version": ["--version"],
            f"scan ({model.stat().st_size >> 20} MB pickle)": ["scan", str(model)],
        }
        times: Dict[str, Dict[str, List[float]]] = {task: {name: [] for name in commands} for task in tasks}
        for _ in range(args.rounds):
            for task, extra in tasks.items():
                for name, argv in commands.items():
                    start = time.perf_counter()
                    subprocess.run(
                        [*argv, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
                    )
                    times[task][name].append(time.perf_counter() - start)
    reference = "`target/release/picklefence`"
    lines = [
        f"# picklefence startup: median of {args.rounds} alternating runs",
        "",
        "| command | task | median | vs release binary |",
        "|---|---|---:|---:|",
    ]
    for task, by_command in times.items():
        base = statistics.median(by_command[reference])
        for name, samples in by_command.items():
            median = statistics.median(samples)
            lines.append(f"| {name} | {task} | {median * 1000:.1f} ms | {median / base:.2f}x |")
    report = "\n".join(lines)
    print(report)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "startup.md").write_text(report + "\n")


if __name__ == "__main__":
    main()

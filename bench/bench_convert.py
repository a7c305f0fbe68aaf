"""`picklefence convert` against `torch.load` + `safetensors.torch.save_file` (issue 16), side by
side in one run: wall time and peak RSS of each as a fresh process (the baseline's interpreter
and torch import included, as a user pays them), on a ~1 GB checkpoint and on a checkpoint of
many small tensors. Each is run `--rounds` times alternately after one warm-up run (the page
cache holds the input for both); the table gives the median time and the largest peak RSS.

    python bench/bench_convert.py [--rounds N] [--size-mib N] [--small N] [--keep DIR]

Goal: at least 3x faster and at most half the peak memory. Not a test: prints the table and
exits 0 (--strict: 1 when a goal is missed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

BASELINE = """
import sys, torch
from safetensors.torch import save_file
state = torch.load(sys.argv[1], weights_only=True, map_location="cpu")
save_file({k: v.contiguous() for k, v in state.items()}, sys.argv[2], metadata={"format": "pt"})
"""


def picklefence_command() -> List[str]:
    """The Rust binary when built here, else the installed command."""
    built = Path(__file__).resolve().parent.parent / "target" / "release" / "picklefence"
    if built.exists():
        return [str(built)]
    found = shutil.which("picklefence")
    return [found] if found else [sys.executable, "-m", "picklefence"]


def run(argv: List[str]) -> Tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if status != 0:
        raise SystemExit(f"{argv[0]} failed ({status}): {stderr}")
    return elapsed, usage.ru_maxrss / 1024


MAKE = """
import sys, torch
directory, size_mib, small = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
per_tensor = 16 << 20  # bytes
large = {f"layers.{i}.weight": torch.randn(per_tensor // 4 // 1024, 1024)
         for i in range(max(1, (size_mib << 20) // per_tensor))}
torch.save(large, f"{directory}/large.pt")
del large
many = {f"blocks.{i}.{part}": torch.randn(64) for i in range(small // 2) for part in ("weight", "bias")}
torch.save(many, f"{directory}/many.pt")
"""


def make_checkpoints(directory: Path, size_mib: int, small: int) -> Dict[str, Path]:
    """Written by a child: a process's peak RSS carries over to the children it forks, so this
    one must never hold the tensors."""
    subprocess.run([sys.executable, "-c", MAKE, str(directory), str(size_mib), str(small)], check=True)
    return {
        f"large ({size_mib} MiB)": directory / "large.pt",
        f"many small ({small} tensors)": directory / "many.pt",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--small", type=int, default=20000)
    parser.add_argument("--keep", type=Path, help="write the checkpoints here and keep them")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()

    directory = args.keep or Path(tempfile.mkdtemp(prefix="pf-bench-convert-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        checkpoints = make_checkpoints(directory, args.size_mib, args.small)
        ours = picklefence_command()
        print(f"picklefence: {' '.join(ours)}; baseline: torch.load + safetensors.torch.save_file")
        print(f"{'checkpoint':<26} {'tool':<12} {'time (s)':>9} {'peak RSS (MiB)':>15}")
        missed = False
        for name, path in checkpoints.items():
            commands = {
                "baseline": [sys.executable, "-c", BASELINE, str(path), str(directory / "base.safetensors")],
                "picklefence": [*ours, "convert", str(path), str(directory / "pf.safetensors")],
            }
            for argv in commands.values():
                run(argv)  # warm-up: the input in the page cache, the binaries loaded
            times: Dict[str, List[float]] = {tool: [] for tool in commands}
            peaks: Dict[str, float] = {tool: 0.0 for tool in commands}
            for _ in range(args.rounds):
                for tool, argv in commands.items():
                    elapsed, peak = run(argv)
                    times[tool].append(elapsed)
                    peaks[tool] = max(peaks[tool], peak)
            for tool in commands:
                print(f"{name:<26} {tool:<12} {statistics.median(times[tool]):>9.3f} {peaks[tool]:>15.1f}")
            speedup = statistics.median(times["baseline"]) / statistics.median(times["picklefence"])
            memory = peaks["picklefence"] / peaks["baseline"]
            goal = "(goal: >= 3x faster, <= 0.5x memory)"
            print(f"{name:<26} {'ratio':<12} {speedup:>8.1f}x {memory:>14.2f}x   {goal}")
            missed |= speedup < 3 or memory > 0.5
        return 1 if (missed and args.strict) else 0
    finally:
        if args.keep is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

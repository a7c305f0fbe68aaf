"""Files per second: `picklefence scan -j 1` and `-j 2` against `picklefence.ray.scan_paths` on Ray
with 2 CPUs, on the same corpus in the same run (issue 18), and the fixed cost Ray adds per batch.

The corpus is `tests/mixed_corpus.py`'s: small files of seven container kinds, a fifth of them
malicious. The command runs as a fresh process each round (startup and listing included); Ray
is started once (its start-up is reported on its own) and each round lists, scans and collects
every row. The per-batch cost is the slope of Ray's time against the number of batches.

    python bench/bench_ray.py [--files N] [--rounds N] [--quick]

Not a test: prints the table (a full run also writes bench/results/ray.md) and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict

from bench_convert import picklefence_command

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import mixed_corpus  # noqa: E402

BATCH_SIZES = (32, 256, 2048)


def median_seconds(rounds: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def command_run(jobs: int, directory: Path) -> Callable[[], None]:
    argv = [*picklefence_command(), "scan", "-j", str(jobs), "--format", "jsonl", str(directory)]

    def run() -> None:
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{argv} failed: {done.stderr.decode()}")

    return run


def checkpoints(directory: Path, count: int) -> bool:
    """`count` copies of a BERT-base-shaped state dict (199 tensors, tiny data: scanning reads the
    pickle and the archive's directory, never tensor bytes) as `torch.save` writes it; False
    without torch."""
    try:
        import torch
    except ImportError:
        return False
    state = {"embeddings.word_embeddings.weight": torch.zeros(4)}
    for layer in range(12):
        for part in ("query", "key", "value", "output.dense", "intermediate.dense", "output2.dense"):
            for kind in ("weight", "bias"):
                state[f"encoder.layer.{layer}.{part}.{kind}"] = torch.zeros(4)
        for kind in ("weight", "bias"):
            state[f"encoder.layer.{layer}.LayerNorm.{kind}"] = torch.zeros(4)
    directory.mkdir(parents=True)
    first = directory / "c00000.bin"
    torch.save(state, first)
    data = first.read_bytes()
    for index in range(1, count):
        (directory / f"c{index:05}.bin").write_bytes(data)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 files, one round")
    args = parser.parse_args()
    files = 2_000 if args.quick else args.files
    rounds = 1 if args.quick else args.rounds

    import ray

    import picklefence.ray

    rows: Dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="picklefence-ray-bench-") as tmp:
        directory = Path(tmp) / "corpus"
        mixed_corpus.build(directory, files, Path(tmp) / "marker")
        for jobs in (1, 2):
            rows[f"picklefence scan -j {jobs}"] = median_seconds(rounds, command_run(jobs, directory))
        checkpoint_dir = Path(tmp) / "checkpoints"
        checkpoint_count = files // 10
        have_checkpoints = checkpoints(checkpoint_dir, checkpoint_count)
        if have_checkpoints:
            checkpoint_seconds = median_seconds(rounds, command_run(1, checkpoint_dir))

        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        startup = time.perf_counter() - start
        try:
            # One warm-up: workers started, modules imported.
            picklefence.ray.scan_paths([directory], batch_size=256).materialize()
            for batch_size in BATCH_SIZES:

                def scan(batch_size: int = batch_size) -> None:
                    got = picklefence.ray.scan_paths([directory], batch_size=batch_size).count()
                    if got != files:
                        raise SystemExit(f"Ray gave {got} rows for {files} files")

                rows[f"Ray, 2 CPUs, batch {batch_size}"] = median_seconds(rounds, scan)
        finally:
            ray.shutdown()

    small, large = BATCH_SIZES[0], BATCH_SIZES[-1]
    batches = files / small - files / large
    per_batch = (rows[f"Ray, 2 CPUs, batch {small}"] - rows[f"Ray, 2 CPUs, batch {large}"]) / batches
    baseline = rows["picklefence scan -j 1"]
    lines = [
        f"# picklefence on Ray: {files} files, median of {rounds} round(s)",
        "",
        "| run | seconds | files/s | vs `scan -j 1` |",
        "|---|---:|---:|---:|",
    ]
    for label, seconds in rows.items():
        lines.append(f"| {label} | {seconds:.2f} | {files / seconds:,.0f} | {baseline / seconds:.2f}x |")
    lines += [
        "",
        f"Ray start-up (`ray.init`, once per job): {startup:.2f} s.",
        f"Fixed cost per batch on Ray (slope between batch {small} and {large}): {per_batch * 1000:.1f} ms.",
    ]
    if have_checkpoints:
        lines.append(
            f"`picklefence scan -j 1` on {checkpoint_count} BERT-base-shaped `torch.save` checkpoints "
            f"(199 tensors each): {checkpoint_count / checkpoint_seconds:,.0f} files/s."
        )
    report = "\n".join(lines)
    print(report)
    if not args.quick:
        results = ROOT / "bench" / "results"
        results.mkdir(exist_ok=True)
        (results / "ray.md").write_text(report + "\n")


if __name__ == "__main__":
    main()

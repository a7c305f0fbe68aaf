"""Cost of the safe ML environment: guarded vs plain loading, side by side in one run.

    python bench/bench_hook.py [--rounds N] [--min-seconds S] [--quick] [--json FILE]

Each round times the case without and with the guard, back to back (the order flips every
round). The ratio checked against the target is the median of the rounds' ratios ("paired"): on
the shared machines this runs on, the speed of one and the same load varies by up to 2x between
runs, in spells (process CPU time varies with wall time, so it is the host, not time stolen from
this VM); a spell hits both halves of a round alike, and the median drops the rounds a spell
split. The ratio of the medians and that of the fastest runs ("best of N") are printed next to
it; either can be thrown off by a spell that favoured one side's runs. Targets (guarded / plain):

    opcode-dense pickles (1M ints, 1M tuples) ......... <= 1.10
    a 50 MB ndarray pickle ............................ <= 1.01
    torch.load of a state_dict, joblib.load of a RandomForest <= 1.05

Not a test: it prints the ratios and whether each meets its target, and exits 0 either way
(use --strict to exit 1 when a target is missed).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import picklefence

Case = Tuple[str, float, Callable[[], Any]]

# A full run keeps adding rounds until a case has taken this long: quick loads get more samples.
MIN_SECONDS = 20.0


def _cases(tmp: Path, quick: bool) -> List[Case]:
    import numpy as np

    n = 200_000 if quick else 1_000_000
    ints = pickle.dumps(list(range(n)), protocol=4)
    tuples = pickle.dumps([(i, i + 1) for i in range(n)], protocol=4)
    array = pickle.dumps(np.random.RandomState(0).rand((10 if quick else 50) * 2**20 // 8), protocol=4)
    (tmp / "ints.pkl").write_bytes(ints)
    (tmp / "array.pkl").write_bytes(array)

    def load_file(path: Path) -> Callable[[], Any]:
        def run() -> Any:
            with open(path, "rb") as f:
                return pickle.load(f)

        return run

    cases: List[Case] = [
        (f"pickle.loads {n // 1000}k ints", 1.10, lambda: pickle.loads(ints)),
        (f"pickle.loads {n // 1000}k tuples", 1.10, lambda: pickle.loads(tuples)),
        (f"pickle.load(file) {n // 1000}k ints", 1.10, load_file(tmp / "ints.pkl")),
        (f"pickle.loads {len(array) >> 20} MB ndarray", 1.01, lambda: pickle.loads(array)),
        (f"pickle.load(file) {len(array) >> 20} MB ndarray", 1.01, load_file(tmp / "array.pkl")),
    ]
    try:
        import torch

        torch.manual_seed(0)
        model = torch.nn.Sequential(
            *[torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3), torch.nn.BatchNorm2d(64)) for _ in range(20)],
            torch.nn.Linear(1024, 1000),
        )
        torch.save(model.state_dict(), tmp / "state.pt")
        cases.append(
            ("torch.load state_dict", 1.05, lambda: torch.load(tmp / "state.pt", weights_only=False))
        )
    except ImportError:
        print("torch not installed: skipping its case", file=sys.stderr)
    try:
        import joblib
        from sklearn.ensemble import RandomForestClassifier

        rng = np.random.RandomState(0)
        X = rng.rand(2000, 20)
        y = (X[:, 0] > 0.5).astype(int)
        forest = RandomForestClassifier(n_estimators=20 if quick else 100, random_state=0).fit(X, y)
        joblib.dump(forest, tmp / "forest.joblib")
        cases.append(("joblib.load RandomForest", 1.05, lambda: joblib.load(tmp / "forest.joblib")))
    except ImportError:
        print("joblib/scikit-learn not installed: skipping their case", file=sys.stderr)
    return cases


def _time(run: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - start
    del result
    return elapsed


@dataclass
class Timing:
    """The plain and guarded times of one case, round by round."""

    plain: List[float]
    guarded: List[float]

    @property
    def plain_best(self) -> float:
        return min(self.plain)

    @property
    def guarded_best(self) -> float:
        return min(self.guarded)

    @property
    def plain_median(self) -> float:
        return statistics.median(self.plain)

    @property
    def guarded_median(self) -> float:
        return statistics.median(self.guarded)

    @property
    def ratio(self) -> float:
        """The median of each round's guarded / plain ratio (both sides timed back to back, so a
        slow spell of the machine hits both): the figure checked against the target."""
        return statistics.median(g / p for g, p in zip(self.guarded, self.plain))

    @property
    def median_ratio(self) -> float:
        return self.guarded_median / self.plain_median

    @property
    def best_ratio(self) -> float:
        return self.guarded_best / self.plain_best


def measure(run: Callable[[], Any], rounds: int, min_seconds: float = 0.0) -> Timing:
    """Times ``run`` without and with the guard, alternating: ``rounds`` rounds, and more (up to
    8 times as many) until ``min_seconds`` have passed, so that quick loads get more samples."""
    plain: List[float] = []
    guarded: List[float] = []
    run()  # warm up (imports, caches, page cache)
    with picklefence.safe_ml_environment():
        run()
    # One untimed run after each switch: users activate the guard once per process, and
    # switching it changes classes the interpreter has specialised code for.
    started = time.perf_counter()
    index = 0
    while index < rounds or (time.perf_counter() - started < min_seconds and index < 8 * rounds):
        order = (False, True) if index % 2 == 0 else (True, False)
        index += 1
        for guard in order:
            if guard:
                with picklefence.safe_ml_environment():
                    run()
                    guarded.append(_time(run))
            else:
                run()
                plain.append(_time(run))
    return Timing(plain, guarded)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=31, help="rounds per case, at least")
    parser.add_argument(
        "--min-seconds", type=float, default=MIN_SECONDS, help="more rounds until a case took this long"
    )
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    results: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [c for c in _cases(Path(tmp), args.quick) if not args.only or args.only in c[0]]
        print(
            f"{'case':45} {'plain ms':>10} {'guarded ms':>11} {'ratio':>7}"
            f" {'medians':>7} {'best':>7} {'target':>7}"
        )
        for name, target, run in cases:
            timing = measure(run, args.rounds, 0.0 if args.quick else args.min_seconds)
            ok = timing.ratio <= target
            results.append(
                {
                    "case": name,
                    "plain_s": timing.plain,
                    "guarded_s": timing.guarded,
                    "ratio": timing.ratio,
                    "median_ratio": timing.median_ratio,
                    "best_ratio": timing.best_ratio,
                    "target": target,
                    "ok": ok,
                }
            )
            print(
                f"{name:45} {timing.plain_median * 1e3:10.2f} {timing.guarded_median * 1e3:11.2f}"
                f" {timing.ratio:7.3f} {timing.median_ratio:7.3f} {timing.best_ratio:7.3f}"
                f" {target:7.2f}  {'ok' if ok else 'OVER'}",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rounds": args.rounds, "cpus": os.cpu_count(), "results": results}, indent=2)
        )
    missed = [r["case"] for r in results if not r["ok"]]
    if missed:
        print(f"over target: {', '.join(missed)}")
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

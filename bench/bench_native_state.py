"""Cost of the native-state validators (issue 13): the walk and the checks a guarded load runs on
its result, as a share of the plain load time of the same file, measured side by side.

    python bench/bench_native_state.py [--rounds N] [--quick]

Models: a RandomForest (100 trees), a large gradient-boosting model (GradientBoostingClassifier,
300 stages on 3 classes: 900 trees in an object array) and a HistGradientBoosting model, a
1M-row frame with a categorical column (pickle and joblib). Target: validation <= 2% of the load.
Not a test: prints the table and exits 0 (--strict: 1 when a target is missed).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, List, Tuple

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)

from picklefence import _native_state

TARGET = 0.02


def _models(tmp: Path, quick: bool) -> List[Tuple[str, Callable[[], Any]]]:
    rng = np.random.RandomState(0)
    x = rng.rand(2000, 20)
    y = (x[:, 0] > 0.5).astype(int)
    y3 = (x[:, 0] * 3).astype(int)
    rows = 100_000 if quick else 1_000_000
    frame = pd.DataFrame(
        {
            "city": pd.Categorical(rng.choice(["paris", "lyon", "nice", "lille"], rows)),
            "value": rng.rand(rows),
        }
    )
    made = {
        "RandomForest (100 trees)": RandomForestClassifier(
            n_estimators=20 if quick else 100, random_state=0
        ).fit(x, y),
        "GradientBoosting (3 classes x 300 stages)": GradientBoostingClassifier(
            n_estimators=30 if quick else 300, max_depth=3, random_state=0
        ).fit(x[:500], y3[:500]),
        "HistGradientBoosting (100 iterations)": HistGradientBoostingClassifier(
            max_iter=20 if quick else 100, random_state=0
        ).fit(x, y),
    }
    cases: List[Tuple[str, Callable[[], Any]]] = []
    for name, model in made.items():
        path = tmp / f"{len(cases)}.joblib"
        joblib.dump(model, path)
        cases.append((f"joblib.load {name}", lambda path=path: joblib.load(path)))
    frame_pickle = pickle.dumps(frame, protocol=5)
    cases.append((f"pickle.loads {rows // 1000}k-row categorical frame", lambda: pickle.loads(frame_pickle)))
    frame_path = tmp / "frame.joblib"
    joblib.dump(frame, frame_path)
    cases.append((f"joblib.load {rows // 1000}k-row categorical frame", lambda: joblib.load(frame_path)))
    return cases


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--quick", action="store_true", help="smaller models")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'case':55} {'load ms':>9} {'validate ms':>12} {'share':>7} {'target':>7}")
        for name, load in _models(Path(tmp), args.quick):
            result = load()
            _native_state.validate(result)  # warm up (imports)
            loads, checks = [], []
            for _ in range(args.rounds):
                gc.collect()
                start = time.perf_counter()
                result = load()
                loaded = time.perf_counter()
                _native_state.validate(result)
                checks.append(time.perf_counter() - loaded)
                loads.append(loaded - start)
                del result
            share = statistics.median(c / t for c, t in zip(checks, loads))
            ok = share <= TARGET
            if not ok:
                missed.append(name)
            print(
                f"{name:55} {statistics.median(loads) * 1e3:9.2f} {statistics.median(checks) * 1e3:12.3f}"
                f" {share:7.2%} {TARGET:7.0%}  {'ok' if ok else 'OVER'}",
                flush=True,
            )
    if missed:
        print(f"over target: {', '.join(missed)}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

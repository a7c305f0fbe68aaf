"""Cost of the native-state validators (issue 13): guarded loads with the validators on and off
(nothing captured, nothing walked), alternating, in one run. `on/off` is the median of the
rounds' ratios (within this shared machine's noise of a few percent); `share`, the figure checked
against the target, is the time spent validating (median per load: the walk and checks after it,
and the checks inside it: Arrow arrays as the load makes them, block manager states as
``__setstate__`` gets them) over the load time without validators.

    python bench/bench_native_state.py [--rounds N] [--quick]

Models: a RandomForest (100 trees), a large gradient-boosting model (GradientBoostingClassifier,
300 stages on 3 classes: 900 trees in an object array) and a HistGradientBoosting model, a
1M-row frame with a categorical column (pickle and joblib) and, with pyarrow installed, a 1M-row
Arrow string column. Target: validation <= 2% of the load.
`floor`, for the cases whose invariant covers every item of an array (a categorical's codes, Arrow
offsets): one read of those arrays right after the load (a NumPy max, no check), over the same
load time. No check that reads each item can cost less; where it is above the target, the
target is out of reach for any validation of that invariant after the load.
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
from typing import Any, Callable, Dict, List, Optional, Tuple

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)

import picklefence
from picklefence import _native_state

TARGET = 0.02


# A case: its name, the load, and where the check must read every item of an array (a
# categorical's codes, Arrow offsets), a function that finds those arrays in the result; the
# floor is the time of one read of them (found untimed, through attributes only).
Case = Tuple[str, Callable[[], Any], Optional[Callable[[Any], List[Any]]]]


def _codes(frame: Any) -> List[Any]:
    return [b.values._ndarray for b in frame._mgr.blocks if hasattr(b.values, "categories")]


def _offsets(frame: Any) -> List[Any]:
    chunks = frame._mgr.blocks[0].values._pa_array.chunks
    return [np.frombuffer(c.buffers()[1], dtype=np.uint8) for c in chunks]


def _models(tmp: Path, quick: bool) -> List[Case]:
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
    cases: List[Case] = []
    for name, model in made.items():
        path = tmp / f"{len(cases)}.joblib"
        joblib.dump(model, path)
        cases.append((f"joblib.load {name}", lambda path=path: joblib.load(path), None))
    frame_pickle = pickle.dumps(frame, protocol=5)
    cases.append(
        (
            f"pickle.loads {rows // 1000}k-row categorical frame",
            lambda: pickle.loads(frame_pickle),
            _codes,
        )
    )
    frame_path = tmp / "frame.joblib"
    joblib.dump(frame, frame_path)
    cases.append(
        (f"joblib.load {rows // 1000}k-row categorical frame", lambda: joblib.load(frame_path), _codes)
    )
    try:
        import pyarrow  # noqa: F401

        # pandas' string dtype is Arrow-backed with pyarrow installed: offsets validated.
        strings = pd.DataFrame(
            {"name": pd.array([f"user{i}" for i in rng.randint(0, 10**6, rows)], dtype="str")}
        )
        strings_pickle = pickle.dumps(strings, protocol=5)
        cases.append(
            (
                f"pickle.loads {rows // 1000}k-row Arrow string column",
                lambda: pickle.loads(strings_pickle),
                _offsets,
            )
        )
    except ImportError:
        pass
    return cases


# What the validators switch: on (as shipped) or off (nothing captured, walked or patched).
_SWITCHES = ("CAPTURED", "SETSTATE_CAPTURED", "WALKED_MODULES", "SETSTATE_CHECKED", "CHECKED_ON_CREATION")
# The checks whose time is the validation's: after the load, and inside it (Arrow arrays as they
# are made, block manager states as __setstate__ gets them).
_TIMED = ("validate", "_check_arrow", "_check_manager_state")


def _set_validation(on: bool, saved: Dict[str, Any]) -> None:
    for switch in _SWITCHES:
        setattr(_native_state, switch, saved[switch] if on else type(saved[switch])())


def _timed(function: Callable[..., Any], spent: List[float]) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args)
        finally:
            spent[0] += time.perf_counter() - start

    return timed


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--quick", action="store_true", help="smaller models")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)
    missed = []
    saved = {switch: getattr(_native_state, switch) for switch in _SWITCHES}
    originals = {name: getattr(_native_state, name) for name in _TIMED}
    spent = [0.0]  # this load's: the validation after it plus the checks in it
    for name, function in originals.items():
        setattr(_native_state, name, _timed(function, spent))
    with tempfile.TemporaryDirectory() as tmp, picklefence.safe_ml_environment():
        print(
            f"{'case (guarded loads)':52} {'off ms':>8} {'on ms':>8} {'on/off':>7} {'check ms':>9}"
            f" {'share':>7} {'floor':>7} {'target':>7}"
        )
        for name, load, arrays_of in _models(Path(tmp), args.quick):
            for on in (True, False):  # warm up (imports)
                _set_validation(on, saved)
                load()
            times: Dict[bool, List[float]] = {True: [], False: []}
            checks: List[float] = []
            reads: List[float] = []
            for index in range(args.rounds):
                for on in (True, False) if index % 2 else (False, True):
                    _set_validation(on, saved)
                    gc.collect()
                    spent[0] = 0.0
                    start = time.perf_counter()
                    result = load()
                    times[on].append(time.perf_counter() - start)
                    if on:
                        checks.append(spent[0])
                    elif arrays_of is not None:
                        arrays = [a.view(np.uint8) for a in arrays_of(result)]
                        start = time.perf_counter()
                        for array in arrays:
                            array.max()
                        reads.append(time.perf_counter() - start)
                        del arrays
                    del result
            _set_validation(True, saved)
            ratio = statistics.median(a / b for a, b in zip(times[True], times[False]))
            off = statistics.median(times[False])
            check = statistics.median(checks)
            share = check / off
            floor = f"{statistics.median(reads) / off:7.2%}" if reads else f"{'-':>7}"
            ok = share <= TARGET
            if not ok:
                missed.append(name)
            print(
                f"{name:52} {off * 1e3:8.2f} {statistics.median(times[True]) * 1e3:8.2f} {ratio:7.3f}"
                f" {check * 1e3:9.3f} {share:7.2%} {floor} {TARGET:7.0%}  {'ok' if ok else 'OVER'}",
                flush=True,
            )
    for name, function in originals.items():
        setattr(_native_state, name, function)
    if missed:
        print(f"over target: {', '.join(missed)}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

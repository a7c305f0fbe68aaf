"""Many threads loading benign and malicious pickles while other threads activate and deactivate
the safe ML environment.

The guard is process-wide and reference-counted. A loader thread attempts malicious payloads only
while it holds an activation of its own (``with safe_ml_environment():``), so the guard is on for
every such attempt however the churn threads come and go; benign loads also happen with the guard
on or off, whichever the churn left. Each malicious payload would create a marker file in
``tmp_path``: none may ever appear. No benign load may fail for any reason but the policy (and the
benign objects are all on the policy, so none may fail at all).

Deterministic inputs (seeded); bounded by iteration counts and a deadline.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import random
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

picklefence = pytest.importorskip("picklefence")
pytest.importorskip("picklefence._native", reason="the picklefence extension module is not built")

LOADER_THREADS = 6
CHURN_THREADS = 3
ROUNDS = 60
DEADLINE_S = 40.0


class _Marker:
    """Pickles as a call that creates ``path``; it must never run while the guard is active."""

    def __init__(self, how: str, path: str) -> None:
        self.how, self.path = how, path

    def __reduce__(self) -> Tuple[Callable[..., Any], Tuple[Any, ...]]:
        if self.how == "open":
            return (open, (self.path, "w"))
        if self.how == "mkdir":
            return (os.mkdir, (self.path,))
        if self.how == "exec":
            return (exec, (f"open({self.path!r}, 'w').close()",))
        return (os.system, (f"touch {self.path}",))


def _benign_objects() -> List[Any]:
    return [
        None,
        {"weights": [0.5, -1.25, 3.0], "step": 7, "name": "model é"},
        [1, (2, 3), {4, 5}, frozenset({"six"}), b"seven", bytearray(b"eight")],
        collections.OrderedDict([("layer.0.weight", [1.0, 2.0]), ("layer.0.bias", [0.0])]),
        collections.Counter("mississippi"),
        list(range(500)),
        {"nested": {"deeper": {"deepest": (1.5, None, True)}}},
    ]


def _payloads(tmp_path: Path) -> Tuple[List[Tuple[Any, bytes]], List[Tuple[str, bytes]]]:
    benign = [
        (obj, pickle.dumps(obj, protocol=protocol))
        for obj in _benign_objects()
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1)
    ]
    malicious: List[Tuple[str, bytes]] = []
    for i, how in enumerate(["open", "mkdir", "exec", "system"]):
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            marker = str(tmp_path / f"ran-{how}-{protocol}-{i}")
            # The bare call, and the call hidden inside benign-looking data.
            malicious.append((marker, pickle.dumps(_Marker(how, marker), protocol=protocol)))
            wrapped = {"state_dict": {"w": [1.0]}, "hook": _Marker(how, marker + "-wrapped")}
            malicious.append((marker + "-wrapped", pickle.dumps(wrapped, protocol=protocol)))
    return benign, malicious


def _load(how: str, data: bytes) -> Any:
    if how == "loads":
        return pickle.loads(data)
    if how == "load":
        return pickle.load(io.BytesIO(data))
    if how == "Unpickler":
        return pickle.Unpickler(io.BytesIO(data)).load()
    return pickle._loads(data)  # type: ignore[attr-defined]


LOADERS = ["loads", "load", "Unpickler", "_loads"]


def test_guard_holds_under_concurrent_activation_churn(tmp_path: Path) -> None:
    benign, malicious = _payloads(tmp_path)
    assert not picklefence.is_active()
    deadline = time.monotonic() + DEADLINE_S
    stop = threading.Event()
    errors: List[str] = []
    counts: Dict[str, int] = collections.Counter()
    counts_lock = threading.Lock()
    start = threading.Barrier(LOADER_THREADS + CHURN_THREADS)

    def count(key: str) -> None:
        with counts_lock:
            counts[key] += 1

    def loader(index: int) -> None:
        rng = random.Random(1000 + index)
        start.wait()
        for _ in range(ROUNDS):
            if time.monotonic() > deadline:
                errors.append(f"loader {index}: deadline passed")
                return
            # Benign loads with the guard in whatever state the churn left it.
            obj, data = rng.choice(benign)
            try:
                if _load(rng.choice(LOADERS), data) != obj:
                    errors.append(f"loader {index}: benign load returned a different object")
                count("benign-unguarded-or-any")
            except Exception as error:  # no benign load may fail
                errors.append(f"loader {index}: benign load failed: {error!r}")
            # Malicious and benign loads while this thread holds its own activation.
            with picklefence.safe_ml_environment():
                for _ in range(3):
                    marker, data = rng.choice(malicious)
                    try:
                        _load(rng.choice(LOADERS), data)
                        errors.append(f"loader {index}: malicious payload {marker} loaded")
                    except picklefence.UnsafeFileError:
                        count("malicious-refused")
                    except Exception as error:
                        errors.append(
                            f"loader {index}: malicious payload raised {error!r}, not UnsafeFileError"
                        )
                    obj, data = rng.choice(benign)
                    try:
                        if _load(rng.choice(LOADERS), data) != obj:
                            errors.append(f"loader {index}: guarded benign load returned a different object")
                        count("benign-guarded")
                    except Exception as error:
                        errors.append(f"loader {index}: guarded benign load failed: {error!r}")

    def churn(index: int) -> None:
        rng = random.Random(2000 + index)
        start.wait()
        while not stop.is_set() and time.monotonic() < deadline:
            choice = rng.random()
            try:
                if choice < 0.4:
                    picklefence.activate_safe_ml_environment()
                    time.sleep(rng.random() * 0.002)
                    picklefence.deactivate_safe_ml_environment()
                elif choice < 0.7:
                    # A narrower-or-equal policy extension that allows nothing the payloads use.
                    with picklefence.safe_ml_environment(also_allow=["fractions.Fraction"]):
                        time.sleep(rng.random() * 0.002)
                else:
                    with picklefence.safe_ml_environment():
                        with picklefence.safe_ml_environment():
                            pass
                count("churn")
            except Exception as error:
                errors.append(f"churn {index}: {error!r}")
                return

    threads = [threading.Thread(target=loader, args=(i,), daemon=True) for i in range(LOADER_THREADS)]
    churners = [threading.Thread(target=churn, args=(i,), daemon=True) for i in range(CHURN_THREADS)]
    for thread in threads + churners:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_S + 5)
    stop.set()
    for thread in churners:
        thread.join(timeout=10)

    ran = sorted(p.name for p in tmp_path.iterdir())
    assert not ran, f"malicious payloads ran while the guard was active: {ran}"
    assert not errors, "\n".join(errors[:20])
    assert all(not t.is_alive() for t in threads + churners), "a thread hung"
    assert counts["malicious-refused"] == LOADER_THREADS * ROUNDS * 3, counts
    assert counts["benign-guarded"] == LOADER_THREADS * ROUNDS * 3, counts
    assert counts["churn"] > 0, counts
    # Every activation was paired with a deactivation: the environment is off again and
    # pickle's entry points are CPython's own.
    assert not picklefence.is_active()
    import _pickle

    assert pickle.loads is _pickle.loads

#!/usr/bin/env python3
"""Load the examples of make_examples.py through picklefence's safe ML environment.

Usage: demo_load.py OUTDIR

Each benign file loads as usual; each malicious file is refused with UnsafeFileError before any
of it runs, so OUTDIR/PWNED never appears. Exit status 0 when all of that held, 1 otherwise.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any, Callable, List

import picklefence

MARKER = "PWNED"


def load_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def load_pickle_bytes(path: Path) -> Any:
    # pickle.loads of bytes read by hand: no file name for the scanner to go by.
    return pickle.loads(path.read_bytes())


def load_torch(path: Path) -> Any:
    import torch

    # weights_only=False is the path that runs pickle; it is what picklefence guards.
    return torch.load(path, weights_only=False)


def describe(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(str(k) for k in list(value)[:4])
        return f"dict with {len(value)} keys ({keys})"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    return type(value).__name__


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    outdir = Path(argv[0])
    marker = outdir / MARKER
    benign: List[tuple[str, Callable[[Path], Any]]] = [
        ("data.pkl", load_pickle),
        ("numpy_array.pkl", load_pickle),
        ("sklearn_logreg.pkl", load_pickle),
        ("torch_state_dict.pt", load_torch),
    ]
    malicious: List[tuple[str, Callable[[Path], Any]]] = [
        ("evil_reduce.pkl", load_pickle),
        ("evil_torch.pt", load_torch),
        ("evil_stack_global.pkl", load_pickle_bytes),
    ]
    ok = True
    picklefence.activate_safe_ml_environment()
    try:
        print("benign files load as usual:")
        for name, load in benign:
            path = outdir / name
            if not path.exists():
                print(f"  {name:<24} (not generated: its library is not installed)")
                continue
            try:
                value = load(path)
            except picklefence.UnsafeFileError as e:
                ok = False
                print(f"  {name:<24} WRONGLY REFUSED: {e}")
                continue
            if name == "sklearn_logreg.pkl":
                prediction = value.predict([[0.0, 0.0], [1.0, 1.0]]).tolist()
                print(f"  {name:<24} loaded: {type(value).__name__}, predicts {prediction}")
            else:
                print(f"  {name:<24} loaded: {describe(value)}")

        print("malicious files are refused before any of their code runs:")
        for name, load in malicious:
            path = outdir / name
            try:
                load(path)
            except picklefence.UnsafeFileError as e:
                first = str(e).splitlines()[0]
                print(f"  {name:<24} refused: UnsafeFileError: {first}")
            except ImportError as e:
                print(f"  {name:<24} (skipped: {e})")
            else:
                ok = False
                print(f"  {name:<24} WAS LOADED: picklefence did not refuse it")
    finally:
        picklefence.deactivate_safe_ml_environment()

    if marker.exists():
        ok = False
        print(f"{marker} EXISTS: a payload ran")
    else:
        print(f"{marker} does not exist: no payload ran")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

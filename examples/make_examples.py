#!/usr/bin/env python3
"""Write a small set of benign and malicious example model files.

Usage: make_examples.py OUTDIR

Benign (each needs only what it names; skipped with a note when that library is missing):
  data.pkl               plain Python data (standard library)
  numpy_array.pkl        a NumPy array (numpy)
  sklearn_logreg.pkl     a fitted scikit-learn LogisticRegression (scikit-learn)
  torch_state_dict.pt    torch.save of a small model's state_dict: a zip archive (torch)

Malicious (standard library only; nothing here ever loads them):
  evil_reduce.pkl        GLOBAL os.system + REDUCE: runs `touch OUTDIR/PWNED` when loaded
  evil_torch.pt          a PyTorch zip archive whose data.pkl carries the same payload (made with
                         torch.save when torch is installed, else written the way torch.save lays
                         out its archive)
  evil_stack_global.pkl  the payload hidden from naive scanners: STACK_GLOBAL with its module and
                         name fetched back from the memo, no GLOBAL opcode anywhere

Loading any malicious file with plain pickle would create OUTDIR/PWNED; picklefence refuses them
before a single opcode runs, so the marker never appears.
"""

from __future__ import annotations

import io
import os
import pickle
import shlex
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable, List, Tuple

MARKER = "PWNED"


def payload_command(outdir: Path) -> str:
    return f"touch {shlex.quote(str(outdir.resolve() / MARKER))}"


def unicode_op(text: str) -> bytes:
    """SHORT_BINUNICODE or BINUNICODE for `text`."""
    data = text.encode("utf-8")
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data
    return b"X" + struct.pack("<I", len(data)) + data


def evil_reduce(command: str) -> bytes:
    """Protocol 2: ``os.system(command)`` via GLOBAL and REDUCE, what ``__reduce__`` exploits write."""
    return b"\x80\x02cos\nsystem\nq\x00" + unicode_op(command) + b"q\x01\x85q\x02Rq\x03."


def evil_stack_global(command: str) -> bytes:
    """Protocol 4: the module and name go through the memo before STACK_GLOBAL uses them."""
    body = (
        unicode_op("nothing to see")
        + b"\x94"  # MEMOIZE -> 0
        + b"0"  # POP
        + unicode_op("posix")
        + b"\x94"  # MEMOIZE -> 1
        + b"0"
        + unicode_op("system")
        + b"\x94"  # MEMOIZE -> 2
        + b"0"
        + b"h\x01h\x02"  # BINGET 1, BINGET 2
        + b"\x93"  # STACK_GLOBAL
        + unicode_op(command)
        + b"\x85R"  # TUPLE1, REDUCE
        + b"."
    )
    return b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body


class _SystemCall:
    """Pickles as ``os.system(command)``: the classic ``__reduce__`` exploit."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> Tuple[Callable[[str], int], Tuple[str]]:
        return (os.system, (self.command,))


def torch_zip_by_hand(data_pkl: bytes) -> bytes:
    """A zip laid out the way torch.save writes one (``<name>/data.pkl``, ``version``, ...)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("evil_torch/data.pkl", data_pkl)
        archive.writestr("evil_torch/byteorder", "little")
        archive.writestr("evil_torch/version", "3\n")
    return buffer.getvalue()


def write_benign(outdir: Path) -> List[Tuple[str, str]]:
    written: List[Tuple[str, str]] = []
    data = {
        "name": "tiny-model",
        "layers": [4, 8, 2],
        "learning_rate": 0.01,
        "tags": ("demo", "benign"),
        "checksum": b"\x00\x01\x02",
    }
    (outdir / "data.pkl").write_bytes(pickle.dumps(data, protocol=4))
    written.append(("data.pkl", "plain Python data"))

    try:
        import numpy as np
    except ImportError:
        print("  (numpy not installed: no numpy_array.pkl)")
    else:
        array = np.arange(12, dtype=np.float32).reshape(3, 4)
        (outdir / "numpy_array.pkl").write_bytes(pickle.dumps(array, protocol=4))
        written.append(("numpy_array.pkl", "a NumPy array"))

    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        print("  (scikit-learn not installed: no sklearn_logreg.pkl)")
    else:
        features = [[0.0, 0.1], [0.2, 0.0], [0.9, 1.0], [1.0, 0.8]]
        labels = [0, 0, 1, 1]
        model = LogisticRegression().fit(features, labels)
        (outdir / "sklearn_logreg.pkl").write_bytes(pickle.dumps(model, protocol=4))
        written.append(("sklearn_logreg.pkl", "a fitted scikit-learn LogisticRegression"))

    try:
        import torch
    except ImportError:
        print("  (torch not installed: no torch_state_dict.pt)")
    else:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        torch.save(model.state_dict(), outdir / "torch_state_dict.pt")
        written.append(("torch_state_dict.pt", "torch.save of a state_dict (zip archive)"))
    return written


def write_malicious(outdir: Path) -> List[Tuple[str, str]]:
    command = payload_command(outdir)
    written: List[Tuple[str, str]] = []
    (outdir / "evil_reduce.pkl").write_bytes(evil_reduce(command))
    written.append(("evil_reduce.pkl", "os.system via GLOBAL + REDUCE"))

    try:
        import torch
    except ImportError:
        (outdir / "evil_torch.pt").write_bytes(torch_zip_by_hand(evil_reduce(command)))
        written.append(("evil_torch.pt", "torch-style zip whose data.pkl runs os.system (hand-built)"))
    else:
        state: Any = {"weight": torch.zeros(2, 2), "config": _SystemCall(command)}
        torch.save(state, outdir / "evil_torch.pt")
        written.append(("evil_torch.pt", "torch.save zip whose data.pkl runs os.system"))

    (outdir / "evil_stack_global.pkl").write_bytes(evil_stack_global(command))
    written.append(("evil_stack_global.pkl", "posix.system via memo + STACK_GLOBAL, no GLOBAL opcode"))
    return written


def main(argv: List[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    outdir = Path(argv[0])
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / MARKER).unlink(missing_ok=True)
    benign = write_benign(outdir)
    malicious = write_malicious(outdir)
    print(f"wrote {len(benign)} benign and {len(malicious)} malicious examples to {outdir}/")
    for name, what in benign:
        print(f"  benign     {name:<24} {what}")
    for name, what in malicious:
        print(f"  malicious  {name:<24} {what}")
    print(f"  (loading a malicious one without picklefence would create {outdir / MARKER})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

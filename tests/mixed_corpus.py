"""A corpus of many small model files of several container kinds, benign and malicious, for the
scale tests and benchmarks (`tests/test_ray.py`, `bench/bench_ray.py`).

Every malicious file would run `touch MARKER` (a file in a temp directory) if it were loaded;
the corpus is only ever scanned. Files differ from one another (each holds its index), and
every kind appears both benign and malicious.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict, Tuple

from pfhelpers import global_call, touch_command

PER_DIR = 250


def _payload(marker: Path, proto: int) -> bytes:
    return global_call("os", "system", touch_command(marker), proto=proto)


def _state(index: int, proto: int) -> bytes:
    state = OrderedDict((f"layer{layer}.weight", [float(index), float(layer)]) for layer in range(4))
    state["step"] = index
    return pickle.dumps(state, protocol=proto)


def _pickle(index: int, bad: bool, marker: Path) -> bytes:
    proto = index % 6
    return _payload(marker, max(proto, 2)) if bad else _state(index, proto)


def _wrapped(compress: Callable[[bytes], bytes]) -> Callable[[int, bool, Path], bytes]:
    def make(index: int, bad: bool, marker: Path) -> bytes:
        return compress(_pickle(index, bad, marker))

    return make


def _torch_zip(index: int, bad: bool, marker: Path) -> bytes:
    """The layout `torch.save` writes: `<name>/data.pkl`, `<name>/version`, storages in
    `<name>/data/`."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("model/data.pkl", _pickle(index, bad, marker) if bad else _state(index, 2))
        archive.writestr("model/version", "3\n")
        archive.writestr("model/data/0", struct.pack("<4f", index, 1.0, 2.0, 3.0))
    return out.getvalue()


def _npy(index: int, bad: bool, marker: Path) -> bytes:
    """A NumPy `.npy`: float data, or an object array whose pickle is the payload."""
    if bad:
        header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
        body = _payload(marker, 2)
    else:
        header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"
        body = struct.pack("<2d", index, 0.5)
    padded = header + " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(padded)) + padded.encode() + body


def _text(index: int, bad: bool, marker: Path) -> bytes:
    """Not a model at all, or a protocol-0 pickle that looks like text."""
    if bad:
        return global_call("os", "system", touch_command(marker), proto=0)
    return f"# notes for run {index}\nlearning_rate = 0.001\n".encode()


KINDS: Dict[str, Callable[[int, bool, Path], bytes]] = {
    "pickle": _pickle,
    "gzip": _wrapped(gzip.compress),
    "bz2": _wrapped(bz2.compress),
    "xz": _wrapped(lzma.compress),
    "torch-zip": _torch_zip,
    "npy": _npy,
    "text": _text,
}


def build(root: Path, count: int, marker: Path) -> Dict[str, Tuple[str, bool]]:
    """Writes `count` files under `root` (`PER_DIR` per directory); for each path, its kind and
    whether it is malicious (every fifth round of kinds)."""
    written: Dict[str, Tuple[str, bool]] = {}
    kinds = list(KINDS.items())
    for index in range(count):
        name, make = kinds[index % len(kinds)]
        bad = (index // len(kinds)) % 5 == 0
        folder = root / f"d{index // PER_DIR:04}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{index:06}.bin"
        path.write_bytes(make(index, bad, marker))
        written[str(path)] = (name, bad)
    return written

"""One memory under two arrays: a pickle hands the same memoised bytearray (or bytes, or
out-of-band buffer) to two of numpy's `_frombuffer`/pyarrow's `py_buffer` calls, or BUILDs an
array over the bytes another array reads. One array becomes state the guard validates (a
MultiIndex's codes, an Arrow string column's offsets), the other an ordinary column: an ordinary
write to the column after the load rewrites the validated state. The static analysis (the
scanner and the guard's pre-scan) refuses such files (`shared-buffer`); real protocol-5 files,
where every array has its own buffer, load unchanged."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Callable, Dict

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import picklefence
from picklefence import UnsafeFileError

FROMBUFFER = np._core.numeric._frombuffer  # type: ignore[attr-defined]
RECONSTRUCT = np._core.multiarray._reconstruct  # type: ignore[attr-defined]

LOADERS: Dict[str, Callable[[bytes, Path], Any]] = {
    "pickle.loads": lambda data, path: pickle.loads(data),
    "pickle._Unpickler": lambda data, path: pickle._Unpickler(io.BytesIO(data)).load(),  # type: ignore[attr-defined]
    "joblib.load": lambda data, path: joblib.load(path),
    "pandas.read_pickle": lambda data, path: pd.read_pickle(path),
}


def _multiindex_codes_alias() -> bytes:
    """A frame whose int32 column and MultiIndex level-0 codes are one memoised bytearray
    (the red team's PoC)."""
    n = 4
    level0 = np.arange(40_000.0)  # > 32767 values: int32 codes
    mi = pd.MultiIndex(levels=[level0, ["a", "b", "c", "d"]], codes=[[0, 1, 2, 3], [0, 1, 2, 3]])
    df = pd.DataFrame({"x": np.arange(n, dtype=np.int32)}, index=mi)
    codes0 = mi.codes[0]
    blockvals = df._mgr.blocks[0].values
    assert codes0.dtype == np.int32 and blockvals.dtype == np.int32
    shared = bytearray(codes0.tobytes())

    class P(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if obj is codes0:
                return FROMBUFFER, (shared, codes0.dtype, (n,), "C")
            if obj is blockvals:
                return FROMBUFFER, (shared, blockvals.dtype, blockvals.shape, "C")
            return NotImplemented

    buf = io.BytesIO()
    P(buf, protocol=5).dump(df)
    return buf.getvalue()


def _arrow_offsets_alias() -> bytes:
    """A frame whose Arrow string column's offsets and an int64 block are one bytearray (the
    red team's PoC)."""
    df = pd.DataFrame(
        {
            "s": pd.array(["hello"], dtype="string[pyarrow]"),
            "a": np.array([0], dtype=np.int64),
            "b": np.array([5], dtype=np.int64),
        }
    )
    intblock = next(b.values for b in df._mgr.blocks if getattr(b.values, "dtype", None) == np.int64)
    assert intblock.shape == (2, 1)
    offsets = bytearray(np.array([0, 5], dtype=np.int64).tobytes())

    class P(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if obj is intblock:
                return FROMBUFFER, (offsets, intblock.dtype, intblock.shape, "C")
            if isinstance(obj, pa.Buffer) and obj.to_pybytes() == bytes(offsets):
                return pa.py_buffer, (offsets,)
            return NotImplemented

    buf = io.BytesIO()
    P(buf, protocol=5).dump(df)
    return buf.getvalue()


def _built_over_shared_bytes() -> bytes:
    """Two arrays BUILT (protocol 4's `_reconstruct` + state) over one memoised bytes object:
    numpy keeps large bytes as a writable array's memory."""
    a = np.arange(1000, dtype=np.int64)
    b = np.arange(1000, dtype=np.int64) + 0
    raw = a.tobytes()

    class P(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if obj is a or obj is b:
                return RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, obj.shape, obj.dtype, False, raw)
            return NotImplemented

    buf = io.BytesIO()
    P(buf, protocol=4).dump([a, b])
    return buf.getvalue()


GADGETS = {
    "multiindex-codes": _multiindex_codes_alias,
    "arrow-offsets": _arrow_offsets_alias,
    "built-over-bytes": _built_over_shared_bytes,
}


def _shared(report: Any) -> list:
    return [f for f in report.findings if f.kind == "shared-buffer"]


@pytest.mark.parametrize("gadget", sorted(GADGETS))
def test_the_scanner_flags_one_buffer_under_two_arrays(gadget: str) -> None:
    report = picklefence.scan_bytes(GADGETS[gadget]())
    assert not report.is_safe
    (finding,) = _shared(report)
    assert finding.severity == "critical" and "share one memory" in finding.message, finding


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("gadget", sorted(GADGETS))
def test_the_guard_refuses_one_buffer_under_two_arrays(gadget: str, loader: str, tmp_path: Path) -> None:
    data = GADGETS[gadget]()
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            LOADERS[loader](data, path)
    kinds = [v.kind for v in info.value.violations]
    assert kinds == ["shared-buffer"], info.value.violations


def test_unprotected_the_multiindex_codes_are_the_column() -> None:
    """The gadget is real: a write to the column rewrites the checked codes."""
    df = pickle.loads(_multiindex_codes_alias())
    codes = df.index.codes[0]
    assert np.shares_memory(codes, df._mgr.blocks[0].values)
    df._mgr.blocks[0].values[0, 0] = 39_999
    assert df.index.codes[0][0] == 39_999


def test_unprotected_the_arrow_offsets_are_the_column() -> None:
    df = pickle.loads(_arrow_offsets_alias())
    offsets = df["s"].array._pa_array.chunk(0).buffers()[1]
    block = next(b.values for b in df._mgr.blocks if getattr(b.values, "dtype", None) == np.int64)
    assert np.shares_memory(np.frombuffer(offsets, dtype=np.int64), block)
    block[1, 0] = 3
    assert df["s"][0] == "hel"


def test_unprotected_two_arrays_built_over_one_bytes_object_share_it() -> None:
    a, b = pickle.loads(_built_over_shared_bytes())
    assert a.flags.writeable and np.shares_memory(a, b)
    a[0] = 7
    assert b[0] == 7


def _benign_frames() -> Dict[str, Any]:
    mi = pd.MultiIndex.from_product([np.arange(40_000.0)[:200], ["a", "b"]])
    return {
        "multiindex": pd.DataFrame({"x": np.arange(400, dtype=np.int32), "y": np.ones(400)}, index=mi),
        "arrow-strings": pd.DataFrame(
            {
                "s": pd.array(["hello", "", None, "world"] * 3, dtype="string[pyarrow]"),
                "t": pd.array(["x"] * 12, dtype="string[pyarrow]"),
                "a": np.arange(12, dtype=np.int64),
            }
        ),
        "arrays": [np.arange(3000, dtype=np.int64), np.zeros(0), np.ones(1, dtype=np.int8), np.zeros(0)],
    }


@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.parametrize("name", sorted(_benign_frames()))
def test_real_frames_and_arrays_load_unchanged(name: str, protocol: int, tmp_path: Path) -> None:
    obj = _benign_frames()[name]
    data = pickle.dumps(obj, protocol=protocol)
    report = picklefence.scan_bytes(data)
    assert report.is_safe and not _shared(report), report.findings
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    for loader in sorted(LOADERS):
        with picklefence.safe_ml_environment():
            loaded = LOADERS[loader](data, path)
        if isinstance(obj, pd.DataFrame):
            pd.testing.assert_frame_equal(loaded, obj)
        else:
            for got, want in zip(loaded, obj):
                np.testing.assert_array_equal(got, want)

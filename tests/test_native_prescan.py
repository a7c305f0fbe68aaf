"""The pre-scan's FFI contract (``picklefence._native.prescan``): verdicts and findings as named
fields, and the one file adapter's reads (exact mode: the bytes read, the file left where
CPython's unpickler leaves it; a Python exception re-raised as it was)."""

from __future__ import annotations

import io
import pickle
from typing import Any, List, Optional

import pytest

from pfhelpers import SystemPayload
from picklefence import Policy, _native
from picklefence._native import PrefixKind, PrescanVerdict


class NonSeekable:
    """A file with only ``read``: read exactly (no ``readline``, no ``seek``)."""

    def __init__(self, data: bytes, extra: int = 0) -> None:
        self.data = io.BytesIO(data)
        self.extra = extra
        self.calls: List[Optional[int]] = []

    def read(self, n: int = -1) -> bytes:
        self.calls.append(n)
        # A file may return more than asked for; CPython's unpickler takes the rest as what follows.
        return self.data.read(n + self.extra if n >= 0 else n)


def _joblib_with_unknown_shape() -> bytes:
    """A joblib file whose NumpyArrayWrapper's shape is (True, None): joblib reads array data after
    its BUILD, but how much cannot be known from the pickle."""
    import joblib
    import numpy as np

    buffer = io.BytesIO()
    joblib.dump(np.arange(3, dtype=np.int64), buffer)
    data = buffer.getvalue()
    shape = data.index(b"K\x03\x85", data.index(b"shape"))  # BININT1 3, TUPLE1
    return data[:shape] + b"\x88N\x86" + data[shape + 3 :]  # NEWTRUE, NONE, TUPLE2


def test_clean_and_refused_have_named_fields(marker: Any) -> None:
    clean = _native.prescan(pickle.dumps({"a": [1, 2]}, protocol=4) + b"trailing", Policy())
    assert clean.verdict == PrescanVerdict.CLEAN and clean.violations == ()
    assert clean.protocol == 4 and clean.consumed == len(pickle.dumps({"a": [1, 2]}, protocol=4))
    assert clean.stopped_at is None and clean.copy is None

    refused = _native.prescan(pickle.dumps(SystemPayload(marker), protocol=2), Policy())
    assert refused.verdict == PrescanVerdict.REFUSED
    (finding,) = refused.violations
    assert (finding.kind, finding.module, finding.name) == ("dangerous-import", "posix", "system")
    assert finding.severity == "critical" and finding.offset > 0 and finding.message
    assert finding.ext_code is None


def test_only_malformed_is_not_refused() -> None:
    found = _native.prescan(b"\x80\x02]q\x00(K\x01", Policy())  # a list, cut short
    assert found.verdict == PrescanVerdict.MALFORMED
    assert [v.kind for v in found.violations] == ["malformed-pickle"]
    assert _native.prescan(b"", Policy()).protocol is None


def test_joblib_stop_at_an_unknown_array_is_a_field() -> None:
    data = _joblib_with_unknown_shape()
    for source, start in ((data, None), (io.BytesIO(data), 0), (NonSeekable(data), None)):
        found = _native.prescan(source, Policy(), True, start)
        assert found.verdict == PrescanVerdict.INCOMPLETE
        (finding,) = found.violations
        assert finding.kind == "container" and found.stopped_at == finding.offset == found.consumed
    # Read as a plain pickle, the same bytes are no joblib stream: nothing stops there.
    assert _native.prescan(data, Policy()).stopped_at is None


@pytest.mark.parametrize("joblib", [False, True])
@pytest.mark.parametrize("extra", [0, 5])
def test_exact_mode_returns_what_it_read(joblib: bool, extra: int) -> None:
    data = pickle.dumps(list(range(50)), protocol=2)
    file = NonSeekable(data + b"TRAILER", extra)
    found = _native.prescan(file, Policy(), joblib)
    assert found.verdict == PrescanVerdict.CLEAN and found.consumed == len(data)
    assert found.copy is not None and found.copy.startswith(data)
    # Every byte the file returned is in the copy, and nothing more was read.
    assert found.copy + file.data.read() == data + b"TRAILER"
    if extra == 0:
        assert found.copy == data


@pytest.mark.parametrize("joblib", [False, True])
def test_file_errors_are_reraised(joblib: bool) -> None:
    class Failing:
        def read(self, n: int = -1) -> bytes:
            raise OSError(5, "disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        _native.prescan(Failing(), Policy(), joblib)

    class Text:
        def read(self, n: int = -1) -> str:
            return "text"

    with pytest.raises(TypeError, match="bytes-like"):
        _native.prescan(Text(), Policy(), joblib)


def test_prefix_kind() -> None:
    assert _native.prefix_kind(pickle.dumps([1, 2], protocol=4)) == PrefixKind.ENDS
    assert _native.prefix_kind(pickle.dumps(b"x" * (1 << 18), protocol=4)[:1000]) == PrefixKind.PAYLOAD_HEAVY
    assert (
        _native.prefix_kind(pickle.dumps(list(range(1 << 14)), protocol=4)[:1000]) == PrefixKind.OPCODE_DENSE
    )

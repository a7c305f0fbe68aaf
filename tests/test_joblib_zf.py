"""joblib's old single-file compressed format (`ZF`, joblib <= 0.9): the files joblib itself ships
as test data scan clean and load under the guard; the same format with an injected payload is
flagged by the scanner and refused by the guard."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import List

import joblib
import pytest
from joblib.numpy_pickle_compat import write_zfile

import picklefence
from picklefence import UnsafeFileError


def _shipped_zf_files() -> List[Path]:
    data = Path(joblib.__file__).parent / "test" / "data"
    found = []
    for path in sorted(data.glob("*compressed_pickle*.gz")) if data.is_dir() else []:
        if path.read_bytes()[:2] == b"ZF":
            found.append(path)
    return found


def _zf(payload: bytes) -> bytes:
    out = io.BytesIO()
    write_zfile(out, payload)
    return out.getvalue()


class _Marker:
    """Creates a marker file when unpickled (the harmless stand-in for a payload)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


@pytest.mark.skipif(not _shipped_zf_files(), reason="this joblib ships no ZF test files")
@pytest.mark.parametrize("path", _shipped_zf_files(), ids=lambda p: p.name)
def test_joblibs_own_zf_files_scan_clean(path: Path) -> None:
    report = picklefence.scan_file(path)
    assert report.format == "joblib-zf", report
    assert report.is_safe, str(report)


def test_the_zf_files_python3_can_load_load_under_the_guard() -> None:
    loadable = [p for p in _shipped_zf_files() if "py3" in p.name]
    assert loadable, "joblib ships Python 3 ZF files"
    with picklefence.safe_ml_environment():
        for path in loadable:
            assert joblib.load(path) is not None


def test_a_zf_file_with_a_payload_is_flagged_and_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "model.pkl"
    path.write_bytes(_zf(pickle.dumps({"model": _Marker(str(marker))}, protocol=2)))
    report = picklefence.scan_file(path)
    assert report.format == "joblib-zf"
    assert not report.is_safe
    assert any(f.qualified_name in ("io.open", "builtins.open") for f in report.violations), str(report)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError):
            joblib.load(path)
    assert not marker.exists()


def test_a_benign_zf_file_written_now_scans_clean(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(_zf(pickle.dumps({"weights": [1.0, 2.0], "name": "m"}, protocol=2)))
    report = picklefence.scan_file(path)
    assert report.format == "joblib-zf" and report.is_safe, str(report)
    with picklefence.safe_ml_environment():
        assert joblib.load(path) == {"weights": [1.0, 2.0], "name": "m"}


def test_a_zf_header_joblib_cannot_read_stays_unsupported() -> None:
    report = picklefence.scan_bytes(b"ZF" + b"not a length field!" + b"x" * 40)
    assert not report.is_safe
    assert report.format == "joblib-compat"

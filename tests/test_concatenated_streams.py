"""Compressed files made of several streams are read as the Python reader of each codec reads
them (issue: only the first zlib/lzma/zstd/lz4 stream was read, so a pickle split across
streams hid what its second part imports). Each case is checked against the Python reader
itself, so the test states the reader's behaviour as well as the scanner's."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import zlib
from typing import Callable, Dict

import pytest

import picklefence

lz4_frame = pytest.importorskip("lz4.frame")
zstandard = pytest.importorskip("zstandard")

# A pickle whose second half imports os.system; the first half alone is a truncated pickle.
EVIL = b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93\x8c\x04true\x85R."
BENIGN = pickle.dumps({"weights": [1.5, 2.5], "epoch": 3}, protocol=4)

COMPRESS: Dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda d: gzip.compress(d, mtime=0),
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
    "zstd": lambda d: zstandard.ZstdCompressor().compress(d),
    "lz4": lz4_frame.compress,
}

READ: Dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda d: gzip.GzipFile(fileobj=io.BytesIO(d)).read(),
    "bzip2": lambda d: bz2.BZ2File(io.BytesIO(d)).read(),
    "xz": lambda d: lzma.LZMAFile(io.BytesIO(d)).read(),
    "lzma": lambda d: lzma.LZMAFile(io.BytesIO(d)).read(),
    "zstd": lambda d: zstandard.open(io.BytesIO(d), "rb").read(),
    "lz4": lambda d: lz4_frame.LZ4FrameFile(io.BytesIO(d)).read(),
}

# Bytes after the last stream: ignored by BZ2File and LZMAFile, an error for the others.
TRAILING_IGNORED = {"bzip2", "xz", "lzma"}


def _split(codec: str, data: bytes) -> bytes:
    cut = len(data) // 2
    return COMPRESS[codec](data[:cut]) + COMPRESS[codec](data[cut:])


@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_a_pickle_split_across_streams_is_read_whole(codec: str) -> None:
    data = _split(codec, EVIL)
    assert READ[codec](data) == EVIL
    report = picklefence.scan_bytes(data)
    assert report.format == codec
    assert report.verdict == "unsafe"
    assert "os.system" in report.imports, report
    assert not any(f.kind == "malformed-pickle" for f in report.findings), report


@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_a_benign_pickle_split_across_streams_is_clean(codec: str) -> None:
    data = _split(codec, BENIGN)
    assert pickle.loads(READ[codec](data)) == pickle.loads(BENIGN)
    report = picklefence.scan_bytes(data)
    assert report.verdict == "clean", report


@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_bytes_after_the_last_stream_are_treated_as_the_reader_treats_them(codec: str) -> None:
    data = COMPRESS[codec](BENIGN) + b"not a stream at all"
    report = picklefence.scan_bytes(data)
    if codec in TRAILING_IGNORED:
        assert READ[codec](data) == BENIGN
        assert report.verdict == "clean", report
    else:
        # gzip.BadGzipFile, zstandard.ZstdError and lz4's RuntimeError.
        with pytest.raises((OSError, zstandard.ZstdError, RuntimeError)):
            READ[codec](data)
        assert report.verdict == "unsafe", report
        assert any("cannot be read" in f.message for f in report.findings), report


def test_gzip_zero_padding_after_a_member_is_skipped() -> None:
    data = gzip.compress(BENIGN) + b"\0" * 37 + gzip.compress(pickle.dumps(None))
    assert gzip.GzipFile(fileobj=io.BytesIO(data)).read() == BENIGN + pickle.dumps(None)
    assert picklefence.scan_bytes(data).verdict == "clean"


def test_zlib_is_read_to_the_end_of_its_first_stream_as_joblib_reads_it() -> None:
    """joblib's BinaryZlibFile never returns data past the first stream (it feeds the rest to
    the finished decompressor, which keeps it as unused data), so a second stream cannot reach
    pickle.load: the scan reads what joblib can, and a pickle cut there is truncated."""
    from joblib.compressor import BinaryZlibFile

    whole = zlib.compress(BENIGN)
    with BinaryZlibFile(io.BytesIO(whole + zlib.compress(b"more")), "rb") as f:
        assert f.read(len(BENIGN)) == BENIGN
    assert picklefence.scan_bytes(whole + zlib.compress(b"more")).verdict == "clean"
    cut = len(EVIL) // 2
    report = picklefence.scan_bytes(zlib.compress(EVIL[:cut]) + zlib.compress(EVIL[cut:]))
    assert "os.system" not in report.imports
    assert any(f.kind == "malformed-pickle" for f in report.findings), report

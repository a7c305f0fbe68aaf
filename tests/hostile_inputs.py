"""Decompression bombs for the reliability tests and `bench/hostile_rss.py`: each claims 1 GiB
or 16 GiB and is written in well under a second, without holding what it expands to (one
compressed chunk of zeros repeated, or many small streams concatenated, as the readers of
each codec accept). What they expand to is a pickle: one BINBYTES8 whose payload is the
zeros, then an `os.system` import, so a scanner has to read through all of it to reach the
end; no payload ever runs (nothing is loaded, only scanned)."""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Iterator

GIB = 1 << 30
CHUNK = 16 << 20
TAIL = b"0\x8c\x02os\x8c\x06system\x93."


def pickle_head(payload: int) -> bytes:
    return b"\x80\x04\x8e" + struct.pack("<Q", payload)


def feed_pickle(stream: BinaryIO, size: int) -> None:
    """Writes a pickle to `stream` (a pipe) and closes it: one BINBYTES8 of `size` bytes, then an
    os.system import; with `size` -1 a payload that claims 2^63 bytes and never ends. A reader
    that goes away ends the writing."""
    endless = size < 0
    try:
        stream.write(pickle_head((1 << 63) - 1 if endless else size))
        chunk = b"x" * (1 << 20)
        # Large writes, so that the pipe and not this loop sets the pace.
        big = memoryview(chunk * 16)
        while endless:
            stream.write(big)
        for _ in range(size >> 20):
            stream.write(chunk)
        stream.write(b"x" * (size % (1 << 20)) + TAIL)
        stream.close()
    except BrokenPipeError:
        pass


def _deflate(size: int, wbits: int) -> Iterator[bytes]:
    """The pickle of `size` zero bytes, deflated; every 1 MiB of zeros is one fully flushed
    block, which decodes alike wherever it sits, so it is compressed once and repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    yield c.compress(pickle_head(size)) + c.flush(zlib.Z_FULL_FLUSH)
    mib = 1 << 20
    block = c.compress(b"\0" * mib) + c.flush(zlib.Z_FULL_FLUSH)
    run = block * 64
    for _ in range(size // (64 * mib)):
        yield run
    for _ in range(size % (64 * mib) // mib):
        yield block
    yield c.compress(TAIL) + c.flush()


def _concatenated(size: int, compress: Callable[[bytes], bytes]) -> Iterator[bytes]:
    """Streams of 16 MiB each, concatenated (gzip, bzip2, xz, zstd and lz4 readers read on)."""
    yield compress(pickle_head(size))
    zeros = compress(b"\0" * CHUNK)
    for _ in range(size // CHUNK):
        yield zeros
    yield compress(TAIL)


def _zip(path: Path, size: int) -> None:
    """A torch zip (zip64) whose `archive/data.pkl` is deflated and declares its true size."""
    name = b"archive/data.pkl"
    total = len(pickle_head(size)) + size + len(TAIL)
    crc = 0
    with open(path, "wb") as out:
        local = struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, 8, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name), 20
        )
        out.write(local + name + struct.pack("<HHQQ", 1, 16, total, 0))
        compressed = 0
        for part in _deflate(size, -15):
            out.write(part)
            compressed += len(part)
        # The sizes are known now: the local header's zip64 field is written back.
        out.seek(30 + len(name) + 4)
        out.write(struct.pack("<QQ", total, compressed))
        out.seek(0, 2)
        central_at = out.tell()
        central = struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            45,
            45,
            0,
            8,
            0,
            0,
            crc,
            0xFFFFFFFF,
            0xFFFFFFFF,
            len(name),
            28,
            0,
            0,
            0,
            0,
            0xFFFFFFFF,
        )
        central += name + struct.pack("<HHQQQ", 1, 24, total, compressed, 0)
        out.write(central)
        end64_at = out.tell()
        out.write(
            struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, len(central), central_at)
        )
        out.write(struct.pack("<4sIQI", b"PK\x06\x07", 0, end64_at, 1))
        out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, 0xFFFFFFFF, 0xFFFFFFFF, 0))


def _stream_writer(parts: Callable[[int], Iterator[bytes]]) -> Callable[[Path, int], None]:
    def write(path: Path, size: int) -> None:
        with open(path, "wb") as out:
            for part in parts(size):
                out.write(part)

    return write


def _gzip(size: int) -> Iterator[bytes]:
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    # Up to 1 GiB the CRC is computed (a tenth of a second); past that a reader stops at the
    # scan's budget long before it could check it.
    crc = zlib.crc32(pickle_head(size))
    if size <= GIB:
        mib = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            crc = zlib.crc32(mib, crc)
        crc = zlib.crc32(b"\0" * (size % (1 << 20)), crc)
    crc = zlib.crc32(TAIL, crc)
    yield from _deflate(size, -15)
    yield struct.pack("<II", crc, (len(pickle_head(size)) + size + len(TAIL)) & 0xFFFFFFFF)


def _zstd_compress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=19).compress(data)


def _lz4_compress(data: bytes) -> bytes:
    import lz4.frame

    return lz4.frame.compress(data, compression_level=9)


BOMBS: Dict[str, Callable[[Path, int], None]] = {
    "zip-deflate": _zip,
    "gzip": _stream_writer(_gzip),
    "bzip2": _stream_writer(lambda size: _concatenated(size, bz2.compress)),
    "xz": _stream_writer(lambda size: _concatenated(size, lzma.compress)),
    "zstd": _stream_writer(lambda size: _concatenated(size, _zstd_compress)),
    "lz4": _stream_writer(lambda size: _concatenated(size, _lz4_compress)),
}
"""Bomb kind -> writer(path, bytes of zeros claimed)."""


def write_bomb(kind: str, directory: Path, size: int) -> Path:
    path = directory / f"{kind}-{size >> 30}GiB.bomb"
    BOMBS[kind](path, size)
    return path

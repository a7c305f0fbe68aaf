"""Payloads and helpers for the picklefence tests.

Every malicious payload here only creates a marker file inside a pytest tmp_path.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any, Callable, List

# --------------------------------------------------------------------------------------------
# Payload objects: each pickles as a call to something dangerous that creates `marker`.


class SystemPayload:
    """Pickles as os.system('touch MARKER') (written as posix.system)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> Any:
        return (os.system, (f"touch '{self.marker}'",))


class ExecPayload:
    """Pickles as builtins.exec("open(MARKER, 'w').close()")."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> Any:
        return (builtins.exec, (f"open({self.marker!r}, 'w').close()",))


class SubprocessPayload:
    """Pickles as subprocess.call(['touch', MARKER])."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> Any:
        return (subprocess.call, (["touch", self.marker],))


def write_marker(path: str) -> str:
    """A harmless function with a side effect, allowed in some tests with also_allow."""
    with open(path, "w") as f:
        f.write("ran")
    return path


class WriteMarkerPayload:
    """Pickles as pfhelpers.write_marker(MARKER)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> Any:
        return (write_marker, (self.marker,))


class MarkerWriter:
    """A class whose constructor writes a marker (allowed with also_allow in pre-scan tests)."""

    def __init__(self, path: str) -> None:
        write_marker(path)
        self.path = path

    def __reduce__(self) -> Any:
        return (MarkerWriter, (self.path,))

    @classmethod
    def unconstructed(cls, path: str) -> MarkerWriter:
        """An instance made without running the constructor (so no marker is written now)."""
        self = cls.__new__(cls)
        self.path = path
        return self


class Point:
    """A custom class: needs also_allow=["pfhelpers.Point"]."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))


PAYLOADS = {
    "os.system": (SystemPayload, ("posix", "system")),
    "builtins.exec": (ExecPayload, ("builtins", "exec")),
    "subprocess.call": (SubprocessPayload, ("subprocess", "call")),
}

# --------------------------------------------------------------------------------------------
# Raw pickles (hand-written opcodes)


def global_call(module: str, name: str, arg: str, proto: int = 2) -> bytes:
    """A pickle that calls module.name(arg) through GLOBAL + REDUCE."""
    header = b"\x80" + bytes([proto]) if proto >= 2 else b""
    return (
        header
        + b"c"
        + module.encode()
        + b"\n"
        + name.encode()
        + b"\n"
        + b"X"
        + len(arg.encode()).to_bytes(4, "little")
        + arg.encode()
        + b"\x85R."
    )


def touch_command(marker: Path) -> str:
    return f"touch '{marker}'"


class NonSeekable(io.RawIOBase):
    """A read-only, non-seekable wrapper (like a pipe), counting how much was read."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        chunk = self._inner.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def position(self) -> int:
        return self._inner.tell()


class PlainReader:
    """A minimal file-like object: only read() and readline(), no seek/tell."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._inner.read(n)

    def readline(self) -> bytes:
        return self._inner.readline()

    def position(self) -> int:
        return self._inner.tell()


def load_all(load: Callable[[Any], Any], f: Any) -> List[Any]:
    """`while True: load(f)` until EOFError, as people write it."""
    out = []
    while True:
        try:
            out.append(load(f))
        except EOFError:
            return out


def dumps(obj: Any, proto: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    return pickle.dumps(obj, protocol=proto)


class SeekableReader(io.RawIOBase):
    """A seekable file-like object that is neither a BytesIO nor backed by a file descriptor."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._inner.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

"""Layer 1 of the guard, the pre-scan: how a pickle's bytes are read and handed to the Rust
analyzer before the unpickler runs (one buffer or chunks, seekable or not, joblib's layout), and
how its verdict becomes an ``UnsafeFileError``.

The policies passed here already allow the copyreg EXT codes of their names
(``_policy_state._with_ext_codes``).
"""

from __future__ import annotations

import copyreg
import io
import os
import stat
from typing import Any, Callable, List, Optional

from . import _native
from ._native import Policy, PrefixKind, PrescanVerdict
from .errors import Finding, ScanError, UnsafeFileError, _path_of


def _filepath(file: Any) -> Optional[str]:
    """The path a file object was opened on, if it has one."""
    return _path_of(getattr(file, "name", None))


def _seek_start(file: Any) -> Optional[int]:
    """The file's position if seeking back to it is cheap and reliable, else None."""
    # Compressed streams seek backwards by decompressing again from the start: read those
    # exactly once instead (the non-seekable path).
    if _is_recompressing(file):
        return None
    try:
        seekable = file.seekable
    except AttributeError:
        return None
    try:
        if not seekable():
            return None
        position = file.tell()
    except Exception:
        return None
    return position if isinstance(position, int) and position >= 0 else None


def _is_recompressing(file: Any) -> bool:
    module = type(file).__module__
    if module in ("gzip", "bz2", "lzma", "zipfile", "_compression", "tarfile"):
        return True
    try:
        import _compression

        return isinstance(file, _compression.BaseStream)
    except ImportError:  # pragma: no cover
        return False


# A seekable file with at most this much left is read in one call and scanned as a buffer (the
# analyzer's fast path); larger ones are read in chunks with long payloads skipped by seeking,
# so that the array data of a large file is not read twice.
_READ_WHOLE_UP_TO = 1 << 20
# Up to this much left, a file whose first _PREFIX bytes are opcode-dense is read whole too.
_READ_DENSE_UP_TO = 32 << 20
_PREFIX = 64 << 10


def _remaining(file: Any, start: int) -> Optional[int]:
    """How many bytes a seekable file holds after ``start``, when that is cheap to know."""
    if type(file) is io.BytesIO:
        return max(0, file.getbuffer().nbytes - start)
    try:
        fileno = file.fileno()
    except Exception:
        return None
    try:
        info = os.fstat(fileno)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    raw = getattr(file, "raw", file)
    if type(raw) is not io.FileIO:
        return None  # a wrapper (decompressor, text layer) whose bytes are not the file's
    return max(0, info.st_size - start)


def _read_for_buffer_scan(file: Any, start: int, remaining: Optional[int], joblib: bool) -> Optional[bytes]:
    """The bytes to pre-scan as one buffer (the analyzer's fast path), or None to read the file
    in chunks instead (skipping long payloads by seeking, so array data is not read twice).
    ``remaining``: what ``_remaining`` says is left of the file.

    Small files are read whole. A mid-sized file is read whole only when its first 64 KiB show
    an opcode-dense pickle; when the pickle ends within them, they are all that is scanned.
    """
    if remaining is None:
        return None
    if remaining <= _READ_WHOLE_UP_TO:
        return _as_bytes(file.read(remaining))
    if joblib or remaining > _READ_DENSE_UP_TO:
        return None
    prefix = _as_bytes(file.read(_PREFIX))
    kind = _native.prefix_kind(prefix)
    if kind == PrefixKind.ENDS:
        return prefix
    file.seek(start)
    if kind == PrefixKind.OPCODE_DENSE:
        return _as_bytes(file.read(remaining))
    return None  # PrefixKind.PAYLOAD_HEAVY


def _as_bytes(data: Any) -> bytes:
    return data if type(data) is bytes else bytes(data)


def _call_native(function: Callable[..., Any], *args: Any) -> Any:
    """Calls the native scanner; a Rust panic never loads anything: it becomes a ScanError."""
    try:
        return function(*args)
    except _native.PanicException as panic:  # a BaseException
        raise ScanError(f"the picklefence scanner failed ({panic}); nothing was loaded") from None


def _violations(found: _native.Prescan) -> List[Finding]:
    out = []
    for violation in found.violations:
        module, name, message = violation.module, violation.name, violation.message
        code = violation.ext_code
        if code is not None and module is None:
            key = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
            if key is not None:
                module, name = key
                message = f"{message} (the registry maps code {code} to {module}.{name})"
        out.append(Finding(violation.kind, module, name, violation.offset, message, violation.severity))
    return out


def _judge(found: _native.Prescan, filepath: Optional[str]) -> bool:
    """Raises UnsafeFileError listing every violation if the pre-scan refused the pickle. Returns
    whether the pre-scan checked the whole pickle (not so after the joblib branch below).

    Not refused: no violation, or only ``malformed-pickle`` ones (``MALFORMED``: a truncated or
    broken stream whose opcodes before the break are all allowed; CPython raises its own error
    there, and EOFError for an empty input).

    JOBLIB BRANCH (``INCOMPLETE``): when the joblib-aware pre-scan stops at an array whose layout
    it cannot recover (``found.stopped_at``), what it analysed before that point was allowed; the
    rest is left to layers 2 and 3 (find_class and the audit hook), as for any unpickler that is
    not pre-scanned.
    """
    verdict = found.verdict
    if verdict == PrescanVerdict.REFUSED:
        raise UnsafeFileError(_violations(found), filepath=filepath)
    return verdict != PrescanVerdict.INCOMPLETE


def prescan_bytes(data: bytes, policy: Policy, filepath: Optional[str] = None) -> None:
    """Pre-scans the first pickle of ``data``; raises UnsafeFileError if it is refused."""
    _judge(_call_native(_native.prescan, data, policy), filepath)


class Prescanned:
    """What ``prescan_stream`` found: the bytes to unpickle from (None: the file itself, which
    was left where it was), whether the pre-scan checked the whole pickle, and ``rest``: when
    it read a seekable file to its end in one piece, those bytes (an unpickler that can be
    pointed at them reads what was checked, and does not read the file twice)."""

    __slots__ = ("copy", "protocol", "rest", "verified")

    def __init__(
        self,
        copy: Optional[bytes],
        verified: bool,
        rest: Optional[bytes] = None,
        protocol: Optional[int] = None,
    ) -> None:
        self.copy = copy
        self.verified = verified
        self.rest = rest
        self.protocol = protocol


def prescan_stream(
    file: Any,
    policy: Policy,
    filepath: Optional[str] = None,
    *,
    joblib: bool = False,
    memo_inherited: bool = False,
) -> Prescanned:
    """Pre-scans the first pickle of a file object, from its current position.

    Seekable (and cheaply so): the file is left where it was, ``copy`` is None, and the
    unpickler reads the pickle again. Otherwise exactly the bytes of the pickle are read (the
    file ends up where CPython's unpickler would leave it) and returned, to be unpickled from.
    With ``joblib``, the stream is read the way joblib's NumpyUnpickler reads it (the raw array
    bytes after each NumpyArrayWrapper included). ``memo_inherited``: the unpickler has loaded
    before and keeps its memo, so a memo key this pickle never stored is refused (it names an
    object of an earlier pickle, whose use cannot be checked).
    """
    start = _seek_start(file)
    if start is not None:
        # What follows the pickle bounds the storages torch's legacy format declares in it.
        remaining = _remaining(file, start)
        try:
            data = _read_for_buffer_scan(file, start, remaining, joblib)
            source = file if data is None else data
            found = _call_native(_native.prescan, source, policy, joblib, start, memo_inherited, remaining)
        finally:
            file.seek(start)
        rest = data if data is not None and len(data) == remaining else None
        return Prescanned(None, _judge(found, filepath), rest, found.protocol)
    found = _call_native(_native.prescan, file, policy, joblib, None, memo_inherited)
    verified = _judge(found, filepath)
    copy = found.copy
    return Prescanned(bytes(copy) if copy is not None else b"", verified)

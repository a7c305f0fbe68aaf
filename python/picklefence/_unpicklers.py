"""The guarded unpicklers (layers 1 and 2 of ``_hook``): the subclass of CPython's C
``Unpickler``, the ``pickle.load``/``loads`` replacements and the methods patched into
``pickle._Unpickler``. Each load is pre-scanned (``_prescan``), each import checked by
``find_class`` (``_policy_state._allows``), and what the load made is checked before the
caller gets it (native state, sparse tensors).
"""

from __future__ import annotations

import _pickle
import contextlib
import copyreg
import functools
import io
import pickle
import sys
from typing import IO, Any, Callable, Dict, Optional, Tuple

from . import _channels, _native_state
from . import _policy_state as _state
from ._native import Policy
from ._policy_state import (
    _MISSING,
    _allows,
    _refuse_import,
    _verified_load,
    _with_ext_codes,
    patch_while_active,
)
from ._prescan import _filepath, _seek_start, prescan_bytes, prescan_stream
from .errors import UnsafeFileError, Violation

# What CPython provides, captured once: the patched versions call these.
_C_UNPICKLER: type = _pickle.Unpickler
_C_LOADS: Callable[..., Any] = _pickle.loads
_PY_UNPICKLER: type = pickle._Unpickler
_PY_LOAD: Callable[[Any], Any] = _PY_UNPICKLER.__dict__["load"]
_PY_FIND_CLASS: Callable[[Any, str, str], Any] = _PY_UNPICKLER.__dict__["find_class"]
_PY_GET_EXTENSION: Callable[[Any, int], Any] = _PY_UNPICKLER.__dict__["get_extension"]


# --------------------------------------------------------------------------------------------
# After the load: native state and sparse tensors


def _sparse_violation(exc: BaseException, filepath: Optional[str]) -> UnsafeFileError:
    violation = Violation(
        "argument-violation",
        "torch._utils",
        "_rebuild_sparse_tensor",
        None,
        f"a sparse tensor's indices break its invariants ({type(exc).__name__}: {exc}); torch rebuilds "
        "sparse tensors unchecked and would read and write out of bounds with them",
        "critical",
    )
    return UnsafeFileError([violation], filepath=filepath)


def _validate_sparse(
    validate: Callable[..., Any], filepath: Optional[str], *args: Any, **kwargs: Any
) -> None:
    """Runs torch's ``_validate_loaded_sparse_tensors`` with invariant checks on (torch >= 2.1
    checks only with them on or with ``weights_only``; older versions always do)."""
    sparse = getattr(sys.modules.get("torch"), "sparse", None)
    checks_on = getattr(sparse, "check_sparse_tensor_invariants", None)
    try:
        with checks_on() if checks_on is not None else contextlib.nullcontext():
            validate(*args, **kwargs)
    except UnsafeFileError:
        raise
    except Exception as exc:
        raise _sparse_violation(exc, filepath) from None


def _in_legacy_torch_load() -> bool:
    """Whether torch's legacy (non-zip) loader is on this thread's stack: it reads the storages'
    bytes only after the pickle, so sparse tensors can be checked only at its end."""
    serialization = sys.modules.get("torch.serialization")
    legacy = getattr(getattr(serialization, "_legacy_load", None), "__code__", None)
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is legacy:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _strict_sparse_validation(utils: Any) -> None:
    """Makes ``torch._utils._validate_loaded_sparse_tensors``, which ``torch.load`` calls at its
    end, check invariants while the guard is active (restored on deactivation)."""

    def strict(original: Any) -> Any:
        def _validate_loaded_sparse_tensors(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("weights_only") or (args and args[0]):
                return original(*args, **kwargs)  # torch validates these itself
            _validate_sparse(original, None, *args, **kwargs)

        _validate_loaded_sparse_tensors.__doc__ = original.__doc__
        return _validate_loaded_sparse_tensors

    patch_while_active(
        utils,
        "_validate_loaded_sparse_tensors",
        strict,
        "torch._utils._validate_loaded_sparse_tensors",
    )


def _validated(load: Callable[[], Any], filepath: Optional[str] = None) -> Any:
    """Runs one guarded ``load`` and checks what it made before the caller gets it: the native
    state of objects whose compiled code trusts it (``_native_state``, when the load imported
    from a library that has such classes), and sparse tensors."""
    with _native_state.watching() as watch:
        result = load()
        try:
            _check_sparse_tensors(filepath)
            if watch.triggered or watch.captured:
                _native_state.validate(result, watch)
        except _native_state.NativeStateError as error:
            del result
            raise _native_state.unsafe_file_error(error, filepath) from None
        except UnsafeFileError:
            del result
            raise
    _native_state.note_validated(result)
    return result


def _check_sparse_tensors(filepath: Optional[str]) -> None:
    """torch rebuilds sparse tensors unchecked and validates them at the end of ``torch.load``
    only with ``weights_only=True`` (or invariant checks turned on); a plain ``pickle.load``
    never does, and their indices are used unchecked (``to_dense()`` writes out of bounds).
    The pre-scan cannot see tensor contents, so the guard checks them after the load (inside
    torch's legacy loader: at its end)."""
    utils = sys.modules.get("torch._utils")
    if utils is None:
        return
    pending_of = getattr(utils, "_get_sparse_tensors_to_validate", None)
    pending = pending_of() if pending_of is not None else getattr(utils, "_sparse_tensors_to_validate", None)
    if not pending:
        return
    if _in_legacy_torch_load():
        _strict_sparse_validation(utils)
        return
    _validate_sparse(utils._validate_loaded_sparse_tensors, filepath)


# --------------------------------------------------------------------------------------------
# joblib


def _is_joblib_unpickler(unpickler: Any) -> bool:
    """joblib's NumpyUnpickler: its pickles are followed by raw array bytes read outside the
    pickle machinery (right after each NumpyArrayWrapper BUILD), so a plain "read up to STOP"
    pre-scan would read array bytes as opcodes. These unpicklers get the core's joblib-aware
    pre-scan instead (``prescan_stream(..., joblib=True)``), plus layers 2 and 3 as always.
    """
    return type(unpickler).__module__.startswith("joblib")


# --------------------------------------------------------------------------------------------
# The patched objects


class _Replay:
    """The bytes the pre-scan read, then the rest of the real stream: what the unpickler reads
    when the file could not be read twice. Reading from it reads the stream exactly as the
    unpickler would have read the file itself."""

    __slots__ = ("_head", "_tail")

    def __init__(self, head: bytes, tail: Any) -> None:
        self._head = io.BytesIO(head)
        self._tail = tail

    def read(self, n: Optional[int] = -1) -> bytes:
        data = self._head.read(n)
        if n is None or n < 0:
            rest: bytes = self._tail.read()
            return data + rest if rest else data
        if len(data) < n:
            more: bytes = self._tail.read(n - len(data))
            if more:
                data += more
        return data

    def readline(self, *args: Any) -> bytes:
        line = self._head.readline()
        if line.endswith(b"\n"):
            return line
        tail_line: bytes = self._tail.readline()
        return line + tail_line if tail_line else line


class _ReplayableFile:
    """What a C unpickler reads from when its file cannot be read twice: the real file,
    except during a load, when it is a copy of the pre-scanned pickle."""

    __slots__ = ("target",)

    def __init__(self, target: Any) -> None:
        self.target = target

    def read(self, *args: Any) -> Any:
        return self.target.read(*args)

    def readline(self, *args: Any) -> Any:
        return self.target.readline(*args)


class _SafeUnpicklerMixin:
    """The pre-scan and the find_class check, mixed into a subclass of CPython's C Unpickler.

    ``torch.load`` subclasses ``pickle_module.Unpickler`` at call time, so it gets these.
    """

    _pf_file: Any
    _pf_policy: Optional[Policy]
    _pf_fix_imports: bool
    _pf_proxy: Optional[_ReplayableFile]
    _pf_verified: bool
    _pf_loaded: bool

    def __init__(self, file: Any, *args: Any, **kwargs: Any) -> None:
        self._pf_file = file
        self._pf_policy = None
        self._pf_verified = False
        self._pf_loaded = False
        self._pf_fix_imports = bool(kwargs.get("fix_imports", True))
        proxy = None
        if _seek_start(file) is None and hasattr(file, "read"):
            proxy = _ReplayableFile(file)
        self._pf_proxy = proxy
        super().__init__(file if proxy is None else proxy, *args, **kwargs)  # type: ignore[call-arg]

    def find_class(self, module: str, name: str) -> Any:
        state = self.__dict__
        policy = state.get("_pf_policy")
        if policy is None:
            policy = _state._policy
        if policy is not None:
            fix_imports = state.get("_pf_fix_imports", True)
            verified = bool(state.get("_pf_verified"))
            if not _allows(policy, module, name, fix_imports, verified):
                raise _refuse_import(module, name, fix_imports, _filepath(state.get("_pf_file")))
        return _native_state.resolve_class(module, name, super().find_class)  # type: ignore[misc]

    def load(self) -> Any:
        policy = _state._policy
        if policy is None or "_pf_file" not in self.__dict__:
            return super().load()  # type: ignore[misc]
        file = self._pf_file
        self._pf_policy = policy
        try:
            proxy = self._pf_proxy
            joblib = _is_joblib_unpickler(self)
            # A second load() keeps the memo of the first.
            memo_inherited = bool(self.__dict__.get("_pf_loaded"))
            self._pf_loaded = True
            # pickle.load pre-scans before it makes the unpickler (see _make_load).
            done = self.__dict__.pop("_pf_prescanned", None)
            if done is not None and done[0] is policy and not memo_inherited:
                found = done[1]
            else:
                found = prescan_stream(
                    done[2] if done is not None else file,
                    _with_ext_codes(policy),
                    _filepath(file),
                    joblib=joblib,
                    memo_inherited=memo_inherited,
                )
            self._pf_verified = found.verified
            with _verified_load() if found.verified else contextlib.nullcontext():
                if proxy is None:
                    return _validated(super().load, _filepath(file))  # type: ignore[misc]
                proxy.target = _Replay(found.copy or b"", file)
                try:
                    return _validated(super().load, _filepath(file))  # type: ignore[misc]
                finally:
                    proxy.target = file
        finally:
            self._pf_policy = None
            self._pf_verified = False


_safe_classes: Dict[type, type] = {}


def _safe_unpickler_class(base: type) -> type:
    """A subclass of ``base`` (CPython's C Unpickler) with the pre-scan and the find_class check."""
    cached = _safe_classes.get(base)
    if cached is None:
        cached = type(
            "Unpickler",
            (_SafeUnpicklerMixin, base),
            {"__doc__": base.__doc__, "__module__": base.__module__, "__qualname__": base.__qualname__},
        )
        _safe_classes[base] = cached
    return cached


def _make_load(unpickler: Callable[[], type]) -> Callable[..., Any]:
    def load(file: IO[bytes], *args: Any, **kwargs: Any) -> Any:
        policy = _state._policy
        if policy is not None and _channels.is_channel_read(sys._getframe(1)):
            return _C_UNPICKLER(file, *args, **kwargs).load()  # a channel's (see _channels)
        start = _seek_start(file) if policy is not None else None
        if policy is None or start is None:
            return unpickler()(file, *args, **kwargs).load()
        # A seekable file is pre-scanned here. When the pre-scan read it whole and the pickle
        # is framed (protocol 4+: CPython reads it frame by frame, not opcode by opcode), the
        # unpickler loads from those very bytes: what was checked is what runs, and the file is
        # not read twice. Otherwise it reads the file again, as the mixin would.
        found = prescan_stream(file, _with_ext_codes(policy), _filepath(file))
        if found.rest is None or found.protocol is None or found.protocol < 4:
            instance = unpickler()(file, *args, **kwargs)
            instance._pf_prescanned = (policy, found, file)
            return instance.load()
        copy = io.BytesIO(found.rest)
        instance = unpickler()(copy, *args, **kwargs)
        instance._pf_file = file  # names the file in refusals
        instance._pf_prescanned = (policy, found, copy)
        try:
            return instance.load()
        finally:
            file.seek(start + copy.tell())  # where reading the file would have left it

    load.__doc__ = _pickle.load.__doc__
    load.__module__ = "_pickle"
    load.__qualname__ = "load"
    return load


def _loads(data: Any, /, *args: Any, **kwargs: Any) -> Any:
    policy = _state._policy
    if policy is None or _channels.is_channel_read(sys._getframe(1)):
        return _C_LOADS(data, *args, **kwargs)  # inactive, or a channel's (see _channels)
    if type(data) is not bytes:
        if isinstance(data, str):
            return _C_LOADS(data, *args, **kwargs)  # CPython's TypeError
        try:
            view = memoryview(data)
        except TypeError:
            return _C_LOADS(data, *args, **kwargs)  # CPython's TypeError
        with view:
            if not view.c_contiguous:
                return _C_LOADS(data, *args, **kwargs)  # CPython's BufferError
            # Scan and load one immutable copy: a mutable buffer could change in between.
            data = view.tobytes()
    prescan_bytes(data, _with_ext_codes(policy))
    with _verified_load():
        return _validated(lambda: _C_LOADS(data, *args, **kwargs))


_loads.__doc__ = _pickle.loads.__doc__
_loads.__module__ = "_pickle"
_loads.__qualname__ = "loads"


# The policy of each pure-Python unpickler's load in progress, by id(unpickler), and whether the
# pre-scan checked its whole pickle: the load is checked to its end with the policy it started
# with, even if the guard is deactivated meanwhile.
_py_load_policies: Dict[int, Tuple[Policy, bool]] = {}


def _py_unpickler_load(self: Any) -> Any:
    """``pickle._Unpickler.load``, patched in place (so that subclasses made before activation,
    such as joblib's and pandas', get it too)."""
    policy = _state._policy
    if policy is None:
        return _PY_LOAD(self)
    # Kept outside the instance: an attribute added to it would turn the instance dict of the
    # pure-Python unpickler from shared-key to ordinary, and slow every opcode of its loop.
    key = id(self)
    outer = _py_load_policies.get(key)
    _py_load_policies[key] = (policy, False)
    try:
        file_read = getattr(self, "_file_read", None)
        if file_read is None:
            return _PY_LOAD(self)  # CPython's "__init__() was not called" error
        joblib = _is_joblib_unpickler(self)
        file: Any = getattr(self, "file_handle", None) if joblib else None
        if file is None or getattr(file, "read", None) != file_read:
            file = getattr(file_read, "__self__", None)
        if file is None or getattr(file, "read", None) != file_read:
            file = _ReadOnlyFile(file_read, self._file_readline)
        # A second load() keeps the memo of the first.
        memo_inherited = bool(getattr(self, "memo", None))
        found = prescan_stream(
            file, _with_ext_codes(policy), _filepath(file), joblib=joblib, memo_inherited=memo_inherited
        )
        _py_load_policies[key] = (policy, found.verified)
        verified = _verified_load() if found.verified else contextlib.nullcontext()
        source: Any = None
        rest_start = None
        if found.copy is not None:
            source = _Replay(found.copy, file)
        elif found.rest is not None and getattr(self, "mmap_mode", None) is None:
            # joblib maps arrays at file_handle.tell() of the real file when mmap_mode is set.
            rest_start = file.tell()
            source = io.BytesIO(found.rest)
        if source is None:
            with verified:
                return _validated(lambda: _PY_LOAD(self), _filepath(file))
        saved = self._file_read, self._file_readline
        self._file_read, self._file_readline = source.read, source.readline
        # joblib reads its arrays from `file_handle` itself. (Not `self.__dict__`: that would
        # materialise the instance dict and slow every attribute lookup of the load loop.)
        saved_handle = getattr(self, "file_handle", _MISSING) if joblib else _MISSING
        if saved_handle is not _MISSING:
            self.file_handle = source
        try:
            with verified:
                return _validated(lambda: _PY_LOAD(self), _filepath(file))
        finally:
            self._file_read, self._file_readline = saved
            if saved_handle is not _MISSING:
                self.file_handle = saved_handle
            if rest_start is not None:
                file.seek(rest_start + source.tell())  # where reading the file would have left it
    finally:
        if outer is None:
            _py_load_policies.pop(key, None)
        else:
            _py_load_policies[key] = outer


def _py_unpickler_find_class(self: Any, module: str, name: str) -> Any:
    """``pickle._Unpickler.find_class``, patched in place."""
    policy, verified = _py_load_policies.get(id(self), (_state._policy, False))
    if policy is not None:
        fix_imports = getattr(self, "proto", 0) < 3 and getattr(self, "fix_imports", True)
        if not _allows(policy, module, name, fix_imports, verified):
            raise _refuse_import(module, name, fix_imports)
    return _native_state.resolve_class(module, name, functools.partial(_PY_FIND_CLASS, self))


def _py_unpickler_get_extension(self: Any, code: int) -> Any:
    """``pickle._Unpickler.get_extension``, patched in place: EXT codes are checked like imports
    even when ``copyreg._extension_cache`` would skip ``find_class`` (this matters for the
    unpicklers that are not pre-scanned, see ``_is_joblib_unpickler``)."""
    policy, verified = _py_load_policies.get(id(self), (_state._policy, False))
    if policy is not None:
        key = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
        if key is not None and not _allows(policy, key[0], key[1], False, verified):
            raise _refuse_import(key[0], key[1], False)
    return _PY_GET_EXTENSION(self, code)


for _function, _original in (
    (_py_unpickler_load, _PY_LOAD),
    (_py_unpickler_find_class, _PY_FIND_CLASS),
    (_py_unpickler_get_extension, _PY_GET_EXTENSION),
):
    _function.__doc__ = _original.__doc__
    _function.__module__ = _original.__module__
    _function.__qualname__ = _original.__qualname__
    _function.__name__ = _original.__name__


class _ReadOnlyFile:
    """A file made of an unpickler's read and readline callables (not seekable)."""

    __slots__ = ("read", "readline")

    def __init__(self, read: Callable[..., Any], readline: Callable[..., Any]) -> None:
        self.read = read
        self.readline = readline


_c_load = _make_load(lambda: _safe_unpickler_class(_C_UNPICKLER))

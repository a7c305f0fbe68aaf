"""The exceptions picklefence raises.

``PicklefenceError`` is the base of all of them. ``UnsafeFileError`` is also a
``pickle.UnpicklingError``, so code that already handles broken pickles handles refused ones
too; ``PolicyError`` is also a ``ValueError``.
"""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

__all__ = [
    "PicklefenceError",
    "UnsafeFileError",
    "ScanError",
    "PolicyError",
    "ConvertError",
    "PicklefenceWarning",
    "Finding",
    "Violation",
]


class PicklefenceError(Exception):
    """Base class of every picklefence exception."""


class PolicyError(PicklefenceError, ValueError):
    """A policy (an ``also_allow`` entry, a TOML policy file, a policy name) is malformed."""


class ScanError(PicklefenceError):
    """The scanner itself failed; nothing was loaded (picklefence fails closed)."""


class ConvertError(PicklefenceError):
    """A checkpoint could not be converted (malformed, or holding what safetensors cannot
    express); nothing was written. An unsafe file raises ``UnsafeFileError`` instead."""


class PicklefenceWarning(UserWarning):
    """Something picklefence could not do as asked (e.g. restore a patched object)."""


_VIOLATION_SEVERITIES = ("high", "critical")


@dataclass(frozen=True)
class Finding:
    """One finding of the core: a violation of a refused pickle (``UnsafeFileError.violations``,
    also named ``Violation``) or a finding of a scan (``ScanReport.findings``)."""

    kind: str
    """What was found: ``dangerous-import``, ``disallowed-import``, ``unresolvable-import``,
    ``extension-code`` (imports); ``role-violation``, ``argument-violation``,
    ``build-violation``, ``state-violation`` (an allowed name used against its role);
    ``shared-buffer`` (one buffer the memory of two arrays, one of them writable);
    ``indirect-call``, ``state-injection``, ``unsafe-build``, ``limit-exceeded``,
    ``malformed-pickle``, ..."""
    module: Optional[str]
    name: Optional[str]
    offset: Optional[int]
    """Byte offset in the pickle stream (or container member) it was found in; ``None`` when the
    unpickler itself refused the import."""
    message: str
    severity: str = "high"
    """``info``, ``warning``, ``high`` or ``critical``; ``high`` and ``critical`` are violations."""
    location: str = ""
    """Where in the input (``""`` for the input itself, a member path for archives)."""

    @property
    def is_violation(self) -> bool:
        return self.severity in _VIOLATION_SEVERITIES

    @property
    def qualified_name(self) -> Optional[str]:
        """``module.name``, when the finding is about an import."""
        if self.module is None or self.name is None:
            return None
        return f"{self.module}.{self.name}"

    def __str__(self) -> str:
        where = "" if self.offset is None else f"offset {self.offset}: "
        return f"{where}{self.kind}: {self.message}"


Violation = Finding
"""A violation of a refused pickle: a ``Finding`` (the name the errors have always used)."""


_UNSAFE_NOTE = (
    "Only allow a name you trust: every file loaded under that policy can then construct or call "
    "it with arbitrary arguments, which runs code if it is a function or a class that does "
    "anything beyond storing data."
)


# Kinds that mean "the policy does not allow this name" (the others: a use of an allowed name).
_IMPORT_KINDS = ("disallowed-import", "dangerous-import", "unresolvable-import", "extension-code")
_ROLE_KINDS = ("role-violation", "argument-violation", "build-violation", "state-violation")


# The library loaders a refused pickle is read through, by (module, function), and the argument
# that names the file. Their unpicklers read from memory (torch reads `data.pkl` out of the zip),
# so the file's path is found in the loader's frame when a refusal is raised.
_LOADERS = {
    ("torch.serialization", "load"): "f",
    ("numpy.lib._npyio_impl", "load"): "file",
    ("numpy.lib.npyio", "load"): "file",
    ("joblib.numpy_pickle", "load"): "filename",
    ("pandas.io.pickle", "read_pickle"): "filepath_or_buffer",
}
_LOADER_NAMES = {name for _, name in _LOADERS}


def _path_of(source: Any) -> Optional[str]:
    """A path given as str, bytes or PathLike, or the name of a file object opened on one."""
    if not isinstance(source, (str, bytes, os.PathLike)):
        source = getattr(source, "name", None)
    if isinstance(source, (str, bytes, os.PathLike)):
        try:
            return os.fsdecode(source)
        except (TypeError, ValueError):
            return None
    return None


def _loader_path(depth: int = 64) -> Optional[str]:
    """The file a library loader on the calling stack was asked to read, if any."""
    frame = sys._getframe(1)
    while frame is not None and depth > 0:
        code = frame.f_code
        if code.co_name in _LOADER_NAMES:
            argument = _LOADERS.get((frame.f_globals.get("__name__", ""), code.co_name))
            if argument is not None:
                return _path_of(frame.f_locals.get(argument))
        frame = frame.f_back  # type: ignore[assignment]
        depth -= 1
    return None


def _describe(violations: Sequence[Violation]) -> Tuple[Optional[str], Optional[str]]:
    for violation in violations:
        if violation.module is not None and violation.name is not None:
            return violation.module, violation.name
    return None, None


class UnsafeFileError(PicklefenceError, pickle.UnpicklingError):
    """A pickle was refused: it imports or does something the policy does not allow.

    Attributes:
        module, name: the first blocked import (``None`` if no violation is an import).
        violations: every violation found, each with ``kind``, ``module``, ``name``,
            ``offset`` and ``message``.
        filepath: the file's name when the pickle came from a named file (directly, or through
            ``torch.load``, ``numpy.load``, ``joblib.load`` or ``pandas.read_pickle`` of a path
            or a named file object), else ``None``.
    """

    module: Optional[str]
    name: Optional[str]
    violations: Tuple[Violation, ...]
    filepath: Optional[str]

    def __init__(
        self,
        message_or_violations: str | Sequence[Violation],
        *,
        filepath: Optional[str] = None,
    ) -> None:
        if filepath is None:
            filepath = _loader_path()
        if isinstance(message_or_violations, str):
            violations: Tuple[Violation, ...] = ()
            message = message_or_violations
        else:
            violations = tuple(message_or_violations)
            message = self._message(violations, filepath)
        self.violations = violations
        self.module, self.name = _describe(violations)
        self.filepath = filepath
        super().__init__(message)

    @staticmethod
    def _message(violations: Sequence[Violation], filepath: Optional[str]) -> str:
        source = f"file {filepath!r}" if filepath else "this pickle"
        module, name = _describe(violations)
        lines = []
        first = next((v for v in violations if v.module == module and v.name == name), violations[0])
        if module is not None and name is not None and first.kind in _IMPORT_KINDS:
            lines.append(
                f"picklefence refused to load {source}: it imports {module}.{name} "
                f"({first.kind}), which the policy does not allow."
            )
        elif module is not None and name is not None:
            lines.append(
                f"picklefence refused to load {source}: it uses {module}.{name} in a way its role "
                f"does not allow ({first.kind})."
            )
        else:
            lines.append(f"picklefence refused to load {source}: {violations[0].message}.")
        if len(violations) > 1 or module is None:
            lines.append(f"All violations ({len(violations)}):")
            lines.extend(f"  - {v}" for v in violations)
        else:
            lines.append(f"  - {violations[0]}")
        names = []
        for v in violations:
            qualified = v.qualified_name
            if qualified is not None and v.kind in _IMPORT_KINDS and qualified not in names:
                names.append(qualified)
        role_names = []
        for v in violations:
            qualified = v.qualified_name
            if qualified is not None and v.kind in _ROLE_KINDS and qualified not in role_names:
                role_names.append(qualified)
        if role_names and not names:
            shown = ", ".join(f'"{n}=trusted"' for n in role_names)
            lines.append(
                "These names are allowed only in the way real files use them; this file uses them "
                "otherwise, which is how attacks through allowed names work. Only if you trust the "
                f"file, allow any use explicitly: also_allow=[{shown}]."
            )
        if names:
            shown = ", ".join(f'"{n}"' for n in names)
            lines.append(
                "If you trust this file and what it imports, allow the names explicitly, e.g. "
                f"picklefence.activate_safe_ml_environment(also_allow=[{shown}]) "
                "(or safe_ml_environment(also_allow=[...]), or a policy with Policy.with_allowed)."
            )
            source_file = f" {filepath}" if filepath else " FILE"
            lines.append(
                f"In a TOML policy file: allow = [{shown}]; `picklefence policy suggest{source_file}` "
                "writes the narrowest role for each name instead of allowing any use."
            )
            if any(v.kind == "dangerous-import" for v in violations):
                lines.append(
                    "Some of these names are known to run code or touch the system: "
                    "allowing them lets the file take over the process."
                )
            lines.append(_UNSAFE_NOTE)
        return "\n".join(lines)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_unsafe, (str(self), self.violations, self.filepath))


def _rebuild_unsafe(
    message: str, violations: Tuple[Violation, ...], filepath: Optional[str]
) -> UnsafeFileError:
    error = UnsafeFileError(message, filepath=filepath)
    error.violations = tuple(violations)
    error.module, error.name = _describe(error.violations)
    return error

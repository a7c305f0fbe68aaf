"""Scanning without loading: ``scan_bytes`` and ``scan_file``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from . import _native
from ._native import Policy
from ._policy_state import resolve_policy
from ._prescan import _call_native
from .errors import Finding, UnsafeFileError

__all__ = ["Finding", "ScanReport", "scan_bytes", "scan_file"]


@dataclass(frozen=True)
class ScanReport:
    """What a scan found: the verdict and every finding (the data ``picklefence scan`` prints)."""

    format: str
    """What the input was identified as, e.g. ``pickle``."""
    verdict: str
    """``clean`` (no violation) or ``unsafe``."""
    findings: Tuple[Finding, ...]
    path: Optional[str] = None
    data: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The full report as the core serialises it (entries with imports, calls, ...)."""

    @property
    def is_safe(self) -> bool:
        return self.verdict == "clean"

    @property
    def violations(self) -> Tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.is_violation)

    @property
    def imports(self) -> List[str]:
        """Every distinct ``module.name`` the input imports, in order of appearance."""
        seen: List[str] = []
        for entry in self.data.get("entries", []):
            for item in entry.get("report", {}).get("imports", []):
                target = item.get("target")
                if target:
                    name = f"{target['module']}.{target['name']}"
                    if name not in seen:
                        seen.append(name)
        return seen

    def to_dict(self) -> Dict[str, Any]:
        out = dict(self.data)
        if self.path is not None:
            out["path"] = self.path
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def raise_if_unsafe(self) -> None:
        """Raises ``UnsafeFileError`` listing every violation if the verdict is ``unsafe``."""
        if self.is_safe:
            return
        violations = list(self.violations)
        if not violations:
            violations = [Finding("unsafe", None, None, None, "the scan's verdict is unsafe")]
        raise UnsafeFileError(violations, filepath=self.path)

    def __str__(self) -> str:
        head = f"{self.path or '<bytes>'}: {self.verdict} ({self.format}, {len(self.violations)} violations)"
        return "\n".join([head, *(f"  {_line(f)}" for f in self.findings)])


def _line(finding: Finding) -> str:
    """A finding as ``ScanReport``'s text lists it."""
    if finding.location:
        where = f"{finding.location}@{finding.offset}"
    else:
        where = f"offset {finding.offset}"
    return f"[{finding.severity}] {finding.kind} at {where}: {finding.message}"


def _finding(raw: Dict[str, Any]) -> Finding:
    target = raw.get("import") or {}
    return Finding(
        kind=str(raw.get("kind", "")),
        module=target.get("module"),
        name=target.get("name"),
        offset=int(raw.get("offset", 0)),
        message=str(raw.get("message", "")),
        severity=str(raw.get("severity", "")),
        location=str(raw.get("location", "")),
    )


def _report(text: str, path: Optional[str]) -> ScanReport:
    return _report_of(json.loads(text), path)


def _report_of(data: Dict[str, Any], path: Optional[str]) -> ScanReport:
    """The report of the core's JSON, parsed."""
    return ScanReport(
        format=str(data.get("format", "pickle")),
        verdict=str(data.get("verdict", "unsafe")),
        findings=tuple(_finding(f) for f in data.get("findings", [])),
        path=path,
        data=data,
    )


def scan_bytes(data: Union[bytes, bytearray, memoryview], *, policy: Optional[Policy] = None) -> ScanReport:
    """Scan bytes (a pickle or a container of pickles) without loading anything."""
    if type(data) is not bytes:
        data = memoryview(data).tobytes()
    text = _call_native(_native.scan_bytes, data, resolve_policy(None, policy))
    return _report(text, None)


def scan_file(path: Union[str, os.PathLike[str]], *, policy: Optional[Policy] = None) -> ScanReport:
    """Scan a file without loading anything."""
    path = os.fspath(path)
    text = _call_native(_native.scan_file, path, resolve_policy(None, policy))
    return _report(text, path)

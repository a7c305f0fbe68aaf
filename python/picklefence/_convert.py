"""Pickle checkpoints to safetensors without running them: ``convert``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

from . import _native
from ._native import Policy
from ._policy_state import resolve_policy
from ._prescan import _call_native
from ._scan import _report_of
from .errors import ConvertError

__all__ = ["Converted", "convert"]


@dataclass(frozen=True)
class Converted:
    """What ``convert`` wrote."""

    format: str
    """The input's format, e.g. ``pytorch-zip``."""
    tensors: Tuple[str, ...]
    """Tensor names, in the checkpoint's order (keys joined with ``.``)."""
    tensor_bytes: int
    metadata: Dict[str, str]
    """The safetensors ``__metadata__``: plain leaves as JSON text, and ``format: pt``."""
    dropped: Tuple[Tuple[str, str], ...]
    """``(path, what)`` of every value neither written as a tensor nor as metadata."""
    shared: Tuple[Tuple[str, str], ...]
    """``(tensor, first tensor)`` pairs that share a storage (each written with its own bytes)."""


def convert(
    input_path: Union[str, os.PathLike[str]],
    output_path: Union[str, os.PathLike[str]],
    *,
    policy: Optional[Policy] = None,
) -> Converted:
    """Converts a PyTorch checkpoint (``torch.save``'s zip, legacy or old tar format: state dicts,
    nested dicts, whole pickled modules) or NumPy ``.npy``/``.npz`` arrays to a safetensors file,
    without torch and without running it.

    The file is scanned first with ``policy`` (default: the policy in force); an unsafe file
    raises ``UnsafeFileError`` and nothing is written. A file that cannot be converted raises
    ``ConvertError``; an unreadable one ``OSError``. The output appears only once complete.
    """
    input_path = os.fspath(input_path)
    text = _call_native(
        _native.convert_file, input_path, os.fspath(output_path), resolve_policy(None, policy)
    )
    data = json.loads(text)
    if "unsafe" in data:
        _report_of(data["unsafe"], input_path).raise_if_unsafe()
        raise ConvertError(f"{input_path}: not converted: the scan refused it")
    done = data["converted"]
    return Converted(
        format=str(done["format"]),
        tensors=tuple(done["tensors"]),
        tensor_bytes=int(done["tensor_bytes"]),
        metadata=dict(done["metadata"]),
        dropped=tuple((d["path"], d["what"]) for d in done["dropped"]),
        shared=tuple((a, b) for a, b in done["shared"]),
    )

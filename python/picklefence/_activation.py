"""Activation: ``activate_safe_ml_environment`` / ``deactivate_safe_ml_environment`` /
``safe_ml_environment`` put a policy in force (``_policy_state``), patch ``pickle``'s entry points
with the guarded unpicklers (``_unpicklers``) on the first activation and restore them after the
last one, and install the audit hook (layer 3) once per process.
"""

from __future__ import annotations

import _pickle
import contextlib
import copyreg
import importlib
import pickle
import sys
import types
import warnings
from typing import Any, Iterable, Iterator, List, Optional, Tuple

from . import _channels
from . import _policy_state as _state
from ._native import Policy
from ._policy_state import (
    _MISSING,
    _Activation,
    _activations,
    _allows,
    _current,
    _in_verified_load,
    _lock,
    _Patch,
    _patches,
    _refuse_import,
    _set_policy,
    resolve_policy,
)
from ._unpicklers import (
    _C_UNPICKLER,
    _PY_UNPICKLER,
    _c_load,
    _loads,
    _py_unpickler_find_class,
    _py_unpickler_get_extension,
    _py_unpickler_load,
    _safe_unpickler_class,
)
from .errors import PicklefenceWarning

__all__ = [
    "activate_safe_ml_environment",
    "deactivate_safe_ml_environment",
    "safe_ml_environment",
]

_hook_installed = False


# --------------------------------------------------------------------------------------------
# Layer 3: the audit hook


def _audit_hook(event: str, args: Tuple[Any, ...]) -> None:
    # Layer 3. Installed once per process (audit hooks cannot be removed); inert while inactive.
    # CPython raises the event with the names as written, before its fix_imports mapping, and
    # the protocol is not known here: map the names that are mapping keys.
    if event == "pickle.find_class":
        policy = _state._policy
        if policy is not None and not _allows(
            policy, args[0], args[1], True, _in_verified_load(), audited=True
        ):
            # The program's own inter-process channels are not judged (see _channels).
            if not _channels.is_channel_read(sys._getframe(1)):
                raise _refuse_import(args[0], args[1], True)


def _install_audit_hook() -> None:
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit_hook)
        _hook_installed = True


# --------------------------------------------------------------------------------------------
# Patching and restoring


def _targets() -> List[Tuple[Any, str, Any, str]]:
    """(owner, attribute, replacement, label) of everything activation patches."""
    safe = _safe_unpickler_class(_C_UNPICKLER)
    return [
        (pickle, "load", _c_load, "pickle.load"),
        (pickle, "loads", _loads, "pickle.loads"),
        (pickle, "Unpickler", safe, "pickle.Unpickler"),
        (_pickle, "load", _c_load, "_pickle.load"),
        (_pickle, "loads", _loads, "_pickle.loads"),
        (_pickle, "Unpickler", safe, "_pickle.Unpickler"),
        # In place: subclasses of pickle._Unpickler made earlier (joblib, pandas) get these,
        # and so do pickle._load and pickle._loads.
        (_PY_UNPICKLER, "load", _py_unpickler_load, "pickle._Unpickler.load"),
        (_PY_UNPICKLER, "find_class", _py_unpickler_find_class, "pickle._Unpickler.find_class"),
        (_PY_UNPICKLER, "get_extension", _py_unpickler_get_extension, "pickle._Unpickler.get_extension"),
    ]


class _ModuleByName:
    """A module in a pickle: ``importlib.import_module(name)`` when unpickled."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        return importlib.import_module, (self.name,)


def _reduce_builtin(function: Any) -> Any:
    """``copyreg.dispatch_table`` entry for builtin functions while the guard is active. The
    builtins activation replaces (``_pickle.load``/``loads``), held from before it (joblib pickles
    small arrays of parallel tasks as ``(loads, (bytes,))`` with its own import of ``loads``),
    can no longer be pickled by name: pickle checks that ``_pickle.loads`` is that very object.
    They are pickled as the attribute of their module instead (resolved by the receiver to
    whatever is there, the guard's version where it is active). Every other builtin as pickle
    does it."""
    for patch in _patches:
        if function is patch.original and isinstance(patch.owner, types.ModuleType):
            return getattr, (_ModuleByName(patch.owner.__name__), patch.attr)
    return function.__reduce__()


def _patch() -> None:
    for owner, attr, replacement, label in _targets():
        original = _current(owner, attr)
        _patches.append(_Patch(owner, attr, original, replacement, label))
        setattr(owner, attr, replacement)
    if types.BuiltinFunctionType not in copyreg.dispatch_table:
        copyreg.dispatch_table[types.BuiltinFunctionType] = _reduce_builtin


def _unpatch() -> None:
    if copyreg.dispatch_table.get(types.BuiltinFunctionType) is _reduce_builtin:
        del copyreg.dispatch_table[types.BuiltinFunctionType]
    while _patches:
        patch = _patches.pop()
        current = _current(patch.owner, patch.attr)
        if current is patch.replacement:
            if patch.original is _MISSING:
                delattr(patch.owner, patch.attr)
            else:
                setattr(patch.owner, patch.attr, patch.original)
        else:
            warnings.warn(
                f"picklefence: {patch.label} was replaced by {current!r} while the safe ML environment "
                "was active; leaving that in place instead of restoring the original",
                PicklefenceWarning,
                stacklevel=4,
            )


# --------------------------------------------------------------------------------------------
# The public API


def _activate(policy: Policy) -> _Activation:
    activation = _Activation(policy)
    with _lock:
        _install_audit_hook()
        _activations.append(activation)
        _set_policy(policy)
        if len(_activations) == 1:
            try:
                _patch()
            except BaseException:
                _unpatch()
                _activations.remove(activation)
                _set_policy(None)
                raise
    return activation


def _deactivate(activation: Optional[_Activation]) -> None:
    with _lock:
        if not _activations:
            raise RuntimeError("picklefence: the safe ML environment is not active")
        if activation is not None and any(a is activation for a in _activations):
            index = max(i for i, a in enumerate(_activations) if a is activation)
            del _activations[index]
        else:
            _activations.pop()
        if _activations:
            _set_policy(_activations[-1].policy)
        else:
            try:
                _unpatch()
            finally:
                _set_policy(None)


def activate_safe_ml_environment(
    also_allow: Optional[Iterable[str]] = None,
    *,
    policy: Optional[Policy] = None,
    allow_dangerous: bool = False,
) -> None:
    """Guard every pickle load in this process with ``policy`` (default: the ML allowlist),
    extended by ``also_allow`` (``"module.name"`` strings).

    Reference-counted: each call needs one ``deactivate_safe_ml_environment()``. While several
    activations are in force, the most recent one's policy applies. A malformed ``also_allow``
    entry raises ``PolicyError`` (a ``ValueError``) naming it, and changes nothing.

    ``also_allow`` entries are ``"module.name"`` (trusted: any use) or ``"module.name=ROLE"``
    (``reconstruct``, ``value``, ``call(...) -> ...``; see the README's roles). A name that
    reaches code execution, files, processes, the network, imports, attribute lookup or nested
    unpickling is refused unless ``allow_dangerous=True``.
    """
    _activate(resolve_policy(also_allow, policy, allow_dangerous))


def deactivate_safe_ml_environment() -> None:
    """Undo the most recent activation. After the last one, every patched object is restored
    (if something else replaced one meanwhile, that is left alone with a warning) and the audit
    hook becomes inert. Raises RuntimeError if the environment is not active."""
    _deactivate(None)


@contextlib.contextmanager
def safe_ml_environment(
    also_allow: Optional[Iterable[str]] = None,
    *,
    policy: Optional[Policy] = None,
    allow_dangerous: bool = False,
) -> Iterator[Policy]:
    """``with safe_ml_environment(also_allow=[...]): ...`` — activation for the block; yields
    the policy in force for it."""
    resolved = resolve_policy(also_allow, policy, allow_dangerous)
    activation = _activate(resolved)
    try:
        yield resolved
    finally:
        _deactivate(activation)

"""The guard's state: the activations in force and the policy they apply (``also_allow``
resolved, the copyreg EXT codes of its names added), the names' check that ``find_class`` and
the audit hook apply (layers 2 and 3), whether this thread runs a pre-scanned load, and what
activation patched.

``_policy`` is the policy in force (None: inactive); the hot paths read it without the lock, as
``_policy_state._policy`` (it is rebound on each activation and deactivation).
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import copyreg
import threading
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from . import _native, _native_state
from ._native import Policy
from .errors import UnsafeFileError, Violation

_NAME_MAPPING: Dict[Tuple[str, str], Tuple[str, str]] = _compat_pickle.NAME_MAPPING
_IMPORT_MAPPING: Dict[str, str] = _compat_pickle.IMPORT_MAPPING

_lock = threading.RLock()
# Per thread: how many pre-scanned loads are running (their every use of a name was checked).
_verified = threading.local()
# The activations in force, oldest first; the last one's policy applies.
_activations: List[_Activation] = []
# The policy in force (None: inactive). Read without the lock by the hot paths.
_policy: Optional[Policy] = None
# What activation patched, restored when the last activation ends.
_patches: List[_Patch] = []
_default_policy: Optional[Policy] = None
_MISSING: Any = object()


class _Activation:
    __slots__ = ("policy",)

    def __init__(self, policy: Policy) -> None:
        self.policy = policy


class _Patch:
    __slots__ = ("attr", "label", "original", "owner", "replacement")

    def __init__(self, owner: Any, attr: str, original: Any, replacement: Any, label: str) -> None:
        self.owner = owner
        self.attr = attr
        self.original = original
        self.replacement = replacement
        self.label = label


def _current(owner: Any, attr: str) -> Any:
    """What restoring ``owner.attr`` puts back: a class's own entry (``_MISSING`` for an
    inherited one), else the attribute."""
    if isinstance(owner, type):
        return owner.__dict__.get(attr, _MISSING)
    return getattr(owner, attr, _MISSING)


def patch_while_active(
    owner: Any,
    attr: str,
    make: Callable[[Any], Any],
    label: str,
    installed: Optional[Callable[[], bool]] = None,
) -> bool:
    """Sets ``owner.attr`` to ``make(what it resolves to now)`` until the last activation ends
    (then restored), once: not again while ``installed()`` (by default: while a patch of
    ``owner.attr`` is in place). False when the guard is not active."""
    with _lock:
        if not _activations:
            return False
        if installed is not None:
            done = installed()
        else:
            done = any(p.owner is owner and p.attr == attr for p in _patches)
        if done:
            return True
        replacement = make(getattr(owner, attr))
        _patches.append(_Patch(owner, attr, _current(owner, attr), replacement, label))
        setattr(owner, attr, replacement)
        return True


def _set_policy(policy: Optional[Policy]) -> None:
    """Puts ``policy`` in force (None: inactive); called with ``_lock`` held."""
    global _policy
    _policy = policy


# --------------------------------------------------------------------------------------------
# Policies


def default_policy() -> Policy:
    """The default policy (the ML allowlist), built once."""
    global _default_policy
    if _default_policy is None:
        _default_policy = Policy.ml_default()
    return _default_policy


def resolve_policy(
    also_allow: Optional[Iterable[str]] = None,
    policy: Optional[Policy] = None,
    allow_dangerous: bool = False,
) -> Policy:
    """The policy ``policy`` (default: the ML allowlist) extended by ``also_allow``.

    Extending builds a new policy: neither ``policy`` nor the default ever changes. A name that
    reaches code, files, processes, the network, imports, attribute lookup or nested unpickling
    is refused (``PolicyError``) unless ``allow_dangerous`` is true.
    """
    if policy is None:
        base = default_policy()
    elif isinstance(policy, Policy):
        base = policy
    else:
        raise TypeError(f"policy must be a picklefence.Policy, not {type(policy).__name__}")
    if also_allow is None:
        return base
    if isinstance(also_allow, (str, bytes)):
        raise TypeError(
            'also_allow takes an iterable of "module.name" strings, e.g. also_allow=["mymodule.MyClass"], '
            f"not a single string ({also_allow!r})"
        )
    entries = list(also_allow)
    for entry in entries:
        if not isinstance(entry, str):
            raise TypeError(
                f'also_allow entries are "module.name" strings, not {type(entry).__name__}: {entry!r}'
            )
    if not entries:
        return base
    return base.with_allowed(entries, allow_dangerous=allow_dangerous)


# Policies extended by the copyreg extension codes whose registered names they allow.
_ext_cache: Dict[int, Tuple[Policy, Tuple[Tuple[int, Tuple[str, str]], ...], Policy]] = {}


def _with_ext_codes(policy: Policy) -> Policy:
    """``policy``, also allowing each registered EXT code whose ``(module, name)`` it allows.

    CPython resolves EXT1/2/4 through ``copyreg._inverted_registry`` and caches the object in
    ``copyreg._extension_cache``, skipping ``find_class`` on later loads; the pre-scan therefore
    judges the codes against the registry as it is now.
    """
    registry = copyreg._inverted_registry  # type: ignore[attr-defined]
    if not registry:
        return policy
    snapshot = tuple(sorted(registry.items()))
    cached = _ext_cache.get(id(policy))
    if cached is not None and cached[0] is policy and cached[1] == snapshot:
        return cached[2]
    codes = [code for code, (module, name) in snapshot if _allows(policy, module, name, True, False)]
    derived = policy.with_allowed_ext_codes(codes) if codes else policy
    if len(_ext_cache) > 64:
        _ext_cache.clear()
    _ext_cache[id(policy)] = (policy, snapshot, derived)
    return derived


# --------------------------------------------------------------------------------------------
# Layers 2 and 3: the find_class check


def _mapped(module: str, name: str) -> Tuple[str, str]:
    """CPython's Python 2 name mapping (``fix_imports``), as ``find_class`` applies it."""
    target = _NAME_MAPPING.get((module, name))
    if target is not None:
        return target
    new_module = _IMPORT_MAPPING.get(module)
    if new_module is not None:
        return new_module, name
    return module, name


def _allows(
    policy: Policy, module: Any, name: Any, fix_imports: bool, verified: bool, audited: bool = False
) -> bool:
    """Whether ``find_class`` may resolve the name: any allowed name during a load whose every
    use the pre-scan checked (``verified``), else the names allowed by name alone."""
    if not isinstance(module, str) or not isinstance(name, str):
        return False
    if fix_imports:
        module, name = _mapped(module, name)
    allowed = policy.is_allowed(module, name) if verified else policy.is_allowed_by_name(module, name)
    if allowed:
        (_native_state.note_audited if audited else _native_state.note_import)(module, name)
    return allowed


def _in_verified_load() -> bool:
    return getattr(_verified, "depth", 0) > 0


@contextlib.contextmanager
def _verified_load() -> Iterator[None]:
    """Marks this thread as running a load whose every opcode the pre-scan checked."""
    _verified.depth = getattr(_verified, "depth", 0) + 1
    try:
        yield
    finally:
        _verified.depth -= 1


def _refuse_import(
    module: Any, name: Any, fix_imports: bool, filepath: Optional[str] = None
) -> UnsafeFileError:
    if isinstance(module, str) and isinstance(name, str):
        if fix_imports:
            module, name = _mapped(module, name)
        reason = _native.danger_reason(module, name)
        if reason is not None and policy_allows_verified(module, name):
            kind, message = (
                "dangerous-import",
                f"find_class imports {module}.{name}, which {reason}; the policy allows it only as a "
                "call the pre-scan verified, and this load was not pre-scanned",
            )
        elif reason is not None:
            kind, message = "dangerous-import", f"find_class imports {module}.{name}, which {reason}"
        else:
            kind, message = (
                "disallowed-import",
                f"find_class imports {module}.{name}, which the policy does not allow",
            )
        violation = Violation(kind, module, name, None, message, "critical" if reason else "high")
    else:
        violation = Violation(
            "unresolvable-import",
            None,
            None,
            None,
            f"find_class was asked for a module or name that is not a str: {module!r}, {name!r}",
            "critical",
        )
    return UnsafeFileError([violation], filepath=filepath)


def policy_allows_verified(module: str, name: str) -> bool:
    """The policy in force allows the name, but only as a verified call."""
    policy = _policy
    return policy is not None and policy.is_allowed(module, name)


# --------------------------------------------------------------------------------------------
# The public API


def is_active() -> bool:
    """Whether the safe ML environment is active."""
    return bool(_activations)


def current_policy() -> Optional[Policy]:
    """The policy in force, or None when inactive."""
    return _policy

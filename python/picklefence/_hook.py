"""The safe ML environment: pickle's entry points patched, one policy, three layers.

While active, every pickle loaded through ``pickle`` / ``_pickle`` passes:

1. the pre-scan: before the unpickler runs a single opcode, the Rust analyzer reads the pickle
   (exactly up to its STOP) and refuses it, listing every violation, if it imports anything the
   policy does not allow or uses an allowed name against its role;
2. the ``find_class`` check of the patched unpickler classes, as CPython resolves each import;
3. a PEP 578 audit hook on ``pickle.find_class``, which covers every unpickler in the process,
   including references bound before activation (``from pickle import loads``).

Layers 2 and 3 see names only. While a pre-scanned load runs on a thread, they allow every
name of the policy (the pre-scan checked every use); otherwise (a reference bound before
activation, an unpickler the pre-scan could not follow to its end) they refuse the names that
the policy allows only as verified calls (``builtins.getattr`` of one attribute of one class,
``functools.partial`` of one function, ``torch.storage._load_from_bytes``).

Activation is process-wide, thread-safe and reference-counted; the policy of the most recent
activation still in force is the one applied.

The code is split by concern: ``_policy_state`` (the policy in force, ``also_allow``, EXT codes,
the names' check), ``_unpicklers`` (the guarded unpickler classes and loads), ``_activation``
(patching and restoring, the audit hook), ``_prescan`` (the pre-scan's I/O strategy). This module
is the guard's public face.
"""

from __future__ import annotations

from ._activation import (
    activate_safe_ml_environment,
    deactivate_safe_ml_environment,
    safe_ml_environment,
)
from ._policy_state import current_policy, default_policy, is_active, resolve_policy

__all__ = [
    "activate_safe_ml_environment",
    "deactivate_safe_ml_environment",
    "safe_ml_environment",
    "is_active",
    "current_policy",
    "default_policy",
    "resolve_policy",
]

"""picklefence: load pickle-based ML models from untrusted sources without running their code.

Quick start::

    import picklefence, torch

    picklefence.activate_safe_ml_environment()
    model_state = torch.load("model.pt", weights_only=False)   # refused if it imports anything
                                                               # outside the ML allowlist

    with picklefence.safe_ml_environment(also_allow=["mypackage.MyModel"]):
        model = torch.load("whole_model.pt", weights_only=False)

    report = picklefence.scan_file("model.pkl")     # analyse without loading
    print(report.verdict, report.violations)

While the safe ML environment is active, every pickle loaded in the process goes through three
layers driven by one policy (default: the ML allowlist, ``Policy.ml_default()``):

1. a pre-scan in Rust that reads the pickle before any of it runs and refuses the whole file,
   listing every violation (``UnsafeFileError``);
2. the ``find_class`` check of the patched unpicklers (``pickle.load``, ``pickle.loads``,
   ``pickle.Unpickler``, ``pickle._load``, ``pickle._loads``, ``pickle._Unpickler``,
   ``_pickle.load``, ``_pickle.loads``, ``_pickle.Unpickler``), which covers ``torch.load(...,
   weights_only=False)``, ``numpy.load(allow_pickle=True)``, ``joblib.load`` and
   ``pandas.read_pickle`` with user code unchanged;
3. a PEP 578 audit hook on ``pickle.find_class``, which covers every other unpickler and
   references bound before activation (``from pickle import loads``).

``torch.load(..., weights_only=True)`` (PyTorch's default since 2.6) keeps using PyTorch's own
restricted unpickler, which does not go through ``pickle`` and so is not affected by picklefence
either way: PyTorch's allowlist applies to it, not picklefence's. picklefence guards the
``weights_only=False`` path, which full checkpoints (optimizer state, whole modules, custom
classes) need, with an allowlist that also covers NumPy, scikit-learn and pandas objects.

``also_allow=["module.name", ...]`` extends the policy for one activation only; it never changes
the default policy or a later activation. Only allow names whose construction from arbitrary
arguments cannot run code or touch the system.

Activation is process-wide (all threads), thread-safe and reference-counted: each
``activate_safe_ml_environment()`` needs one ``deactivate_safe_ml_environment()``; while several
activations are in force the most recent one's policy applies. Deactivating the last one
restores every patched object exactly (``pickle.loads is`` the original again).

Limits: a seekable file is read twice (pre-scan, then the real load); the find_class layers
still check the second read. A non-seekable or compressed stream is read once, exactly as far as
the unpickler would read it, and unpickled from that copy. joblib files are pre-scanned the way
joblib reads them (the raw array bytes after each NumpyArrayWrapper are skipped by their size).
"""

from __future__ import annotations

from . import _native
from ._convert import Converted, convert
from ._hook import (
    activate_safe_ml_environment,
    current_policy,
    deactivate_safe_ml_environment,
    is_active,
    safe_ml_environment,
)
from ._native import Policy, danger_reason
from ._scan import ScanReport, scan_bytes, scan_file
from .errors import (
    ConvertError,
    Finding,
    PicklefenceError,
    PicklefenceWarning,
    PolicyError,
    ScanError,
    UnsafeFileError,
    Violation,
)

__version__: str = _native.__version__

__all__ = [
    "ConvertError",
    "Converted",
    "Finding",
    "PicklefenceError",
    "PicklefenceWarning",
    "Policy",
    "PolicyError",
    "ScanError",
    "ScanReport",
    "UnsafeFileError",
    "Violation",
    "__version__",
    "activate_safe_ml_environment",
    "convert",
    "current_policy",
    "danger_reason",
    "deactivate_safe_ml_environment",
    "is_active",
    "safe_ml_environment",
    "scan_bytes",
    "scan_file",
]

#!/usr/bin/env python3
"""Regenerate picklefence's compiled-in policy data (crates/picklefence/policies/).

Generated files (rewritten by this script):
  compat_pickle.txt  CPython's _compat_pickle tables (fix_imports mapping)
  numpy.txt torch.txt sklearn.txt pandas.txt scipy.txt
                     the globals real pickles of these libraries reference, found by
                     pickling real objects (protocols 0-5, torch.save, joblib.dump) and
                     recording every find_class, plus introspected class lists; minus
                     the reviewed EXCLUDE list below.

Hand-curated files (checked, never rewritten): builtins.txt joblib.txt transformers.txt
xgboost.txt lightgbm.txt catboost.txt.

Every stdlib or third-party name that the pickles referenced but that no data file
allows is printed at the end for review ("NOT ALLOWED"). Output is deterministic
(sorted) for a given set of library versions; the versions are written in each header.

Usage: python3 scripts/gen_policy_data.py [--check] [--extra-path DIR] [--review FILE] [--verbose]
  --check       compare with the files on disk instead of writing (exit 1 on change)
  --extra-path  put DIR on sys.path first (e.g. a pip --target dir holding xgboost,
                lightgbm and catboost, used only to verify the curated named-policy files)
  --review      write every generated entry with its kind (class/function) and the
                samples that referenced it, for the line-by-line review
  --verbose     list the samples that could not be built, fitted or loaded
Needs numpy, torch, scikit-learn, pandas, scipy and joblib installed; takes about a minute.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import collections
import contextlib
import importlib
import inspect
import io
import pickle
import pkgutil
import platform
import re
import sys
import textwrap
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "crates" / "picklefence" / "policies"

# Names the sample pickles reference that are deliberately NOT allowed, with the reason.
# Anything matching one of these is dropped from generated files.
EXCLUDE = {
    "functools:partial": "call composition: calls any callable with bound arguments",
    "builtins:getattr": "attribute lookup on any object",
    "torch.storage:_load_from_bytes": "runs torch.load on embedded bytes (nested pickle)",
    "torch.serialization:load": "nested torch.load",
    "torch.serialization:_load": "nested torch.load",
    "torch.serialization:_legacy_load": "nested torch.load",
    "torch.serialization:add_safe_globals": "widens torch's own weights_only allowlist",
    "numpy:memmap": "constructor opens, creates or truncates a file named by its argument",
    "joblib.numpy_pickle_compat:NDArrayWrapper": "joblib.load reads a file whose path the pickle names",
    "joblib.numpy_pickle_compat:ZNDArrayWrapper": "joblib.load reads a file whose path the pickle names",
}
# Whole modules never taken from sample pickles (they reach the system or load code).
EXCLUDE_MODULE_PREFIXES = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "importlib",
    "pickle",
    "_pickle",
    "joblib.memory",
    "torch.hub",
    "torch.jit",
    "torch._C._jit",
    "torch.fx",
    "numpy.lib.npyio",
    "numpy.lib.format",
)

# Non-family globals the sample pickles of a family reference, reviewed and kept in
# that family's file (pure value types of pandas' dependencies).
COMPANIONS = {
    "pandas": {
        "dateutil.relativedelta:relativedelta",  # DateOffset(months=...) state
        "dateutil.tz.tz:tzutc",
        "dateutil.tz.tz:tzoffset",
        "dateutil.tz.tz:tzlocal",
        "dateutil.tz.tz:_ttinfo",  # a tzfile's transitions (tzfile itself is a call: calls.txt)
        "dateutil.tz._common:_ttinfo",
    },
}
# Deliberately left out although pandas' samples may reference them:
#   dateutil.tz.tz:tzfile (its constructor opens the file named by its argument).

# Names earlier releases pickled that today's introspection cannot derive.
LEGACY = {
    "pandas": {
        "pandas._libs.tslibs.offsets:DateOffset",  # pandas < 3 (now pandas:DateOffset)
        "pandas._libs.missing:NA",  # pandas < 3 (now pandas:NA)
        # pandas < 1 defined the tick offsets in Python: NEWOBJ + BUILD of their dict, which
        # today's classes read with the same __setstate__ as BaseOffset (reconstruct too).
        *(
            f"pandas.tseries.offsets:{tick}"
            for tick in ("Day", "Hour", "Minute", "Second", "Milli", "Micro", "Nano")
        ),
        # pandas 1.3 pickled each block as functools.partial(new_block, ndim=2)(values, placement).
        "pandas.core.internals.blocks:new_block",
    },
    # scikit-learn < 0.22 defined SimpleImputer in the module sklearn.impute.
    "sklearn": {"sklearn.impute:SimpleImputer"},
}

# Roles of names older releases used that today's samples cannot show (reviewed by hand).
LEGACY_ROLES = {
    # pandas < 2 pickled the manager as NEWOBJ + BUILD of a tuple state.
    "pandas.core.internals.managers:BlockManager": ["reconstruct(state=any)"],
    # pandas 1.1-2.0 pickled the string dtype as NEWOBJ + BUILD {"storage": ...}; the dtype
    # holds plain attributes (the state rules apply as to every reconstructed class).
    "pandas.core.arrays.string_:StringDtype": ["reconstruct"],
    # The function in a pandas 1.3 partial's state (a tuple item); never under an attribute, where
    # a library could call it.
    "pandas.core.internals.blocks:new_block": ["value(item)"],
}

# Which generated file a collected module belongs to (by top-level package).
FAMILY_FILES = {
    "numpy": "numpy.txt",
    "torch": "torch.txt",
    "sklearn": "sklearn.txt",
    "pandas": "pandas.txt",
    "scipy": "scipy.txt",
}
CURATED_FILES = [
    "builtins.txt",
    "calls.txt",
    "joblib.txt",
    "transformers.txt",
    "xgboost.txt",
    "lightgbm.txt",
    "catboost.txt",
]


def trace_torch_file(data: bytes, zipped: bool) -> None:
    """Traces every pickle of a torch.save file (zip members, or the legacy sequence)."""
    import zipfile as zf

    if zipped:
        with zf.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                if member.endswith(".pkl"):
                    TRACER.trace(archive.read(member))
        return
    stream = io.BytesIO(data)
    try:
        for _ in range(3):  # magic number, protocol version, sys info
            pickle.load(stream)
    except Exception:
        return
    TRACER.trace(stream.read())


def fix_import(module: str, name: str) -> tuple[str, str]:
    """What pickle's find_class does for protocol < 3 with fix_imports."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    if module in _compat_pickle.IMPORT_MAPPING:
        return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


def key(module: str, name: str) -> str:
    return f"{module}:{name}"


def is_excluded(entry: str) -> str | None:
    if entry in EXCLUDE:
        return EXCLUDE[entry]
    module = entry.split(":", 1)[0]
    for prefix in EXCLUDE_MODULE_PREFIXES:
        if module == prefix or module.startswith(prefix + "."):
            return f"module {prefix} is never allowed"
    return None


def through_module(entry: str) -> bool:
    """True for `pkg:sub.attr` where `sub` is a module: a path through a module's
    namespace (e.g. torch._utils:torch.channels_last) is never an entry."""
    module, qual = entry.split(":", 1)
    if "." not in qual:
        return False
    try:
        return inspect.ismodule(getattr(importlib.import_module(module), qual.split(".", 1)[0]))
    except Exception:
        return False


def defining_aliases(entry: str) -> set[str]:
    """Other names older releases pickled the same class under.

    pandas 3 and NumPy 2 re-home public classes into package namespaces
    (`DataFrame.__module__ == "pandas"`); pickles written by earlier releases name the
    module that defines the class, e.g. pandas.core.frame:DataFrame.
    """
    module, qual = entry.split(":", 1)
    try:
        obj = resolve(module, qual)
        namespace = importlib.import_module(module)
    except Exception:
        return set()
    is_package = (getattr(namespace, "__file__", "") or "").endswith("__init__.py")
    if not isinstance(obj, type) or "." in qual or not is_package:
        return set()
    import re

    top = module.split(".", 1)[0]
    candidates = {
        name: getattr(mod, "__file__", None) or ""
        for name, mod in list(sys.modules.items())
        if mod is not None and name.startswith(top + ".") and getattr(mod, qual, None) is obj
    }
    # Functions and Cython methods in the class body carry the defining module's name.
    homes = {
        f.__module__
        for f in vars(obj).values()
        if isinstance(getattr(f, "__module__", None), str)
        and getattr(f, "__qualname__", "").startswith(qual + ".")
        and f.__module__ in candidates
    }
    if not homes:
        # A Python module whose source defines it, or else a compiled module named
        # after it (pandas._libs.tslibs.period:Period; lib, parsers... only import it).
        pattern = re.compile(rf"^class {re.escape(qual)}\b", re.M)
        for name, path in candidates.items():
            if path.endswith(".py"):
                with contextlib.suppress(OSError):
                    if pattern.search(Path(path).read_text(encoding="utf-8")):
                        homes.add(name)
            elif path:
                stem = name.rsplit(".", 1)[-1].lstrip("_").lower()
                if stem and (stem in qual.lower() or qual.lower() in stem):
                    homes.add(name)
    return {
        key(home, qual)
        for home in homes
        if home != module and getattr(sys.modules.get(home), qual, None) is obj
    }


def resolve(module: str, qualname: str):
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# --------------------------------------------------------------------------------------
# Recording how pickles use each name (its role)
# --------------------------------------------------------------------------------------

# Functions that reconstruct an instance of the class in these argument slots: the class is
# used as a reconstructed class there (cls.__new__), never called.
RECONSTRUCTORS = {
    "copyreg:_reconstructor": (0,),
    "copyreg:__newobj__": (0,),
    "copyreg:__newobj_ex__": (0,),
    "numpy.core.multiarray:_reconstruct": (0,),
    "numpy._core.multiarray:_reconstruct": (0,),
    "numpy.ma.core:_mareconstruct": (0, 1),
    "sklearn.metrics._dist_metrics:newObj": (0,),
    "sklearn.neighbors._ball_tree:newObj": (0,),
    "sklearn.neighbors._kd_tree:newObj": (0,),
    "pandas._libs.arrays:__pyx_unpickle_NDArrayBacked": (0,),
    "pandas._libs.interval:__pyx_unpickle_IntervalMixin": (0,),
    "numpy.random.bit_generator:__pyx_unpickle_SeedSequence": (0,),
}
# Reconstructors whose schema in calls.txt gives the state their objects take: a non-dict
# state after them says nothing about the class's own role.
STATE_BY_SCHEMA = {
    "numpy.core.multiarray:_reconstruct",
    "numpy._core.multiarray:_reconstruct",
    "numpy.ma.core:_mareconstruct",
    "pandas._libs.arrays:__pyx_unpickle_NDArrayBacked",
    "numpy.random.bit_generator:__pyx_unpickle_SeedSequence",
}
# Values found by what they are, not by a sample: numpy ufuncs and abstract scalar types and
# scikit-learn's metric functions are pure computations over the arrays they are given
# (FunctionTransformer(func=np.log1p), make_column_selector(dtype_include=np.number),
# make_scorer(fbeta_score)). Reviewed: none reads files, starts processes or calls arguments,
# and none takes an argument that sizes an allocation or a loop (so not ones_like/zeros_like
# `shape=`, diff `n=`, array/asarray/hstack `dtype='V<huge>'`): the library calls them with
# keyword arguments from the state.
PURE_NUMPY_FUNCTIONS = (
    "clip",
    "mean",
    "median",
    "sum",
    "prod",
    "std",
    "var",
    "min",
    "max",
    "amin",
    "amax",
    "nanmean",
    "nanmedian",
    "nansum",
    "nanstd",
    "nanvar",
    "nanmin",
    "nanmax",
    "average",
    "round",
    "around",
    "cumsum",
    "cumprod",
    "sort",
    "argsort",
    "ravel",
    "transpose",
    "percentile",
    "quantile",
    "nanpercentile",
    "nanquantile",
    "ptp",
    "argmax",
    "argmin",
    "all",
    "any",
    "where",
    "column_stack",
)
NUMPY_ABSTRACT_TYPES = (
    "number",
    "integer",
    "signedinteger",
    "unsignedinteger",
    "floating",
    "complexfloating",
    "inexact",
    "generic",
    "flexible",
    "character",
)
# A value the library calls with arguments it computes itself, but that is unsafe with any
# other arguments (compiled code over unchecked arrays): storable only under these keys.
KEYED_VALUES = {
    "sklearn.cluster._kmeans:_kmeans_single_lloyd": ("_kmeans_single",),
    "sklearn.cluster._kmeans:_kmeans_single_elkan": ("_kmeans_single",),
    # joblib's NumpyArrayWrapper names the array class under "subclass" (it only builds
    # arrays of it).
    "numpy:ndarray": ("subclass",),
    "numpy:matrix": ("subclass",),
    "numpy.matrixlib.defmatrix:matrix": ("subclass",),
    "numpy:recarray": ("subclass",),
    "numpy.rec:recarray": ("subclass",),
    "numpy._core.records:recarray": ("subclass",),
    "numpy.ma.core:MaskedArray": ("subclass",),
    "numpy.ma:MaskedArray": ("subclass",),
}


class Usage:
    """How the sample pickles use one name."""

    def __init__(self) -> None:
        self.reconstructed = False
        self.called = False
        self.stored = False
        self.argument = False
        self.nondict_state = False
        self.items = False
        self.newargs = False
        self.call_signatures: set[str] = set()


class UsageTracer:
    """A symbolic run of each sample pickle (pickletools opcodes) that records, per imported
    name, whether it is called, reconstructed, stored as a value or only passed to a call
    that names it. The roles in the generated files come from these records; the analyzer
    enforces them."""

    def __init__(self) -> None:
        self.uses: dict[str, Usage] = collections.defaultdict(Usage)

    def trace(self, data: bytes) -> None:
        import pickletools

        stream = io.BytesIO(data)
        try:
            self._run(pickletools.genops(stream))
        except Exception:  # not a whole pickle (the tracer is best effort; the analyzer judges)
            pass

    def _name(self, module: str, name: str, proto: int) -> str:
        if proto < 3:
            module, name = fix_import(module, name)
        return key(module, name)

    def _store(self, value, key_name=None, depth=0) -> None:
        if depth > 8:
            return
        if value[0] == "G":
            self.uses[value[1]].stored = True
        elif value[0] == "T":
            for item in value[1]:
                self._store(item, None, depth + 1)

    def _run(self, ops) -> None:
        stack: list = []
        marks: list = []
        memo: dict = {}
        proto = 0
        made: dict = {}  # object id -> class name it reconstructs (None: a call result)

        def pop_mark():
            m = marks.pop()
            items = stack[m:]
            del stack[m:]
            return items

        def new_obj(cls, creator=None):
            obj = ("O", len(made), cls, creator)
            made[obj[1]] = cls
            return obj

        for op, arg, _pos in ops:
            n = op.name
            if n == "PROTO":
                proto = arg
            elif n in ("FRAME",):
                pass
            elif n == "STOP":
                if stack:
                    self._store(stack[-1])
                return
            elif n in ("GLOBAL", "INST"):
                module, name = arg.split(" ", 1)
                g = ("G", self._name(module, name, proto))
                if n == "INST":
                    items = pop_mark()
                    self._call(g, items, new_obj)
                    stack.append(new_obj(g[1] if not items else None))
                    if not items:
                        self.uses[g[1]].reconstructed = True
                else:
                    stack.append(g)
            elif n == "STACK_GLOBAL":
                name = stack.pop()
                module = stack.pop()
                if module[0] == "S" and name[0] == "S":
                    stack.append(("G", self._name(module[1], name[1], 4)))
                else:
                    stack.append(("?",))
            elif n in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                stack.append(("S", arg))
            elif n in ("SHORT_BINSTRING", "BINSTRING", "STRING"):
                stack.append(("S", arg if isinstance(arg, str) else str(arg)))
            elif n == "EMPTY_TUPLE":
                stack.append(("T", []))
            elif n == "MARK":
                marks.append(len(stack))
            elif n == "TUPLE":
                stack.append(("T", pop_mark()))
            elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
                k = int(n[-1])
                items = stack[-k:]
                del stack[-k:]
                stack.append(("T", items))
            elif n in ("LIST", "DICT", "FROZENSET"):
                for item in pop_mark():
                    self._store(item)
                stack.append(("C",))
            elif n in ("APPENDS", "SETITEMS", "ADDITEMS"):
                items = pop_mark()
                for item in items:
                    self._store(item)
                self._items(stack[-1] if stack else ("?",), made)
            elif n == "APPEND":
                self._store(stack.pop())
                self._items(stack[-1] if stack else ("?",), made)
            elif n == "SETITEM":
                self._store(stack.pop())
                self._store(stack.pop())
                self._items(stack[-1] if stack else ("?",), made)
            elif n in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif n == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif n in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif n == "POP":
                if marks and marks[-1] == len(stack):
                    marks.pop()
                else:
                    stack.pop()
            elif n == "POP_MARK":
                pop_mark()
            elif n == "DUP":
                stack.append(stack[-1])
            elif n == "REDUCE":
                args = stack.pop()
                func = stack.pop()
                items = args[1] if args[0] == "T" else []
                stack.append(self._call(func, items, new_obj))
            elif n in ("NEWOBJ", "NEWOBJ_EX"):
                if n == "NEWOBJ_EX":
                    stack.pop()
                args = stack.pop()
                cls = stack.pop()
                if cls[0] == "G":
                    use = self.uses[cls[1]]
                    use.reconstructed = True
                    if args[0] == "T" and args[1]:
                        use.newargs = True
                        for item in args[1]:
                            self._store(item)
                stack.append(new_obj(cls[1] if cls[0] == "G" else None))
            elif n == "OBJ":
                items = pop_mark()
                cls, rest = items[0], items[1:]
                if not rest and cls[0] == "G":
                    self.uses[cls[1]].reconstructed = True
                    stack.append(new_obj(cls[1]))
                else:
                    stack.append(self._call(cls, rest, new_obj))
            elif n == "BUILD":
                state = stack.pop()
                target = stack[-1] if stack else ("?",)
                self._store(state)
                if target[0] == "O" and target[2] is not None and target[3] not in STATE_BY_SCHEMA:
                    if state[0] != "D" and not (state[0] == "T" and len(state[1]) == 2):
                        # A dict state is ("C",) here too: only tuples and others mark non-dict.
                        if state[0] != "C":
                            self.uses[target[2]].nondict_state = True
            elif n == "BINPERSID":
                pid = stack.pop()
                # Legacy torch: ('module', cls, path, source) stands for the class itself.
                if pid[0] == "T" and pid[1] and pid[1][0] == ("S", "module") and len(pid[1]) > 1:
                    cls = pid[1][1]
                    if cls[0] == "G":
                        stack.append(cls)
                        continue
                for item in pid[1] if pid[0] == "T" else ():
                    if item[0] == "G":
                        self.uses[item[1]].argument = True
                stack.append(("P",))
            elif n == "PERSID":
                stack.append(("P",))
            elif n in ("EMPTY_DICT",):
                stack.append(("C",))
            elif n in ("EMPTY_LIST", "EMPTY_SET"):
                stack.append(("C",))
            else:
                stack.append(("X", n))

    def _items(self, target, made) -> None:
        if target[0] == "O" and target[2] is not None:
            self.uses[target[2]].items = True

    def _call(self, func, args, new_obj):
        if func[0] != "G":
            return new_obj(None)
        name = func[1]
        use = self.uses[name]
        use.called = True
        if len(use.call_signatures) < 20:
            use.call_signatures.add(",".join(a[0] for a in args))
        slots = RECONSTRUCTORS.get(name, ())
        if not slots and name.split(":", 1)[1].startswith("__pyx_unpickle_"):
            slots = (0,)
        for i, arg in enumerate(args):
            if arg[0] == "G":
                if i in slots:
                    self.uses[arg[1]].reconstructed = True
                else:
                    self.uses[arg[1]].argument = True
            elif arg[0] == "T":
                for item in arg[1]:
                    if item[0] == "G":
                        self.uses[item[1]].argument = True
        if slots and args and args[0][0] == "G":
            return new_obj(args[0][1], name)
        return new_obj(None)


TRACER = UsageTracer()


# --------------------------------------------------------------------------------------
# Recording what pickles reference
# --------------------------------------------------------------------------------------


class Recorder:
    """Collects every (module, name) that find_class resolves, via the PEP 578 hook.

    The audit event fires for the C and Python unpicklers and for every subclass
    (torch.load, joblib.load, pandas.read_pickle), with the names as they appear in
    the pickle, i.e. before the fix_imports mapping; `proto` says whether to apply it.
    """

    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = collections.defaultdict(set)
        self._active: str | None = None
        self._proto = 5
        self.failures: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if event == "pickle.find_class" and self._active is not None:
            module, name = args
            if self._proto < 3:
                module, name = fix_import(module, name)
            self.seen[key(module, name)].add(self._active)

    @contextlib.contextmanager
    def recording(self, label: str, proto: int):
        prev = (self._active, self._proto)
        self._active, self._proto = label, proto
        try:
            yield
        finally:
            self._active, self._proto = prev

    def pickle_roundtrip(self, label: str, obj, protocols=range(0, 6)) -> None:
        for proto in protocols:
            try:
                data = pickle.dumps(obj, protocol=proto)
            except Exception:  # some objects cannot use old protocols
                continue
            TRACER.trace(data)
            with self.recording(label, proto):
                try:
                    pickle.loads(data)
                except Exception as exc:
                    self.failures.append(f"{label} proto {proto}: load failed: {exc!r}")

    def torch_roundtrip(self, label: str, obj) -> None:
        import torch

        for zipfile in (True, False):
            buf = io.BytesIO()
            try:
                torch.save(obj, buf, _use_new_zipfile_serialization=zipfile)
            except Exception as exc:
                self.failures.append(f"{label}: torch.save failed: {exc!r}")
                continue
            trace_torch_file(buf.getvalue(), zipfile)
            buf.seek(0)
            with self.recording(label, 2):
                try:
                    torch.load(buf, weights_only=False)
                except Exception as exc:
                    self.failures.append(f"{label}: torch.load failed: {exc!r}")

    def joblib_roundtrip(self, label: str, obj) -> None:
        import joblib

        for compress in (0, 3):
            buf = io.BytesIO()
            try:
                joblib.dump(obj, buf, compress=compress)
            except Exception as exc:
                self.failures.append(f"{label}: joblib.dump failed: {exc!r}")
                continue
            if compress == 0:
                # Up to the first array's raw bytes (the wrappers' states come before them).
                TRACER.trace(buf.getvalue())
            buf.seek(0)
            with self.recording(label, pickle.HIGHEST_PROTOCOL):
                try:
                    joblib.load(buf)
                except Exception as exc:
                    self.failures.append(f"{label}: joblib.load failed: {exc!r}")


# --------------------------------------------------------------------------------------
# Sample objects per library
# --------------------------------------------------------------------------------------


def numpy_samples(rec: Recorder) -> set[str]:
    """Arrays of every dtype, scalars, generators, masked arrays, matrices, polynomials."""
    import numpy as np

    introspected: set[str] = set()
    for core in ("numpy.core", "numpy._core"):
        introspected |= {
            key(f"{core}.multiarray", "_reconstruct"),
            key(f"{core}.multiarray", "scalar"),
            key(f"{core}.numeric", "_frombuffer"),
        }
    introspected |= {key("numpy", "dtype"), key("numpy", "ndarray")}
    for name in np.dtypes.__all__:
        cls = getattr(np.dtypes, name)
        introspected.add(key(cls.__module__, cls.__qualname__))
    for t in set(np.sctypeDict.values()):
        introspected.add(key(t.__module__, t.__name__))
    # NumPy 1.x spellings of scalar types that pickles written by 1.x name.
    for legacy in ("bool_", "object_", "str_", "bytes_", "int_", "intc", "uint", "longlong"):
        if hasattr(np, legacy):
            introspected.add(key("numpy", legacy))
    # ufuncs, pure functions and abstract types: stored as values (see PURE_NUMPY_FUNCTIONS).
    for name in dir(np):
        if isinstance(getattr(np, name, None), np.ufunc):
            introspected.add(key("numpy", name))
    for name in PURE_NUMPY_FUNCTIONS + NUMPY_ABSTRACT_TYPES:
        if hasattr(np, name):
            introspected.add(key("numpy", name))
    # matrix is defined in numpy.matrixlib.defmatrix; 1.x and 2.x pickles say numpy.
    introspected |= {key("numpy", "matrix"), key("numpy.matrixlib.defmatrix", "matrix")}
    # 1.x names: recarray lived in numpy, MaskedArray in numpy.ma.core.
    introspected |= {key("numpy", "recarray"), key("numpy.ma.core", "MaskedArray")}
    for cls in (np.random.Generator, np.random.RandomState, np.random.BitGenerator):
        introspected.add(key(cls.__module__, cls.__qualname__))

    dtypes = [
        "?",
        "i1",
        "i2",
        "i4",
        "i8",
        "u1",
        "u2",
        "u4",
        "u8",
        "f2",
        "f4",
        "f8",
        "g",
        "c8",
        "c16",
        "G",
        "O",
        "S5",
        "U5",
        "V4",
        "M8[ns]",
        "M8[D]",
        "m8[s]",
        ">i4",
        "<f8",
        np.dtype([("a", "i4"), ("b", "f8", (2,))]),
        np.dtype({"names": ["x"], "formats": ["u1"], "titles": ["t"]}),
        np.dtype("f8", metadata={"k": 1}),
    ]
    for dt in dtypes:
        dt = np.dtype(dt)
        arr = np.zeros(3, dtype=dt)
        rec.pickle_roundtrip(f"numpy array {dt}", arr)
        rec.pickle_roundtrip(f"numpy fortran array {dt}", np.asfortranarray(np.zeros((2, 2), dtype=dt)))
        rec.pickle_roundtrip(f"numpy dtype {dt}", dt)
        rec.pickle_roundtrip(f"numpy dtype class {type(dt).__name__}", type(dt))
        rec.pickle_roundtrip(f"numpy scalar {dt}", arr[0])
        rec.joblib_roundtrip(f"joblib numpy array {dt}", arr)
    try:
        sdt = np.dtypes.StringDType()
        rec.pickle_roundtrip("numpy StringDType array", np.array(["a", "bc"], dtype=sdt))
    except Exception as exc:
        rec.failures.append(f"StringDType: {exc!r}")
    for t in set(np.sctypeDict.values()):
        rec.pickle_roundtrip(f"numpy scalar type {t.__name__}", t)
    rec.pickle_roundtrip("numpy 0-d", np.array(1.5))
    rec.pickle_roundtrip("numpy recarray", np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]))
    rec.pickle_roundtrip("numpy record", np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")])[0])
    rec.pickle_roundtrip("numpy matrix", np.matrix([[1, 2], [3, 4]]))
    rec.pickle_roundtrip("numpy masked", np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]))
    rec.pickle_roundtrip(
        "numpy masked structured", np.ma.masked_array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")])
    )
    rec.pickle_roundtrip("numpy masked constant", np.ma.masked)
    rec.pickle_roundtrip(
        "numpy masked void", np.ma.masked_array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")])[0]
    )
    rec.pickle_roundtrip("numpy nan/inf", np.array([np.nan, np.inf]))
    rec.pickle_roundtrip("numpy busdaycalendar", np.busdaycalendar())
    for poly in (
        np.polynomial.Polynomial,
        np.polynomial.Chebyshev,
        np.polynomial.Legendre,
        np.polynomial.Laguerre,
        np.polynomial.Hermite,
        np.polynomial.HermiteE,
    ):
        rec.pickle_roundtrip(f"numpy {poly.__name__}", poly([1.0, 2.0]))
    rng_classes = [np.random.MT19937, np.random.PCG64, np.random.PCG64DXSM, np.random.Philox, np.random.SFC64]
    for bg in rng_classes:
        rec.pickle_roundtrip(f"numpy bitgen {bg.__name__}", bg(1))
        rec.pickle_roundtrip(f"numpy Generator({bg.__name__})", np.random.Generator(bg(1)))
    rec.pickle_roundtrip("numpy RandomState", np.random.RandomState(0))
    rec.pickle_roundtrip("numpy default_rng", np.random.default_rng(0))
    rec.pickle_roundtrip("numpy SeedSequence", np.random.SeedSequence(1))
    return introspected


def torch_samples(rec: Recorder) -> set[str]:
    import torch
    import torch._weights_only_unpickler as wo
    import torch.nn as nn

    introspected: set[str] = set()
    for full in wo._get_allowed_globals():
        module, _, name = full.rpartition(".")
        introspected.add(key(module, name))

    # Every nn.Module subclass defined in torch.nn.modules.*, named as pickles name it.
    module_classes = []
    for info in pkgutil.walk_packages(torch.nn.modules.__path__, "torch.nn.modules."):
        mod = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == info.name and issubclass(cls, nn.Module):
                introspected.add(key(cls.__module__, cls.__qualname__))
                module_classes.append(cls)

    # Tensors of every dtype and layout, as tensors, parameters and in state dicts.
    dtypes = [
        torch.float32,
        torch.float64,
        torch.float16,
        torch.bfloat16,
        torch.complex64,
        torch.complex128,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.uint8,
        torch.bool,
        torch.uint16,
        torch.uint32,
        torch.uint64,
        torch.float8_e4m3fn,
        torch.float8_e5m2,
    ]
    for dt in dtypes:
        t = torch.zeros(2, 3).to(dt)
        rec.torch_roundtrip(f"torch tensor {dt}", t)
        rec.torch_roundtrip(f"torch dtype {dt}", dt)
        rec.pickle_roundtrip(f"pickled tensor {dt}", t, protocols=(2, 5))
    x = torch.randn(3, 4)
    rec.torch_roundtrip("torch parameter", nn.Parameter(x))
    rec.torch_roundtrip("torch no-grad parameter", nn.Parameter(x, requires_grad=False))
    rec.torch_roundtrip("torch sparse coo", x.to_sparse())
    for layout in ("to_sparse_csr", "to_sparse_csc"):
        rec.torch_roundtrip(f"torch sparse {layout}", getattr(x, layout)())
    rec.torch_roundtrip("torch sparse bsr", x.to_sparse_bsr((1, 1)))
    rec.torch_roundtrip("torch sparse bsc", x.to_sparse_bsc((1, 1)))
    rec.torch_roundtrip("torch meta", torch.empty(2, 2, device="meta"))
    rec.torch_roundtrip("torch channels_last", torch.zeros(1, 2, 3, 3).to(memory_format=torch.channels_last))
    rec.torch_roundtrip("torch view", x[1:, ::2])
    rec.torch_roundtrip("torch qtensor", torch.quantize_per_tensor(x, 0.1, 0, torch.quint8))
    rec.torch_roundtrip("torch qtensor qint8", torch.quantize_per_tensor(x, 0.1, 0, torch.qint8))
    rec.torch_roundtrip(
        "torch qtensor per channel",
        torch.quantize_per_channel(x, torch.ones(3), torch.zeros(3, dtype=torch.long), 0, torch.quint8),
    )
    rec.torch_roundtrip("torch Size", torch.Size([1, 2]))
    rec.torch_roundtrip("torch device", torch.device("cpu"))
    rec.torch_roundtrip("torch device cuda", torch.device("cuda", 0))
    rec.torch_roundtrip("torch untyped storage", torch.UntypedStorage(4))
    rec.torch_roundtrip(
        "torch typed storage", torch.FloatStorage(4) if hasattr(torch, "FloatStorage") else None
    )
    for fmt in (torch.contiguous_format, torch.channels_last, torch.channels_last_3d, torch.preserve_format):
        rec.pickle_roundtrip(f"memory format {fmt}", fmt, protocols=(2, 4))
    for qs in (torch.per_tensor_affine, torch.per_channel_affine):
        rec.torch_roundtrip(f"qscheme {qs}", qs)
    rec.torch_roundtrip("torch tensor with attr", _tensor_with_attr(torch))

    # Whole modules, as torch.save(model) writes them.
    samples = _torch_module_instances(torch, nn, module_classes, rec)
    for label, mod in samples:
        rec.torch_roundtrip(f"torch module {label}", mod)
        rec.torch_roundtrip(f"torch state_dict {label}", mod.state_dict())
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    rec.torch_roundtrip("optimizer state_dict", opt.state_dict())
    rec.torch_roundtrip("checkpoint with torch.__version__", {"version": torch.__version__})
    rec.torch_roundtrip("topk result", torch.topk(torch.arange(4.0), 2))
    lin = nn.Linear(2, 2)
    nn.utils.weight_norm(lin)
    rec.torch_roundtrip("weight_norm module", lin)
    lin2 = nn.Linear(2, 2)
    nn.utils.spectral_norm(lin2)
    rec.torch_roundtrip("spectral_norm module", lin2)
    return introspected


def _tensor_with_attr(torch):
    t = torch.zeros(2)
    t.note = "x"
    return t


def _torch_module_instances(torch, nn, classes, rec):
    out = []
    explicit = [
        ("Sequential", lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2))),
        ("ModuleList", lambda: nn.ModuleList([nn.Linear(2, 2), nn.Tanh()])),
        ("ModuleDict", lambda: nn.ModuleDict({"a": nn.Linear(2, 2)})),
        ("ParameterList", lambda: nn.ParameterList([nn.Parameter(torch.zeros(2))])),
        ("ParameterDict", lambda: nn.ParameterDict({"p": nn.Parameter(torch.zeros(2))})),
        (
            "Transformer",
            lambda: nn.Transformer(
                d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=8
            ),
        ),
        (
            "TransformerEncoder",
            lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 8, activation="gelu"), 1),
        ),
        ("TransformerDecoderLayer", lambda: nn.TransformerDecoderLayer(8, 2, 8)),
        ("MultiheadAttention", lambda: nn.MultiheadAttention(8, 2)),
        ("MultiheadAttention kdim", lambda: nn.MultiheadAttention(8, 2, kdim=4, vdim=4)),
        ("LSTM", lambda: nn.LSTM(4, 4, num_layers=2, bidirectional=True, proj_size=2)),
        ("GRU", lambda: nn.GRU(4, 4)),
        ("RNN", lambda: nn.RNN(4, 4, nonlinearity="relu")),
        ("LSTMCell", lambda: nn.LSTMCell(4, 4)),
        ("Conv2d", lambda: nn.Conv2d(3, 4, 3, padding="same")),
        ("Conv1d", lambda: nn.Conv1d(3, 4, 3)),
        ("Conv3d", lambda: nn.Conv3d(3, 4, 3)),
        ("ConvTranspose2d", lambda: nn.ConvTranspose2d(3, 4, 3)),
        ("BatchNorm2d", lambda: nn.BatchNorm2d(4)),
        ("SyncBatchNorm", lambda: nn.SyncBatchNorm(4)),
        ("LayerNorm", lambda: nn.LayerNorm(4)),
        ("GroupNorm", lambda: nn.GroupNorm(2, 4)),
        ("RMSNorm", lambda: nn.RMSNorm(4)),
        ("InstanceNorm2d", lambda: nn.InstanceNorm2d(4, affine=True, track_running_stats=True)),
        ("Embedding", lambda: nn.Embedding(10, 4, padding_idx=0)),
        ("EmbeddingBag", lambda: nn.EmbeddingBag(10, 4, mode="sum")),
        ("Bilinear", lambda: nn.Bilinear(2, 3, 4)),
        ("LazyLinear", lambda: nn.LazyLinear(4)),
        ("LazyConv2d", lambda: nn.LazyConv2d(4, 3)),
        ("PReLU", lambda: nn.PReLU()),
        ("Upsample", lambda: nn.Upsample(scale_factor=2, mode="bilinear")),
        ("CrossEntropyLoss", lambda: nn.CrossEntropyLoss(weight=torch.ones(3), label_smoothing=0.1)),
        ("AdaptiveLogSoftmaxWithLoss", lambda: nn.AdaptiveLogSoftmaxWithLoss(8, 10, [4])),
        ("Unflatten", lambda: nn.Unflatten(1, (2, 2))),
        ("Fold", lambda: nn.Fold((4, 4), 2)),
        ("MaxPool2d", lambda: nn.MaxPool2d(2, return_indices=True)),
        ("Softmax", lambda: nn.Softmax(dim=1)),
        ("ChannelShuffle", lambda: nn.ChannelShuffle(2)),
        ("Hardtanh", lambda: nn.Hardtanh(-2.0, 2.0)),
        ("Threshold", lambda: nn.Threshold(0.1, 0.0)),
        ("CTCLoss", lambda: nn.CTCLoss()),
        ("TripletMarginWithDistanceLoss", lambda: nn.TripletMarginWithDistanceLoss()),
        ("PairwiseDistance", lambda: nn.PairwiseDistance()),
        ("ZeroPad2d", lambda: nn.ZeroPad2d(1)),
        ("CircularPad2d", lambda: nn.CircularPad2d(1)),
    ]
    for label, make in explicit:
        try:
            mod = make()
            if label.startswith("Lazy"):
                out.append((label + " (uninitialized)", mod))
                mod2 = make()
                mod2(torch.zeros(1, 3, 5, 5) if "Conv" in label else torch.zeros(2, 3))
                out.append((label + " (materialized)", mod2))
            else:
                out.append((label, mod))
        except Exception as exc:
            rec.failures.append(f"torch module {label}: {exc!r}")
    done = {label.split(" ")[0] for label, _ in out}
    for cls in classes:
        if cls.__name__ in done or inspect.isabstract(cls):
            continue
        for args in ((), (4,), (4, 4), (4, 4, 3)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out.append((cls.__name__, cls(*args)))
                break
            except Exception:  # try the next argument shape
                continue
    return out


def sklearn_samples(rec: Recorder) -> set[str]:
    import numpy as np
    import pandas as pd
    from sklearn.base import is_classifier, is_regressor
    from sklearn.metrics import get_scorer, get_scorer_names
    from sklearn.utils import all_estimators

    try:
        from sklearn.utils._test_common.instance_generator import _construct_instances
    except ImportError:  # older scikit-learn
        _construct_instances = None

    introspected: set[str] = set()
    # Helper classes some fits pickle (OneVsRest over a constant column).
    introspected.add(key("sklearn.multiclass", "_ConstantPredictor"))
    estimators = all_estimators()
    for _, cls in estimators:
        introspected.add(key(cls.__module__, cls.__qualname__))
    # Built-in scorers (GridSearchCV(scoring="...").scorer_) and their metric functions:
    # pure computations over arrays.
    for name in get_scorer_names():
        scorer = get_scorer(name)
        introspected.add(key(type(scorer).__module__, type(scorer).__qualname__))
        func = scorer._score_func
        introspected.add(key(func.__module__, func.__qualname__))
    # Every public metric function (make_scorer(fbeta_score), custom scoring): pure.
    import sklearn.metrics as metrics

    for name in metrics.__all__:
        func = getattr(metrics, name, None)
        if inspect.isfunction(func) and not name.endswith(("_curve_display", "Display")):
            introspected.add(key(func.__module__, func.__qualname__))
    # Default and common score functions of the univariate feature selectors.
    import sklearn.feature_selection._mutual_info as mutual_info
    import sklearn.feature_selection._univariate_selection as univariate

    for func in (
        univariate.f_classif,
        univariate.f_regression,
        univariate.chi2,
        univariate.r_regression,
        univariate.f_oneway,
        mutual_info.mutual_info_classif,
        mutual_info.mutual_info_regression,
    ):
        introspected.add(key(func.__module__, func.__qualname__))
    import sklearn.gaussian_process.kernels as kernels

    for _, cls in inspect.getmembers(kernels, inspect.isclass):
        if cls.__module__ == kernels.__name__ and (
            issubclass(cls, kernels.Kernel) or cls.__name__ == "Hyperparameter"
        ):
            introspected.add(key(cls.__module__, cls.__qualname__))

    rng = np.random.RandomState(0)
    X = np.abs(rng.randn(40, 4)) + 0.1
    y_bin = np.array([0, 1] * 20)
    y_multi = np.array([0, 1, 2, 3] * 10)
    y_reg = X @ np.array([1.0, -2.0, 0.5, 3.0]) + rng.randn(40) * 0.1
    y_pos = np.abs(y_reg) + 0.5
    y_2d = np.c_[y_reg, y_reg * 2]
    y_multilabel = np.c_[y_bin, 1 - y_bin, y_bin]
    Xdf = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    texts = ["the cat sat", "a dog ran", "the bird flew", "cats and dogs"] * 10
    dicts = [{"a": 1.0, "b": "x"}, {"a": 2.0, "c": 3.0}] * 20
    images = rng.rand(3, 8, 8)

    def attempts(est):
        if is_classifier(est):
            yield (X, y_bin)
            yield (X, y_multi)
            yield (X, y_multilabel)
            yield (Xdf, y_multi)
        elif is_regressor(est):
            yield (X, y_reg)
            yield (X, y_pos)
            yield (X, y_2d)
            yield (X[:, :1].ravel(), y_reg)
            yield (Xdf, y_reg)
        yield (X, y_bin)
        yield (X,)
        yield (Xdf,)
        yield (texts,)
        yield (dicts,)
        yield (images,)
        yield (y_multi,)
        yield (y_multilabel,)
        yield ([["a", "b"], ["c"]] * 5,)
        yield (X.astype(int),)
        gram = X @ X.T  # precomputed kernels / distances
        yield (gram, y_bin) if is_classifier(est) else (gram, y_reg) if is_regressor(est) else (gram,)

    def fit_one(est, label):
        rec.pickle_roundtrip(f"{label} (unfitted)", est, protocols=(2, 5))
        for args in attempts(est):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est.fit(*args)
            except Exception:  # try the next kind of data
                continue
            rec.pickle_roundtrip(label, est)
            rec.joblib_roundtrip(label, est)
            return True
        rec.failures.append(f"sklearn {label}: no data shape fitted")
        return False

    # Parameters whose string options select different internal objects.
    variant_params = (
        "loss",
        "criterion",
        "link",
        "solver",
        "kernel",
        "algorithm",
        "metric",
        "splitter",
        "init",
        "strategy",
        "linkage",
        "weights",
        "covariance_type",
        "activation",
        "learning_rate",
        "encode",
        "penalty",
        "cluster_method",
        "power_t",
        "method",
        "multi_class",
        "weight_concentration_prior_type",
        "affinity",
        "assign_labels",
        "n_components",
        "output_distribution",
        "extrapolation",
        "norm",
        "analyzer",
        "svd_solver",
        "fit_algorithm",
        "transform_algorithm",
        "categorical_features",
        "early_stopping",
        "oob_score",
        "warm_start",
    )
    for name, cls in estimators:
        instances = []
        if _construct_instances is not None:
            try:
                instances = list(_construct_instances(cls))
            except Exception as exc:
                rec.failures.append(f"sklearn {name}: construct: {exc!r}")
        if not instances:
            try:
                instances = [cls()]
            except Exception as exc:
                rec.failures.append(f"sklearn {name}: {exc!r}")
                continue
        for i, est in enumerate(instances):
            fit_one(est, f"{name}#{i}")
            for pname, options in _string_options(est, variant_params):
                for opt in options:
                    try:
                        variant = _clone(est).set_params(**{pname: opt})
                    except Exception:
                        continue
                    fit_one(variant, f"{name}#{i} {pname}={opt!r}")
    _sklearn_extras(rec, X, y_bin, y_multi, y_reg, Xdf)
    return introspected


def _clone(est):
    from sklearn.base import clone

    return clone(est)


def _string_options(est, names):
    constraints = getattr(type(est), "_parameter_constraints", {})
    params = est.get_params(deep=False)
    for pname in names:
        if pname not in constraints or pname not in params:
            continue
        options = []
        for c in constraints[pname]:
            opts = getattr(c, "options", None)
            if opts:
                options.extend(sorted((o for o in opts if isinstance(o, (str, bool))), key=str))
            if c in ("boolean",) or c is bool:
                options.extend([True, False])
        if options:
            yield pname, options


def _sklearn_extras(rec, X, y_bin, y_multi, y_reg, Xdf):
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.neighbors import BallTree, KDTree, KNeighborsClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.utils import Bunch

    cat = pd.DataFrame({"a": X[:, 0], "c": pd.Categorical(["x", "y"] * 20)})
    extras = [
        (
            "GridSearchCV accuracy",
            GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, scoring="accuracy", cv=2),
            (X, y_bin),
        ),
        (
            "GridSearchCV multi-scoring",
            GridSearchCV(
                LogisticRegression(),
                {"C": [1.0]},
                scoring=["accuracy", "f1_macro", "roc_auc_ovr"],
                refit="accuracy",
                cv=2,
            ),
            (X, y_multi),
        ),
        (
            "RandomizedSearchCV",
            RandomizedSearchCV(
                SGDClassifier(),
                {"alpha": [1e-4, 1e-3]},
                n_iter=2,
                cv=2,
                random_state=np.random.RandomState(1),
            ),
            (X, y_bin),
        ),
        ("Pipeline", make_pipeline(StandardScaler(), LogisticRegression()), (X, y_bin)),
        (
            "ColumnTransformer selector",
            ColumnTransformer(
                [
                    ("num", StandardScaler(), make_column_selector(dtype_include="number")),
                    ("cat", OneHotEncoder(dtype=np.float32), ["c"]),
                ]
            ),
            (cat,),
        ),
        (
            "HGB categorical",
            HistGradientBoostingClassifier(
                categorical_features="from_dtype", early_stopping=True, validation_fraction=0.3, max_iter=3
            ),
            (cat, y_bin),
        ),
        (
            "HGB regressor quantile",
            HistGradientBoostingRegressor(loss="quantile", quantile=0.3, max_iter=3),
            (X, y_reg),
        ),
        ("KNN ball_tree", KNeighborsClassifier(algorithm="ball_tree", metric="manhattan"), (X, y_bin)),
        ("KNN kd_tree", KNeighborsClassifier(algorithm="kd_tree", metric="chebyshev"), (X, y_bin)),
        ("Pipeline pandas out", Pipeline([("s", StandardScaler().set_output(transform="pandas"))]), (Xdf,)),
    ]
    for label, est, args in extras:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(*args)
        except Exception as exc:
            rec.failures.append(f"sklearn extra {label}: {exc!r}")
            continue
        rec.pickle_roundtrip(label, est)
        rec.joblib_roundtrip(label, est)
    for metric in (
        "euclidean",
        "manhattan",
        "chebyshev",
        "minkowski",
        "canberra",
        "braycurtis",
        "hamming",
        "haversine",
    ):
        data = X[:, :2] if metric == "haversine" else X
        for tree in (BallTree, KDTree):
            try:
                rec.pickle_roundtrip(f"{tree.__name__} {metric}", tree(data, metric=metric))
            except Exception:  # not every metric suits every tree
                continue
    rec.pickle_roundtrip("Bunch", Bunch(a=1, b=np.zeros(2)))
    # Multiclass fits pickle multinomial internals the binary fits do not.
    from sklearn.ensemble import GradientBoostingClassifier

    y3 = np.array([0, 1, 2, 3] * 10)
    for label, est in (
        ("GB multiclass", GradientBoostingClassifier(n_estimators=2)),
        ("HGB multiclass", HistGradientBoostingClassifier(max_iter=2)),
        ("LogReg multiclass", LogisticRegression()),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X, y3)
        except Exception as exc:
            rec.failures.append(f"sklearn extra {label}: {exc!r}")
            continue
        rec.pickle_roundtrip(label, est)
        rec.joblib_roundtrip(label, est)
    try:
        from sklearn.experimental import enable_iterative_imputer  # noqa: F401
        from sklearn.impute import IterativeImputer

        imputer = IterativeImputer(max_iter=2).fit(np.where(X > 1.5, np.nan, X))
        rec.pickle_roundtrip("IterativeImputer", imputer)
        rec.joblib_roundtrip("IterativeImputer", imputer)
    except Exception as exc:
        rec.failures.append(f"sklearn extra IterativeImputer: {exc!r}")


def pandas_samples(rec: Recorder) -> set[str]:
    import datetime

    import numpy as np
    import pandas as pd

    introspected: set[str] = set()
    n = 4
    columns = {
        "i8": np.arange(n, dtype="i8"),
        "i4": np.arange(n, dtype="i4"),
        "u1": np.arange(n, dtype="u1"),
        "f4": np.zeros(n, dtype="f4"),
        "f8": np.linspace(0, 1, n),
        "c16": np.zeros(n, dtype="c16"),
        "b": np.array([True, False] * 2),
        "obj": np.array([1, "a", None, 2.5], dtype=object),
        "str": pd.array(["a", "b", None, "d"], dtype="str"),
        "string": pd.array(["a", "b", None, "d"], dtype="string"),
        "string_py": pd.array(["a", "b", None, "d"], dtype=pd.StringDtype("python")),
        "cat": pd.Categorical(["a", "b", "a", "c"]),
        "cat_ord": pd.Categorical(["lo", "hi", "lo", "hi"], categories=["lo", "hi"], ordered=True),
        "dt": pd.date_range("2020-01-01", periods=n),
        "dt_s": pd.date_range("2020-01-01", periods=n, unit="s"),
        "dt_utc": pd.date_range("2020-01-01", periods=n, tz="UTC"),
        "dt_zone": pd.date_range("2020-01-01", periods=n, tz="Europe/Paris"),
        "dt_fixed": pd.date_range("2020-01-01", periods=n, tz=datetime.timezone(datetime.timedelta(hours=3))),
        "td": pd.to_timedelta(np.arange(n), unit="h"),
        "period": pd.period_range("2020-01", periods=n, freq="M"),
        "period_q": pd.period_range("2020Q1", periods=n, freq="Q"),
        "interval": pd.interval_range(0, n),
        "interval_l": pd.IntervalIndex.from_breaks(np.arange(n + 1.0), closed="left"),
        "sparse": pd.arrays.SparseArray([0, 0, 1, 0]),
        "sparse_f": pd.arrays.SparseArray([0.0, np.nan, 1.0, 0.0]),
        **{
            name: pd.array([1, None, 3, 4], dtype=name)
            for name in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64")
        },
        "Float32": pd.array([1.0, None, 3.0, 4.0], dtype="Float32"),
        "boolean": pd.array([True, None, False, True], dtype="boolean"),
        "bytes": np.array([b"a", b"b", b"c", b"d"], dtype=object),
    }
    try:
        import pyarrow  # noqa: F401

        # pandas' Arrow-backed columns: strings ("str" above is one when pyarrow is installed)
        # and ArrowDtype columns of flat types.
        columns["arrow_i8"] = pd.array([1, None, 3, 4], dtype="int64[pyarrow]")
        columns["arrow_f8"] = pd.array([1.5, None, 3.0, 4.0], dtype="double[pyarrow]")
        columns["arrow_bool"] = pd.array([True, None, False, True], dtype="bool[pyarrow]")
        columns["arrow_str"] = pd.array(["a", None, "c", "d"], dtype="string[pyarrow]")
    except Exception as exc:
        rec.failures.append(f"pandas pyarrow columns: {exc!r}")
    try:
        import dateutil.tz

        columns["dt_dateutil"] = pd.date_range("2020-01-01", periods=n, tz=dateutil.tz.tzutc())
        columns["dt_dateutil_file"] = pd.date_range(
            "2020-01-01", periods=n, tz=dateutil.tz.gettz("America/New_York")
        )
        columns["dt_dateutil_offset"] = pd.date_range(
            "2020-01-01", periods=n, tz=dateutil.tz.tzoffset("X", 3600)
        )
    except Exception as exc:
        rec.failures.append(f"pandas dateutil tz: {exc!r}")
    try:
        import pytz

        columns["dt_pytz"] = pd.date_range("2020-01-01", periods=n, tz=pytz.timezone("Asia/Tokyo"))
        columns["dt_pytz_fixed"] = pd.date_range("2020-01-01", periods=n, tz=pytz.FixedOffset(60))
        columns["dt_pytz_utc"] = pd.date_range("2020-01-01", periods=n, tz=pytz.utc)
    except Exception as exc:
        rec.failures.append(f"pandas pytz tz: {exc!r}")
    df = pd.DataFrame(columns)
    df.attrs["source"] = "gen"
    rec.pickle_roundtrip("pandas DataFrame all dtypes", df)
    for col in df.columns:
        rec.pickle_roundtrip(f"pandas Series {col}", df[col])
        rec.pickle_roundtrip(f"pandas array {col}", df[col].array)
        rec.pickle_roundtrip(f"pandas dtype {col}", df[col].dtype)
        rec.pickle_roundtrip(f"pandas Index {col}", pd.Index(df[col]))
        rec.pickle_roundtrip(f"pandas scalar {col}", df[col].iloc[0])
    rec.joblib_roundtrip("joblib pandas DataFrame", df)
    frames = {
        "range index": pd.DataFrame({"a": [1, 2]}),
        "multiindex": pd.DataFrame({"a": [1, 2]}, index=pd.MultiIndex.from_tuples([("x", 1), ("y", 2)])),
        "multiindex columns": pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("x", 1), ("y", 2)])),
        "datetime index freq": pd.DataFrame(
            {"a": range(3)}, index=pd.date_range("2020", periods=3, freq="h")
        ),
        "datetime index tz": pd.DataFrame({"a": range(3)}, index=pd.date_range("2020", periods=3, tz="UTC")),
        "timedelta index": pd.DataFrame({"a": range(3)}, index=pd.timedelta_range("1D", periods=3)),
        "period index": pd.DataFrame({"a": range(3)}, index=pd.period_range("2020", periods=3, freq="D")),
        "interval index": pd.DataFrame({"a": range(3)}, index=pd.interval_range(0, 3)),
        "categorical index": pd.DataFrame({"a": range(3)}, index=pd.CategoricalIndex(["a", "b", "a"])),
        "float index": pd.DataFrame({"a": range(3)}, index=[0.5, 1.5, 2.5]),
        "bool index": pd.DataFrame({"a": range(2)}, index=[True, False]),
        "object index": pd.DataFrame({"a": range(2)}, index=pd.Index([1, "x"], dtype=object)),
        "string index": pd.DataFrame({"a": range(2)}, index=pd.Index(["x", "y"], dtype="string")),
        "nullable index": pd.DataFrame({"a": range(2)}, index=pd.Index([1, None], dtype="Int64")),
        "empty": pd.DataFrame(),
        "flags": pd.DataFrame({"a": [1]}).set_flags(allows_duplicate_labels=False),
        "consolidated": pd.DataFrame(np.zeros((3, 3))),
    }
    for label, frame in frames.items():
        rec.pickle_roundtrip(f"pandas {label}", frame)
        rec.pickle_roundtrip(f"pandas {label} index", frame.index)
        rec.pickle_roundtrip(f"pandas {label} columns", frame.columns)
    scalars = [
        pd.Timestamp("2020-01-01"),
        pd.Timestamp("2020-01-01", tz="UTC"),
        pd.Timestamp("2020-01-01", tz="Europe/Paris"),
        pd.Timestamp("2020-01-01", unit="s"),
        pd.Timedelta("1D"),
        pd.Period("2020-01", freq="M"),
        pd.Interval(0, 1),
        pd.NaT,
        pd.NA,
        pd.Series([1.0], name="s"),
    ]
    for s in scalars:
        rec.pickle_roundtrip(f"pandas scalar {type(s).__name__} {s!r}", s)
    for name in sorted(pd.offsets.__all__):
        cls = getattr(pd.offsets, name)
        if not isinstance(cls, type):
            continue
        try:
            rec.pickle_roundtrip(f"pandas offset {name}", cls())
        except Exception:  # abstract offsets
            continue
    rec.pickle_roundtrip("pandas offset DateOffset(months=1)", pd.DateOffset(months=1))
    rec.pickle_roundtrip("pandas CustomBusinessDay", pd.offsets.CustomBusinessDay(holidays=["2020-01-01"]))
    for dtype in (
        pd.CategoricalDtype(["a"]),
        pd.DatetimeTZDtype(tz="UTC"),
        pd.PeriodDtype("D"),
        pd.IntervalDtype("int64", "right"),
        pd.SparseDtype("float", 0.0),
        pd.Int64Dtype(),
        pd.StringDtype(),
        pd.BooleanDtype(),
        pd.Float64Dtype(),
        pd.StringDtype("python"),
    ):
        rec.pickle_roundtrip(f"pandas dtype {dtype!r}", dtype)
    # Old names pandas' own unpickler maps to current ones (pickle_compat).
    try:
        from pandas.compat import pickle_compat

        for (old_mod, old_name), (new_mod, new_name) in pickle_compat._class_locations_map.items():
            introspected.add(key(old_mod, old_name) + f"=>{new_mod}:{new_name}")
    except Exception as exc:
        rec.failures.append(f"pandas pickle_compat: {exc!r}")
    return introspected


def scipy_samples(rec: Recorder) -> set[str]:
    import numpy as np
    import scipy.sparse as sp

    introspected: set[str] = set()
    dense = np.array([[1.0, 0.0], [0.0, 2.0]])
    for fmt in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok"):
        for kind in ("matrix", "array"):
            cls = getattr(sp, f"{fmt}_{kind}")
            introspected.add(key(cls.__module__, cls.__qualname__))
            obj = cls(dense)
            rec.pickle_roundtrip(f"scipy {fmt}_{kind}", obj)
            rec.joblib_roundtrip(f"scipy {fmt}_{kind}", obj)
            rec.pickle_roundtrip(f"scipy {fmt}_{kind} int", cls(dense.astype("i4")))
    # Pre-1.8 module paths: pickles written by older scipy name these, and the
    # deprecated shim modules still resolve them to the current classes.
    for fmt in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok"):
        introspected.add(key(f"scipy.sparse.{fmt}", f"{fmt}_matrix"))
    return introspected


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def versions() -> str:
    parts = [f"CPython {platform.python_version()}"]
    for lib in ("numpy", "torch", "sklearn", "pandas", "scipy", "joblib"):
        try:
            parts.append(f"{lib} {importlib.import_module(lib).__version__}")
        except Exception:
            parts.append(f"{lib} (not installed)")
    return ", ".join(parts)


def read_entries(path: Path) -> set[str]:
    """The names of a policy data file (`module:name ROLE  # comment` lines)."""
    out = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.add(line.split()[0])
    return out


def instances_are_callable(cls) -> bool:
    return any("__call__" in vars(k) for k in cls.__mro__ if k is not object and k is not type)


def fresh_problem(cls) -> str | None:
    """Why NEWOBJ of `cls` would not give a fresh object (a singleton, shared attributes)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = cls.__new__(cls)
            b = cls.__new__(cls)
    except Exception:
        return None  # __new__ needs arguments: NEWOBJ without them fails, nothing is shared
    if a is b:
        return "__new__ returns a singleton"
    da, db = getattr(a, "__dict__", None), getattr(b, "__dict__", None)
    if da is not None and da is db:
        return "instances share one __dict__"
    written = class_attributes_set_by_setstate(cls)
    if written:
        return f"__setstate__ writes the class attribute {written} (process-wide state)"
    return None


def allocates_when_called(obj) -> bool:
    """Whether calling `obj` with one int makes an object of that many bytes or more
    (`numpy.ndarray(n)`, `torch.FloatTensor(n)`, `bytes(n)`): a value is called later with
    arguments the pickle can steer (a FunctionTransformer in a pipeline), so such a callable
    is no value."""
    import tracemalloc

    if not callable(obj):
        return False
    n = 1 << 22
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            made = obj(n)
        sizes = [tracemalloc.get_traced_memory()[1]]
        for attr in ("nbytes", "untyped_storage"):
            value = getattr(made, attr, None)
            with contextlib.suppress(Exception):
                value = value() if callable(value) else value
                value = value.nbytes() if hasattr(value, "nbytes") and callable(value.nbytes) else value
                sizes.append(int(value))
        return max(sizes) >= n
    except Exception:
        return False
    finally:
        tracemalloc.stop()


# An assignment to an attribute of a class (or a global) in a __setstate__'s source:
# `RemovableHandle.next_id = ...`, `type(self).x = ...`, `self.__class__.x = ...`, `global x`.
CLASS_WRITE = re.compile(
    r"\b([A-Z]\w*\.\w+)\s*[-+*]?=(?!=)|type\(self\)\.(\w+)\s*=(?!=)|self\.__class__\.(\w+)\s*=(?!=)|\bglobal\s+(\w+)"
)


def class_attributes_set_by_setstate(cls) -> str | None:
    """What `cls.__setstate__` writes outside the instance, found in its source (None when it
    writes nothing there, or its source is not Python)."""
    setstate = getattr(cls, "__setstate__", None)
    try:
        source = inspect.getsource(setstate)
    except (TypeError, OSError):
        return None
    match = CLASS_WRITE.search(source)
    return next((g for g in match.groups() if g), None) if match else None


def legacy_torch_value(e: str) -> bool:
    """Storage and tensor-type classes: the legacy torch tar format stores them as items of the
    records in its `storages` and `tensors` pickles (no sample can write that format any more)."""
    module, name = e.split(":", 1)
    return module in ("torch", "torch.cuda", "torch.sparse", "torch.cuda.sparse") and (
        name.endswith("Storage") or (name.endswith("Tensor") and name != "Tensor")
    )


def derive_roles(entries, call_names, aliases):
    """The roles of every generated entry, from how the sample pickles used it (TRACER), or for
    names no sample used (introspected, legacy), from what the name is. `call` roles live in the
    curated calls.txt; a name the samples call that has no schema there is reported."""
    roles: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = collections.defaultdict(list)
    # An old name that no longer resolves takes the roles of the name its class has now.
    by_qualname: dict[str, str] = {}
    for names in entries.values():
        for e in sorted(names):
            module, qual = e.split(":", 1)
            with contextlib.suppress(Exception), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                resolve(module, qual)
                by_qualname.setdefault(f"{module.split('.', 1)[0]}:{qual}", e)
    for names in entries.values():
        for e in sorted(names):
            source = aliases.get(e, e)
            module, qual = e.split(":", 1)
            current = by_qualname.get(f"{module.split('.', 1)[0]}:{qual}")
            if current and current != e and e not in aliases:
                with contextlib.suppress(Exception), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    resolve(module, qual)
                    current = None  # it resolves: judged by itself
                if current:
                    source = current
            use = TRACER.uses.get(source) or TRACER.uses.get(e)
            module, qual = source.split(":", 1)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    obj = resolve(module, qual)
            except Exception:
                obj = None
            out: list[str] = []
            reconstructed = use.reconstructed if use else False
            stored = use.stored if use else False
            if use is None or not (use.reconstructed or use.stored or use.called or use.argument):
                # Never seen in a sample: classes are reconstructed, anything else stored.
                if isinstance(obj, type):
                    reconstructed = True
                elif e not in call_names:
                    stored = True
            if reconstructed and isinstance(obj, type):
                problem = fresh_problem(obj)
                if problem:
                    notes["not reconstructable"].append(f"{e}: {problem}")
                else:
                    opts = []
                    if use and use.nondict_state:
                        opts.append("state=any")
                    if use and use.items:
                        opts.append("items")
                    if use and use.newargs:
                        opts.append("newargs")
                    if instances_are_callable(obj):
                        opts.append("callable")
                    out.append(f"reconstruct({', '.join(opts)})" if opts else "reconstruct")
            elif reconstructed:
                out.append("reconstruct")  # a legacy name that no longer resolves
            if isinstance(obj, type) and e.startswith("numpy:") and qual in NUMPY_ABSTRACT_TYPES:
                out = []  # abstract scalar types: values only (np.number() cannot be made)
                reconstructed = False
                stored = True
            if stored and e not in KEYED_VALUES and allocates_when_called(obj):
                notes["no value: allocates from its argument"].append(e)
                stored = False
            if stored or e in KEYED_VALUES:
                keys = KEYED_VALUES.get(e)
                out.append(f"value(key={'|'.join(keys)})" if keys else "value")
            elif legacy_torch_value(e):
                # torch(n) allocates: only inside the legacy records, never under an attribute.
                out.append("value(item)")
            if use and use.called and e not in call_names:
                notes["called by samples but without a schema in calls.txt"].append(
                    f"{e}: {sorted(use.call_signatures)[:4]}"
                )
            if obj is None and use is None and not (reconstructed and source != e):
                # Neither a sample nor a current name says how it is used: only as an argument.
                out = [r for r in out if not r.startswith("value")] or (
                    [] if e in call_names else ["argument"]
                )
            out += [r for r in LEGACY_ROLES.get(e, []) if r not in out]
            if not out and e not in call_names:
                out.append("argument")
            roles[e] = out
    return roles, notes


def render(family: str, how: str, entries: set[str], vers: str, roles: dict[str, list[str]]) -> str:
    lines = [
        f"# picklefence default policy: {family}",
        "# GENERATED by scripts/gen_policy_data.py -- do not edit by hand: change the script",
        "# (its EXCLUDE list or sample objects) and re-run it.",
        f"# Produced with: {vers}",
        *textwrap.wrap(f"How: {how}", width=88, initial_indent="# ", subsequent_indent="#   "),
        "# Format: `module:qualified.name ROLE` per line (exact matches; one line per role). Roles",
        "# come from how the sample pickles used each name: reconstruct (NEWOBJ and reconstructor",
        "# functions), value (stored), argument (only passed to a call that names it). Names the",
        "# samples call have their argument schema in calls.txt.",
        "",
    ]
    for e in sorted(entries):
        for role in roles.get(e, []):
            lines.append(f"{e} {role}")
    return "\n".join(lines) + "\n"


def render_compat(vers: str) -> str:
    lines = [
        "# CPython _compat_pickle tables: what pickle's find_class applies when protocol < 3",
        "# and fix_imports is on. GENERATED by scripts/gen_policy_data.py -- do not edit.",
        f"# Produced with: CPython {platform.python_version()}",
        "# `name OLD_MODULE OLD_NAME NEW_MODULE NEW_NAME` is NAME_MAPPING (checked first);",
        "# `import OLD_MODULE NEW_MODULE` is IMPORT_MAPPING.",
        "",
    ]
    for (om, on), (nm, nn) in sorted(_compat_pickle.NAME_MAPPING.items()):
        lines.append(f"name {om} {on} {nm} {nn}")
    for om, nm in sorted(_compat_pickle.IMPORT_MAPPING.items()):
        lines.append(f"import {om} {nm}")
    return "\n".join(lines) + "\n"


HOW = {
    "numpy": "numpy._core/numpy.core reconstructors, numpy.dtypes classes and scalar types "
    "(introspected), plus every global referenced by pickling arrays of every dtype, scalars, "
    "records, matrices, masked arrays, polynomials and random generators at protocols 0-5 "
    "and through joblib.",
    "torch": "torch._weights_only_unpickler._get_allowed_globals() and every nn.Module subclass "
    "defined in torch.nn.modules.* (introspected), plus every global referenced by torch.save "
    "(zip and legacy) of tensors of every dtype/layout, quantized tensors, parameters, "
    "state dicts and whole modules.",
    "sklearn": "sklearn.utils.all_estimators() (named by cls.__module__), built-in scorers and "
    "their metric functions, gaussian_process kernels (introspected), plus every global referenced "
    "by pickling (protocols 0-5 and joblib) each estimator unfitted and fitted on tiny data, "
    "varying loss/criterion/solver-style options.",
    "pandas": "every global referenced by pickling DataFrames, Series, Indexes, arrays, dtypes, "
    "scalars and offsets of every dtype and index kind (protocols 0-5, joblib), plus old names "
    "pandas' own unpickler maps to allowed ones (pandas.compat.pickle_compat).",
    "scipy": "scipy.sparse *_matrix and *_array classes (introspected, plus their pre-1.8 module "
    "paths), plus every global referenced by pickling each format at protocols 0-5 and joblib.",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--extra-path", action="append", default=[])
    ap.add_argument("--verbose", action="store_true", help="list failures and sources")
    ap.add_argument("--review", metavar="FILE", help="write every generated entry with its kind and sources")
    opts = ap.parse_args()
    for p in opts.extra_path:
        sys.path.insert(0, p)
    warnings.simplefilter("ignore")

    rec = Recorder()
    introspected: dict[str, set[str]] = {}
    for family, fn in (
        ("numpy", numpy_samples),
        ("torch", torch_samples),
        ("sklearn", sklearn_samples),
        ("pandas", pandas_samples),
        ("scipy", scipy_samples),
    ):
        print(f"collecting {family} ...", file=sys.stderr)
        introspected[family] = fn(rec)

    # pandas' compat map: keep an old name only when its new name ends up allowed.
    compat_pairs = [e.split("=>") for e in introspected["pandas"] if "=>" in e]
    introspected["pandas"] = {e for e in introspected["pandas"] if "=>" not in e}

    entries: dict[str, set[str]] = {f: set() for f in FAMILY_FILES}
    outside: set[str] = set()  # introspected names outside the families: must be curated
    dropped: dict[str, str] = {}
    for names in introspected.values():
        for e in names:
            top = e.split(":", 1)[0].split(".", 1)[0]
            (entries[top] if top in FAMILY_FILES else outside).add(e)
    for e in rec.seen:
        top = e.split(":", 1)[0].split(".", 1)[0]
        if top in FAMILY_FILES:
            entries[top].add(e)
    for family, extra in COMPANIONS.items():
        entries[family] |= {e for e in extra if e in rec.seen}
    for family, extra in LEGACY.items():
        entries[family] |= extra
    aliases: dict[str, str] = {}  # an older name -> the name pickles write today
    for family in ("numpy", "pandas"):  # the libraries that re-homed public classes
        for e in sorted(entries[family]):
            for alias in defining_aliases(e):
                aliases.setdefault(alias, e)
                entries[family].add(alias)
    for family in entries:
        for e in sorted(entries[family]):
            reason = is_excluded(e) or ("path through a module namespace" if through_module(e) else None)
            if reason:
                dropped[e] = reason
                entries[family].discard(e)
    for old, new in compat_pairs:
        if new in entries["pandas"]:
            entries["pandas"].add(old)

    # Every entry must resolve in the installed libraries (legacy aliases excepted).
    unresolved = []
    for names in entries.values():
        for e in sorted(names):
            module, qual = e.split(":", 1)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    resolve(module, qual)
            except Exception:
                unresolved.append(e)

    if opts.review:
        with open(opts.review, "w") as fh:
            for _, names in sorted(entries.items()):
                for e in sorted(names):
                    module, qual = e.split(":", 1)
                    try:
                        obj = resolve(module, qual)
                        kind = "class" if isinstance(obj, type) else type(obj).__name__
                    except Exception:
                        kind = "unresolved"
                    srcs = sorted(rec.seen.get(e, ()))
                    origin = f"pickled by {len(srcs)}: {srcs[:2]}" if srcs else "introspected"
                    fh.write(f"{e}\t{kind}\t{origin}\n")

    call_names = read_entries(POLICY_DIR / "calls.txt")
    roles, role_notes = derive_roles(entries, call_names, aliases)
    vers = versions()
    outputs = {f"{f}.txt": render(f, HOW[f], entries[f], vers, roles) for f in FAMILY_FILES}
    outputs["compat_pickle.txt"] = render_compat(vers)

    changed = []
    for name, text in sorted(outputs.items()):
        path = POLICY_DIR / name
        if not path.exists() or path.read_text() != text:
            changed.append(name)
            if not opts.check:
                POLICY_DIR.mkdir(parents=True, exist_ok=True)
                path.write_text(text)

    allowed = set().union(*entries.values())
    for name in CURATED_FILES:
        path = POLICY_DIR / name
        if path.exists():
            allowed |= read_entries(path)
        else:
            print(f"warning: curated file {name} missing", file=sys.stderr)
    not_allowed = {e: srcs for e, srcs in rec.seen.items() if e not in allowed}
    not_allowed.update({e: {"introspected"} for e in outside if e not in allowed})
    curated_unresolved = []
    for name in CURATED_FILES:
        path = POLICY_DIR / name
        for e in sorted(read_entries(path)) if path.exists() else ():
            module, qual = e.split(":", 1)
            try:
                importlib.import_module(module.split(".", 1)[0])
            except ImportError:
                continue  # library not installed here: nothing to verify against
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    resolve(module, qual)
            except Exception:
                curated_unresolved.append(f"{name}: {e}")

    report = sys.stderr
    print(f"\nversions: {vers}", file=report)
    for family, names in sorted(entries.items()):
        print(f"{family}.txt: {len(names)} entries", file=report)
    print("\nDROPPED (reviewed exclusions):", file=report)
    for e, reason in sorted(dropped.items()):
        print(f"  {e}: {reason}", file=report)
    for title, items in sorted(role_notes.items()):
        print(f"\nROLES -- {title}:", file=report)
        for item in items:
            print(f"  {item}", file=report)
    print("\nNOT ALLOWED (referenced by a sample pickle, on no list -- review):", file=report)
    for e, srcs in sorted(not_allowed.items()):
        print(f"  {e}   <- {sorted(srcs)[:3]}", file=report)
    if unresolved:
        print("\nentries that do not resolve here (legacy names):", file=report)
        for e in unresolved:
            print(f"  {e}", file=report)
    if curated_unresolved:
        print("\ncurated entries that do not resolve here (old releases' names?):", file=report)
        for e in curated_unresolved:
            print(f"  {e}", file=report)
    if opts.verbose:
        print("\nfailures:", file=report)
        for f in rec.failures:
            print(f"  {f}", file=report)
    else:
        print(f"\n{len(rec.failures)} sample failures (--verbose lists them)", file=report)
    if opts.check and changed:
        print(f"\nout of date: {', '.join(changed)}", file=report)
        return 1
    print(f"\n{'would change' if opts.check else 'wrote'}: {', '.join(changed) or 'nothing'}", file=report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

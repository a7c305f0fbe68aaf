"""A catalogue of pickle gadgets that use ONLY names on picklefence's pre-roles default allowlist.

Every gadget here imports nothing but names `Policy.ml_default()` allowed before roles existed
(recorded in `BASELINE_ALLOWED`), and still reads files into the loaded object, writes or deletes
files, creates directories, starts worker processes, corrupts the heap, rewrites process-wide
state, exhausts memory or CPU, or plants callables that run on first ordinary use. They are the
test corpus for roles (tests/test_gadgets.py): each must be refused by the guard and reported by
the scanner with one of its `expected_kinds`.

The red-team block at the end (classes 4, 5, 6 and 9 after "found by red-teaming") was found
against the roles build (9b96550): those gadgets load under the guard and scan clean there, so
their guard and scanner tests fail until the checker is fixed. Two of their names were added to
the policy only with roles (`ROLES_ERA_ALLOWED`); one gadget is a stream of two pickles read by one
Unpickler (container "pickle-stream").

Every effect is harmless: it happens inside a per-gadget pytest tmp dir, inside the subprocess
that loads the file (process-wide values), or is bounded by resource limits (CPU seconds, address
space) so that a denial of service shows as a limit hit instead of a hung or swapping machine.

The file is also the harness: `runner_main()` is run in a subprocess by the tests; it imports the
libraries once and forks one child per gadget (limits set in the child), so a crash, a hang or a
process-wide rewrite stays in that child.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import resource
import signal
import struct
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Set, Tuple, Union

# ============================================================================================
# A tiny opcode assembler. Expressions are trees of the node classes below and plain Python
# data (None, bool, int, float, str, bytes, tuple, list, dict); `dumps` turns one into a pickle.
# The names every G node (and every Lit fragment) imports are recorded on the result.


class G:
    """An import: GLOBAL at protocol < 4, SHORT_BINUNICODE x2 + STACK_GLOBAL at protocol 4."""

    def __init__(self, module: str, qualname: str) -> None:
        self.module, self.qualname = module, qualname


class Call:
    """f(*args) by REDUCE."""

    def __init__(self, f: Any, *args: Any) -> None:
        self.f, self.args = f, args


class New:
    """cls.__new__(cls, *args) by NEWOBJ (no constructor runs)."""

    def __init__(self, cls: Any, *args: Any) -> None:
        self.cls, self.args = cls, args


class Build:
    """obj, state, BUILD."""

    def __init__(self, obj: Any, state: Any) -> None:
        self.obj, self.state = obj, state


class SetItem:
    """target[key] = value by SETITEM (on any object: CPython calls its __setitem__); the
    target stays as the value."""

    def __init__(self, target: Any, key: Any, value: Any) -> None:
        self.target, self.key, self.value = target, key, value


class Put:
    """Emit `expr` and memoize it under `key` (BINPUT/LONG_BINPUT)."""

    def __init__(self, key: str, expr: Any) -> None:
        self.key, self.expr = key, expr


class Ref:
    """The memoized object `key` (LONG_BINGET)."""

    def __init__(self, key: str) -> None:
        self.key = key


class Lit:
    """A real Python object, pickled at protocol 2 in fast mode (no memo) and spliced in."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj


class Pid:
    """A persistent id (BINPERSID), e.g. a torch storage record."""

    def __init__(self, pid: Any) -> None:
        self.pid = pid


class JoblibArray:
    """A joblib NumpyArrayWrapper followed by its raw array bytes, as joblib.dump writes them."""

    def __init__(self, array: Any) -> None:
        self.array = array


class Pickled(bytes):
    """Pickle bytes that remember which (module, qualname) they import."""

    names: FrozenSet[Tuple[str, str]] = frozenset()


def _fragment(obj: Any) -> Tuple[bytes, Set[Tuple[str, str]]]:
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=2, fix_imports=False)
    p.fast = True
    p.dump(obj)
    data = buf.getvalue()
    assert data[:2] == b"\x80\x02" and data[-1:] == b"."
    return data[2:-1], names_in_pickle(data)


class Asm:
    def __init__(self, proto: int) -> None:
        self.proto = proto
        self.out = bytearray(b"\x80" + bytes([proto]))
        self.memo: Dict[str, int] = {}
        self.names: Set[Tuple[str, str]] = set()

    def text(self, s: str) -> None:
        b = s.encode("utf-8")
        if self.proto >= 4 and len(b) < 256:
            self.out += b"\x8c" + bytes([len(b)]) + b
        else:
            self.out += b"X" + struct.pack("<I", len(b)) + b

    def emit(self, x: Any) -> None:
        o = self.out
        if isinstance(x, G):
            self.names.add((x.module, x.qualname))
            if self.proto >= 4:
                self.text(x.module)
                self.text(x.qualname)
                o += b"\x93"
            else:
                o += b"c" + x.module.encode() + b"\n" + x.qualname.encode() + b"\n"
        elif isinstance(x, Call):
            self.emit(x.f)
            self.emit(tuple(x.args))
            o += b"R"
        elif isinstance(x, New):
            self.emit(x.cls)
            self.emit(tuple(x.args))
            o += b"\x81"
        elif isinstance(x, Build):
            self.emit(x.obj)
            self.emit(x.state)
            o += b"b"
        elif isinstance(x, SetItem):
            self.emit(x.target)
            self.emit(x.key)
            self.emit(x.value)
            o += b"s"
        elif isinstance(x, Put):
            self.emit(x.expr)
            idx = self.memo.setdefault(x.key, len(self.memo))
            o += b"r" + struct.pack("<I", idx)
        elif isinstance(x, Ref):
            o += b"j" + struct.pack("<I", self.memo[x.key])
        elif isinstance(x, Lit):
            frag, names = _fragment(x.obj)
            self.names |= names
            o += frag
        elif isinstance(x, Pid):
            self.emit(x.pid)
            o += b"Q"
        elif isinstance(x, JoblibArray):
            self.joblib_array(x.array)
        elif x is None:
            o += b"N"
        elif x is True:
            o += b"\x88"
        elif x is False:
            o += b"\x89"
        elif isinstance(x, int):
            if 0 <= x < 256:
                o += b"K" + bytes([x])
            elif -(2**31) <= x < 2**31:
                o += b"J" + struct.pack("<i", x)
            else:
                n = x.to_bytes((x.bit_length() + 8) // 8, "little", signed=True)
                o += b"\x8a" + bytes([len(n)]) + n
        elif isinstance(x, float):
            o += b"G" + struct.pack(">d", x)
        elif isinstance(x, str):
            self.text(x)
        elif isinstance(x, bytes):
            o += b"B" + struct.pack("<I", len(x)) + x
        elif isinstance(x, tuple):
            if not x:
                o += b")"
            else:
                o += b"("
                for item in x:
                    self.emit(item)
                o += b"t"
        elif isinstance(x, list):
            o += b"]"
            if x:
                o += b"("
                for item in x:
                    self.emit(item)
                o += b"e"
        elif isinstance(x, dict):
            o += b"}"
            if x:
                o += b"("
                for k, v in x.items():
                    self.emit(k)
                    self.emit(v)
                o += b"u"
        else:
            raise TypeError(f"cannot assemble {type(x).__name__}")

    def joblib_array(self, array: Any) -> None:
        dtype = Build(
            Call(G("numpy", "dtype"), array.dtype.str[1:], False, True), Lit(array.dtype.__reduce__()[2])
        )
        state = {
            "subclass": G("numpy", "ndarray"),
            "shape": tuple(array.shape),
            "order": "C",
            "dtype": dtype,
            "allow_mmap": True,
            "numpy_array_alignment_bytes": 16,
        }
        self.emit(Build(New(G("joblib.numpy_pickle", "NumpyArrayWrapper")), state))
        pos_after_padding_byte = len(self.out) + 1
        pad = 16 - (pos_after_padding_byte % 16)
        self.out += bytes([pad]) + b"\xff" * pad + array.tobytes()


def dumps(x: Any, proto: int = 2) -> Pickled:
    asm = Asm(proto)
    asm.emit(x)
    asm.out += b"."
    out = Pickled(bytes(asm.out))
    out.names = frozenset(asm.names)
    return out


def names_in_pickle(data: bytes) -> Set[Tuple[str, str]]:
    """Every (module, qualname) a pickle imports by GLOBAL/INST or STACK_GLOBAL of constants."""
    names: Set[Tuple[str, str]] = set()
    strings: List[str] = []
    for op, arg, _pos in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            module, _, qualname = str(arg).partition(" ")
            names.add((module, qualname))
        elif op.name == "STACK_GLOBAL":
            names.add((strings[-2], strings[-1]))
        if isinstance(arg, str) and op.name.endswith("UNICODE"):
            strings.append(arg)
    return names


# ============================================================================================
# Containers


def torch_zip(pkl: Pickled, storages: Optional[Dict[str, bytes]] = None) -> Pickled:
    """A torch.save-style zip (every member torch.save writes) whose data.pkl is `pkl`."""
    import torch

    template = io.BytesIO()
    torch.save({}, template)
    src = zipfile.ZipFile(io.BytesIO(template.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", bytes(pkl))
        for info in src.infolist():
            if info.filename == "archive/data.pkl" or info.filename.startswith("archive/data/"):
                continue
            z.writestr(info.filename, src.read(info.filename))
        for key, raw in (storages or {}).items():
            z.writestr(f"archive/data/{key}", raw)
    result = Pickled(out.getvalue())
    result.names = pkl.names
    return result


def joblib_file(body: Any) -> Pickled:
    """A joblib file: a real NumpyArrayWrapper with its array bytes next to the gadget."""
    import numpy as np

    return dumps({"weights": JoblibArray(np.arange(16, dtype=np.float64)), "model": body})


# ============================================================================================
# The catalogue entry


@dataclass
class Gadget:
    name: str
    klass: int
    describe: str
    build: Callable[[Path], Union[bytes, Path]]
    effect: Callable[[Path], bool]
    # "pickle" | "pickle-stream" (two load() calls of one Unpickler) | "torch-zip" | "torch-legacy" | "joblib"
    container: str
    expected_kinds: Tuple[str, ...]
    use: Optional[Callable[[Any, Path], Any]] = None
    probe: Optional[Callable[[Any, Path], Dict[str, Any]]] = None  # in the loading process
    chain: str = ""
    shows: str = ""
    requires: Tuple[str, ...] = ()
    cpu_seconds: int = 30
    wall_seconds: int = 60
    mem_budget_mb: int = 1536

    @property
    def suffix(self) -> str:
        return {
            "pickle": ".pkl",
            "pickle-stream": ".pkl",
            "torch-zip": ".pt",
            "torch-legacy": ".pt",
            "joblib": ".joblib",
        }[self.container]


# Finding kinds.
ROLE = "role-violation"
ARG = "argument-violation"
BUILDV = "build-violation"
STATE = "state-violation"
INDIRECT = "indirect-call"
UNSAFE_BUILD = "unsafe-build"
INJECTION = "state-injection"

SECRET = "picklefence_secret_token_7f3a"
WRITTEN = "written by a pickle"

# ============================================================================================
# Evidence: the child writes _child.json (load/use outcome) and _probe.json (what the probe saw);
# the runner writes _outcome.json (exit status, signal, time, peak memory). Effects read them.


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def outcome(tmp: Path) -> Dict[str, Any]:
    out = _read_json(tmp / "_child.json")
    out.update(_read_json(tmp / "_outcome.json"))
    return out


def probe_of(tmp: Path) -> Dict[str, Any]:
    return _read_json(tmp / "_probe.json")


CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}
EXHAUSTION_TEXT = (
    "MemoryError",
    "can't allocate memory",
    "Cannot allocate memory",
    "bad_alloc",
    "not enough memory",
    "Unable to allocate",
)


def crashed(tmp: Path) -> bool:
    """The loading process died of a memory-safety signal (heap corruption, wild pointer)."""
    o = outcome(tmp)
    return o.get("signal") in CRASH_SIGNALS


def exhausted(tmp: Path) -> bool:
    """The load (or use) ran into the CPU or address-space budget, or past the wall clock."""
    o = outcome(tmp)
    if o.get("unsafe"):
        return False
    if o.get("timed_out") or o.get("signal") in (signal.SIGXCPU, signal.SIGKILL):
        return True
    text = f"{o.get('error', '')} {o.get('use', '')}"
    return any(t in text for t in EXHAUSTION_TEXT)


def peak_growth(mb: int) -> Callable[[Path], bool]:
    def effect(tmp: Path) -> bool:
        o = outcome(tmp)
        return not o.get("unsafe") and float(o.get("peak_growth_mb", 0)) >= mb

    return effect


def probe_true(key: str) -> Callable[[Path], bool]:
    return lambda tmp: bool(probe_of(tmp).get(key))


def file_contains(rel: str, text: str) -> Callable[[Path], bool]:
    def effect(tmp: Path) -> bool:
        try:
            return text in (tmp / rel).read_text()
        except OSError:
            return False

    return effect


def dir_exists(rel: str) -> Callable[[Path], bool]:
    return lambda tmp: (tmp / rel).is_dir()


def file_gone(rel: str) -> Callable[[Path], bool]:
    return lambda tmp: not (tmp / rel).exists() and (tmp / "_child.json").exists()


def any_of(*effects: Callable[[Path], bool]) -> Callable[[Path], bool]:
    return lambda tmp: any(e(tmp) for e in effects)


# ---- probes (run in the loading child after load and use)


def _children() -> List[str]:
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = stat.rsplit(")", 1)[1].split()[1]
            if ppid == me:
                cmd = (
                    Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
                found.append(f"{entry} {cmd[:200]}")
        except (OSError, IndexError):
            continue
    return found


def probe_workers(obj: Any, tmp: Path) -> Dict[str, Any]:
    kids = _children()
    return {"children": kids, "workers": any("loky" in k or "joblib" in k for k in kids)}


def probe_partial_state(obj: Any, tmp: Path) -> Dict[str, Any]:
    from accelerate.state import PartialState

    shared = dict(PartialState._shared_state)
    return {"partial_state_initialized": bool(shared), "keys": sorted(shared)}


def probe_tzutc(obj: Any, tmp: Path) -> Dict[str, Any]:
    import datetime

    from dateutil.tz.tz import tzutc

    name = datetime.datetime(2020, 1, 1, tzinfo=tzutc()).tzname()
    return {"tzname": name, "rewritten": name != "UTC"}


def probe_rss(obj: Any, tmp: Path) -> Dict[str, Any]:
    return {"type": type(obj).__name__}


def _params(obj: Any) -> int:
    return int(sum(p.numel() for p in obj.parameters())) if hasattr(obj, "parameters") else 0


# ============================================================================================
# Building blocks (all names below are on the pre-roles default policy)

STR = G("builtins", "str")
NEWOBJ_FN = G("copyreg", "__newobj__")
REBUILD_FROM_TYPE = G("torch._tensor", "_rebuild_from_type_v2")
SCORER = G("sklearn.metrics._scorer", "_Scorer")
ARGNS = G("argparse", "Namespace")
POSIX_PATH = G("pathlib", "PosixPath")
GEN_CTOR = G("numpy.random._pickle", "__generator_ctor")
BITGEN_CTOR = G("numpy.random._pickle", "__bit_generator_ctor")
RS_CTOR = G("numpy.random._pickle", "__randomstate_ctor")
TRANSFORMER = G("torch.nn.modules.transformer", "Transformer")
PARTIAL_STATE = G("accelerate.state", "PartialState")
ODICT = G("collections", "OrderedDict")
NP_MEAN = G("numpy", "mean")


def scorer(method: Any) -> Build:
    """A sklearn _Scorer, NEWOBJ + BUILD as real scorers pickle: scorer(est, X, y) calls
    getattr(est, method)(X), then copyreg.__newobj__(y, result) == str(result) when y is str."""
    state = {"_score_func": NEWOBJ_FN, "_sign": 1, "_kwargs": {}, "_response_method": method}
    return Build(New(SCORER), state)


def call_object(func: Any, args: Tuple[Any, ...], result_type: Any = STR) -> Call:
    """torch._tensor._rebuild_from_type_v2(func, result_type, args, {}) == func(*args): calls a
    value taken from the stack (any object the pickle built) with any arguments."""
    return Call(REBUILD_FROM_TYPE, func, result_type, tuple(args), {})


def dispatch(method: str, estimator: Any, x: Any) -> Call:
    """estimator.<method>(x) at load time: a scorer called through _rebuild_from_type_v2."""
    return call_object(scorer(method), (estimator, x, STR))


def estimator(module: str, name: str, state: Dict[str, Any], **override: Any) -> Build:
    """An estimator as real pickles write it (NEWOBJ + BUILD of its __dict__), some keys replaced."""
    full: Dict[str, Any] = {k: Lit(v) for k, v in state.items()}
    full.update(override)
    return Build(New(G(module, name)), full)


def posix_path(p: Path) -> Call:
    return Call(POSIX_PATH, str(p))


def namespace(**attrs: Any) -> Build:
    """An argparse.Namespace (pickled as NEWOBJ + BUILD of its attributes) with chosen attributes."""
    return Build(New(ARGNS), dict(attrs))


def wild_pointer_namespace(**more: Any) -> Build:
    """A namespace whose __array_interface__ says: 64 KiB of float64 at address 0x10000."""
    interface = {"version": 3, "shape": (1 << 13,), "typestr": "<f8", "data": (0x10000, False)}
    return namespace(__array_interface__=interface, **more)


def _fit_data() -> Tuple[Any, Any]:
    import numpy as np

    x = np.array(
        [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 0.0], [2.0, 3.0, 1.0]]
    )
    y = np.array([0, 0, 0, 1, 1, 1])
    return x, y


def _model(obj: Any) -> Any:
    """The model of a joblib_file() container (a dict next to real array weights), else obj."""
    return obj["model"] if isinstance(obj, dict) and "model" in obj else obj


def _state(obj: Any) -> Dict[str, Any]:
    return dict(obj.__getstate__())


def _quiet() -> None:
    import warnings

    warnings.filterwarnings("ignore")


# ============================================================================================
# Class 1: higher-order entries call a value taken from the stack


def b_rebuild_scorer_reads_file(tmp: Path) -> bytes:
    from sklearn.feature_extraction.text import CountVectorizer

    secret = tmp / "secret.txt"
    secret.write_text(f"{SECRET} hunter2\n")
    vec = Put(
        "vec",
        estimator(
            "sklearn.feature_extraction.text", "CountVectorizer", _state(CountVectorizer(input="filename"))
        ),
    )
    return dumps({"model": vec, "score": dispatch("fit", Ref("vec"), [str(secret)])})


def p_vocabulary(obj: Any, tmp: Path) -> Dict[str, Any]:
    vocab = getattr(obj["model"], "vocabulary_", {})
    return {"vocabulary": sorted(vocab), "secret_read": SECRET in vocab}


def b_rebuild_scorer_memory_mkdir(tmp: Path) -> bytes:
    from sklearn.cluster import AgglomerativeClustering

    est = estimator(
        "sklearn.cluster._agglomerative",
        "AgglomerativeClustering",
        _state(AgglomerativeClustering(n_clusters=2, memory=str(tmp / "cache_tree"))),
    )
    x = [[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]]
    return torch_zip(dumps({"state_dict": {}, "eval": dispatch("fit", est, x)}))


def b_generator_ctor_partial_state(tmp: Path) -> bytes:
    return dumps({"rng": Call(GEN_CTOR, True, PARTIAL_STATE)})


def b_bit_generator_ctor_transformer(tmp: Path) -> bytes:
    return dumps({"rng": Call(BITGEN_CTOR, TRANSFORMER)})


def p_transformer(obj: Any, tmp: Path) -> Dict[str, Any]:
    rng = obj["rng"]
    return {"type": type(rng).__name__, "params": _params(rng), "allocated": _params(rng) > 40_000_000}


def b_randomstate_ctor_fraction(tmp: Path) -> bytes:
    return dumps({"rng": Call(RS_CTOR, "1e1000000000", G("fractions", "Fraction"))})


def b_setstate_namespace(tmp: Path) -> bytes:
    ns = Build(Build(New(ARGNS), {"__setstate__": BITGEN_CTOR, "lr": 0.001}), TRANSFORMER)
    return dumps({"hparams": ns})


def b_setstate_estimator_partial_state(tmp: Path) -> bytes:
    from sklearn.linear_model import LogisticRegression

    x, y = _fit_data()
    lr = estimator(
        "sklearn.linear_model._logistic",
        "LogisticRegression",
        _state(LogisticRegression().fit(x, y)),
        __setstate__=PARTIAL_STATE,
    )
    return dumps(Build(lr, True))


def p_partial_state_and_type(obj: Any, tmp: Path) -> Dict[str, Any]:
    out = probe_partial_state(obj, tmp)
    out["type"] = type(obj).__name__
    return out


def b_newobj_attribute_dispatch(tmp: Path) -> bytes:
    return dumps(
        {"metric": Call(G("sklearn.neighbors._kd_tree", "newObj"), wild_pointer_namespace(__new__=NP_MEAN))}
    )


def b_reconstructor_base_dispatch(tmp: Path) -> bytes:
    base = namespace(__new__=GEN_CTOR)
    return dumps({"buf": Call(G("copyreg", "_reconstructor"), 12 * 2**30, base, G("builtins", "bytearray"))})


# ============================================================================================
# Class 2: methods that dispatch on strings in their state


def _stacking_state() -> Dict[str, Any]:
    from sklearn.ensemble import StackingClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = _fit_data()
    sc = StackingClassifier([("lr", LogisticRegression())], final_estimator=LogisticRegression(), cv=2)
    return _state(sc.fit(x, y))


def stacking(estimators: List[Any], methods: List[str]) -> Build:
    state = {k: v for k, v in _stacking_state().items() if k not in ("estimators_", "stack_method_")}
    return estimator(
        "sklearn.ensemble._stacking",
        "StackingClassifier",
        state,
        estimators_=estimators,
        stack_method_=methods,
    )


def b_stacking_write_text(tmp: Path) -> bytes:
    target = posix_path(tmp / "written.txt")
    return dumps({"model": dispatch("transform", stacking([target], ["write_text"]), WRITTEN)})


def b_stacking_unlink(tmp: Path) -> bytes:
    (tmp / "victim.txt").write_text("a file the pickle deletes\n")
    target = posix_path(tmp / "victim.txt")
    return joblib_file(dispatch("predict", stacking([target], ["unlink"]), False))


def b_scorer_gridsearch_spawns(tmp: Path) -> bytes:
    from sklearn.cluster import KMeans
    from sklearn.model_selection import GridSearchCV

    grid = GridSearchCV(KMeans(n_clusters=2, n_init=1, random_state=0), {"n_clusters": [2]}, cv=2, n_jobs=2)
    est = estimator("sklearn.model_selection._search", "GridSearchCV", _state(grid))
    x = [[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0], [0.5, 0.5], [5.5, 5.5]]
    return dumps({"search": dispatch("fit", est, x)})


def b_stacking_memory_use(tmp: Path) -> bytes:
    from sklearn.cluster import AgglomerativeClustering

    agg = Lit(AgglomerativeClustering(n_clusters=2, memory=str(tmp / "cache_tree")))
    return dumps(stacking([agg], ["fit"]))


def u_predict(obj: Any, tmp: Path) -> Any:
    import numpy as np

    return _model(obj).predict(np.random.RandomState(0).rand(6, 3))


def b_chain_method_spawn_use(tmp: Path) -> bytes:
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.multioutput import ClassifierChain

    x, y = _fit_data()
    chain = ClassifierChain(LogisticRegression(), order=[0, 1]).fit(x, np.stack([y, 1 - y], axis=1))
    grid = GridSearchCV(KMeans(n_clusters=2, n_init=1, random_state=0), {"n_clusters": [2]}, cv=2, n_jobs=2)
    state = {k: v for k, v in _state(chain).items() if k not in ("estimators_", "chain_method_")}
    return joblib_file(
        estimator(
            "sklearn.multioutput", "ClassifierChain", state, estimators_=[Lit(grid)], chain_method_="fit"
        )
    )


def b_fixed_threshold_memory_use(tmp: Path) -> bytes:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import FixedThresholdClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _fit_data()
    fixed = FixedThresholdClassifier(LogisticRegression(), threshold=0.5).fit(x, y)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(x, y)
    pipe.memory = str(tmp / "cache_tree")
    state = {k: v for k, v in _state(fixed).items() if k not in ("estimator_", "response_method")}
    return dumps(
        estimator(
            "sklearn.model_selection._classification_threshold",
            "FixedThresholdClassifier",
            state,
            estimator_=Lit(pipe),
            response_method="fit",
        )
    )


def b_select_from_model_getter_use(tmp: Path) -> bytes:
    from sklearn.feature_selection import SelectFromModel
    from sklearn.linear_model import LogisticRegression

    x, y = _fit_data()
    sfm = SelectFromModel(LogisticRegression()).fit(x, y)
    state = {k: v for k, v in _state(sfm).items() if k not in ("estimator_", "importance_getter")}
    return dumps(
        estimator(
            "sklearn.feature_selection._from_model",
            "SelectFromModel",
            state,
            estimator_="1e1000000000",
            importance_getter=G("fractions", "Fraction"),
        )
    )


def u_transform_3(obj: Any, tmp: Path) -> Any:
    import numpy as np

    return _model(obj).transform(np.random.RandomState(0).rand(4, 3))


# ============================================================================================
# Class 3: classes called by REDUCE with chosen arguments (their pickles are NEWOBJ + BUILD)


def tzif(abbr: bytes = b"PWND", offset: int = 5 * 3600) -> bytes:
    """A minimal TZif v1 file with one zone type."""
    chars = abbr + b"\0"
    header = b"TZif" + b"\0" + b"\0" * 15 + struct.pack(">6l", 0, 0, 0, 0, 1, len(chars))
    return header + struct.pack(">lBB", offset, 0, 0) + chars


def b_datetimetz_dtype_reads(tmp: Path) -> bytes:
    (tmp / "zone.tzif").write_bytes(tzif())
    dtype = Call(G("pandas.core.dtypes.dtypes", "DatetimeTZDtype"), "ns", f"dateutil/{tmp / 'zone.tzif'}")
    return dumps({"dtype": dtype})


def p_zone_from_file(obj: Any, tmp: Path) -> Dict[str, Any]:
    import datetime

    tz = obj["dtype"].tz if "dtype" in obj else obj["index"].tz
    name = tz.tzname(datetime.datetime(2020, 1, 1))
    return {"tz": repr(tz), "tzname": name, "read": name == "PWND"}


def b_new_datetimeindex_reads(tmp: Path) -> bytes:
    import numpy as np

    (tmp / "zone.tzif").write_bytes(tzif())
    d = {
        "data": Lit(np.array([0], "M8[ns]")),
        "tz": f"dateutil/{tmp / 'zone.tzif'}",
        "freq": None,
        "name": None,
    }
    idx = Call(
        G("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
        G("pandas.core.indexes.datetimes", "DatetimeIndex"),
        d,
    )
    return joblib_file({"index": idx})


def p_zone_joblib(obj: Any, tmp: Path) -> Dict[str, Any]:
    return p_zone_from_file(obj["model"], tmp)


def b_new_index_dtype_string(tmp: Path) -> bytes:
    (tmp / "zone.tzif").write_bytes(tzif())
    d = {"data": [0], "dtype": f"datetime64[ns, dateutil/{tmp / 'zone.tzif'}]"}
    idx = Call(G("pandas.core.indexes.base", "_new_Index"), G("pandas.core.indexes.base", "Index"), d)
    return dumps({"index": idx})


def b_linear_allocates(tmp: Path) -> bytes:
    return torch_zip(dumps({"head": Call(G("torch.nn.modules.linear", "Linear"), 60000, 60000)}))


def b_transformer_encoder_copies(tmp: Path) -> bytes:
    layer = Call(G("torch.nn.modules.transformer", "TransformerEncoderLayer"), 512, 8)
    return dumps({"encoder": Call(G("torch.nn.modules.transformer", "TransformerEncoder"), layer, 100000)})


def b_lil_matrix_rows(tmp: Path) -> bytes:
    return dumps({"adjacency": Call(G("scipy.sparse._lil", "lil_matrix"), (10**9, 10))})


def b_dataframe_fill(tmp: Path) -> bytes:
    frame = Call(G("pandas.core.frame", "DataFrame"), 0.0, Call(G("builtins", "range"), 2 * 10**9), [0])
    return joblib_file({"frame": frame})


# ============================================================================================
# Class 4: plain-data constructors as denial of service

RANGE = G("builtins", "range")


def b_set_range(tmp: Path) -> bytes:
    return dumps({"vocab": Call(G("builtins", "set"), Call(RANGE, 10**10))})


def b_deque_range(tmp: Path) -> bytes:
    return dumps({"buffer": Call(G("collections", "deque"), Call(RANGE, 10**18), 0)})


def b_frozenset_range(tmp: Path) -> bytes:
    return joblib_file({"classes": Call(G("builtins", "frozenset"), Call(RANGE, 10**10))})


def b_bytearray_size(tmp: Path) -> bytes:
    return torch_zip(dumps({"buffer": Call(G("builtins", "bytearray"), 12 * 2**30)}))


def b_fraction_exponent(tmp: Path) -> bytes:
    return dumps({"lr": Call(G("fractions", "Fraction"), "1e1000000000")})


def b_decimal_int(tmp: Path) -> bytes:
    return dumps({"steps": Call(G("builtins", "int"), Call(G("decimal", "Decimal"), "1e999999999"))})


def b_object_array_shape(tmp: Path) -> bytes:
    import numpy as np

    arr = Call(G("numpy._core.multiarray", "_reconstruct"), G("numpy", "ndarray"), (0,), b"b")
    dtype = Build(Call(G("numpy", "dtype"), "O", False, True), Lit(np.dtype("O").__reduce__()[2]))
    return dumps({"labels": Build(arr, (1, (2 * 10**9,), dtype, False, []))})


def b_counter_range(tmp: Path) -> bytes:
    return torch_zip(dumps({"counts": Call(G("collections", "Counter"), Call(RANGE, 10**10))}))


def b_dummy_n_outputs(tmp: Path) -> bytes:
    from sklearn.dummy import DummyRegressor

    x, y = _fit_data()
    return dumps(
        estimator("sklearn.dummy", "DummyRegressor", _state(DummyRegressor().fit(x, y)), n_outputs_=3 * 10**8)
    )


def b_upsample_scale(tmp: Path) -> bytes:
    import torch

    up = torch.nn.Upsample(scale_factor=2.0, mode="nearest")
    return torch_zip(dumps(_torch_module(up, scale_factor=20000.0)))


def u_forward_image(obj: Any, tmp: Path) -> Any:
    import torch

    return obj(torch.ones(1, 1, 4, 4))


def b_newobj_ndarray(tmp: Path) -> bytes:
    return dumps({"labels": New(G("numpy", "ndarray"), (2 * 10**9,), "O")})


def b_torch_size_range(tmp: Path) -> bytes:
    return torch_zip(dumps({"shape": Call(G("torch", "Size"), Call(RANGE, 10**9))}))


def b_list_range(tmp: Path) -> bytes:
    return joblib_file({"ids": Call(G("builtins", "list"), Call(RANGE, 10**9))})


# ============================================================================================
# Class 5: BUILD (or set state) on something that is not fresh


def b_tzutc_singleton(tmp: Path) -> bytes:
    return dumps({"tz": Build(Call(G("dateutil.tz.tz", "tzutc")), {"tzname": STR})})


def b_tzutc_setattr_rebuild(tmp: Path) -> bytes:
    tzutc = G("dateutil.tz.tz", "tzutc")
    return torch_zip(dumps({"tz": Call(REBUILD_FROM_TYPE, tzutc, tzutc, (), {"tzname": STR})}))


def b_masked_constant(tmp: Path) -> bytes:
    import numpy as np

    state = (1, (3,), np.dtype("f8"), False, b"\x01" * 24, b"\x00\x00\x00", None)
    return dumps({"fill": Build(Call(G("numpy.ma.core", "MaskedConstant")), Lit(state))})


def p_masked(obj: Any, tmp: Path) -> Dict[str, Any]:
    import numpy as np

    return {"shape": list(np.ma.masked.shape), "rewritten": np.ma.masked.shape != ()}


def b_distributed_type_enum(tmp: Path) -> bytes:
    member = Call(G("accelerate.utils.dataclasses", "DistributedType"), "NO")
    return joblib_file({"distributed_type": Build(member, {"_value_": "MULTI_GPU", "_name_": "MULTI_GPU"})})


def p_distributed_type(obj: Any, tmp: Path) -> Dict[str, Any]:
    from accelerate.utils.dataclasses import DistributedType

    return {"NO.value": DistributedType.NO.value, "rewritten": DistributedType.NO.value != "NO"}


# ============================================================================================
# Class 6 (first half): compiled internals trusting indices and pointers from the pickle


def _kmeans_call(fn: str) -> Call:
    """A private k-means helper with 1-feature centres for a 10**5-feature X: the Cython loop
    takes n_features from X and zeroes n_clusters * n_features doubles from the centres' buffer
    (8 GB past an 80 KB allocation)."""
    import numpy as np

    x, centers = np.zeros((1, 10**5)), np.zeros((10**4, 1))
    return Call(G("sklearn.cluster._kmeans", fn), Lit(x), Lit(np.ones(1)), Lit(centers), 3, False, 0.0, 1)


def b_kmeans_lloyd(tmp: Path) -> bytes:
    return dumps({"clusters": _kmeans_call("_kmeans_single_lloyd")})


def b_kmeans_elkan(tmp: Path) -> bytes:
    return joblib_file({"clusters": _kmeans_call("_kmeans_single_elkan")})


def b_array_interface_mean(tmp: Path) -> bytes:
    return dumps({"mean": Call(NP_MEAN, wild_pointer_namespace())})


def b_tensor_from_wild_pointer(tmp: Path) -> bytes:
    import torch  # noqa: F401 - torch.device below is a name, torch must merely exist

    arr = Call(G("scipy._lib.array_api_compat.numpy._aliases", "asarray"), wild_pointer_namespace())
    tensor = Call(
        G("torch._utils", "_rebuild_device_tensor_from_numpy"),
        arr,
        G("torch", "float32"),
        Call(G("torch", "device"), "cpu"),
        False,
    )
    return torch_zip(dumps({"weight": tensor}))


def b_tensor_view_resizes_storage(tmp: Path) -> bytes:
    storage = Call(G("torch.storage", "TypedStorage"), 0)
    view = Call(G("torch._utils", "_rebuild_tensor_v2"), storage, 0, (4 * 2**30,), (1,), False, Call(ODICT))
    return torch_zip(dumps({"weight": view}))


def b_tensor_view_stale_heap(tmp: Path) -> bytes:
    views = {}
    for i in range(8):
        storage = Call(G("torch.storage", "TypedStorage"), 0)
        views[f"layer{i}.weight"] = Call(
            G("torch._utils", "_rebuild_tensor_v2"), storage, 0, (4096,), (1,), False, Call(ODICT)
        )
    return torch_zip(dumps(views))


def p_stale_heap(obj: Any, tmp: Path) -> Dict[str, Any]:
    raw = b"".join(t.detach().numpy().tobytes() for t in obj.values())
    printable = bytes(c for c in raw if 32 <= c < 127)
    return {"nonzero_bytes": sum(1 for c in raw if c), "of": len(raw), "sample": printable[:120].decode()}


# ============================================================================================
# Class 7: callables in the state, run at use time


def _torch_module(instance: Any, params: Optional[Dict[str, Any]] = None, **override: Any) -> Build:
    """An nn.Module as torch.save writes it: NEWOBJ + BUILD of its __dict__ (hook containers
    empty OrderedDicts, parameters rebuilt from persistent storages), some keys replaced."""
    state: Dict[str, Any] = {}
    for k, v in instance.__dict__.items():
        if k in ("_parameters", "_buffers", "_modules"):
            continue
        state[k] = Call(ODICT) if k.startswith("_") and isinstance(v, dict) else Lit(v)
    state["_parameters"] = Call(ODICT, list((params or {}).items()))
    state["_buffers"] = Call(ODICT)
    state["_modules"] = Call(ODICT)
    state.update(override)
    cls = type(instance)
    return Build(New(G(cls.__module__, cls.__qualname__)), state)


def _module(name: str, params: Optional[Dict[str, Any]] = None, **override: Any) -> Build:
    """A Linear(4, 2) whose weight and bias are the zip's storages "w" and "b"."""
    import torch

    if params is None:
        params = {"weight": _param("w", (2, 4), (4, 1)), "bias": _param("b", (2,), (1,))}
    return _torch_module(torch.nn.Linear(4, 2), params, **override)


def _storage(key: str, numel: int) -> Pid:
    return Pid(("storage", G("torch", "FloatStorage"), key, "cpu", numel))


def _tensor(
    key: str, size: Tuple[int, ...], stride: Tuple[int, ...], grad: bool = False, hooks: Any = None
) -> Call:
    numel = 1
    for s in size:
        numel *= s
    return Call(
        G("torch._utils", "_rebuild_tensor_v2"),
        _storage(key, numel),
        0,
        size,
        stride,
        grad,
        hooks if hooks is not None else Call(ODICT),
    )


def _param(key: str, size: Tuple[int, ...], stride: Tuple[int, ...], hooks: Any = None) -> Call:
    return Call(
        G("torch._utils", "_rebuild_parameter"), _tensor(key, size, stride), True, hooks or Call(ODICT)
    )


def _module_zip(body: Any) -> bytes:
    storages = {"w": struct.pack("<8f", *[0.1] * 8), "b": struct.pack("<2f", 0.0, 0.0)}
    return torch_zip(dumps(body), storages)


def b_module_forward_pre_hook(tmp: Path) -> bytes:
    interface = {"version": 3, "shape": (1 << 13,), "typestr": "<f8", "data": (0x10000, False)}
    hooks = Call(ODICT, [(0, G("sklearn.utils.validation", "check_array"))])
    return _module_zip(_module("Linear", _forward_pre_hooks=hooks, __array_interface__=interface))


def u_forward(obj: Any, tmp: Path) -> Any:
    import torch

    return obj(torch.ones(1, 4))


def b_tensor_backward_hooks(tmp: Path) -> bytes:
    hooks = Call(ODICT, [(0, G("torch.nn.functional", "relu"))])
    storages = {"w": struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)}
    return torch_zip(dumps({"w": _tensor("w", (4,), (1,), grad=True, hooks=hooks)}), storages)


def u_backward(obj: Any, tmp: Path) -> Any:
    w = obj["w"] if isinstance(obj, dict) else obj.weight
    (w * -1.0).sum().backward()
    return w.grad


def p_grad(obj: Any, tmp: Path) -> Dict[str, Any]:
    w = obj["w"] if isinstance(obj, dict) else obj.weight
    grad = None if w.grad is None else [float(v) for v in w.grad.flatten()]
    return {"grad": grad, "tampered": grad is not None and any(v != -1.0 for v in grad)}


def b_parameter_backward_hooks(tmp: Path) -> bytes:
    hooks = Call(ODICT, [(0, G("torch._C._nn", "gelu"))])
    params = {"weight": _param("w", (2, 4), (4, 1), hooks=hooks), "bias": _param("b", (2,), (1,))}
    return _module_zip(_module("Linear", params))


def b_defaultdict_factory(tmp: Path) -> bytes:
    return dumps({"vocab": Call(G("collections", "defaultdict"), TRANSFORMER)})


def u_missing_key(obj: Any, tmp: Path) -> Any:
    return obj["vocab"]["a token the vocabulary has not seen"]


def p_defaultdict(obj: Any, tmp: Path) -> Dict[str, Any]:
    values = list(obj["vocab"].values())
    n = _params(values[0]) if values else 0
    return {
        "value_type": type(values[0]).__name__ if values else None,
        "params": n,
        "allocated": n > 40_000_000,
    }


def b_estimator_predict_attr(tmp: Path) -> bytes:
    from sklearn.linear_model import LogisticRegression

    x, y = _fit_data()
    return dumps(
        estimator(
            "sklearn.linear_model._logistic",
            "LogisticRegression",
            _state(LogisticRegression().fit(x, y)),
            predict=PARTIAL_STATE,
        )
    )


def b_function_transformer_lloyd(tmp: Path) -> bytes:
    import numpy as np
    from sklearn.preprocessing import FunctionTransformer

    kw = {
        "sample_weight": Lit(np.ones(4)),
        "centers_init": Lit(np.zeros((10**5, 1))),
        "max_iter": 3,
        "tol": 0.0,
        "n_threads": 1,
    }
    state = {
        k: v for k, v in _state(FunctionTransformer(validate=False)).items() if k not in ("func", "kw_args")
    }
    ft = estimator(
        "sklearn.preprocessing._function_transformer",
        "FunctionTransformer",
        state,
        func=G("sklearn.cluster._kmeans", "_kmeans_single_lloyd"),
        kw_args=kw,
    )
    return joblib_file(ft)


def u_transform_wide(obj: Any, tmp: Path) -> Any:
    import numpy as np

    return _model(obj).transform(np.ones((4, 20000)))


def b_module_forward_attr(tmp: Path) -> bytes:
    return _module_zip(_module("Linear", forward=PARTIAL_STATE))


# ============================================================================================
# Class 8: the transformers / accelerate block


def _ds_config(tmp: Path) -> Path:
    path = tmp / "ds_config.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}, "stolen": SECRET}))
    return path


def b_hf_deepspeed_config(tmp: Path) -> bytes:
    return dumps(
        {
            "hf_deepspeed_config": Call(
                G("accelerate.utils.deepspeed", "HfDeepSpeedConfig"), str(_ds_config(tmp))
            )
        }
    )


def p_ds_config(obj: Any, tmp: Path) -> Dict[str, Any]:
    cfg = obj["hf_deepspeed_config"] if "hf_deepspeed_config" in obj else obj["model"]["plugin"].hf_ds_config
    return {"config": cfg.config, "secret_read": cfg.config.get("stolen") == SECRET}


def b_deepspeed_plugin(tmp: Path) -> bytes:
    return joblib_file(
        {"plugin": Call(G("accelerate.utils.dataclasses", "DeepSpeedPlugin"), str(_ds_config(tmp)))}
    )


def b_training_args_accelerator_config(tmp: Path) -> bytes:
    from sklearn.preprocessing import FunctionTransformer

    acc = tmp / "accelerator_config.json"
    acc.write_text(json.dumps({"split_batches": False, "gradient_accumulation_kwargs": {"stolen": SECRET}}))
    state = {
        k: v for k, v in _state(FunctionTransformer(validate=False)).items() if k not in ("func", "kw_args")
    }
    ft = estimator(
        "sklearn.preprocessing._function_transformer",
        "FunctionTransformer",
        state,
        func=G("transformers.training_args", "TrainingArguments"),
        kw_args={"accelerator_config": str(acc), "report_to": "none", "use_cpu": True},
    )
    return dumps({"args": dispatch("transform", ft, str(tmp / "out"))})


def p_training_args(obj: Any, tmp: Path) -> Dict[str, Any]:
    out = probe_partial_state(obj, tmp)
    out["secret_read"] = SECRET in str(obj.get("args", ""))
    return out


def b_partial_state_reduce(tmp: Path) -> bytes:
    return dumps({"distributed_state": Call(PARTIAL_STATE, True)})


def b_partial_state_shared_build(tmp: Path) -> bytes:
    state = {"num_processes": 8, "process_index": 3, "local_process_index": 3}
    return torch_zip(dumps({"distributed_state": Build(Call(PARTIAL_STATE, True), state)}))


def p_partial_state_rank(obj: Any, tmp: Path) -> Dict[str, Any]:
    from accelerate.state import PartialState

    s = PartialState()
    return {
        "num_processes": s.num_processes,
        "is_main_process": s.is_main_process,
        "rewritten": not s.is_main_process,
    }


def b_interval_strategy_enum(tmp: Path) -> bytes:
    member = Call(G("transformers.trainer_utils", "IntervalStrategy"), "steps")
    return dumps({"save_strategy": Build(member, {"_value_": "no"})})


def p_interval_strategy(obj: Any, tmp: Path) -> Dict[str, Any]:
    from transformers.trainer_utils import IntervalStrategy

    return {"STEPS.value": IntervalStrategy.STEPS.value, "rewritten": IntervalStrategy.STEPS.value != "steps"}


# ============================================================================================
# Found by red-teaming the roles checker (everything below loads under the guard and scans
# clean with the roles build of 9b96550). Classes: 4 (use-time DoS), 5 (process-wide state),
# 6 (compiled internals trusting indices from the state, at use), 9 (checker-level bypasses:
# the analyzer's model of a value differs from what the loader does with it).


def _tz_path(tmp: Path) -> Path:
    (tmp / "zone.tzif").write_bytes(tzif())
    return tmp / "zone.tzif"


def b_odict_state_new_index(tmp: Path) -> bytes:
    """_new_Index(Index, STATE) where STATE is an OrderedDict *object*, not a dict literal: the
    `state` argument kind accepts any call result as plain data, so the `dtype` tz-name rule (and
    every other key rule) is never applied; Index.__new__(**state) still gets the keywords."""
    kwargs = Call(ODICT, [("data", [0]), ("dtype", f"datetime64[ns, dateutil/{_tz_path(tmp)}]")])
    idx = Call(G("pandas.core.indexes.base", "_new_Index"), G("pandas.core.indexes.base", "Index"), kwargs)
    return dumps({"index": idx})


def b_odict_state_parameter_hooks(tmp: Path) -> bytes:
    """_rebuild_parameter_with_state(t, True, OrderedDict(), STATE): the empty-hooks argument is
    checked, but STATE (an OrderedDict object) sets `_backward_hooks` again through
    torch._utils._set_obj_state, and the `_backward_hooks: empty` state rule is never applied."""
    hooks = Call(ODICT, [(0, G("torch.nn.functional", "relu"))])
    state = Call(ODICT, [("_backward_hooks", hooks)])
    param = Call(
        G("torch._utils", "_rebuild_parameter_with_state"), _tensor("w", (4,), (1,)), True, Call(ODICT), state
    )
    return torch_zip(dumps({"w": param}), {"w": struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)})


def b_odict_state_rebuild_from_type_hooks(tmp: Path) -> bytes:
    """The same through _rebuild_from_type_v2's `state` argument (a plain torch.Tensor)."""
    hooks = Call(ODICT, [(0, G("torch.nn.functional", "relu"))])
    args = (_storage("w", 4), 0, (4,), (1,), True, Call(ODICT))
    tensor = Call(
        REBUILD_FROM_TYPE,
        G("torch._utils", "_rebuild_tensor_v2"),
        G("torch", "Tensor"),
        args,
        Call(ODICT, [("_backward_hooks", hooks)]),
    )
    return torch_zip(dumps({"w": tensor}), {"w": struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)})


def b_memo_aliased_empty_hooks(tmp: Path) -> bytes:
    """_rebuild_tensor_v2(..., hooks=OrderedDict()) with the OrderedDict memoized: the argument is
    empty when the call is checked; a later SETITEMS through the memo fills it. torch keeps the
    very dict as tensor._backward_hooks, so backward() runs the planted hook."""
    asm = Asm(2)
    asm.out += b"}"
    asm.emit("w")
    hooks = Put("hooks", Call(ODICT))
    asm.emit(Call(G("torch._utils", "_rebuild_tensor_v2"), _storage("w", 4), 0, (4,), (1,), True, hooks))
    asm.out += b"s"
    asm.emit(Ref("hooks"))
    asm.out += b"("
    asm.emit(0)
    asm.emit(G("torch.nn.functional", "relu"))
    asm.out += b"u0."  # SETITEMS into the memoized OrderedDict, POP it, STOP (the dict is the result)
    pkl = Pickled(bytes(asm.out))
    pkl.names = frozenset(asm.names)
    return torch_zip(pkl, {"w": struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)})


def _np_str(text: str) -> Call:
    """numpy.str_(text), made as numpy pickles a str scalar: scalar(dtype('<U<n>'), UTF-32 bytes).
    A str subclass the analyzer sees as a call result, not a str constant."""
    dtype = Call(G("numpy", "dtype"), f"<U{len(text)}", False, True)
    return Call(G("numpy._core.multiarray", "scalar"), dtype, text.encode("utf-32-le"))


def b_npstr_dtype_string(tmp: Path) -> bytes:
    """_new_Index(Index, {'data': [0], 'dtype': numpy.str_('datetime64[ns, dateutil/PATH]')}): the
    key is watched, but `could_break(tz-name, <call result>)` is false, so it is never judged;
    pandas takes the str subclass as a dtype string and opens PATH."""
    d = {"data": [0], "dtype": _np_str(f"datetime64[ns, dateutil/{_tz_path(tmp)}]")}
    idx = Call(G("pandas.core.indexes.base", "_new_Index"), G("pandas.core.indexes.base", "Index"), d)
    return dumps({"index": idx})


def b_reconstructor_tuple_range(tmp: Path) -> bytes:
    """copyreg._reconstructor(Hyperparameter, tuple, range(10**10)): base.__new__(cls, state) is
    tuple.__new__(cls, range(10**10)), which materialises the range (the kernel Hyperparameter is a
    namedtuple, so tuple.__new__ accepts it; `data` admits the lazy range)."""
    hyper = Call(
        G("copyreg", "_reconstructor"),
        G("sklearn.gaussian_process.kernels", "Hyperparameter"),
        G("builtins", "tuple"),
        Call(RANGE, 10**10),
    )
    return dumps({"hyperparameter_length_scale": hyper})


def _wild_object_array(dtype: Any) -> Build:
    arr = Call(G("numpy._core.multiarray", "_reconstruct"), G("numpy", "ndarray"), (0,), b"b")
    return Build(arr, (1, (2,), dtype, False, struct.pack("<QQ", 0x10000, 0x10008)))


def b_dtype_object_spelled(tmp: Path) -> bytes:
    """numpy.dtype('object', False, True) with flags 0: the flags rule keys on the descr's first
    character ('O' -> 63), so 'object' (or '|O', or numpy.object_) gets the rule of a plain kind;
    the array's raw bytes become PyObject pointers."""
    dtype = Build(Call(G("numpy", "dtype"), "object", False, True), (3, "|", None, None, None, -1, -1, 0))
    return dumps({"labels": _wild_object_array(dtype)})


def b_dtype_structured_object_field(tmp: Path) -> bytes:
    """A structured 'V8' dtype with one object field and flags 0: structured dtypes may carry any
    flags, so numpy copies the raw bytes into the object field."""
    field = Call(G("numpy", "dtype"), "O8", False, True)
    dtype = Build(
        Call(G("numpy", "dtype"), "V8", False, True), (3, "|", None, ("a",), {"a": (field, 0)}, 8, 1, 0)
    )
    arr = Call(G("numpy._core.multiarray", "_reconstruct"), G("numpy", "ndarray"), (0,), b"b")
    return dumps({"table": Build(arr, (1, (1,), dtype, False, struct.pack("<Q", 0x10000)))})


def b_dtype_field_past_its_items(tmp: Path) -> bytes:
    """A 'V16' dtype with two object fields (flags 27, as numpy writes them), the second at byte
    2**40: numpy's dtype.__setstate__ checks no field against the item size, and the array's
    list of objects is stored field by field, 1 TiB past each 16-byte item (never mapped: 4 MiB
    past landed in mapped heap in one CI run and the write went unseen)."""
    obj = Call(G("numpy", "dtype"), "O8", False, True)
    fields = {"a": (obj, 0), "b": (obj, 1 << 40)}
    dtype = Build(
        Call(G("numpy", "dtype"), "V16", False, True), (3, "|", None, ("a", "b"), fields, 16, 1, 27)
    )
    arr = Call(G("numpy._core.multiarray", "_reconstruct"), G("numpy", "ndarray"), (0,), b"b")
    return dumps({"table": Build(arr, (1, (4,), dtype, False, [(1, 2)] * 4))})


def u_repr(obj: Any, tmp: Path) -> Any:
    return repr(obj)


def b_memo_across_loads(tmp: Path) -> bytes:
    """Two pickles read by one Unpickler (a stream of records): the memo outlives load(). Pickle 1
    memoizes DatetimeTZDtype (allowed only as reconstructed) and pops it; pickle 2 BINGETs it
    and calls it. The pre-scan of load #2 starts with an empty memo: 'memo key 0 was never
    stored' is only malformed-pickle, which the guard tolerates, and the callee is Unknown."""
    first = Asm(2)
    first.emit(Put("cls", G("pandas.core.dtypes.dtypes", "DatetimeTZDtype")))
    first.out += b"0N."
    second = Asm(2)
    second.out += b"}"
    second.emit("dtype")
    second.out += b"j" + struct.pack("<I", 0)
    second.emit(("ns", f"dateutil/{_tz_path(tmp)}"))
    second.out += b"Rs."
    out = Pickled(bytes(first.out) + bytes(second.out))
    out.names = frozenset(first.names)
    return out


def b_tree_node_children(tmp: Path) -> bytes:
    """A fitted DecisionTreeClassifier whose root's children are 10**9: Tree.__setstate__ checks
    the node array's dtype and shape only, and apply() follows node indices unchecked."""
    from sklearn.tree import DecisionTreeClassifier

    x, y = _fit_data()
    clf = DecisionTreeClassifier(random_state=0).fit(x, y)
    state = clf.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = nodes["right_child"][0] = 10**9
    state["nodes"] = nodes
    clf.tree_.__setstate__(state)
    return dumps(Lit(clf))


def b_kdtree_indices(tmp: Path) -> bytes:
    """KNeighborsClassifier(kd_tree) whose KDTree idx_array holds 10**12: the Cython query reads
    data[idx_array[i]] unchecked (reconstruct(state=any): the state tuple's arrays are data)."""
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _fit_data()
    knn = KNeighborsClassifier(n_neighbors=1, algorithm="kd_tree").fit(x, y)
    state = list(knn._tree.__getstate__())
    state[1] = state[1].copy()
    state[1][:] = 10**12
    knn._tree.__setstate__(tuple(state))
    return joblib_file(Lit(knn))


def b_tree_node_cycle(tmp: Path) -> bytes:
    """A fitted DecisionTreeClassifier whose root is its own child: every index is in bounds,
    and apply() walks the cycle forever."""
    from sklearn.tree import DecisionTreeClassifier

    x, y = _fit_data()
    clf = DecisionTreeClassifier(random_state=0).fit(x, y)
    state = clf.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = nodes["right_child"][0] = 0
    state["nodes"] = nodes
    clf.tree_.__setstate__(state)
    return joblib_file(Lit(clf))


def b_tree_paths_doubling(tmp: Path) -> bytes:
    """A fitted DecisionTreeRegressor whose 60 nodes form a chain, both children of each the
    next: every index in bounds and predict follows one path, but the depth-first partial
    dependence visits all 2**59 paths."""
    import numpy as np
    from sklearn.tree import DecisionTreeRegressor

    x = np.random.RandomState(0).rand(2000, 3)
    model = DecisionTreeRegressor(max_depth=6, random_state=0).fit(x, x[:, 0] + x[:, 1] * x[:, 2])
    state = model.tree_.__getstate__()
    nodes = state["nodes"][:60].copy()
    nodes["left_child"][:59] = nodes["right_child"][:59] = np.arange(1, 60)
    nodes["feature"][:59] = 1
    nodes["left_child"][59] = nodes["right_child"][59] = -1
    state.update(nodes=nodes, node_count=60, max_depth=59, values=state["values"][:60])
    model.tree_.__setstate__(state)
    return joblib_file(Lit(model))


def u_partial_dependence(obj: Any, tmp: Path) -> Any:
    import numpy as np
    from sklearn.inspection import partial_dependence

    return partial_dependence(_model(obj), np.random.RandomState(1).rand(20, 3), [0], method="recursion")


def b_csr_indices(tmp: Path) -> bytes:
    """A csr_matrix in a pipeline-like dict whose column index is 10**8: scipy's C++ kernels
    (matvec, toarray) index with it unchecked; unpickling runs no format check."""
    import numpy as np
    import scipy.sparse as sp

    matrix = sp.csr_matrix(np.eye(4))
    matrix.indices[1] = 10**8
    return dumps({"features": Lit(matrix)})


def u_matvec(obj: Any, tmp: Path) -> Any:
    import numpy as np

    return obj["features"] @ np.ones(4)


def b_hist_gb_predictor(tmp: Path) -> bytes:
    """HistGradientBoostingClassifier whose first predictor's root has its left child at
    4*10**9: the Cython predictor follows it unchecked."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.RandomState(0)
    x = rng.rand(200, 3)
    model = HistGradientBoostingClassifier(max_iter=2, random_state=0).fit(x, (x[:, 0] > 0.5).astype(int))
    model._predictors[0][0].nodes["left"][0] = 4_000_000_000
    return joblib_file(Lit(model))


def b_multi_index_code(tmp: Path) -> bytes:
    """A Series whose MultiIndex has code 2**31 - 1 for a level of 40,000 values: _new_Index
    makes the index with verify_integrity=False, and .values takes the level at its codes with
    bounds checks off (take_nd with fill)."""
    import numpy as np
    import pandas as pd

    index = pd.MultiIndex(
        levels=[np.arange(40_000.0)], codes=[np.array([0, 2**31 - 1], dtype=np.int32)], verify_integrity=False
    )
    return dumps(Lit(pd.Series([1.0, 2.0], index=index)))


def u_index_values(obj: Any, tmp: Path) -> Any:
    return obj.index.values


def b_masked_array_short_mask(tmp: Path) -> bytes:
    """An Int8 Series of 20,000,000 values whose mask holds one: nothing compares the two on
    unpickling (NEWOBJ and a BUILD of {_data, _mask}), and value_counts() reads mask[i] for every
    value with bounds checks off."""
    import numpy as np
    import pandas as pd

    values = pd.array(np.zeros(20_000_000, dtype=np.int8), dtype="Int8")
    object.__setattr__(values, "_mask", np.zeros(1, dtype=bool))
    return dumps(Lit(pd.Series(values)))


def p_masked_misread(obj: Any, tmp: Path) -> Dict[str, Any]:
    """value_counts of the 20,000,000 zeros, none missing: memory-safe code counts 20,000,000
    zeros; reading the mask past its end finds other bytes there (missing values appear) or
    dies."""
    counts = obj.value_counts(dropna=False)
    return {"misread": bool(counts.index.hasnans) or int(counts.get(0, 0)) != len(obj)}


def crashed_or_misread(tmp: Path) -> bool:
    return crashed(tmp) or probe_true("misread")(tmp)


def b_tree_wider_than_input(tmp: Path) -> bytes:
    """A DecisionTreeRegressor fitted on 3 features whose Tree says 100,000,000 features, its root
    splitting on the last: predict checks X against n_features_in_ (3), then the Tree reads
    X[i, 99_999_999] unchecked."""
    import numpy as np
    from sklearn.tree import DecisionTreeRegressor
    from sklearn.tree._tree import Tree

    x, y = _fit_data()
    model = DecisionTreeRegressor(max_depth=1).fit(x, y)
    state = model.tree_.__getstate__()
    state["nodes"] = state["nodes"].copy()
    state["nodes"]["feature"][0] = 10**8 - 1
    tree = Tree(10**8, np.array([1], dtype=np.intp), 1)
    tree.__setstate__(state)
    object.__setattr__(model, "tree_", tree)
    return joblib_file(Lit(model))


def b_svm_support_count(tmp: Path) -> bytes:
    """An SVC whose support_ holds 2,000,000 indices for its few support vectors: libsvm's
    set_model takes the vector count from support_ and reads that many rows."""
    import numpy as np
    from sklearn.svm import SVC

    x, y = _fit_data()
    model = SVC().fit(x, y)
    object.__setattr__(model, "support_", np.zeros(2_000_000, dtype=np.int32))
    return joblib_file(Lit(model))


def b_vectorizer_column_beyond_vocabulary(tmp: Path) -> bytes:
    """A CountVectorizer + MultinomialNB pipeline whose vocabulary_ sends 'cat' to column 10**9:
    transform builds a sparse matrix with that column unchecked, and predict multiplies it."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    docs = ["the cat sat on the mat", "the dog ate the cat", "a bird flew over the dog"] * 4
    pipeline = make_pipeline(CountVectorizer(), MultinomialNB()).fit(docs, [0, 1, 0] * 4)
    pipeline[0].vocabulary_ = {**pipeline[0].vocabulary_, "cat": 10**9, "dog": 3 * 10**8}
    return dumps(Lit(pipeline))


def b_dict_vectorizer_column(tmp: Path) -> bytes:
    """A DictVectorizer (dense output) whose vocabulary_ sends 'b' to column 2,000,000,000:
    transform builds a two-column sparse matrix with that column and toarray writes there."""
    from sklearn.feature_extraction import DictVectorizer

    vectorizer = DictVectorizer(sparse=False).fit([{"a": 1, "b": 2}])
    vectorizer.vocabulary_ = {"a": 0, "b": 2_000_000_000}
    return dumps(Lit(vectorizer))


def u_transform_records(obj: Any, tmp: Path) -> Any:
    return obj.transform([{"a": 1, "b": 3}] * 4)


def u_predict_text(obj: Any, tmp: Path) -> Any:
    return obj.predict(["the cat", "the dog sat"])


def b_one_hot_beyond_outputs(tmp: Path) -> bytes:
    """A OneHotEncoder (dense output) whose second feature's categories start at -5,000,000:
    the value 3 codes to 5,000,003, and transform writes at that column of an 8-column array."""
    import numpy as np
    from sklearn.preprocessing import OneHotEncoder

    encoder = OneHotEncoder(sparse_output=False).fit(np.arange(60).reshape(30, 2) % 4)
    encoder.categories_ = [encoder.categories_[0], np.arange(-5_000_000, 4, dtype=np.int64)]
    return dumps(Lit(encoder))


def u_transform_4x2(obj: Any, tmp: Path) -> Any:
    import numpy as np

    return obj.transform(np.arange(8).reshape(4, 2) % 4)


def b_neighbors_narrow_training_data(tmp: Path) -> bytes:
    """A brute-force KNeighborsClassifier whose training data is one column wide while it checks
    its input for 4,000,000: the Cython reduction reads each training row 4,000,000 values wide."""
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _fit_data()
    model = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(x, y)
    object.__setattr__(model, "_fit_X", x[:, :1].copy())
    object.__setattr__(model, "n_features_in_", 4_000_000)
    return joblib_file(Lit(model))


def u_predict_wide(obj: Any, tmp: Path) -> Any:
    import numpy as np

    return _model(obj).predict(np.full((1, 4_000_000), 0.5))


def b_dia_offsets_without_data(tmp: Path) -> bytes:
    """A 2000 x 2000 DIA matrix with 2000 offsets and one row of data: the matvec kernel reads
    a data row per offset."""
    import numpy as np
    import scipy.sparse as sp

    matrix = sp.dia_matrix((np.ones((1, 2000)), [0]), shape=(2000, 2000))
    matrix.offsets = np.arange(2000, dtype=np.int32)
    return dumps({"features": Lit(matrix)})


def u_matvec_2000(obj: Any, tmp: Path) -> Any:
    import numpy as np

    return obj["features"] @ np.ones(2000)


def b_series_index_longer_than_values(tmp: Path) -> bytes:
    """A series of one value whose index claims 10,000,000 labels (its block placed at the
    first): reindex takes values at the index's positions with pandas' Cython take,
    boundscheck off."""
    import numpy as np
    import pandas as pd

    series = pd.Series(np.array([1.5]))
    series._mgr.axes[0] = pd.RangeIndex(10_000_000)
    return _recorded(pickle.dumps(series, protocol=2, fix_imports=False))


def u_reindex_far(obj: Any, tmp: Path) -> Any:
    return obj.reindex([0, 9_999_999, -5]).tolist()


def b_boosting_stage_wider_than_predictions(tmp: Path) -> bytes:
    """A gradient-boosting regressor whose stages hold 4096 trees (its own, shared) for raw
    predictions one column wide: predict_stages adds every tree's leaf values into the next
    rows of the output and 32 kB past its end."""
    import numpy as np
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.RandomState(0)
    x = rng.rand(200, 3)
    model = GradientBoostingRegressor(n_estimators=2, max_depth=2, random_state=0).fit(x, rng.rand(200))
    stages = np.empty((2, 4096), dtype=object)
    for stage in range(2):
        stages[stage, :] = [model.estimators_[stage, 0]] * 4096
    object.__setattr__(model, "estimators_", stages)
    return _recorded(pickle.dumps(model, protocol=2, fix_imports=False))


def p_boosting_misread(obj: Any, tmp: Path) -> Dict[str, Any]:
    """predict against what the model's first tree of each stage gives: memory-safe code adds
    only those into a one-column output."""
    import numpy as np

    x = np.random.RandomState(1).rand(4, 3)
    expected = obj.init_.predict(x) + obj.learning_rate * sum(
        stage[0].predict(x) for stage in obj.estimators_
    )
    return {"misread": not np.allclose(obj.predict(x), expected)}


def b_lil_column_beyond_shape(tmp: Path) -> bytes:
    """A 3 x 3 LIL matrix whose first row holds column 10**8: tocsr copies it unchecked and
    toarray writes there."""
    import scipy.sparse as sp

    matrix = sp.lil_matrix((3, 3))
    matrix[0, 0] = 1.0
    matrix.rows[0] = [10**8]
    return dumps({"features": Lit(matrix)})


def u_lil_dense(obj: Any, tmp: Path) -> Any:
    return obj["features"].tocsr().toarray()


def b_neighbors_class_code_beyond_classes(tmp: Path) -> bytes:
    """A brute-force KNeighborsClassifier (manhattan metric) of two classes whose training
    samples' class codes (_y) are all 10**9: predict's class-mode reduction adds each neighbor's
    vote at class_scores[row, _y[neighbor]], 8 GB past a row of two scores, unchecked."""
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _fit_data()
    model = KNeighborsClassifier(n_neighbors=3, algorithm="brute", metric="manhattan").fit(x, y)
    object.__setattr__(model, "_y", np.full(len(y), 10**9, dtype=np.intp))
    return _recorded(pickle.dumps(model, protocol=2, fix_imports=False))


def u_predict_three_columns(obj: Any, tmp: Path) -> Any:
    import numpy as np

    return obj.predict(np.random.RandomState(1).rand(20, 3))


def b_neighbors_mahalanobis_matrix_smaller_than_input(tmp: Path) -> bytes:
    """A brute-force NearestNeighbors (Mahalanobis metric) on 4,000 features whose VI is 1 x 1:
    kneighbors hands it to scipy's cdist, whose C code reads VI as 4,000 x 4,000 unchecked."""
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    model = NearestNeighbors(
        n_neighbors=2, algorithm="brute", metric="mahalanobis", metric_params={"VI": np.eye(1)}
    )
    model.fit(np.random.RandomState(0).rand(6, 4000))
    return _recorded(pickle.dumps(model, protocol=2, fix_imports=False))


def u_kneighbors_4000(obj: Any, tmp: Path) -> Any:
    import numpy as np

    return obj.kneighbors(np.random.RandomState(1).rand(3, 4000))


def b_hist_gradient_boosting_loss_of_fewer_classes(tmp: Path) -> bytes:
    """A warm-starting HistGradientBoostingClassifier of three classes whose loss object (the
    multinomial loss, given as ``loss``) says two: fit uses it as is, and the Cython gradient
    writes three columns per sample into gradients of two, past their end."""
    import numpy as np
    from sklearn._loss.loss import HalfMultinomialLoss
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.random.RandomState(0).rand(3000, 3)
    model = HistGradientBoostingClassifier(
        loss=HalfMultinomialLoss(n_classes=3), max_iter=2, warm_start=True, early_stopping=False
    ).fit(x, np.arange(3000) % 3)
    model.loss.n_classes = 2
    return _recorded(pickle.dumps(model, protocol=2, fix_imports=False))


def u_warm_fit_three_classes(obj: Any, tmp: Path) -> Any:
    import numpy as np

    x = np.random.RandomState(0).rand(3000, 3)
    return obj.set_params(max_iter=4).fit(x, np.arange(3000) % 3)


def b_lasso_warm_start_weights_beyond_input(tmp: Path) -> bytes:
    """A warm-starting Lasso fitted on 3 features whose coef_ holds 1,000,000 weights: a fit
    on sparse data runs the Cython coordinate descent over every weight, reading a column
    pointer of the input for each, unchecked."""
    import numpy as np
    from sklearn.linear_model import Lasso

    x, _ = _fit_data()
    model = Lasso(alpha=0.01, warm_start=True).fit(x, x[:, 0])
    object.__setattr__(model, "coef_", np.zeros(1_000_000))
    return joblib_file(Lit(model))


def u_fit_sparse_three_columns(obj: Any, tmp: Path) -> Any:
    import numpy as np
    import scipy.sparse as sp

    x = np.random.RandomState(1).rand(30, 3)
    return _model(obj).fit(sp.csc_matrix(x), x[:, 0])


def b_hashing_vectorizer_without_features(tmp: Path) -> bytes:
    """A HashingVectorizer with n_features 0: transform does not validate its parameters and
    the Cython hashing takes each token's hash modulo 0 (SIGFPE)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer()
    vectorizer.n_features = 0
    return _recorded(pickle.dumps(vectorizer, protocol=2, fix_imports=False))


def u_transform_text(obj: Any, tmp: Path) -> Any:
    return obj.transform(["the cat sat"])


def b_dataframe_block_placement(tmp: Path) -> bytes:
    """A one-column DataFrame whose block placement is slice(2**40, 2**40 + 1): BlockManager only
    checks the count of placed items; _rebuild_blknos_and_blklocs (boundscheck off) writes at
    index 2**40 of a 1-element array on the first column access or print."""
    import numpy as np
    import pandas as pd

    big = 1 << 40
    block = Call(
        G("pandas._libs.internals", "_unpickle_block"),
        Lit(np.array([[1.0, 2.0]])),
        Call(G("builtins", "slice"), big, big + 1, 1),
        2,
    )
    mgr = Call(
        G("pandas.core.internals.managers", "BlockManager"),
        (block,),
        [Lit(pd.Index(["a"], dtype=object)), Lit(pd.RangeIndex(2))],
    )
    return frame_of(mgr)


def frame_of(manager: Any, after: Any = None) -> bytes:
    """``{"frame": DataFrame}`` made as pandas pickles it (NEWOBJ, then its state dict) around
    the block manager ``manager`` (an expression), then ``"after": after`` when given (its
    opcodes run after the frame's)."""
    state = {
        "_mgr": manager,
        "_typ": "dataframe",
        "_metadata": [],
        "attrs": {},
        "_flags": {"allows_duplicate_labels": True},
    }
    made: Dict[str, Any] = {"frame": Build(New(G("pandas.core.frame", "DataFrame")), state)}
    if after is not None:
        made["after"] = after
    return dumps(made)


def older_frame(placement: Any) -> bytes:
    """A frame as pandas < 2 pickled it: its BlockManager made by NEWOBJ and given the
    ``(axes, values, items, {"0.14.1": {...}})`` state, which pandas still reads; two float
    columns in one block at ``placement`` (an expression: a slice call, a list, ...)."""
    import numpy as np
    import pandas as pd

    values = np.array([[1.0, 2.0], [3.0, 4.0]])
    axes = [Lit(pd.Index(["a", "b"], dtype=object)), Lit(pd.RangeIndex(2))]
    fields = {"axes": axes, "blocks": [{"values": Lit(values), "mgr_locs": placement}]}
    manager = Build(
        New(G("pandas.core.internals.managers", "BlockManager")),
        (axes, [Lit(values)], axes, {"0.14.1": fields}),
    )
    return frame_of(manager)


def b_dataframe_older_state_placement(tmp: Path) -> bytes:
    """An older frame whose block is placed at [0, 2**40]. ``__setstate__`` rebuilds the item
    index at once (``_post_setstate``), writing blknos at index 2**40 of a 2-element array:
    inside the load, before any check after it."""
    return older_frame([0, 1 << 40])


def b_sparse_unvalidated(tmp: Path) -> bytes:
    """_rebuild_sparse_tensor(sparse_coo, (indices, values, size)) in a plain pickle: torch builds
    it with check_invariants=False and validates only at the end of torch.load, which a plain
    pickle.load never reaches; to_dense() writes at index 2**40."""
    import numpy as np

    def tensor(arr: Any, dtype: str) -> Call:
        return Call(
            G("torch._utils", "_rebuild_device_tensor_from_numpy"), Lit(arr), G("torch", dtype), "cpu", False
        )

    indices = tensor(np.array([[1 << 40]], dtype=np.int64), "int64")
    values = tensor(np.array([1.0], dtype=np.float32), "float32")
    layout = Call(G("torch.serialization", "_get_layout"), "torch.sparse_coo")
    sparse = Call(
        G("torch._utils", "_rebuild_sparse_tensor"), layout, (indices, values, Call(G("torch", "Size"), (4,)))
    )
    return dumps({"embedding_grad": sparse})


def u_to_dense(obj: Any, tmp: Path) -> Any:
    return obj["embedding_grad"].to_dense()


class SetItems:
    """obj, MARK, key, value..., SETITEMS: items added to an object after it was made (as pickle
    writes an OrderedDict: OrderedDict() by REDUCE, then its items)."""

    def __init__(self, obj: Any, items: List[Tuple[Any, Any]]) -> None:
        self.obj, self.items = obj, items


class _ItemsAsm(Asm):
    def emit(self, x: Any) -> None:
        if isinstance(x, SetItems):
            self.emit(x.obj)
            self.out += b"("
            for key, value in x.items:
                self.emit(key)
                self.emit(value)
            self.out += b"u"
        else:
            super().emit(x)


def dumps_items(x: Any, proto: int = 2) -> Pickled:
    """`dumps` with SetItems nodes."""
    asm = _ItemsAsm(proto)
    asm.emit(x)
    asm.out += b"."
    out = Pickled(bytes(asm.out))
    out.names = frozenset(asm.names)
    return out


def b_spectral_norm_iterations(tmp: Path) -> bytes:
    """A Linear with a spectral_norm pre-forward hook as torch.save writes it (the hook container
    an OrderedDict() given its items by SETITEMS; SpectralNorm is an allowed hook class) whose
    n_power_iterations is 10**12: every training-mode forward runs that many power iterations."""
    import torch

    hook = Build(
        New(G("torch.nn.utils.spectral_norm", "SpectralNorm")),
        {"name": "weight", "dim": 0, "n_power_iterations": 10**12, "eps": 1e-12},
    )
    params = {"weight_orig": _param("w", (2, 4), (4, 1)), "bias": _param("b", (2,), (1,))}
    module = _torch_module(
        torch.nn.Linear(4, 2),
        params,
        _forward_pre_hooks=SetItems(Call(ODICT), [(0, hook)]),
        weight_u=_tensor("u", (2,), (1,)),
        weight_v=_tensor("v", (4,), (1,)),
        weight=_tensor("w", (2, 4), (4, 1)),
    )
    storages = {
        "w": struct.pack("<8f", *[0.1] * 8),
        "b": struct.pack("<2f", 0.0, 0.0),
        "u": struct.pack("<2f", 0.6, 0.8),
        "v": struct.pack("<4f", 0.5, 0.5, 0.5, 0.5),
    }
    return torch_zip(dumps_items(module), storages)


def b_upsample_size(tmp: Path) -> bytes:
    """nn.Upsample with size=(60000, 60000) in its state: `scale_factor` is bounded, `size` is not."""
    import torch

    up = torch.nn.Upsample(size=(4, 4), mode="nearest")
    return torch_zip(dumps(_torch_module(up, size=(60000, 60000))))


def b_function_transformer_ones_like(tmp: Path) -> bytes:
    """FunctionTransformer{func: numpy.ones_like, kw_args: {shape: (60000, 60000)}}: a `value`
    function the library calls with keyword arguments from the state; transform(X) fills 28 GB."""
    from sklearn.preprocessing import FunctionTransformer

    state = {
        k: v for k, v in _state(FunctionTransformer(validate=False)).items() if k not in ("func", "kw_args")
    }
    ft = estimator(
        "sklearn.preprocessing._function_transformer",
        "FunctionTransformer",
        state,
        func=G("numpy", "ones_like"),
        kw_args={"shape": (60000, 60000)},
    )
    return joblib_file(ft)


def b_bunch_pairs_wild_pointer(tmp: Path) -> bytes:
    """copyreg._reconstructor(Bunch, dict, [pairs]): dict.__init__ takes the items from a list,
    so a Bunch gets the item __array_interface__, which numpy reads through Bunch.__getattr__
    when predict() converts constant_: a wild pointer."""
    import numpy as np
    from sklearn.dummy import DummyRegressor

    fitted = DummyRegressor().fit(np.random.RandomState(0).rand(10, 3), np.arange(10.0))
    interface = {"version": 3, "shape": (1,), "typestr": "<f8", "data": (0x10000, False)}
    bunch = Call(
        G("copyreg", "_reconstructor"),
        G("sklearn.utils._bunch", "Bunch"),
        G("builtins", "dict"),
        [("__array_interface__", interface)],
    )
    return dumps(estimator("sklearn.dummy", "DummyRegressor", _state(fitted), constant_=bunch))


def b_allocating_class_chain(tmp: Path) -> bytes:
    """Pipeline of FunctionTransformers: numpy.max(initial=3e9) -> numpy.int64 -> numpy.ndarray.
    A class that allocates from its argument stored as a function the library calls later."""
    import numpy as np
    from sklearn.dummy import DummyRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    x = np.zeros((4, 3))
    pipe = Pipeline(
        [
            ("max", FunctionTransformer(np.max, kw_args={"axis": None, "initial": 3e9})),
            ("int", FunctionTransformer(np.int64)),
            ("alloc", FunctionTransformer(np.ndarray)),
            ("model", DummyRegressor().fit(x[:, :1], np.zeros(4))),
        ]
    )
    for _, step in pipe.steps[:3]:
        step.fit(x)
    return _recorded(pickle.dumps(pipe, protocol=2))


def _recorded(data: bytes, names: Optional[Set[Tuple[str, str]]] = None) -> Pickled:
    """Bytes written by pickle itself (or a container of pickles), with the names they import."""
    out = Pickled(data)
    out.names = frozenset(names_in_pickle(data) if names is None else names)
    return out


def u_predict_4x3(obj: Any, tmp: Path) -> Any:
    import numpy as np

    return obj.predict(np.ones((4, 3)))


def b_token_pattern_redos(tmp: Path) -> bytes:
    """A fitted TfidfVectorizer whose token_pattern backtracks exponentially: transform() of a
    short document runs for hours."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer().fit(["alpha beta", "beta gamma"])
    state = _state(vectorizer)
    state["token_pattern"] = "(?:(?:a|a)+)+$"
    return dumps(estimator("sklearn.feature_extraction.text", "TfidfVectorizer", state))


def u_transform_redos(obj: Any, tmp: Path) -> Any:
    return obj.transform(["a" * 40 + "!"])


def b_padding_growth(tmp: Path) -> bytes:
    """ZeroPad2d((0, 60000, 0, 60000)): a bound per pad or on their product (zeros) passes it;
    forward of a 4x4 image allocates 60004^2 floats per channel."""
    import torch

    pad = torch.nn.ZeroPad2d((0, 1, 0, 1))
    return torch_zip(dumps(_torch_module(pad, padding=(0, 60000, 0, 60000))))


def u_forward_4x4(obj: Any, tmp: Path) -> Any:
    import torch

    return obj(torch.ones(1, 3, 4, 4))


def b_legacy_storage_declared(tmp: Path) -> bytes:
    """A legacy torch file whose data pickle declares a 2^30-element storage and whose key list
    is empty: torch.load allocates the storage while the pickle loads and never reads data."""
    body = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        body.write(pickle.dumps(header, protocol=2))
    storage = Pid(("storage", G("torch", "FloatStorage"), "0", "cpu", 1 << 30, None))
    main = dumps([storage])
    body.write(main)
    body.write(pickle.dumps([], protocol=2))
    return _recorded(body.getvalue(), set(main.names))


def b_removable_handle_next_id(tmp: Path) -> bytes:
    """A RemovableHandle with state (None, 1e300): __setstate__ sets the class attribute
    RemovableHandle.next_id = max(next_id, id + 1) = 1e300, where +1 no longer changes it: every hook
    registered later in the process gets the same id and replaces the previous one."""
    handle = Build(New(G("torch.utils.hooks", "RemovableHandle")), (None, 1e300))
    return torch_zip(dumps({"state_dict": {}, "hook_handle": handle}))


def p_hook_ids(obj: Any, tmp: Path) -> Dict[str, Any]:
    import torch
    from torch.utils.hooks import RemovableHandle

    module = torch.nn.Linear(2, 2)
    calls: List[str] = []
    module.register_forward_hook(lambda *a: calls.append("logger"))
    module.register_forward_hook(lambda *a: calls.append("monitor"))
    module(torch.ones(1, 2))
    return {
        "next_id": repr(RemovableHandle.next_id),
        "calls": calls,
        "hook_lost": calls != ["logger", "monitor"],
    }


# ============================================================================================
# The catalogue

DOS = {"cpu_seconds": 4, "wall_seconds": 15, "mem_budget_mb": 1024}
ACC = ("accelerate",)
TRF = ("transformers", "accelerate")

CATALOGUE: List[Gadget] = [
    # ---- class 1
    Gadget(
        "rebuild_from_type_scorer_reads_file",
        1,
        "torch's _rebuild_from_type_v2 calls a _Scorer the pickle built; the scorer calls "
        "CountVectorizer(input='filename').fit([PATH]): the file's words land in vocabulary_",
        b_rebuild_scorer_reads_file,
        probe_true("secret_read"),
        "pickle",
        (ARG, STATE, ROLE, INDIRECT),
        probe=p_vocabulary,
        chain="_rebuild_from_type_v2(_Scorer{_response_method:'fit', _score_func:copyreg.__newobj__}, str, "
        "(CountVectorizer{input:'filename'}, [PATH], str), {})",
        shows="secret file's tokens in the loaded vectorizer's vocabulary_",
    ),
    Gadget(
        "rebuild_from_type_scorer_memory_mkdir",
        1,
        "the same call primitive in a torch zip: AgglomerativeClustering(memory=DIR).fit(X) writes a "
        "joblib cache tree under DIR while torch.load runs",
        b_rebuild_scorer_memory_mkdir,
        dir_exists("cache_tree"),
        "torch-zip",
        (ARG, STATE, ROLE, INDIRECT),
        chain="_rebuild_from_type_v2(_Scorer{'fit'}, str, (AgglomerativeClustering{memory:DIR}, X, str), {})",
        shows="directory tree created at DIR",
    ),
    Gadget(
        "generator_ctor_calls_partial_state",
        1,
        "numpy.random._pickle.__generator_ctor(name, ctor) calls ctor(name): here "
        "accelerate.state.PartialState(True), which sets up process-wide distributed state",
        b_generator_ctor_partial_state,
        probe_true("partial_state_initialized"),
        "pickle",
        (ARG, ROLE),
        probe=probe_partial_state,
        requires=ACC,
        chain="__generator_ctor(True, accelerate.state.PartialState)",
        shows="PartialState._shared_state populated (then Generator() raises)",
    ),
    Gadget(
        "bit_generator_ctor_builds_transformer",
        1,
        "__bit_generator_ctor(cls) calls any class with no arguments: torch.nn.Transformer() "
        "allocates and initialises 44M weights during the load",
        b_bit_generator_ctor_transformer,
        probe_true("allocated"),
        "pickle",
        (ARG, ROLE),
        probe=p_transformer,
        chain="__bit_generator_ctor(torch.nn.modules.transformer.Transformer)",
        shows="a 44M-parameter Transformer allocated and initialised at load",
    ),
    Gadget(
        "randomstate_ctor_calls_fraction",
        1,
        "__randomstate_ctor(name, ctor) calls ctor(name): fractions.Fraction('1e1000000000') "
        "computes 10**1000000000",
        b_randomstate_ctor_fraction,
        exhausted,
        "pickle",
        (ARG, ROLE),
        chain="__randomstate_ctor('1e1000000000', fractions.Fraction)",
        shows="CPU budget exhausted",
        **DOS,
    ),
    Gadget(
        "build_setstate_namespace",
        1,
        "BUILD #1 stores __setstate__ in a Namespace's dict, BUILD #2 makes pickle call it: "
        "__bit_generator_ctor(Transformer) allocates a Transformer",
        b_setstate_namespace,
        peak_growth(120),
        "pickle",
        (STATE, BUILDV, INJECTION, ROLE),
        chain="NEWOBJ argparse.Namespace; BUILD {'__setstate__': __bit_generator_ctor}; BUILD Transformer",
        shows="peak memory +170 MB: a Transformer built by a BUILD",
    ),
    Gadget(
        "build_setstate_estimator_partial_state",
        1,
        "a fitted LogisticRegression whose BUILD state carries __setstate__=PartialState (BaseEstimator."
        "__setstate__ copies it into the instance dict); a second BUILD calls PartialState(True)",
        b_setstate_estimator_partial_state,
        probe_true("partial_state_initialized"),
        "pickle",
        (STATE, BUILDV, INJECTION, ROLE),
        probe=p_partial_state_and_type,
        requires=ACC,
        chain="NEWOBJ LogisticRegression; BUILD {..., '__setstate__': PartialState}; BUILD True",
        shows="PartialState initialised; the model still loads as a LogisticRegression",
    ),
    Gadget(
        "newobj_attribute_dispatch_wild_pointer",
        1,
        "sklearn's Cython newObj(obj) calls obj.__new__(obj), an instance attribute: numpy.mean(ns) "
        "reads the namespace's __array_interface__ pointer",
        b_newobj_attribute_dispatch,
        crashed,
        "pickle",
        (STATE, ARG, INJECTION, ROLE),
        chain="sklearn.neighbors._kd_tree.newObj(argparse.Namespace{__new__: numpy.mean, "
        "__array_interface__: {data: (0x10000, False)}})",
        shows="SIGSEGV at load",
    ),
    Gadget(
        "reconstructor_base_dispatch",
        1,
        "copyreg._reconstructor(cls, base, state) calls base.__new__(cls, state): with base a namespace "
        "holding __generator_ctor, that calls state(cls) == bytearray(12 GiB)",
        b_reconstructor_base_dispatch,
        exhausted,
        "pickle",
        (ARG, STATE, INJECTION, ROLE),
        chain="copyreg._reconstructor(12*2**30, Namespace{__new__: __generator_ctor}, bytearray)",
        shows="address-space budget exhausted",
        **DOS,
    ),
    # ---- class 2
    Gadget(
        "stacking_stack_method_write_text",
        2,
        "a scorer calls StackingClassifier.transform, which calls getattr(est, stack_method_)(X) "
        "without any check: PosixPath(FILE).write_text(TEXT) writes an arbitrary file",
        b_stacking_write_text,
        file_contains("written.txt", WRITTEN),
        "pickle",
        (STATE, ARG, ROLE, INDIRECT),
        chain="_rebuild_from_type_v2(_Scorer{'transform'}, str, (StackingClassifier{estimators_: "
        "[PosixPath(FILE)], stack_method_: ['write_text']}, TEXT, str), {})",
        shows="a file with chosen content written (load then raises)",
    ),
    Gadget(
        "stacking_stack_method_unlink",
        2,
        "the same, with a benign scorer method ('predict') and stack_method_ 'unlink': deletes a file",
        b_stacking_unlink,
        file_gone("victim.txt"),
        "joblib",
        (STATE, ARG, ROLE, INDIRECT),
        chain="_rebuild_from_type_v2(_Scorer{'predict'}, str, (StackingClassifier{estimators_: "
        "[PosixPath(VICTIM)], stack_method_: ['unlink']}, False, str), {})",
        shows="victim file deleted",
    ),
    Gadget(
        "scorer_fit_spawns_workers",
        2,
        "a scorer with _response_method 'fit' fits GridSearchCV(n_jobs=2) during the load: joblib "
        "starts loky worker processes",
        b_scorer_gridsearch_spawns,
        probe_true("workers"),
        "pickle",
        (STATE, ARG, ROLE, INDIRECT),
        probe=probe_workers,
        chain="_rebuild_from_type_v2(_Scorer{'fit'}, str, (GridSearchCV{KMeans, n_jobs: 2}, X, str), {})",
        shows="loky worker processes running under the loading process",
    ),
    Gadget(
        "stacking_fit_memory_at_predict",
        2,
        "StackingClassifier with stack_method_ ['fit'] over AgglomerativeClustering(memory=DIR): "
        "model.predict(X) fits it and writes a cache tree",
        b_stacking_memory_use,
        dir_exists("cache_tree"),
        "pickle",
        (STATE,),
        use=u_predict,
        chain="StackingClassifier{estimators_: [AgglomerativeClustering{memory: DIR}], stack_method_: [fit]}",
        shows="directory tree created at predict",
    ),
    Gadget(
        "classifier_chain_method_spawns_at_predict",
        2,
        "ClassifierChain.chain_method_ 'fit' over GridSearchCV(n_jobs=2): predict(X) starts workers",
        b_chain_method_spawn_use,
        probe_true("workers"),
        "joblib",
        (STATE,),
        use=u_predict,
        probe=probe_workers,
        chain="ClassifierChain{estimators_: [GridSearchCV{n_jobs: 2}], chain_method_: 'fit'}",
        shows="loky worker processes after predict",
    ),
    Gadget(
        "fixed_threshold_response_method_memory",
        2,
        "FixedThresholdClassifier.response_method 'fit' over a Pipeline(memory=DIR): predict(X) refits "
        "the pipeline and writes a joblib cache tree",
        b_fixed_threshold_memory_use,
        dir_exists("cache_tree"),
        "pickle",
        (STATE,),
        use=u_predict,
        chain="FixedThresholdClassifier{response_method: 'fit', estimator_: Pipeline{memory: DIR}}",
        shows="directory tree created at predict",
    ),
    Gadget(
        "select_from_model_importance_getter",
        2,
        "SelectFromModel.importance_getter is called with estimator_: Fraction('1e1000000000') at transform",
        b_select_from_model_getter_use,
        exhausted,
        "pickle",
        (STATE, ROLE),
        use=u_transform_3,
        chain="SelectFromModel{importance_getter: fractions.Fraction, estimator_: '1e1000000000'}",
        shows="CPU budget exhausted at transform",
        **DOS,
    ),
    # ---- class 3
    Gadget(
        "datetimetz_dtype_reads_tz_file",
        3,
        "DatetimeTZDtype('ns', 'dateutil/' + PATH) opens PATH as a TZif file (dateutil.tz.gettz of an "
        "absolute path); its zones land in the loaded dtype",
        b_datetimetz_dtype_reads,
        probe_true("read"),
        "pickle",
        (ROLE, ARG),
        probe=p_zone_from_file,
        chain="pandas DatetimeTZDtype('ns', 'dateutil//tmp/.../zone.tzif') by REDUCE",
        shows="tzname 'PWND' read from a chosen file",
    ),
    Gadget(
        "new_datetimeindex_tz_path",
        3,
        "pandas' _new_DatetimeIndex(cls, {'tz': 'dateutil/' + PATH}) reads PATH the same way",
        b_new_datetimeindex_reads,
        probe_true("read"),
        "joblib",
        (ARG,),
        probe=p_zone_joblib,
        chain="_new_DatetimeIndex(DatetimeIndex, {data, tz: 'dateutil/PATH', freq: None})",
        shows="tzname 'PWND' read from a chosen file",
    ),
    Gadget(
        "new_index_dtype_string_reads_tz_file",
        3,
        "pandas' _new_Index(Index, {'data': [0], 'dtype': 'datetime64[ns, dateutil/PATH]'}) calls "
        "Index.__new__(**d): the dtype string names a zone file by path, which is read",
        b_new_index_dtype_string,
        probe_true("read"),
        "pickle",
        (ARG,),
        probe=lambda obj, tmp: p_zone_from_file({"index": obj["index"]}, tmp),
        chain="_new_Index(Index, {data: [0], dtype: 'datetime64[ns, dateutil/PATH]'})",
        shows="tzname 'PWND' read from a chosen file",
    ),
    Gadget(
        "linear_allocates_weights",
        3,
        "torch.nn.Linear(60000, 60000) by REDUCE allocates and initialises 14 GB of weights",
        b_linear_allocates,
        exhausted,
        "torch-zip",
        (ROLE,),
        chain="torch.nn.modules.linear.Linear(60000, 60000)",
        shows="address-space budget exhausted",
        **DOS,
    ),
    Gadget(
        "transformer_encoder_deepcopies",
        3,
        "TransformerEncoder(layer, 100000) deep-copies a 3M-parameter layer 100000 times",
        b_transformer_encoder_copies,
        exhausted,
        "pickle",
        (ROLE, ARG),
        chain="TransformerEncoder(TransformerEncoderLayer(512, 8), 100000)",
        shows="memory/CPU budget exhausted",
        **DOS,
    ),
    Gadget(
        "lil_matrix_rows",
        3,
        "scipy lil_matrix((10**9, 10)) creates a billion Python lists",
        b_lil_matrix_rows,
        exhausted,
        "pickle",
        (ROLE, ARG),
        chain="scipy.sparse._lil.lil_matrix((10**9, 10))",
        shows="memory/CPU budget exhausted",
        **DOS,
    ),
    Gadget(
        "dataframe_broadcast_fill",
        3,
        "DataFrame(0.0, range(2*10**9), [0]) broadcasts a scalar into 16 GB",
        b_dataframe_fill,
        exhausted,
        "joblib",
        (ROLE, ARG),
        chain="pandas DataFrame(0.0, builtins.range(2*10**9), [0])",
        shows="address-space budget exhausted",
        **DOS,
    ),
    # ---- class 4
    Gadget(
        "set_of_range",
        4,
        "builtins.set(range(10**10))",
        b_set_range,
        exhausted,
        "pickle",
        (ARG,),
        chain="set(range(10**10))",
        shows="memory budget exhausted",
        **DOS,
    ),
    Gadget(
        "deque_of_range_maxlen0",
        4,
        "collections.deque(range(10**18), 0): constant memory, never ends",
        b_deque_range,
        exhausted,
        "pickle",
        (ARG,),
        chain="deque(range(10**18), 0)",
        shows="CPU budget exhausted",
        **DOS,
    ),
    Gadget(
        "frozenset_of_range",
        4,
        "builtins.frozenset(range(10**10)) in a joblib file",
        b_frozenset_range,
        exhausted,
        "joblib",
        (ARG,),
        chain="frozenset(range(10**10))",
        shows="memory budget exhausted",
        **DOS,
    ),
    Gadget(
        "bytearray_size",
        4,
        "builtins.bytearray(12 GiB) in a torch zip",
        b_bytearray_size,
        exhausted,
        "torch-zip",
        (ARG,),
        chain="bytearray(12*2**30)",
        shows="address-space budget exhausted",
        **DOS,
    ),
    Gadget(
        "fraction_exponent",
        4,
        "fractions.Fraction('1e1000000000') computes 10**1000000000",
        b_fraction_exponent,
        exhausted,
        "pickle",
        (ARG,),
        chain="Fraction('1e1000000000')",
        shows="CPU budget exhausted",
        **DOS,
    ),
    Gadget(
        "decimal_to_int_exponent",
        4,
        "int(Decimal('1e999999999')) materialises a billion-digit integer",
        b_decimal_int,
        exhausted,
        "pickle",
        (ARG, ROLE),
        chain="int(Decimal('1e999999999'))",
        shows="CPU/memory budget exhausted",
        **DOS,
    ),
    Gadget(
        "object_array_huge_shape",
        4,
        "numpy _reconstruct + BUILD with dtype object and shape (2*10**9,): numpy allocates and fills "
        "16 GB of pointers before it looks at the (empty) item list",
        b_object_array_shape,
        exhausted,
        "pickle",
        (ARG, STATE),
        chain="_reconstruct(ndarray, (0,), b'b'); BUILD (1, (2*10**9,), dtype('O'), False, [])",
        shows="address-space budget exhausted",
        **DOS,
    ),
    Gadget(
        "counter_of_range",
        4,
        "collections.Counter(range(10**10)) in a torch zip",
        b_counter_range,
        exhausted,
        "torch-zip",
        (ARG,),
        chain="Counter(range(10**10))",
        shows="memory budget exhausted",
        **DOS,
    ),
    Gadget(
        "dummy_regressor_n_outputs_at_predict",
        4,
        "a fitted DummyRegressor whose plain-int n_outputs_ is 3*10**8: predict(X) fills a "
        "(len(X), n_outputs_) array",
        b_dummy_n_outputs,
        exhausted,
        "pickle",
        (STATE,),
        use=u_predict,
        chain="DummyRegressor{..., n_outputs_: 300000000}; model.predict(X)",
        shows="address-space budget exhausted at predict",
        **DOS,
    ),
    Gadget(
        "upsample_scale_factor_at_forward",
        4,
        "nn.Upsample with scale_factor 20000.0 in its state: model(x) of a 4x4 image allocates a "
        "80000x80000 output",
        b_upsample_scale,
        exhausted,
        "torch-zip",
        (STATE,),
        use=u_forward_image,
        chain="Upsample{scale_factor: 20000.0, mode: 'nearest'}; model(torch.ones(1, 1, 4, 4))",
        shows="address-space budget exhausted at forward",
        **DOS,
    ),
    Gadget(
        "newobj_ndarray_object_shape",
        4,
        "NEWOBJ runs cls.__new__(cls, *args): ndarray.__new__(ndarray, (2*10**9,), 'O') allocates and "
        "fills 16 GB of pointers (real pickles NEWOBJ classes with no arguments)",
        b_newobj_ndarray,
        exhausted,
        "pickle",
        (ROLE, ARG),
        chain="NEWOBJ numpy.ndarray ((2*10**9,), 'O')",
        shows="address-space budget exhausted",
        **DOS,
    ),
    Gadget(
        "torch_size_of_range",
        4,
        "torch.Size(range(10**9)) materialises the range as a tuple (8 GB of pointers, 28 GB of ints)",
        b_torch_size_range,
        exhausted,
        "torch-zip",
        (ARG, ROLE),
        chain="torch.Size(range(10**9))",
        shows="memory budget exhausted",
        **DOS,
    ),
    Gadget(
        "list_of_range",
        4,
        "builtins.list(range(10**9)) in a joblib file",
        b_list_range,
        exhausted,
        "joblib",
        (ARG, ROLE),
        chain="list(range(10**9))",
        shows="memory budget exhausted",
        **DOS,
    ),
    # ---- class 5
    Gadget(
        "tzutc_singleton_build",
        5,
        "dateutil's tzutc() returns the process-wide singleton; BUILD gives it an instance tzname: every "
        "dateutil UTC datetime now reports a different zone name",
        b_tzutc_singleton,
        probe_true("rewritten"),
        "pickle",
        (ROLE, BUILDV, STATE),
        probe=probe_tzutc,
        chain="tzutc(); BUILD {'tzname': builtins.str}",
        shows="datetime(..., tzinfo=tzutc()).tzname() != 'UTC'",
    ),
    Gadget(
        "tzutc_setattr_through_rebuild",
        5,
        "_rebuild_from_type_v2(tzutc, tzutc, (), state) sets attributes on the singleton it returns",
        b_tzutc_setattr_rebuild,
        probe_true("rewritten"),
        "torch-zip",
        (ARG, BUILDV, STATE),
        probe=probe_tzutc,
        chain="_rebuild_from_type_v2(tzutc, tzutc, (), {'tzname': builtins.str})",
        shows="the tzutc singleton rewritten process-wide",
    ),
    Gadget(
        "masked_constant_singleton_build",
        5,
        "numpy.ma.core.MaskedConstant() returns np.ma.masked; BUILD runs ndarray.__setstate__ on it before "
        "the mask check raises: the global masked constant gets a chosen shape and data",
        b_masked_constant,
        probe_true("rewritten"),
        "pickle",
        (BUILDV, ROLE),
        probe=p_masked,
        chain="MaskedConstant(); BUILD (1, (3,), dtype, False, DATA, MASK, None)",
        shows="np.ma.masked.shape == (3,) in the process (load then raises)",
    ),
    Gadget(
        "enum_member_rewrite_distributed_type",
        5,
        "DistributedType('NO') returns the enum member; BUILD rewrites its _value_ process-wide",
        b_distributed_type_enum,
        probe_true("rewritten"),
        "joblib",
        (BUILDV, STATE),
        probe=p_distributed_type,
        requires=ACC,
        chain="accelerate DistributedType('NO'); BUILD {'_value_': 'MULTI_GPU', '_name_': 'MULTI_GPU'}",
        shows="DistributedType.NO.value == 'MULTI_GPU'",
    ),
    # ---- class 6
    Gadget(
        "kmeans_lloyd_heap_overflow",
        6,
        "the private _kmeans_single_lloyd called with a (1, 10**5) X and (10**4, 1) centres: "
        "lloyd_iter memsets n_clusters * n_features doubles (8 GB) from the centres' 80 KB buffer",
        b_kmeans_lloyd,
        crashed,
        "pickle",
        (ROLE, ARG),
        chain="_kmeans_single_lloyd(zeros((1, 10**5)), ones(1), zeros((10**4, 1)), 3, False, 0.0, 1)",
        shows="heap corruption: SIGSEGV/SIGABRT",
    ),
    Gadget(
        "kmeans_elkan_heap_overflow",
        6,
        "the same with _kmeans_single_elkan (its bound initialisation reads and writes past the "
        "centres), in a joblib file",
        b_kmeans_elkan,
        crashed,
        "joblib",
        (ROLE, ARG),
        chain="_kmeans_single_elkan(zeros((1, 10**5)), ones(1), zeros((10**4, 1)), 3, False, 0.0, 1)",
        shows="heap corruption: SIGSEGV/SIGABRT",
    ),
    Gadget(
        "array_interface_wild_pointer",
        6,
        "numpy.mean of a namespace whose __array_interface__ (looked up on the instance) points at 0x10000",
        b_array_interface_mean,
        crashed,
        "pickle",
        (STATE, ARG, INJECTION, ROLE),
        chain="numpy.mean(Namespace{__array_interface__: {data: (0x10000, False), shape: (8192,)}})",
        shows="SIGSEGV at load",
    ),
    Gadget(
        "tensor_from_wild_pointer",
        6,
        "scipy's array_api_compat asarray turns that namespace into an ndarray at 0x10000; "
        "_rebuild_device_tensor_from_numpy copies it into a tensor",
        b_tensor_from_wild_pointer,
        crashed,
        "torch-zip",
        (ARG, STATE, INJECTION),
        chain="_rebuild_device_tensor_from_numpy(asarray(Namespace{__array_interface__}), float32, "
        "device('cpu'), False)",
        shows="SIGSEGV at load",
    ),
    Gadget(
        "tensor_view_beyond_storage",
        6,
        "_rebuild_tensor_v2 with a 4G-element view of a TypedStorage(0) the pickle made: torch resizes the "
        "storage to the view (archive storages are checked, this one is not)",
        b_tensor_view_resizes_storage,
        exhausted,
        "torch-zip",
        (ARG, ROLE),
        chain="_rebuild_tensor_v2(torch.storage.TypedStorage(0), 0, (4*2**30,), (1,), False, OrderedDict())",
        shows="address-space budget exhausted",
        **DOS,
    ),
    Gadget(
        "tensor_view_reads_stale_heap",
        6,
        "eight 4096-element views of TypedStorage(0)s the pickle made: torch grows each storage with "
        "malloc and never clears it, so the 'weights' are the loading process's old heap contents "
        "(nothing in the file provides them)",
        b_tensor_view_stale_heap,
        lambda tmp: int(probe_of(tmp).get("nonzero_bytes", 0)) > 0,
        "torch-zip",
        (ARG, ROLE),
        probe=p_stale_heap,
        chain="{layerN.weight: _rebuild_tensor_v2(torch.storage.TypedStorage(0), 0, (4096,), (1,), False, "
        "OrderedDict())}",
        shows="loaded tensors hold non-zero bytes of the process heap",
    ),
    # ---- class 7
    Gadget(
        "module_forward_pre_hook",
        7,
        "nn.Linear with _forward_pre_hooks {0: check_array} and an __array_interface__ in its dict: "
        "model(x) makes numpy read a wild pointer",
        b_module_forward_pre_hook,
        crashed,
        "torch-zip",
        (STATE, INJECTION, ROLE),
        use=u_forward,
        chain="Linear{_forward_pre_hooks: {0: sklearn...check_array}, __array_interface__: {data: 0x10000}}",
        shows="SIGSEGV at forward",
    ),
    Gadget(
        "tensor_backward_hooks",
        7,
        "_rebuild_tensor_v2(..., requires_grad=True, backward_hooks={0: relu}): backward() silently "
        "replaces the gradient",
        b_tensor_backward_hooks,
        probe_true("tampered"),
        "torch-zip",
        (ARG, STATE),
        use=u_backward,
        probe=p_grad,
        chain="_rebuild_tensor_v2(pid, 0, (4,), (1,), True, OrderedDict({0: torch.nn.functional.relu}))",
        shows="gradient of -x is 0, not -1",
    ),
    Gadget(
        "parameter_backward_hooks",
        7,
        "a Linear whose weight is _rebuild_parameter(t, True, {0: gelu}): backward() rewrites its gradient",
        b_parameter_backward_hooks,
        probe_true("tampered"),
        "torch-zip",
        (ARG, STATE),
        use=u_backward,
        probe=p_grad,
        chain="Linear{_parameters: {weight: _rebuild_parameter(t, True, odict({0: torch._C._nn.gelu}))}}",
        shows="weight gradient changed at backward",
    ),
    Gadget(
        "defaultdict_factory_missing_key",
        7,
        "collections.defaultdict(Transformer): looking up a missing key builds a 44M-parameter model",
        b_defaultdict_factory,
        probe_true("allocated"),
        "pickle",
        (ARG,),
        use=u_missing_key,
        probe=p_defaultdict,
        chain="defaultdict(torch.nn.modules.transformer.Transformer)",
        shows="a Transformer allocated at the first missing key",
    ),
    Gadget(
        "estimator_predict_instance_attribute",
        7,
        "a fitted LogisticRegression whose state has predict=PartialState: model.predict(X) calls "
        "PartialState(X) (process-wide setup) instead of the method",
        b_estimator_predict_attr,
        probe_true("partial_state_initialized"),
        "pickle",
        (STATE, ROLE),
        use=u_predict,
        probe=probe_partial_state,
        requires=ACC,
        chain="LogisticRegression{..., predict: accelerate.state.PartialState}",
        shows="PartialState initialised at predict",
    ),
    Gadget(
        "function_transformer_kmeans",
        7,
        "FunctionTransformer(func=_kmeans_single_lloyd, kw_args={centers_init: zeros((10**5, 1))}): "
        "transform(X) of a (4, 20000) X memsets 16 GB from the centres' buffer",
        b_function_transformer_lloyd,
        crashed,
        "joblib",
        (STATE, ROLE),
        use=u_transform_wide,
        chain="FunctionTransformer{func: sklearn.cluster._kmeans._kmeans_single_lloyd, kw_args: {...}}",
        shows="heap corruption at transform",
    ),
    Gadget(
        "module_forward_instance_attribute",
        7,
        "nn.Linear with forward=PartialState in its dict: model(x) calls PartialState(x)",
        b_module_forward_attr,
        probe_true("partial_state_initialized"),
        "torch-zip",
        (STATE, ROLE),
        use=u_forward,
        probe=probe_partial_state,
        requires=ACC,
        chain="Linear{..., forward: accelerate.state.PartialState}",
        shows="PartialState initialised at forward",
    ),
    # ---- class 8
    Gadget(
        "hf_deepspeed_config_reads_json",
        8,
        "accelerate's HfDeepSpeedConfig(PATH) by REDUCE reads a JSON file into the loaded object",
        b_hf_deepspeed_config,
        probe_true("secret_read"),
        "pickle",
        (ROLE, ARG),
        probe=p_ds_config,
        requires=ACC,
        chain="accelerate.utils.deepspeed.HfDeepSpeedConfig(PATH)",
        shows="file content in .config",
    ),
    Gadget(
        "deepspeed_plugin_reads_json",
        8,
        "DeepSpeedPlugin(PATH) by REDUCE: __post_init__ loads the DeepSpeed config file",
        b_deepspeed_plugin,
        probe_true("secret_read"),
        "joblib",
        (ROLE, ARG),
        probe=lambda obj, tmp: p_ds_config({"model": obj["model"]}, tmp),
        requires=ACC,
        chain="accelerate.utils.dataclasses.DeepSpeedPlugin(PATH)",
        shows="file content in hf_ds_config.config",
    ),
    Gadget(
        "training_args_accelerator_config_file",
        8,
        "a scorer calls FunctionTransformer.transform, i.e. TrainingArguments(DIR, accelerator_config=PATH, "
        "...): __post_init__ reads PATH and sets up PartialState",
        b_training_args_accelerator_config,
        probe_true("secret_read"),
        "pickle",
        (STATE, ARG, ROLE, INDIRECT),
        probe=p_training_args,
        requires=TRF,
        chain="_rebuild_from_type_v2(_Scorer{'transform'}, str, (FunctionTransformer{func: "
        "TrainingArguments, kw_args: {accelerator_config: PATH}}, DIR, str), {})",
        shows="accelerator config file content in the loaded string; PartialState initialised",
    ),
    Gadget(
        "partial_state_reduce",
        8,
        "PartialState(True) by REDUCE initialises accelerate's process-wide state",
        b_partial_state_reduce,
        probe_true("partial_state_initialized"),
        "pickle",
        (ROLE,),
        probe=probe_partial_state,
        requires=ACC,
        chain="accelerate.state.PartialState(True)",
        shows="PartialState._shared_state populated",
    ),
    Gadget(
        "partial_state_shared_dict_build",
        8,
        "PartialState's __dict__ is the class-level shared dict: BUILD makes every later PartialState() "
        "report rank 3 of 8 (so is_main_process is False and checkpoints are never saved)",
        b_partial_state_shared_build,
        probe_true("rewritten"),
        "torch-zip",
        (ROLE, BUILDV),
        probe=p_partial_state_rank,
        requires=ACC,
        chain="PartialState(True); BUILD {num_processes: 8, process_index: 3, local_process_index: 3}",
        shows="PartialState().is_main_process is False",
    ),
    Gadget(
        "interval_strategy_enum_rewrite",
        8,
        "IntervalStrategy('steps') returns the member; BUILD sets its _value_ to 'no' process-wide",
        b_interval_strategy_enum,
        probe_true("rewritten"),
        "pickle",
        (BUILDV, STATE),
        probe=p_interval_strategy,
        requires=TRF,
        chain="transformers IntervalStrategy('steps'); BUILD {'_value_': 'no'}",
        shows="IntervalStrategy.STEPS.value == 'no'",
    ),
    # ---- found by red-teaming the roles checker (9b96550): load under the guard, scan clean
    # class 9: checker-level bypasses
    Gadget(
        "odict_state_new_index_reads_tz_file",
        9,
        "_new_Index(Index, OrderedDict([('data', [0]), ('dtype', 'datetime64[ns, dateutil/PATH]')])): the "
        "`state` argument kind accepts an OrderedDict object as plain data, so no key rule (tz-name, "
        "special names) is applied; pandas opens PATH as a zone file",
        b_odict_state_new_index,
        probe_true("read"),
        "pickle",
        (ARG, STATE),
        probe=p_zone_from_file,
        chain="_new_Index(Index, collections.OrderedDict([('data', [0]), ('dtype', 'datetime64[ns, "
        "dateutil/PATH]')]))",
        shows="tzname 'PWND' read from a chosen file",
    ),
    Gadget(
        "odict_state_parameter_backward_hooks",
        9,
        "_rebuild_parameter_with_state(t, True, OrderedDict(), OrderedDict([('_backward_hooks', {0: "
        "relu})])): "
        "the state object re-sets the hooks the empty-odict argument was checked for",
        b_odict_state_parameter_hooks,
        probe_true("tampered"),
        "torch-zip",
        (ARG, STATE),
        use=u_backward,
        probe=p_grad,
        chain="_rebuild_parameter_with_state(_rebuild_tensor_v2(pid, ...), True, OrderedDict(), "
        "OrderedDict([('_backward_hooks', OrderedDict([(0, torch.nn.functional.relu)]))]))",
        shows="gradient of -x is 0, not -1",
    ),
    Gadget(
        "odict_state_rebuild_from_type_backward_hooks",
        9,
        "_rebuild_from_type_v2(_rebuild_tensor_v2, Tensor, args, OrderedDict([('_backward_hooks', {0: "
        "relu})])): "
        "torch._utils._set_obj_state setattr()s every key of the state object",
        b_odict_state_rebuild_from_type_hooks,
        probe_true("tampered"),
        "torch-zip",
        (ARG, STATE),
        use=u_backward,
        probe=p_grad,
        chain="_rebuild_from_type_v2(_rebuild_tensor_v2, torch.Tensor, (pid, 0, (4,), (1,), True, "
        "OrderedDict()), "
        "OrderedDict([('_backward_hooks', OrderedDict([(0, relu)]))]))",
        shows="gradient of -x is 0, not -1",
    ),
    Gadget(
        "memo_aliased_empty_hooks",
        9,
        "_rebuild_tensor_v2(..., hooks=<memoized OrderedDict()>): empty when the call is checked, filled by "
        "a "
        "SETITEMS through the memo afterwards; torch keeps that very dict as the tensor's backward hooks",
        b_memo_aliased_empty_hooks,
        probe_true("tampered"),
        "torch-zip",
        (BUILDV, ARG),
        use=u_backward,
        probe=p_grad,
        chain="{'w': _rebuild_tensor_v2(pid, 0, (4,), (1,), True, PUT h OrderedDict())}; GET h; MARK 0 relu "
        "SETITEMS",
        shows="gradient of -x is 0, not -1",
    ),
    Gadget(
        "npstr_dtype_string_reads_tz_file",
        9,
        "_new_Index(Index, {'data': [0], 'dtype': numpy.str_('datetime64[ns, dateutil/PATH]')}): the watched "
        "`dtype` key holds a call result (a str subclass made by numpy's scalar()), which the tz-name rule "
        "never judges; pandas opens PATH",
        b_npstr_dtype_string,
        probe_true("read"),
        "pickle",
        (STATE, ARG),
        probe=p_zone_from_file,
        chain="_new_Index(Index, {data: [0], dtype: numpy._core.multiarray.scalar(numpy.dtype('<U..'), "
        "UTF-32 "
        "bytes of 'datetime64[ns, dateutil/PATH]')})",
        shows="tzname 'PWND' read from a chosen file",
    ),
    Gadget(
        "reconstructor_tuple_materialises_range",
        9,
        "copyreg._reconstructor(Hyperparameter, tuple, range(10**10)) runs tuple.__new__(cls, "
        "range(10**10)): "
        "the lazy range passes as `data` and is materialised",
        b_reconstructor_tuple_range,
        exhausted,
        "pickle",
        (ARG, ROLE),
        chain="copyreg._reconstructor(sklearn.gaussian_process.kernels.Hyperparameter, builtins.tuple, "
        "range(10**10))",
        shows="memory budget exhausted",
        **DOS,
    ),
    Gadget(
        "dtype_object_spelled_flags_zero",
        9,
        "numpy.dtype('object', False, True) BUILT with flags 0: the flags rule looks only at the descr's "
        "first "
        "character ('O'), so an object dtype spelled 'object' may drop its object flags; the array's raw "
        "bytes become PyObject pointers, dereferenced by repr()",
        b_dtype_object_spelled,
        crashed,
        "pickle",
        (STATE,),
        use=u_repr,
        chain="_reconstruct(ndarray, (0,), b'b'); BUILD (1, (2,), dtype('object'){flags: 0}, False, "
        "pack('<QQ', 0x10000, 0x10008))",
        shows="SIGSEGV at repr()",
    ),
    Gadget(
        "dtype_structured_object_field_flags_zero",
        9,
        "a 'V8' dtype with one object field and flags 0 (structured dtypes may carry any flags): numpy "
        "copies raw bytes into the object field",
        b_dtype_structured_object_field,
        crashed,
        "pickle",
        (STATE,),
        use=u_repr,
        chain="_reconstruct(ndarray, ...); BUILD (1, (1,), dtype('V8'){fields: {a: (dtype('O8'), 0)}, "
        "flags: 0}, "
        "False, pack('<Q', 0x10000))",
        shows="SIGSEGV at repr()",
    ),
    Gadget(
        "memo_shared_across_loads",
        9,
        "two pickles read by one Unpickler: #1 memoizes DatetimeTZDtype and pops it, #2 BINGETs it and calls "
        "DatetimeTZDtype('ns', 'dateutil/PATH'); the pre-scan of load #2 sees an unknown memo key "
        "(malformed-pickle, tolerated by the guard) and an Unknown callee",
        b_memo_across_loads,
        probe_true("read"),
        "pickle-stream",
        ("earlier-memo",),
        probe=p_zone_from_file,
        chain="pickle 1: PUT 0 DatetimeTZDtype; POP; None.  pickle 2: {'dtype': GET 0 ('ns', "
        "'dateutil/PATH') REDUCE}",
        shows="tzname 'PWND' read from a chosen file",
    ),
    # class 6: compiled internals trusting indices in the state, at first use
    Gadget(
        "tree_node_children_out_of_bounds",
        6,
        "a fitted DecisionTreeClassifier whose root's children are 10**9: predict(X) follows them past the "
        "node array (Tree checks the node array's dtype and shape, not its indices)",
        b_tree_node_children,
        crashed,
        "pickle",
        (STATE,),
        use=u_predict,
        chain="DecisionTreeClassifier{tree_: Tree(3, n_classes, 1){nodes: [root{left_child: 10**9, "
        "right_child: "
        "10**9}, ...]}}; model.predict(X)",
        shows="SIGSEGV at predict",
    ),
    Gadget(
        "kdtree_indices_out_of_bounds",
        6,
        "KNeighborsClassifier(kd_tree) whose KDTree idx_array holds 10**12: predict(X) reads data[10**12] "
        "(KDTree is reconstruct(state=any): its arrays are plain data to the scanner)",
        b_kdtree_indices,
        crashed,
        "joblib",
        (STATE,),
        use=u_predict,
        chain="KNeighborsClassifier{_tree: KDTree{state: (data, idx_array=[10**12]*6, ...)}}; "
        "model.predict(X)",
        shows="SIGSEGV at predict",
    ),
    Gadget(
        "tree_node_cycle_hangs_predict",
        6,
        "a fitted DecisionTreeClassifier whose root is its own child: every index in bounds, predict(X) "
        "never returns",
        b_tree_node_cycle,
        exhausted,
        "joblib",
        (STATE,),
        use=u_predict,
        chain="DecisionTreeClassifier{tree_: Tree{nodes: [root{left_child: 0, right_child: 0}, ...]}}; "
        "model.predict(X)",
        shows="predict(X) runs until the CPU limit",
        cpu_seconds=5,
        wall_seconds=15,
    ),
    Gadget(
        "csr_matrix_indices_out_of_bounds",
        6,
        "a csr_matrix whose column index is 10**8: m @ v reads x[10**8] in scipy's C++ kernel (no format "
        "check runs on unpickling)",
        b_csr_indices,
        crashed,
        "pickle",
        (STATE,),
        use=u_matvec,
        chain="{'features': csr_matrix{indices: [0, 10**8, 2, 3], ...}}; features @ v",
        shows="SIGSEGV at matvec",
    ),
    Gadget(
        "hist_gradient_boosting_node_out_of_bounds",
        6,
        "HistGradientBoostingClassifier whose predictor root has left child 4*10**9: predict(X) follows it "
        "past the node array",
        b_hist_gb_predictor,
        crashed,
        "joblib",
        (STATE,),
        use=u_predict,
        chain="HistGradientBoostingClassifier{_predictors: [[TreePredictor{nodes: [root{left: 4*10**9}]}]]}; "
        "model.predict(X)",
        shows="SIGSEGV at predict",
    ),
    Gadget(
        "tree_built_wider_than_its_input",
        6,
        "a DecisionTreeRegressor fitted on 3 features whose Tree says 100,000,000: predict checks X for 3 "
        "and "
        "the Tree reads X[i, 99_999_999]",
        b_tree_wider_than_input,
        crashed,
        "joblib",
        (STATE,),
        use=u_predict,
        chain="DecisionTreeRegressor{n_features_in_: 3, tree_: Tree(10**8){root feature 10**8 - 1}}; "
        "model.predict(X)",
        shows="SIGSEGV at predict",
    ),
    Gadget(
        "svm_support_count_beyond_vectors",
        6,
        "an SVC whose support_ holds 2,000,000 indices: libsvm reads that many support vector rows",
        b_svm_support_count,
        crashed,
        "joblib",
        (STATE,),
        use=u_predict,
        chain="SVC{support_: int32[2000000], support_vectors_: (4, 3)}; model.predict(X)",
        shows="SIGSEGV at predict",
    ),
    Gadget(
        "vectorizer_column_beyond_vocabulary",
        6,
        "a CountVectorizer + MultinomialNB pipeline whose vocabulary_ sends a term to column 10**9: the "
        "sparse product reads there",
        b_vectorizer_column_beyond_vocabulary,
        crashed,
        "pickle",
        (STATE,),
        use=u_predict_text,
        chain="Pipeline[CountVectorizer{vocabulary_: {cat: 10**9}}, MultinomialNB]; pipeline.predict(texts)",
        shows="SIGSEGV at predict",
    ),
    Gadget(
        "one_hot_code_beyond_outputs",
        6,
        "a OneHotEncoder whose categories start at -5,000,000: transform writes at column 5,000,007 of an "
        "8-column array",
        b_one_hot_beyond_outputs,
        crashed,
        "pickle",
        (STATE,),
        use=u_transform_4x2,
        chain="OneHotEncoder{categories_: [[0..3], [-5000000..3]], _n_features_outs: [4, 4]}; "
        "encoder.transform(X)",
        shows="SIGSEGV at transform",
    ),
    Gadget(
        "neighbors_training_data_narrower_than_input",
        6,
        "a brute-force KNeighborsClassifier with one-column training data checking its input for 4,000,000 "
        "columns: the Cython reduction reads each training row that wide",
        b_neighbors_narrow_training_data,
        crashed,
        "joblib",
        (STATE,),
        use=u_predict_wide,
        chain="KNeighborsClassifier{_fit_X: (6, 1), n_features_in_: 4000000}; "
        "model.predict(X of 4000000 columns)",
        shows="SIGSEGV at predict",
    ),
    Gadget(
        "dia_offsets_without_data",
        6,
        "a DIA matrix with 2000 offsets and one data row: the matvec kernel reads a row per offset",
        b_dia_offsets_without_data,
        crashed,
        "pickle",
        (STATE,),
        use=u_matvec_2000,
        chain="{'features': dia_matrix{data: (1, 2000), offsets: [0..1999]}}; features @ v",
        shows="SIGSEGV at matvec",
    ),
    Gadget(
        "lil_column_beyond_shape",
        6,
        "a 3 x 3 LIL matrix holding column 10**8: tocsr copies it unchecked, toarray writes there",
        b_lil_column_beyond_shape,
        crashed,
        "pickle",
        (STATE,),
        use=u_lil_dense,
        chain="{'features': lil_matrix{rows: [[10**8], [], []]}}; features.tocsr().toarray()",
        shows="SIGSEGV at toarray",
    ),
    Gadget(
        "series_index_longer_than_values",
        6,
        "a Series of one value whose index claims 10,000,000 labels: SingleBlockManager.__setstate__ runs "
        "no integrity check; reindex takes values at the index's positions (pandas' Cython take, "
        "boundscheck off)",
        b_series_index_longer_than_values,
        crashed,
        "pickle",
        (STATE,),
        use=u_reindex_far,
        chain="Series{_mgr: SingleBlockManager.__setstate__(values: float64[1], axes: [RangeIndex(10**7)])}; "
        "series.reindex([0, 9999999, -5])",
        shows="SIGSEGV at reindex",
    ),
    Gadget(
        "dtype_field_past_its_items",
        6,
        "a 16-byte structured dtype whose second object field lies at byte 2**40: numpy's dtype "
        "__setstate__ checks no field against the item size; the array's objects are stored there",
        b_dtype_field_past_its_items,
        crashed,
        "pickle",
        (STATE,),
        chain="_reconstruct(ndarray, ...); BUILD (1, (4,), dtype('V16'){fields: {a: (O8, 0), "
        "b: (O8, 2**40)}, "
        "flags: 27}, False, [(1, 2)] * 4)",
        shows="SIGSEGV in pickle.loads",
    ),
    Gadget(
        "boosting_stage_wider_than_predictions",
        6,
        "a GradientBoostingRegressor whose stages hold 4096 trees for raw predictions one column wide: "
        "predict_stages adds their leaf values past each row of the output, unchecked",
        b_boosting_stage_wider_than_predictions,
        crashed_or_misread,
        "pickle",
        (STATE,),
        probe=p_boosting_misread,
        chain="GradientBoostingRegressor{estimators_: object[2, 4096], n_trees_per_iteration_: 1}; "
        "model.predict(X)",
        shows="predictions summed from other rows' trees (writes past each row), or SIGSEGV",
    ),
    Gadget(
        "neighbors_class_code_beyond_classes",
        6,
        "a brute-force KNeighborsClassifier of two classes whose class codes _y are 10**9: predict's "
        "class-mode reduction adds each vote at class_scores[row, _y[neighbor]], unchecked",
        b_neighbors_class_code_beyond_classes,
        crashed,
        "pickle",
        (STATE,),
        use=u_predict_three_columns,
        chain="KNeighborsClassifier{algorithm: brute, metric: manhattan, _y: [10**9] * 6, classes_: [0, 1]}; "
        "model.predict(X)",
        shows="SIGSEGV at predict",
    ),
    Gadget(
        "tree_paths_doubling_hangs_partial_dependence",
        6,
        "a fitted DecisionTreeRegressor whose 60 nodes each have the next as both children: every index "
        "in bounds, predict follows one path, partial_dependence visits all 2**59",
        b_tree_paths_doubling,
        exhausted,
        "joblib",
        (STATE,),
        use=u_partial_dependence,
        chain="DecisionTreeRegressor{tree_: nodes[i].left_child = nodes[i].right_child = i + 1}; "
        "partial_dependence(model, X, [0], method='recursion')",
        shows="partial_dependence never returns (stopped by the CPU limit)",
        cpu_seconds=10,
        wall_seconds=20,
    ),
    Gadget(
        "neighbors_mahalanobis_matrix_smaller_than_input",
        6,
        "a brute-force Mahalanobis NearestNeighbors on 4,000 features whose VI is 1 x 1: kneighbors hands it "
        "to scipy's cdist, which reads it as 4,000 x 4,000",
        b_neighbors_mahalanobis_matrix_smaller_than_input,
        crashed,
        "pickle",
        (STATE,),
        use=u_kneighbors_4000,
        chain="NearestNeighbors{algorithm: brute, metric: mahalanobis, "
        "effective_metric_params_: {VI: eye(1)}, _fit_X: (6, 4000)}; model.kneighbors(X)",
        shows="SIGSEGV at kneighbors",
    ),
    Gadget(
        "hist_gradient_boosting_loss_of_fewer_classes",
        6,
        "a warm-starting HistGradientBoostingClassifier of 3 classes given a multinomial loss of 2: the "
        "next fit writes 3 gradient columns per sample into arrays of 2",
        b_hist_gradient_boosting_loss_of_fewer_classes,
        crashed,
        "pickle",
        (STATE,),
        use=u_warm_fit_three_classes,
        chain="HistGradientBoostingClassifier{warm_start: True, loss: HalfMultinomialLoss{n_classes: 2}, "
        "classes_: [0, 1, 2]}; model.fit(X, y)",
        shows="heap corruption (glibc abort) at fit",
    ),
    Gadget(
        "lasso_warm_start_weights_beyond_input",
        6,
        "a warm-starting Lasso fitted on 3 features whose coef_ holds 1,000,000 weights: fit on sparse data "
        "reads a column pointer of the input per weight in the Cython coordinate descent",
        b_lasso_warm_start_weights_beyond_input,
        crashed,
        "joblib",
        (STATE,),
        use=u_fit_sparse_three_columns,
        chain="Lasso{warm_start: True, coef_: float64[1000000], n_features_in_: 3}; "
        "model.fit(csc X of 3 columns)",
        shows="SIGSEGV at fit",
    ),
    Gadget(
        "hashing_vectorizer_without_features",
        6,
        "a HashingVectorizer with n_features 0: transform takes each hash modulo 0 in the Cython hashing",
        b_hashing_vectorizer_without_features,
        crashed,
        "pickle",
        (STATE,),
        use=u_transform_text,
        chain="HashingVectorizer{n_features: 0}; vectorizer.transform(texts)",
        shows="SIGFPE at transform",
    ),
    Gadget(
        "dict_vectorizer_column_beyond_vocabulary",
        6,
        "a DictVectorizer whose vocabulary_ sends a feature to column 2,000,000,000: transform writes there "
        "in a two-column array",
        b_dict_vectorizer_column,
        crashed,
        "pickle",
        (STATE,),
        use=u_transform_records,
        chain="DictVectorizer{vocabulary_: {a: 0, b: 2000000000}}; vectorizer.transform(records)",
        shows="SIGSEGV at transform",
    ),
    Gadget(
        "multi_index_code_out_of_bounds",
        6,
        "a Series whose MultiIndex holds code 2**31 - 1 for a level of 40,000 values: unpickling makes the "
        "index without pandas' integrity check, and .values reads the level 16 GB past its end",
        b_multi_index_code,
        crashed,
        "pickle",
        (STATE,),
        use=u_index_values,
        chain="Series{index: _new_Index(MultiIndex, {levels: [Index(40000 floats)], "
        "codes: [[0, 2**31-1]]})}; series.index.values",
        shows="SIGSEGV at .values",
    ),
    Gadget(
        "masked_array_mask_shorter_than_data",
        6,
        "an Int8 Series of 20,000,000 values with a one-item mask: value_counts() reads the mask 20 MB past "
        "its end (pandas' Cython hashing, boundscheck off)",
        b_masked_array_short_mask,
        crashed_or_misread,
        "pickle",
        (STATE,),
        probe=p_masked_misread,
        chain="Series{_mgr: ... IntegerArray{_data: int8[20000000], _mask: bool[1]}}; series.value_counts()",
        shows="SIGSEGV at value_counts(), or missing values counted that the file does not hold",
    ),
    Gadget(
        "dataframe_block_placement_oob_write",
        6,
        "a DataFrame block placed at slice(2**40, 2**40 + 1): BlockManager checks the item count only; "
        "the first column access or print writes blkno at index 2**40 (Cython, boundscheck off)",
        b_dataframe_block_placement,
        crashed,
        "pickle",
        (STATE,),
        use=u_repr,
        chain="DataFrame{_mgr: BlockManager((_unpickle_block(values, slice(2**40, 2**40+1, 1), 2),), "
        "axes)}; repr",
        shows="SIGSEGV at repr()",
    ),
    Gadget(
        "dataframe_older_state_placement_oob_write",
        6,
        "a DataFrame in pandas < 2's layout whose block is placed at [0, 2**40]: BlockManager.__setstate__ "
        "rebuilds the item index at once and writes blknos at index 2**40 (Cython, boundscheck off), "
        "inside the load",
        b_dataframe_older_state_placement,
        crashed,
        "pickle",
        (STATE,),
        chain="DataFrame{_mgr: BlockManager.__setstate__((axes, values, items, {'0.14.1': {axes, blocks: "
        "[{values, mgr_locs: [0, 2**40]}]}}))}",
        shows="SIGSEGV in pickle.loads",
    ),
    Gadget(
        "sparse_tensor_unvalidated_indices",
        6,
        "_rebuild_sparse_tensor in a plain pickle: torch defers the invariant check to the end of "
        "torch.load, "
        "which pickle.load never reaches; to_dense() writes at index 2**40",
        b_sparse_unvalidated,
        crashed,
        "pickle",
        (ARG,),
        use=u_to_dense,
        chain="_rebuild_sparse_tensor(_get_layout('torch.sparse_coo'), (from_numpy([[2**40]]), "
        "from_numpy([1.0]), "
        "torch.Size((4,))))",
        shows="SIGSEGV at to_dense()",
    ),
    # class 4: sizes and loop counts in the state, at first use
    Gadget(
        "spectral_norm_power_iterations_at_forward",
        4,
        "a torch.save'd Linear with a real spectral_norm hook (an allowed hook class) whose "
        "n_power_iterations is 10**12: model(x) never returns",
        b_spectral_norm_iterations,
        exhausted,
        "torch-zip",
        (STATE,),
        use=u_forward,
        chain="Linear{_forward_pre_hooks: {0: SpectralNorm{n_power_iterations: 10**12}}}; model(x)",
        shows="CPU budget exhausted at forward",
        **DOS,
    ),
    Gadget(
        "upsample_size_at_forward",
        4,
        "nn.Upsample with size=(60000, 60000): scale_factor is bounded, size is not",
        b_upsample_size,
        exhausted,
        "torch-zip",
        (STATE,),
        use=u_forward_image,
        chain="Upsample{size: (60000, 60000), mode: 'nearest'}; model(torch.ones(1, 1, 4, 4))",
        shows="address-space budget exhausted at forward",
        **DOS,
    ),
    Gadget(
        "function_transformer_ones_like_shape",
        4,
        "FunctionTransformer{func: numpy.ones_like, kw_args: {shape: (60000, 60000)}}: a `value` function "
        "called with keyword arguments from the state; transform(X) fills 28 GB",
        b_function_transformer_ones_like,
        exhausted,
        "joblib",
        (STATE, ROLE, "disallowed-import"),
        use=u_transform_3,
        chain="FunctionTransformer{func: numpy.ones_like, kw_args: {shape: (60000, 60000)}}; transform(X)",
        shows="address-space budget exhausted at transform",
        **DOS,
    ),
    Gadget(
        "allocating_class_as_called_value",
        4,
        "FunctionTransformers numpy.max(initial=3e9) -> numpy.int64 -> numpy.ndarray: a class that allocates "
        "from its argument, stored where the library calls it; predict() allocates 24 GB",
        b_allocating_class_chain,
        exhausted,
        "pickle",
        (ROLE,),
        use=u_predict_4x3,
        chain="Pipeline[FT(np.max, initial=3e9), FT(np.int64), FT(np.ndarray)]; predict(X)",
        shows="address-space budget exhausted at predict",
        **DOS,
    ),
    Gadget(
        "token_pattern_catastrophic_backtracking",
        4,
        "TfidfVectorizer{token_pattern: '(?:(?:a|a)+)+$'}: transform() of a 41-character document backtracks "
        "exponentially",
        b_token_pattern_redos,
        exhausted,
        "pickle",
        (STATE,),
        use=u_transform_redos,
        chain="TfidfVectorizer{token_pattern: nested quantified alternation}; transform(['a' * 40 + '!'])",
        shows="CPU budget exhausted at transform",
        **DOS,
    ),
    Gadget(
        "padding_growth_across_dimensions",
        4,
        "ZeroPad2d{padding: (0, 60000, 0, 60000)}: pads multiply across dimensions; forward of a 4x4 image "
        "allocates 43 GB",
        b_padding_growth,
        exhausted,
        "torch-zip",
        (STATE,),
        use=u_forward_4x4,
        chain="ZeroPad2d{padding: (0, 60000, 0, 60000)}; model(torch.ones(1, 3, 4, 4))",
        shows="address-space budget exhausted at forward",
        **DOS,
    ),
    Gadget(
        "legacy_storage_declared_beyond_file",
        4,
        "a legacy torch file declares a 2^30-element storage in its data pickle and holds no data: "
        "torch.load allocates 4 GB while loading",
        b_legacy_storage_declared,
        exhausted,
        "torch-legacy",
        ("container",),
        chain="persistent id ('storage', FloatStorage, '0', 'cpu', 2**30, None); storage keys []",
        shows="address-space budget exhausted at load",
        **DOS,
    ),
    # class 6: native state
    Gadget(
        "bunch_dict_base_pairs_wild_pointer",
        6,
        "copyreg._reconstructor(Bunch, dict, [('__array_interface__', {data: (0x10000, False)})]) as a "
        "DummyRegressor's constant_: numpy reads the wild pointer at predict()",
        b_bunch_pairs_wild_pointer,
        crashed,
        "pickle",
        (ARG,),
        use=u_predict,
        chain="_reconstructor(Bunch, dict, [pairs]) -> DummyRegressor.constant_; predict(X)",
        shows="SIGSEGV at predict",
    ),
    # class 5: process-wide state
    Gadget(
        "removable_handle_next_id_process_wide",
        5,
        "RemovableHandle BUILD (None, 1e300) sets the class attribute next_id to 1e300 (+1 is a no-op "
        "there): "
        "every hook registered later in the process gets the same id and replaces the one before",
        b_removable_handle_next_id,
        probe_true("hook_lost"),
        "torch-zip",
        (STATE, ROLE),
        probe=p_hook_ids,
        chain="NEWOBJ torch.utils.hooks.RemovableHandle; BUILD (None, 1e300)",
        shows="of two forward hooks registered after the load, only the last runs",
    ),
]

BY_NAME: Dict[str, Gadget] = {g.name: g for g in CATALOGUE}

# Every name a gadget imports, each verified allowed by picklefence's default policy as it was
# before roles: Policy.ml_default().is_allowed of the picklefence 0.1.0 build of commit 6d8a089,
# and the `module:qualname` lines of crates/picklefence/policies/*.txt at that commit.
BASELINE_ALLOWED: FrozenSet[str] = frozenset(
    {
        "_codecs:encode",
        "accelerate.state:PartialState",
        "accelerate.utils.dataclasses:DeepSpeedPlugin",
        "accelerate.utils.dataclasses:DistributedType",
        "accelerate.utils.deepspeed:HfDeepSpeedConfig",
        "argparse:Namespace",
        "builtins:bytearray",
        "builtins:frozenset",
        "builtins:int",
        "builtins:list",
        "builtins:range",
        "builtins:set",
        "builtins:str",
        "collections:Counter",
        "collections:OrderedDict",
        "collections:defaultdict",
        "collections:deque",
        "copyreg:__newobj__",
        "copyreg:_reconstructor",
        "dateutil.tz.tz:tzutc",
        "decimal:Decimal",
        "fractions:Fraction",
        "joblib.numpy_pickle:NumpyArrayWrapper",
        "numpy._core.multiarray:_reconstruct",
        "numpy._core.multiarray:scalar",
        "numpy.ma.core:MaskedConstant",
        "numpy.random._pickle:__bit_generator_ctor",
        "numpy.random._pickle:__generator_ctor",
        "numpy.random._pickle:__randomstate_ctor",
        "numpy:dtype",
        "numpy:int64",
        "numpy:mean",
        "numpy:ndarray",
        "pandas.core.dtypes.dtypes:DatetimeTZDtype",
        "pandas.core.frame:DataFrame",
        "pandas.core.indexes.base:Index",
        "pandas.core.indexes.base:_new_Index",
        "pandas.core.indexes.datetimes:DatetimeIndex",
        "pandas.core.indexes.datetimes:_new_DatetimeIndex",
        "pathlib:PosixPath",
        "scipy._lib.array_api_compat.numpy._aliases:asarray",
        "scipy.sparse._lil:lil_matrix",
        "sklearn.cluster._agglomerative:AgglomerativeClustering",
        "sklearn.cluster._kmeans:KMeans",
        "sklearn.cluster._kmeans:_kmeans_single_elkan",
        "sklearn.cluster._kmeans:_kmeans_single_lloyd",
        "sklearn.dummy:DummyRegressor",
        "sklearn.ensemble._stacking:StackingClassifier",
        "sklearn.feature_extraction.text:CountVectorizer",
        "sklearn.feature_selection._from_model:SelectFromModel",
        "sklearn.linear_model._logistic:LogisticRegression",
        "sklearn.metrics._scorer:_Scorer",
        "sklearn.model_selection._classification_threshold:FixedThresholdClassifier",
        "sklearn.model_selection._search:GridSearchCV",
        "sklearn.multioutput:ClassifierChain",
        "sklearn.neighbors._kd_tree:newObj",
        "sklearn.pipeline:Pipeline",
        "sklearn.preprocessing._data:StandardScaler",
        "sklearn.preprocessing._function_transformer:FunctionTransformer",
        "sklearn.preprocessing._label:LabelEncoder",
        "sklearn.utils._bunch:Bunch",
        "sklearn.utils.validation:check_array",
        "torch._C._nn:gelu",
        "torch._tensor:_rebuild_from_type_v2",
        "torch._utils:_rebuild_device_tensor_from_numpy",
        "torch._utils:_rebuild_parameter",
        "torch._utils:_rebuild_tensor_v2",
        "torch.nn.functional:relu",
        "torch.nn.modules.linear:Linear",
        "torch.nn.modules.transformer:Transformer",
        "torch.nn.modules.transformer:TransformerEncoder",
        "torch.nn.modules.transformer:TransformerEncoderLayer",
        "torch.nn.modules.upsampling:Upsample",
        "torch.storage:TypedStorage",
        "torch:FloatStorage",
        "torch:Size",
        "torch:device",
        "torch:float32",
        "transformers.trainer_utils:IntervalStrategy",
        "transformers.training_args:TrainingArguments",
        # Added with the red-team gadgets; each checked against the `module:qualname` lines of
        # crates/picklefence/policies/*.txt at commit 6d8a089 (git show 6d8a089:...).
        "builtins:slice",
        "builtins:tuple",
        "pandas._libs.internals:_unpickle_block",
        "pandas.core.internals.managers:BlockManager",
        "pandas:Index",
        "pandas:RangeIndex",
        "sklearn.gaussian_process.kernels:Hyperparameter",
        "sklearn.metrics._dist_metrics:EuclideanDistance64",
        "sklearn.metrics._dist_metrics:newObj",
        "sklearn.neighbors._classification:KNeighborsClassifier",
        "sklearn.neighbors._kd_tree:KDTree",
        "sklearn.tree._classes:DecisionTreeClassifier",
        "sklearn.tree._tree:Tree",
        "torch._utils:_rebuild_parameter_with_state",
        "torch._utils:_rebuild_sparse_tensor",
        "torch.serialization:_get_layout",
        "torch.utils.hooks:RemovableHandle",
        "torch:Tensor",
        "torch:int64",
    }
)

# Names the red-team gadgets use that the default policy allows only since roles (commit 9b96550
# added them, with a role): not in BASELINE_ALLOWED, checked against the current policy instead.
ROLES_ERA_ALLOWED: FrozenSet[str] = frozenset(
    {
        "torch.nn.utils.spectral_norm:SpectralNorm",
        # Second red-team round.
        "numpy:max",
        "numpy:float64",
        "sklearn.feature_extraction.text:TfidfTransformer",
        "sklearn.feature_extraction.text:TfidfVectorizer",
        "torch.nn.modules.padding:ZeroPad2d",
        "builtins:dict",
        # Native-state gadgets of issue 13 (real fitted models, names of the current policy).
        "numpy.random._mt19937:MT19937",
        "sklearn._loss._loss:CyHalfSquaredError",
        "sklearn._loss.link:IdentityLink",
        "sklearn._loss.loss:HalfSquaredError",
        "sklearn.ensemble._gb:GradientBoostingRegressor",
        "scipy.sparse._csr:csr_matrix",
        "builtins:bytes",
        "numpy.random._pcg64:PCG64",
        "numpy.random.bit_generator:SeedSequence",
        "numpy.random.bit_generator:__pyx_unpickle_SeedSequence",
        "sklearn._loss._loss:CyHalfBinomialLoss",
        "sklearn._loss.link:Interval",
        "sklearn._loss.link:LogitLink",
        "sklearn._loss.loss:HalfBinomialLoss",
        "sklearn.ensemble._hist_gradient_boosting.binning:_BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting:HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.predictor:TreePredictor",
        # Native-state gadgets of pandas' index and array types (issue 13, later round).
        "pandas:Series",
        "pandas:MultiIndex",
        "pandas.core.internals.managers:SingleBlockManager",
        "pandas.arrays:IntegerArray",
        "pandas:Int8Dtype",
        "sklearn.tree._classes:DecisionTreeRegressor",
        "sklearn.svm._classes:SVC",
        "sklearn.naive_bayes:MultinomialNB",
        "sklearn.preprocessing._encoders:OneHotEncoder",
        "scipy.sparse._dia:dia_matrix",
        "sklearn.feature_extraction._dict_vectorizer:DictVectorizer",
        # Native-state gadgets of the scikit-learn red team, round 2.
        "sklearn.neighbors._unsupervised:NearestNeighbors",
        "sklearn.linear_model._coordinate_descent:Lasso",
        "sklearn.feature_extraction.text:HashingVectorizer",
        "sklearn._loss._loss:CyHalfMultinomialLoss",
        "sklearn._loss._loss:__pyx_unpickle_CyHalfMultinomialLoss",
        "sklearn._loss.link:MultinomialLogit",
        "sklearn._loss.loss:HalfMultinomialLoss",
    }
)

# Names the roles commit allowed and red-teaming then withdrew: value functions with a keyword
# that sizes an allocation (the gadget that uses it is now refused by name as well).
WITHDRAWN: FrozenSet[str] = frozenset({"numpy:ones_like"})

# ============================================================================================
# The harness: run in a subprocess by the tests (`runner_main`), forks one child per gadget.

PREIMPORT = (
    "numpy",
    "scipy.sparse",
    "pandas",
    "joblib",
    "torch",
    "sklearn",
    "sklearn.feature_extraction.text",
    "sklearn.cluster",
    "sklearn.model_selection",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.multioutput",
    "sklearn.feature_selection",
    "sklearn.metrics",
    "dateutil.tz",
    "accelerate.state",
    "accelerate.utils",
    "transformers.training_args",
    "picklefence",
)


def available(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def load_file(container: str, path: str, weights_only: bool = False) -> Any:
    if container == "pickle":
        with open(path, "rb") as f:
            return pickle.load(f)
    if container == "pickle-stream":
        # A stream of records read by one Unpickler (its memo lives across load() calls).
        with open(path, "rb") as f:
            unpickler = pickle.Unpickler(f)
            unpickler.load()
            return unpickler.load()
    if container in ("torch-zip", "torch-legacy"):
        import torch

        return torch.load(path, weights_only=weights_only)
    if container == "joblib":
        import joblib

        return joblib.load(path)
    raise ValueError(container)


def _write(path: Path, data: Dict[str, Any]) -> None:
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(data, default=repr))
    os.replace(tmp, path)


def _child(g: Gadget, phase: str, path: str, tmp: Path) -> None:
    os.setpgid(0, 0)
    os.chdir(tmp)
    _quiet()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (g.cpu_seconds, g.cpu_seconds + 2))
    vm = _status_kb("VmSize") * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + g.mem_budget_mb * 2**20,) * 2)
    out: Dict[str, Any] = {"phase": phase, "load": None, "error": None, "unsafe": False, "use": None}
    out["rss0_kb"] = _status_kb("VmRSS")
    _write(tmp / "_child.json", out)
    obj = None
    if phase == "guard":
        import picklefence

        picklefence.activate_safe_ml_environment()
    try:
        obj = load_file(g.container, path, weights_only=(phase == "weights_only"))
        out["load"] = "ok"
    except BaseException as e:
        import picklefence

        out["load"] = "error"
        out["error"] = f"{type(e).__name__}: {str(e)[:400]}"
        out["unsafe"] = isinstance(e, picklefence.UnsafeFileError)
    _write(tmp / "_child.json", out)
    if phase != "weights_only":
        if out["load"] == "ok" and g.use is not None:
            try:
                g.use(obj, tmp)
                out["use"] = "ok"
            except BaseException as e:
                out["use"] = f"error {type(e).__name__}: {str(e)[:300]}"
            _write(tmp / "_child.json", out)
        if g.probe is not None:
            try:
                found = g.probe(obj, tmp)
            except BaseException as e:
                found = {"probe_error": f"{type(e).__name__}: {str(e)[:300]}"}
            _write(tmp / "_probe.json", found)
    for line in _children():
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    _write(tmp / "_child.json", out)


def run_jobs(jobs: List[Dict[str, Any]], parallel: int = 2) -> Dict[str, Dict[str, Any]]:
    """Fork one child per job (at most `parallel` at a time), enforce the wall clock, record how
    each child ended in its tmp dir. Must be called before any thread is started."""
    pending = list(jobs)
    running: Dict[int, Tuple[Dict[str, Any], float]] = {}
    results: Dict[str, Dict[str, Any]] = {}
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            g = BY_NAME[job["name"]]
            tmp = Path(job["tmp"])
            for stale in ("_child.json", "_probe.json", "_outcome.json"):
                (tmp / stale).unlink(missing_ok=True)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    _child(g, job["phase"], job["path"], tmp)
                except BaseException:
                    code = 3
                os._exit(code)
            running[pid] = (job, time.monotonic())
        time.sleep(0.02)
        for pid, (job, start) in list(running.items()):
            g = BY_NAME[job["name"]]
            done, status, usage = os.wait4(pid, os.WNOHANG)
            elapsed = time.monotonic() - start
            timed_out = False
            if done == 0:
                if elapsed < g.wall_seconds:
                    continue
                timed_out = True
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                done, status, usage = os.wait4(pid, 0)
            try:
                os.killpg(pid, signal.SIGKILL)  # stragglers of the child's own process group
            except (ProcessLookupError, PermissionError):
                pass
            del running[pid]
            tmp = Path(job["tmp"])
            child = _read_json(tmp / "_child.json")
            rec: Dict[str, Any] = {
                "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "timed_out": timed_out,
                "elapsed": round(elapsed, 2),
                "maxrss_kb": usage.ru_maxrss,
                "peak_growth_mb": round(
                    (usage.ru_maxrss - int(child.get("rss0_kb", usage.ru_maxrss))) / 1024, 1
                ),
            }
            _write(tmp / "_outcome.json", rec)
            rec.update(child)
            results[job["name"]] = rec
    return results


def runner_main() -> None:
    """stdin: {"jobs": [...], "result": PATH}; writes {name: outcome} to PATH."""
    import importlib

    spec = json.load(sys.stdin)
    _quiet()
    for module in PREIMPORT:
        try:
            importlib.import_module(module)
        except Exception:
            pass
    results = run_jobs(spec["jobs"], int(spec.get("parallel", 2)))
    Path(spec["result"]).write_text(json.dumps(results, default=repr))

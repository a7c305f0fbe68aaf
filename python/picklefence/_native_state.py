"""Validators for native state: what compiled code in allowed libraries trusts in an object's state.

A type allowlist is not memory safety. A scikit-learn ``Tree`` follows the child indices of its
node array without bounds checks, a ``KDTree`` reads ``data[idx_array[i]]``, a pandas
``BlockManager`` writes at its blocks' placements, scipy's sparse kernels index with
``indptr``/``indices``, a ``Categorical`` takes ``categories[codes[i]]``, torch's oneDNN LSTM reads
each weight as large as the module's ``hidden_size`` makes it. Loaded from a file, all of these are
data the attacker chose. After a guarded load, and before the caller gets the result,
every instance of such a class that the load made is checked against the invariant its own code
assumes (vectorised NumPy over the arrays; nothing in the object is called but attribute reads
and the libraries' own format checks).

Which loads are walked: the guard's find_class notes when a load imports from a library that
holds such classes (:data:`VALIDATED_MODULES`); only then is the result walked. The walk follows
what the garbage collector sees (containers, instance dicts, extension types' fields) and the
items of object arrays, so a validated object cannot hide in a container the walk skips.
"""

from __future__ import annotations

import sys
import threading
import types
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from . import _boosters, _native
from .errors import UnsafeFileError, Violation

# Imports from these modules (prefixes) make a load's result walked after the load: the
# classes there are reconstructed (NEWOBJ and the like make them, which nothing can intercept).
WALKED_MODULES: Tuple[str, ...] = (
    "pandas",
    "scipy.sparse",
    "scipy.interpolate",
    "sklearn.neighbors",
    "sklearn.ensemble",
    "sklearn.tree._classes",
    "sklearn.svm",
    "sklearn.cluster._kmeans",
    "sklearn.cluster._bisect_k_means",
    "sklearn.cluster._birch",
    "sklearn.feature_extraction.text",
    "sklearn.feature_extraction._dict_vectorizer",
    "sklearn.preprocessing._encoders",
    "sklearn.preprocessing._label",
    "sklearn.linear_model._stochastic_gradient",
    "sklearn.linear_model._perceptron",
    "sklearn.linear_model._passive_aggressive",
    "sklearn.cluster._hdbscan",
    "sklearn.feature_extraction._hash",
    "sklearn.linear_model._coordinate_descent",
    "torch.nn.modules.rnn",
    # A WeightNorm hook reads its module's weights: the walk finds the modules (OWNER_CLASSES).
    "torch.nn.utils.weight_norm",
)
# Classes whose import makes a load's result walked, in modules whose other names do not: NumPy's
# generators when a pickle reconstructs them (their usual pickles call the constructors of
# CAPTURED instead, so a model holding a RandomState is not walked for it).
WALKED_CLASSES: Tuple[Tuple[str, str], ...] = (
    ("numpy.random.mtrand", "RandomState"),
    ("numpy.random._generator", "Generator"),
    ("numpy.random.bit_generator", "BitGenerator"),
)
# Classes a pickle can make only by calling them (their role is `call`): find_class hands the
# load a constructor that records what it makes, so no walk is needed to find them (a forest
# or a boosting model holds hundreds).
CAPTURED: Dict[Tuple[str, str], str] = {
    ("sklearn.tree._tree", "Tree"): "tree",
    # NumPy's pickled generators: what these make is checked after the load.
    ("numpy.random._pickle", "__randomstate_ctor"): "random",
    ("numpy.random._pickle", "__generator_ctor"): "random",
    ("numpy.random._pickle", "__bit_generator_ctor"): "random",
}
# Classes a pickle can only hand to a CAPTURED constructor (their role is `argument`): the
# instances are checked as what the constructor made.
CAPTURED_ARGUMENTS: Tuple[Tuple[str, str], ...] = (
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._philox", "Philox"),
)
# Base classes whose subclasses get their state from a pickle only through ``__setstate__``
# (BUILD calls it whenever the class has one): while the guard is active, the ``__setstate__``
# of each such class a load imports records the instance for the check after the load, so
# loads that import nothing else need no walk (a boosting model holds 900 estimators; the walk
# was a quarter of its validation).
SETSTATE_CAPTURED: Dict[Tuple[str, str], str] = {
    ("sklearn.tree._classes", "BaseDecisionTree"): "tree_estimator",
    ("sklearn.ensemble._forest", "BaseForest"): "tree_ensemble",
    ("sklearn.ensemble._gb", "BaseGradientBoosting"): "tree_ensemble",
    ("sklearn.ensemble._bagging", "BaseBagging"): "tree_ensemble",
}
# Classes whose ``__setstate__`` already trusts the state it is given, so a check after the load
# comes too late: a block manager given the ``(axes, values, items, {"0.14.1": ...})`` state
# (older frames, every series) rebuilds its item index at once, writing at every placement; the
# boosters of the named policies hand their model bytes to C++ parsers (``_boosters``). While the
# guard is active their ``__setstate__`` checks the state first (restored on deactivation), with
# the check named here.
SETSTATE_CHECKED: Dict[Tuple[str, str], str] = {
    ("pandas.core.internals.managers", "BlockManager"): "block_manager",
    ("pandas.core.internals.managers", "SingleBlockManager"): "block_manager",
    ("lightgbm.basic", "Booster"): "lightgbm",
    ("xgboost.core", "Booster"): "xgboost",
}
# Functions whose results the rest of a load may read at once (pyarrow's ``_restore_array``: a
# pandas array, index or block reads the array it is handed), on every unpickling path: while
# the guard is active the module attribute find_class resolves is a wrapper that checks what
# the function made before the load sees it (restored on deactivation).
CHECKED_ON_CREATION: Tuple[Tuple[str, str], ...] = (("pyarrow.lib", "_restore_array"),)

# Skipped by the walk: values that hold no objects (exact types), and classes and modules with
# their subclasses.
_ATOMIC_TYPES: List[type] = [
    int,
    float,
    complex,
    str,
    bytes,
    bytearray,
    bool,
    type(None),
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
]
_SKIPPED_BASES: List[type] = [type, types.ModuleType]
# NumPy's numeric scalars hold no objects either (added when numpy is loaded: see ``_walker``).
_SKIPPED_NUMPY_BASES = ("number", "bool_")

_state = threading.local()


def note_import(module: str, name: str) -> None:
    """Called by the guard's find_class layers for every allowed import of a guarded load."""
    if (module, name) in SETSTATE_CHECKED:
        _check_setstate_of(module, name)
    if (module, name) in CHECKED_ON_CREATION:
        _check_made_by(module, name)
    if (module, name) not in CAPTURED and _needs_walk(module, name):
        _state.triggered = True


def note_audited(module: str, name: str) -> None:
    """Called by the audit hook for every allowed import: on paths without the guard's
    find_class (``pickle.loads``, pre-bound aliases) the constructors do not capture, so their
    results are walked."""
    if (module, name) in SETSTATE_CHECKED:
        _check_setstate_of(module, name)
    if (module, name) in CHECKED_ON_CREATION:
        _check_made_by(module, name)
    if (module, name) in CAPTURED:
        if not getattr(_state, "in_capture", False):
            _state.triggered = True
    elif _needs_walk(module, name):
        _state.triggered = True


# Class -> how a load finds its instances: ("capture", key) when its ``__setstate__`` records
# them (see SETSTATE_CAPTURED), ("walk", None) for another subclass of a validated class, ("",
# None) for neither. Decided once per class (its bases are loaded with it).
_class_decisions: Dict[type, Tuple[str, Optional[str]]] = {}


def _needs_walk(module: str, name: str) -> bool:
    """Whether a load that imports ``module.name`` must walk its result: not for a class whose
    instances its ``__setstate__`` records (a subclass of a :data:`SETSTATE_CAPTURED` base, in
    any module: a user's forest too; the recorder is installed here, once, while the guard is
    active), always for another subclass of a validated class (a user's ``KMeans`` allowed by
    ``also_allow`` lives in a module the walk does not know), else when the module holds such
    classes (:data:`WALKED_MODULES`: also the functions that make them). The module is imported
    here if it is not yet (find_class imports it next). Not for a class only handed to a captured
    constructor (:data:`CAPTURED_ARGUMENTS`), checked as what that made."""
    if (module, name) in CAPTURED_ARGUMENTS:
        return False
    if getattr(_state, "captured", None) is not None:  # a watched load (else nothing validates)
        import importlib

        try:
            found = getattr(sys.modules.get(module) or importlib.import_module(module), name, None)
        except Exception:
            found = None  # find_class reports it
        if isinstance(found, type):
            kind, key = _class_decisions.get(found) or _decide(found)
            if kind == "capture":
                if key is not None and SETSTATE_CAPTURED and _recording(found, key, module, name):
                    return False
            elif kind == "walk":
                return True
    return module.startswith(WALKED_MODULES) or (module, name) in WALKED_CLASSES


def _decide(cls: Any) -> Tuple[str, Optional[str]]:
    decision: Tuple[str, Optional[str]] = ("", None)
    for (base_module, base_name), key in SETSTATE_CAPTURED.items():
        base = getattr(sys.modules.get(base_module), base_name, None)
        if isinstance(base, type) and issubclass(cls, base):
            # Without a __setstate__, BUILD sets the instance dict directly: walked instead.
            decision = ("capture", key) if callable(getattr(cls, "__setstate__", None)) else ("walk", None)
            break
    else:
        if any(issubclass(cls, validated) for validated, _ in _classes()):
            decision = ("walk", None)
    if SETSTATE_CAPTURED:  # not while the benchmark has the captures off
        _class_decisions[cls] = decision
    return decision


def _recording(cls: Any, key: str, module: str, name: str) -> bool:
    """Whether ``cls.__setstate__`` records its instances under ``key``, installing the
    recorder if not yet (False when the guard is not active)."""
    if getattr(cls.__dict__.get("__setstate__"), "_picklefence_records", None) == key:
        return True
    return _record_setstate(cls, key, module, name)


def _record_setstate(cls: Any, key: str, module: str, name: str) -> bool:
    """Makes ``cls.__setstate__`` record each instance it is called on into the running load's
    captures, under ``key`` (restored on deactivation). False when the guard is not active."""
    from ._policy_state import patch_while_active

    def recorder(inherited: Any) -> Any:
        # A base class's recorder (a forest's estimator class patched before its subclass)
        # would record each instance twice.
        while getattr(inherited, "_picklefence_records", None) is not None:
            inherited = inherited.__wrapped__

        def __setstate__(self: Any, state: Any) -> Any:
            captured = getattr(_state, "captured", None)
            # Looked up at each call: the benchmark turns the captures off and on.
            if captured is not None and SETSTATE_CAPTURED:
                captured.setdefault(key, []).append(self)
            return inherited(self, state)

        __setstate__._picklefence_records = key  # type: ignore[attr-defined]
        __setstate__.__wrapped__ = inherited  # type: ignore[attr-defined]
        __setstate__.__doc__ = getattr(inherited, "__doc__", None)
        return __setstate__

    return patch_while_active(
        cls,
        "__setstate__",
        recorder,
        f"{module}.{name}.__setstate__",
        lambda: getattr(cls.__dict__.get("__setstate__"), "_picklefence_records", None) == key,
    )


def resolve_class(module: str, name: str, find: Callable[[str, str], Any]) -> Any:
    """What the guard's find_class hands the load for ``module.name`` (``find`` resolves it):
    for a captured class, a constructor that records each instance for the check after the
    load."""
    if (module, name) not in CAPTURED or getattr(_state, "captured", None) is None:
        return find(module, name)
    _state.in_capture = True
    try:
        cls = find(module, name)
    finally:
        _state.in_capture = False

    def construct(*args: Any, **kwargs: Any) -> Any:
        made = cls(*args, **kwargs)
        captured = getattr(_state, "captured", None)
        if captured is not None:
            captured.setdefault(CAPTURED[(module, name)], []).append(made)
        return made

    construct.__name__ = construct.__qualname__ = name
    return construct


class Watch:
    """One load's notes: what it made of the captured classes (by checker key), and
    (``triggered``, read while the load's scope is open) whether it imported from a walked
    library."""

    __slots__ = ("captured", "outer_captured", "validated", "walked")

    def __init__(
        self,
        walked: Optional[_native.WalkedObjects] = None,
        outer_captured: Optional[Dict[str, List[Any]]] = None,
    ) -> None:
        self.captured: Dict[str, List[Any]] = {}
        # The captures of the load this one is nested in (None: not nested).
        self.outer_captured = outer_captured
        # Results of the loads nested in this one (joblib's object arrays), validated by them:
        # kept alive while this load runs, so the objects their walks looked at (``walked``,
        # shared by the nested loads) are not walked again.
        self.validated: List[Any] = []
        self.walked = walked if walked is not None else _native.WalkedObjects()

    @property
    def triggered(self) -> bool:
        return bool(getattr(_state, "triggered", False))


@contextmanager
def watching() -> Iterator[Watch]:
    """Scopes the notes of one load (nested loads, such as joblib's object arrays, keep their
    own; the outer one is told what they triggered)."""
    outer_triggered = getattr(_state, "triggered", False)
    outer_captured = getattr(_state, "captured", None)
    outer_validated = getattr(_state, "validated", None)
    outer_walked = getattr(_state, "walked", None)
    watch = Watch(outer_walked, outer_captured)
    _state.walked = watch.walked
    _state.triggered = False
    _state.captured = watch.captured
    _state.validated = watch.validated
    try:
        yield watch
    finally:
        _state.triggered = outer_triggered or watch.triggered
        _state.captured = outer_captured
        _state.validated = outer_validated
        _state.walked = outer_walked


def note_validated(result: Any) -> None:
    """Tells the load this one is nested in (if any) that ``result`` and everything it holds
    was validated: its walk does not look into it again (a gradient-boosting model's 900 trees
    are checked by the nested load of their object array, not twice)."""
    validated = getattr(_state, "validated", None)
    if validated is not None:
        validated.append(result)


class NativeStateError(Exception):
    """One broken invariant: the class, the field and the offending value."""

    def __init__(self, cls: str, field: str, message: str) -> None:
        super().__init__(f"{cls}.{field}: {message}")
        self.cls = cls
        self.field = field
        self.message = message


def _fail(obj: Any, field: str, message: str) -> NativeStateError:
    cls = type(obj)
    return NativeStateError(f"{cls.__module__}.{cls.__qualname__}", field, message)


def _range_error(
    obj: Any, field: str, values: Any, low: int, high: int, what: str
) -> Optional[NativeStateError]:
    """``values`` must lie in [low, high): the first that does not is named. No temporary
    arrays; one reduction when the integers seen as unsigned are all below ``high`` (then each
    is in [0, high): codes without missing values, indices), else two."""
    import numpy as np

    values = np.asarray(values)
    if values.size == 0:
        return None
    if values.dtype.kind in "iu" and low <= 0:
        unsigned = values.view(values.dtype.str.replace("i", "u"))
        if int(unsigned.max()) < high:
            return None
    if int(values.min()) >= low and int(values.max()) < high:
        return None
    bad = (values < low) | (values >= high)
    index = int(np.argmax(bad))
    return _fail(obj, field, f"item {index} is {values.flat[index]!r}, outside [{low}, {high}) ({what})")


# --------------------------------------------------------------------------------------------
# scikit-learn


_TREE_FIELDS = ("left_child", "right_child", "feature")


def _check_trees(trees: List[Any]) -> None:
    """``sklearn.tree._tree.Tree``: the node arrays of all trees, checked in one pass in Rust.

    Tree.__setstate__ checks the node array's dtype and length only; apply()/predict() follow
    ``left_child``/``right_child`` unchecked and read ``X[:, feature]``. Internal nodes must have
    both children in (own index, node_count) (the builders append children after their parent;
    anything else reads out of bounds or loops forever) and a feature in [0, n_features); no node
    the root reaches is reached twice (the depth-first partial dependence and export_text visit
    every path: a chain of nodes each with the next as both children has 2**depth); leaves have
    both children -1. decision_path() writes each sample's path into a buffer of
    ``n_samples * (1 + max_depth)`` node ids, unchecked: ``max_depth`` must be at least the depth
    of the nodes (the builders store exactly that) and at most node_count (above, the buffer's
    size can overflow)."""
    import numpy as np

    if not trees:
        return
    dtype = trees[0].__getstate__()["nodes"].dtype
    fields = dtype.fields or {}
    broken = None
    if all(f in fields and fields[f][0] == np.dtype("<i8") for f in _TREE_FIELDS):
        offsets = [int(fields[f][1]) for f in _TREE_FIELDS]
        try:
            broken = _native.check_trees(trees, dtype, dtype.itemsize, *offsets)
        except TypeError:  # trees of several node layouts
            broken = _check_trees_field_by_field(trees)
    else:  # another layout (a 32-bit build)
        broken = _check_trees_field_by_field(trees)
    if broken is not None:
        which, node, field, value, why = broken
        tree = trees[which]
        if field in ("max_depth", "node_count"):  # of the tree, not of a node
            raise _fail(tree, field, f"{value}: {why}" if field == "node_count" else f"{value} is {why}")
        raise _fail(
            tree,
            f"nodes[{node}].{field}" if field != "nodes" else "nodes",
            f"{value} is {why} (node_count {tree.node_count}, n_features {tree.n_features}); predict "
            "would read out of bounds or never finish",
        )


def _check_trees_field_by_field(trees: List[Any]) -> Any:
    """``_check_trees`` for node arrays of any layout: the three fields of each tree as
    little-endian int64, joined and checked in Rust."""
    import numpy as np

    canonical = np.dtype([(f, "<i8") for f in _TREE_FIELDS])
    parts = []
    max_depths = []
    for which, tree in enumerate(trees):
        state = tree.__getstate__()
        nodes = state["nodes"]
        if len(nodes) != state["node_count"]:
            return which, 0, "nodes", len(nodes), "not node_count records"
        parts.append(nodes[list(_TREE_FIELDS)].astype(canonical).tobytes())
        max_depths.append(state["max_depth"])
    # Lists of ints, not a tuple per tree: tuples are tracked by the garbage collector.
    node_counts = [len(part) // canonical.itemsize for part in parts]
    n_features = [tree.n_features for tree in trees]
    return _native.check_tree_nodes(
        b"".join(parts), canonical.itemsize, 0, 8, 16, node_counts, n_features, max_depths
    )


def _check_binary_tree(tree: Any) -> None:
    """``KDTree``/``BallTree``: queries read ``data[idx_array[i]]`` for i in each node's
    [idx_start, idx_end), visit children 2i+1, 2i+2 of internal nodes, read a node's bounds
    (a KD tree's lower and upper slabs, a ball tree's centroid) and, in kernel density, the
    sample weights of its points; the breadth-first density estimate sizes its per-node arrays
    by the stored ``n_nodes``. All read through raw pointers, from the arrays' buffers (a
    ``MaskedArray``'s data, whatever its mask)."""
    import numpy as np

    state = tree.__getstate__()
    data, idx_array, node_data, node_bounds = (np.asarray(array) for array in state[:4])
    samples = int(data.shape[0]) if data.ndim == 2 else -1
    if samples < 0:
        raise _fail(tree, "data", f"shape {data.shape} is not two-dimensional")
    if idx_array.shape != (samples,):
        raise _fail(tree, "idx_array", f"shape {idx_array.shape} for {samples} samples")
    error = _range_error(tree, "idx_array", idx_array, 0, samples, "the samples")
    if error is not None:
        raise error
    nodes = int(node_data.shape[0]) if node_data.ndim == 1 else 0
    if nodes < 1:
        raise _fail(tree, "node_data", f"shape {node_data.shape}: no nodes")
    if state[6] != nodes:
        raise _fail(tree, "n_nodes", f"{state[6]!r} for {nodes} nodes in node_data")
    if not (type(state[4]) is int and state[4] >= 1):
        raise _fail(tree, "leaf_size", f"{state[4]!r} is not a positive int")
    start, end = node_data["idx_start"], node_data["idx_end"]
    bad = (start < 0) | (start > end) | (end > samples)
    if bad.any():
        index = int(np.argmax(bad))
        raise _fail(
            tree,
            f"node_data[{index}]",
            f"[{int(start[index])}, {int(end[index])}) is not a range of the {samples} samples",
        )
    internal = np.flatnonzero(node_data["is_leaf"] == 0)
    if internal.size and int(internal.max()) * 2 + 2 >= nodes:
        index = int(internal[np.argmax(internal * 2 + 2 >= nodes)])
        raise _fail(
            tree, f"node_data[{index}].is_leaf", f"node {index} has children beyond the {nodes} nodes"
        )
    slabs = 2 if any(c.__module__.endswith("_kd_tree") for c in type(tree).__mro__) else 1
    if node_bounds.shape != (slabs, nodes, data.shape[1]):
        raise _fail(
            tree,
            "node_bounds",
            f"shape {node_bounds.shape} for {slabs} bound(s) of {nodes} nodes of {data.shape[1]} features",
        )
    # The haversine metric reads two values of every point whatever the width (its own
    # _validate_data requires two, run when the tree is built).
    if type(state[11]).__name__.startswith("HaversineDistance") and data.shape[1] != 2:
        raise _fail(tree, "data", f"{data.shape[1]} features for the haversine metric, which reads 2")
    weights = state[12] if len(state) > 12 else None
    if weights is not None and np.shape(weights) != (samples,):
        raise _fail(tree, "sample_weight", f"shape {np.shape(weights)} for {samples} samples")


def _bitset_rows(predictor: Any) -> int:
    """The rows both bitset arrays of a predictor have (the predictor reads either)."""
    rows = [
        int(b.shape[0])
        for b in (
            getattr(predictor, "binned_left_cat_bitsets", None),
            getattr(predictor, "raw_left_cat_bitsets", None),
        )
        if b is not None and getattr(b, "ndim", 0) == 2
    ]
    return min(rows, default=0)


_PREDICTOR_FIELDS = ("left", "right", "feature_idx", "is_leaf", "is_categorical", "bitset_idx")


def _check_tree_predictors(predictors: List[Any], models: List[Tuple[Any, int]]) -> None:
    """HistGradientBoosting ``TreePredictor``: the Cython predictor follows ``left``/``right``
    and reads ``X[:, feature_idx]`` and the bitsets at ``bitset_idx`` unchecked; the partial
    dependence visits every path (no node may be the child of two). Checked in
    Rust, predictor by predictor (``models``: ``(model._predictors, n_features_in_)``, the
    feature bound of the predictors a model holds)."""
    import numpy as np

    if not predictors:
        return
    arrays = [p.nodes for p in predictors]
    dtype = arrays[0].dtype
    fields = dtype.fields or {}
    if not all(f in fields for f in _PREDICTOR_FIELDS):
        raise _fail(predictors[0], "nodes", f"dtype {dtype} lacks the node fields")
    if all(a.dtype == dtype and a.flags.c_contiguous for a in arrays):
        records = b"".join(arrays)
        layout = tuple((int(fields[f][1]), fields[f][0].str) for f in _PREDICTOR_FIELDS)
    else:  # mixed layouts (another scikit-learn version): each as packed int64 fields
        canonical = np.dtype([(f, "<i8") for f in _PREDICTOR_FIELDS])
        records = b"".join(a[list(_PREDICTOR_FIELDS)].astype(canonical).tobytes() for a in arrays)
        dtype, layout = canonical, tuple((8 * index, "<i8") for index in range(len(_PREDICTOR_FIELDS)))
    # sizes, not lengths: the records of a 2-D array are joined too, and must not shift the next.
    shapes = [
        (a.size, features)
        for a, features in zip(arrays, _native.predictor_feature_counts(predictors, models))
    ]
    broken = _native.check_predictor_nodes(records, dtype.itemsize, layout, shapes, predictors, _bitset_rows)
    if broken is not None:
        which, node, field, value, why = broken
        raise _fail(
            predictors[which],
            f"nodes[{node}].{field}",
            f"{value} is {why} ({arrays[which].size} nodes); predict would read out of bounds",
        )


_NO_DICT: Dict[str, Any] = {}


def _plain(obj: Any, name: str) -> Any:
    """An attribute from the instance dict (what the pickle set), not looked up on the class."""
    return getattr(obj, "__dict__", _NO_DICT).get(name)


def _width(value: Any) -> Optional[int]:
    """A feature count as an estimator keeps it: an int or a NumPy integer (not a bool)."""
    if type(value) is int:
        return value
    import numpy as np

    return int(value) if isinstance(value, np.integer) else None


def _input_width(estimator: Any) -> Optional[int]:
    """The feature count an estimator checks its input against (``n_features_in_``; scikit-learn
    before 1.2 also kept ``n_features_``), or None when it keeps neither."""
    state = getattr(estimator, "__dict__", _NO_DICT)
    width = _width(state.get("n_features_in_"))
    return width if width is not None else _width(state.get("n_features_"))


def _missing_width(owner: Any) -> NativeStateError:
    return _fail(owner, "n_features_in_", "missing: predict would not check its input's width")


def _check_tree_owners(estimators: List[Any], ensembles: List[Any]) -> None:
    """Decision tree estimators and the ensembles holding them: each ``Tree`` built for as many
    features as its owners check their input for. ``predict`` checks ``X``'s width against the
    estimator's ``n_features_in_`` and the ``Tree`` then reads ``X[i, feature]`` for features
    below its own ``n_features``; forests, gradient boosting and bagging (isolation forests)
    hand their input (or the columns ``estimators_features_`` picks for each estimator) to the
    trees unchecked (``check_input=False``, ``predict_stages``), so each tree is built for that
    many features and the picked columns lie inside the input. Both in one validation (a
    nested load leaves its estimators to the load that holds their ensemble): what the first
    loop reads of 900 cold estimators is in the cache for the second."""
    for ensemble in ensembles:
        _check_tree_ensemble(ensemble)
    for estimator in estimators:
        state = getattr(estimator, "__dict__", _NO_DICT)
        tree = state.get("tree_")
        if tree is None:
            continue
        width = state.get("n_features_in_")
        if type(width) is not int:
            width = _input_width(estimator)
            if width is None:
                raise _missing_width(estimator)
        if tree.n_features != width:
            raise _fail(estimator, "tree_.n_features", f"{tree.n_features} for an input of {width} features")


def _check_tree_ensemble(ensemble: Any) -> None:
    """One ensemble of ``_check_tree_owners``."""
    import numpy as np

    estimators = _plain(ensemble, "estimators_")
    if estimators is None:
        return
    width = _input_width(ensemble)
    features = _plain(ensemble, "estimators_features_")
    boosting = getattr(sys.modules.get("sklearn.ensemble._gb"), "BaseGradientBoosting", None)
    if isinstance(boosting, type) and isinstance(ensemble, boosting):
        _check_boosting_stages(ensemble, estimators)
    # Not np.asarray of a list: it asks each item whether it is an array (a miss each, cold).
    held = estimators.ravel().tolist() if isinstance(estimators, np.ndarray) else list(estimators)
    if features is None:
        widths = [width] * len(held)
    elif width is None:
        raise _missing_width(ensemble)
    else:
        widths = []
        for number, picked in enumerate(features):
            picked = np.asarray(picked)
            error = _range_error(
                ensemble, f"estimators_features_[{number}]", picked, 0, width, "the input's features"
            )
            if error is not None:
                raise error
            widths.append(len(picked))
    if len(widths) != len(held):
        raise _fail(ensemble, "estimators_features_", f"{len(widths)} column sets for {len(held)} estimators")
    for number, (estimator, expected) in enumerate(zip(held, widths)):
        tree = getattr(estimator, "__dict__", _NO_DICT).get("tree_")
        if tree is None:
            continue
        if expected is None:
            raise _missing_width(ensemble)
        if tree.n_features != expected:
            raise _fail(
                ensemble,
                f"estimators_[{number}].tree_.n_features",
                f"{tree.n_features} for an input of {expected} features",
            )


def _check_boosting_stages(ensemble: Any, estimators: Any) -> None:
    """Gradient boosting: ``predict_stages`` adds the trees of each stage (a row of
    ``estimators_``) into as many columns of the raw predictions, unchecked; those have
    ``n_trees_per_iteration_`` columns (``init_="zero"``) or as many as the init estimator's
    predictions."""
    import numpy as np

    if not isinstance(estimators, np.ndarray) or estimators.ndim != 2:
        raise _fail(ensemble, "estimators_", f"shape {np.shape(estimators)}: not (stages, trees per stage)")
    trees = estimators.shape[1]
    per_stage = _plain(ensemble, "n_trees_per_iteration_")
    if per_stage is not None and per_stage != trees:
        raise _fail(
            ensemble, "estimators_", f"{trees} trees per stage for n_trees_per_iteration_ {per_stage!r}"
        )
    init, loss = _plain(ensemble, "init_"), _plain(ensemble, "_loss")
    if init is None or loss is None or (isinstance(init, str) and init == "zero"):
        return  # predict reads n_trees_per_iteration_ (checked above), or raises first
    import importlib

    is_classifier = importlib.import_module("sklearn.base").is_classifier
    width = _init_prediction_width(
        init, is_classifier(ensemble), getattr(loss, "is_multiclass", False) is True
    )
    if width is None or width < trees:
        raise _fail(
            ensemble,
            "init_",
            f"predictions {width if width is not None else 'of a width that cannot be read'} wide for "
            f"{trees} trees per stage",
        )


def _init_prediction_width(init: Any, classifier: bool, multiclass: bool) -> Optional[int]:
    """How many columns gradient boosting's initial raw predictions from ``init`` have
    (``_init_raw_predictions``), when that can be read from its state: a binary classifier's
    are its probabilities of one class; scikit-learn's dummy estimators (the default) predict
    as many columns as their fitted state holds; a regressor's linear models as many as
    ``coef_`` has rows, its trees and forests of one output one. None for any other estimator."""
    import numpy as np

    if classifier and not multiclass:
        return 1
    name = f"{type(init).__module__}.{type(init).__qualname__}"
    outputs = _plain(init, "n_outputs_")
    if name == "sklearn.dummy.DummyClassifier" and outputs == 1:
        if not classifier:
            return 1  # its predicted labels, one column
        classes, priors = _plain(init, "n_classes_"), _plain(init, "class_prior_")
        if type(classes) is int and priors is not None:
            return min(classes, int(np.size(priors)))
    if name == "sklearn.dummy.DummyRegressor" and type(outputs) is int:
        if np.shape(_plain(init, "constant_")) == (1, outputs):
            return outputs
    if not classifier:  # a regressor's predictions (its one target: a column)
        weights = _plain(init, "coef_")
        if name.startswith("sklearn.linear_model.") and isinstance(weights, np.ndarray):
            # X @ coef_.T: one column per row of coef_, a 1-D coef_ one.
            return 1 if weights.ndim == 1 else (weights.shape[0] if weights.ndim == 2 else None)
        trees = [getattr(sys.modules.get(m), n, None) for m, n in _SINGLE_OUTPUT_WHEN_ONE]
        if outputs == 1 and isinstance(init, tuple(t for t in trees if isinstance(t, type))):
            return 1  # predict returns one value per row for one output
    return None


# Regressors whose predict returns one value per row when n_outputs_ is 1.
_SINGLE_OUTPUT_WHEN_ONE = (
    ("sklearn.tree._classes", "BaseDecisionTree"),
    ("sklearn.ensemble._forest", "BaseForest"),
)


def _check_libsvm(model: Any) -> None:
    """An SVM (SVC, NuSVC, SVR, NuSVR, OneClassSVM): libsvm's ``set_model`` takes the number of
    support vectors from ``support_`` and the number of classes from ``_n_support``, and reads
    the vectors, coefficients and intercepts by those counts unchecked (scikit-learn compares
    the sum of ``_n_support`` with the vectors only for dense, non-precomputed models)."""
    import numpy as np

    support, vectors, counts = (
        _plain(model, "support_"),
        _plain(model, "support_vectors_"),
        _plain(model, "_n_support"),
    )
    if support is None or counts is None:
        return  # not fitted: predict raises first
    support, counts = np.asarray(support), np.asarray(counts)
    if support.ndim != 1 or counts.ndim != 1 or counts.dtype.kind not in "iu":
        raise _fail(model, "_n_support", "not one-dimensional integer arrays (support_, _n_support)")
    kernel = _plain(model, "kernel")
    # A callable kernel predicts through libsvm's precomputed kernel too: on its matrix of the
    # input against the training data scikit-learn keeps (no support vectors are kept).
    precomputed = callable(kernel) or (isinstance(kernel, str) and kernel == "precomputed")
    vector_count = len(support) if precomputed or vectors is None else int(vectors.shape[0])
    if len(support) != vector_count:
        raise _fail(model, "support_", f"{len(support)} indices for {vector_count} support vectors")
    classes = len(counts)
    if classes < 2:
        raise _fail(model, "_n_support", f"{classes} classes")
    # libsvm's model type: a class attribute, which the instance dict may shadow.
    if getattr(model, "_impl", None) in ("c_svc", "nu_svc"):
        if int(counts.min()) < 0 or int(counts.sum()) != vector_count:
            raise _fail(model, "_n_support", f"{counts.tolist()[:8]} for {vector_count} support vectors")
    elif classes != 2:
        raise _fail(model, "_n_support", f"{classes} entries for a regression or one-class model")
    pairs = classes * (classes - 1) // 2
    coefficients = _plain(model, "_dual_coef_")
    shape = tuple(getattr(coefficients, "shape", ()))
    if shape != (classes - 1, vector_count):
        raise _fail(model, "_dual_coef_", f"shape {shape} for {classes} classes and {vector_count} vectors")
    stored = getattr(coefficients, "data", coefficients)
    if np.asarray(stored).size != (classes - 1) * vector_count:
        raise _fail(model, "_dual_coef_", f"{np.asarray(stored).size} stored coefficients")
    for name, allowed in (("_intercept_", (pairs,)), ("_probA", (0, pairs)), ("_probB", (0, pairs))):
        value = _plain(model, name)
        if value is not None and np.asarray(value).size not in allowed:
            raise _fail(model, name, f"{np.asarray(value).size} values for {pairs} class pairs")
    if callable(kernel):
        training = _plain(model, "_BaseLibSVM__Xfit")
        if getattr(training, "ndim", 0) != 2:
            raise _fail(
                model, "_BaseLibSVM__Xfit", "not the two-dimensional training data a callable kernel needs"
            )
        error = _range_error(model, "support_", support, 0, int(training.shape[0]), "the training samples")
        if error is not None:
            raise error
    elif precomputed:
        rows = _plain(model, "shape_fit_")
        if not rows:
            raise _fail(model, "shape_fit_", "missing for a precomputed kernel")
        error = _range_error(model, "support_", support, 0, int(rows[0]), "the training samples")
        if error is not None:
            raise error


# The most OpenMP threads a model may ask for: the cores of the largest machines (a model fitted
# on one keeps its count).
_MAX_THREADS = 4096


def _check_kmeans(model: Any) -> None:
    """KMeans, MiniBatchKMeans, BisectingKMeans: the centers (and a bisecting tree's node
    centers) as wide as the input ``predict`` checks for; the Cython assignment reads each
    center row that wide."""
    import numpy as np

    width = _input_width(model)
    centers = _plain(model, "cluster_centers_")
    if centers is None or width is None:
        return  # not fitted as this scikit-learn reads it: predict raises first
    if not isinstance(centers, np.ndarray) or centers.ndim != 2 or centers.shape[1] != width:
        raise _fail(
            model, "cluster_centers_", f"shape {getattr(centers, 'shape', None)} for {width} features"
        )
    # MiniBatchKMeans.partial_fit adds each center's weight into _counts, unchecked.
    counts = _plain(model, "_counts")
    if counts is not None and np.shape(counts) != (centers.shape[0],):
        raise _fail(model, "_counts", f"shape {np.shape(counts)} for {centers.shape[0]} centers")
    # OpenMP's thread count for predict: libgomp exits the process on a negative one (it asks
    # for terabytes); fit stores the cores it found.
    threads = _plain(model, "_n_threads")
    if threads is not None and not (type(threads) is int and 1 <= threads <= _MAX_THREADS):
        raise _fail(model, "_n_threads", f"{threads!r} is not a thread count in [1, {_MAX_THREADS}]")
    root = _plain(model, "_bisecting_tree")
    pending, seen = ([root] if root is not None else []), set()
    while pending:
        node = pending.pop()
        if id(node) in seen:
            raise _fail(model, "_bisecting_tree", "a node reached twice")
        seen.add(id(node))
        center = _plain(node, "center")
        # A row of `width` values (an np.matrix of one row when the model was fitted on sparse data).
        if center is not None and (
            not isinstance(center, np.ndarray) or center.size != width or center.shape[-1] != width
        ):
            raise _fail(model, "_bisecting_tree", f"a node center of shape {getattr(center, 'shape', None)}")
        pending.extend(child for child in (_plain(node, "left"), _plain(node, "right")) if child is not None)


def _check_birch(model: Any) -> None:
    """Birch: ``predict`` hands ``_subcluster_norms`` to the Cython nearest-center reduction as
    the squared norm of each subcluster center, read for every center unchecked: one norm per
    center (as ``fit`` computes them), centers as wide as the input."""
    import numpy as np

    centers, norms = _plain(model, "subcluster_centers_"), _plain(model, "_subcluster_norms")
    if centers is None:
        return
    width = _input_width(model)
    if (
        not isinstance(centers, np.ndarray)
        or centers.ndim != 2
        or (width is not None and centers.shape[1] != width)
    ):
        raise _fail(
            model, "subcluster_centers_", f"shape {getattr(centers, 'shape', None)} for {width} features"
        )
    if norms is not None and np.shape(norms) != (centers.shape[0],):
        raise _fail(model, "_subcluster_norms", f"shape {np.shape(norms)} for {centers.shape[0]} centers")


def _check_vocabulary(vectorizer: Any) -> None:
    """CountVectorizer, TfidfVectorizer, DictVectorizer: ``vocabulary_`` maps each term to a distinct
    column in [0, len(vocabulary_)), as scikit-learn's own vocabulary check requires; the
    columns become a sparse matrix's indices unchecked, which compiled code then follows."""
    _check_columns(
        vectorizer, "vocabulary_", _plain(vectorizer, "vocabulary_"), "terms", "the vocabulary's columns"
    )


def _check_columns(owner: Any, field: str, mapping: Any, keys: str, columns_are: str) -> None:
    """``mapping`` (None, or a dict) maps its ``keys`` to distinct integer columns in [0,
    len(mapping))."""
    import numpy as np

    if mapping is None:
        return
    if not isinstance(mapping, dict):
        raise _fail(owner, field, f"a {type(mapping).__name__}, not a dict")
    size = len(mapping)
    if size == 0:
        return
    try:
        # Half the time of np.array(list(...)); what it converts (a float, a numeric string)
        # the estimator's own array('i') refuses at transform.
        columns = np.fromiter(mapping.values(), dtype=np.int64, count=size)
    except (TypeError, ValueError, OverflowError):
        raise _fail(owner, field, "columns that are not integers") from None
    error = _range_error(owner, field, columns, 0, size, columns_are)
    if error is not None:
        raise error
    if int(np.bincount(columns, minlength=size).max()) > 1:
        raise _fail(owner, field, f"two {keys} share a column")


def _check_multilabel_binarizer(binarizer: Any) -> None:
    """MultiLabelBinarizer: ``transform`` makes a sparse matrix of ``len(_cached_dict)`` columns
    whose column indices are ``_cached_dict``'s values, unchecked (dense outputs then write
    there): distinct integers in [0, len(_cached_dict)), as ``fit`` (or the first transform)
    makes it from ``classes_``."""
    _check_columns(
        binarizer, "_cached_dict", _plain(binarizer, "_cached_dict"), "labels", "the output's columns"
    )


def _check_one_hot_encoder(encoder: Any) -> None:
    """OneHotEncoder: every code ``transform`` can make for feature i (its categories, mapped to
    the infrequent group and shifted past the dropped one, as scikit-learn does) lies in [0,
    _n_features_outs[i]). The codes plus the running sum of ``_n_features_outs`` become the
    columns of a sparse matrix unchecked; a dense output writes at them. A value's code is its
    index in the categories only if they are sorted as ``fit`` sorts them (a numeric input is
    encoded with ``searchsorted``, which gives a known value of unsorted categories the code
    ``len(categories)``): strictly increasing, missing values last."""
    import numpy as np

    outputs, categories = _plain(encoder, "_n_features_outs"), _plain(encoder, "categories_")
    if outputs is None or categories is None:
        return  # not fitted as this scikit-learn reads it: transform raises first
    if not isinstance(outputs, list) or not all(type(n) is int and n >= 0 for n in outputs):
        raise _fail(encoder, "_n_features_outs", "not a list of counts")
    if len(outputs) != len(categories):
        raise _fail(encoder, "_n_features_outs", f"{len(outputs)} counts for {len(categories)} features")
    drops = _plain(encoder, "_drop_idx_after_grouping")
    mappings = (
        _plain(encoder, "_default_to_infrequent_mappings") if _plain(encoder, "_infrequent_enabled") else None
    )
    for feature, (values, count) in enumerate(zip(categories, outputs)):
        if not _sorted_categories(values):
            raise _fail(
                encoder,
                f"categories_[{feature}]",
                "not strictly increasing with missing values last (as fit sorts them)",
            )
        codes = np.arange(len(values))
        mapping = mappings[feature] if mappings is not None and feature < len(mappings) else None
        if mapping is not None:
            codes = np.asarray(mapping)[: len(values)]
            if codes.size and codes.dtype.kind not in "iu":
                raise _fail(encoder, f"_default_to_infrequent_mappings[{feature}]", "not integers")
        drop = drops[feature] if drops is not None and feature < len(drops) else None
        if drop is not None:
            codes = codes[codes != drop]
            codes = codes - (codes > drop)
        error = _range_error(encoder, f"_n_features_outs[{feature}]", codes, 0, count, "its output columns")
        if error is not None:
            raise error


def _sorted_categories(values: Any) -> bool:
    """Whether ``values`` are as scikit-learn's ``_unique`` makes categories: strictly increasing,
    then the missing values (numbers: one NaN or NaT; objects: None, then NaN)."""
    import numpy as np

    values = np.asarray(values)
    if values.ndim != 1:
        return False
    kind = values.dtype.kind
    if kind in "fcmM":
        missing = np.isnan(values) if kind in "fc" else np.isnat(values)
        present = int(len(values) - missing.sum())
        if missing.any() and not (missing[present:].all() and len(values) - present == 1):
            return False
        values = values[:present]
    elif kind == "O":
        items = values.tolist()
        if items and isinstance(items[-1], float) and items[-1] != items[-1]:
            items.pop()  # NaN
        if items and items[-1] is None:
            items.pop()
        try:
            return all(a < b for a, b in zip(items, items[1:]))
        except TypeError:  # what fit refuses to sort: mixed strings and numbers
            return False
    elif kind not in "biuUS":
        return False
    return bool((values[1:] > values[:-1]).all())


def _check_bspline(spline: Any) -> None:
    """A scipy ``BSpline`` (SplineTransformer's ``bsplines_``): what its constructor checks and
    unpickling skips. Evaluation reads ``k + 1`` coefficients from the knot interval it finds,
    so the knots must be sorted and finite, at least ``2k + 2`` of them, and ``c`` must hold
    ``len(t) - k - 1`` rows."""
    import numpy as np

    # scipy >= 1.15 keeps the arrays as _t and _c behind properties; older releases as t and c.
    fields = getattr(spline, "__dict__", {})
    knots = fields.get("_t", fields.get("t"))
    coefficients = fields.get("_c", fields.get("c"))
    k = fields.get("k")
    if type(k) is not int or k < 0:
        raise _fail(spline, "k", f"{k!r} is not a degree")
    if not isinstance(knots, np.ndarray) or knots.ndim != 1 or knots.dtype != np.float64:
        raise _fail(spline, "t", "not a one-dimensional float64 array")
    if not knots.flags.c_contiguous:
        raise _fail(spline, "t", "not contiguous")
    intervals = len(knots) - k - 1
    if intervals < k + 1:
        raise _fail(spline, "t", f"{len(knots)} knots for degree {k}")
    if not np.isfinite(knots).all() or bool((knots[1:] < knots[:-1]).any()):
        raise _fail(spline, "t", "knots not finite and non-decreasing")
    if not isinstance(coefficients, np.ndarray) or coefficients.ndim < 1:
        raise _fail(spline, "c", "not an array")
    if coefficients.dtype not in (np.float64, np.complex128) or not coefficients.flags.c_contiguous:
        raise _fail(spline, "c", f"dtype {coefficients.dtype}, or not contiguous")
    if coefficients.shape[0] < intervals:
        raise _fail(spline, "c", f"{coefficients.shape[0]} rows for {intervals} knot intervals")


def _check_neighbors(model: Any) -> None:
    """Nearest-neighbor estimators: the brute-force Cython reductions read each ``_fit_X`` row as
    wide as the query (whose width ``n_features_in_`` checks), and the neighbor graphs size
    their matrices by ``n_samples_fit_``: both as ``fit`` set them from the training data."""
    import numpy as np

    fitted = _plain(model, "_fit_X")
    width = _input_width(model)
    _check_metric_parameters(model, width if fitted is not None else None)
    if fitted is None:
        return
    shape = tuple(getattr(fitted, "shape", ()))
    if len(shape) != 2 or (width is not None and shape[1] != width):
        raise _fail(model, "_fit_X", f"shape {shape} for {width} features")
    samples = _plain(model, "n_samples_fit_")
    if samples is not None and samples != shape[0]:
        raise _fail(model, "n_samples_fit_", f"{samples} for {shape[0]} training samples")
    # The tree's neighbours index the training data (the graphs' columns, the labels): the
    # tree is built on it. Anything but a tree ("brute", None) holds no indices.
    tree = _plain(model, "_tree")
    if callable(getattr(tree, "get_arrays", None)):
        built_on = tuple(np.shape(tree.__getstate__()[0]))
        if built_on != shape:
            raise _fail(model, "_tree.data", f"shape {built_on} for training data of shape {shape}")
    _check_neighbor_labels(model, shape[0])


def _check_metric_parameters(model: Any, width: Optional[int]) -> None:
    """The Mahalanobis metric's ``VI`` among a neighbor model's metric parameters: the brute-force
    queries hand ``effective_metric_params_`` (``fit`` copies ``metric_params``) to scipy's
    ``cdist``, whose C code reads ``VI`` as a features x features matrix without checking its
    shape. A square matrix, of the fitted input's width (``width``, when fitted)."""
    import numpy as np

    for field in ("effective_metric_params_", "metric_params"):
        parameters = _plain(model, field)
        if not isinstance(parameters, dict) or "VI" not in parameters:
            continue
        shape = np.shape(parameters["VI"])
        if len(shape) != 2 or shape[0] != shape[1] or (width is not None and shape[0] != width):
            raise _fail(
                model,
                f"{field}['VI']",
                f"shape {shape} for {width if width is not None else 'square'} features",
            )


def _check_neighbor_labels(model: Any, samples: int) -> None:
    """Nearest-neighbor classifiers: the brute-force class-mode reductions (uniform weights, a
    metric other than euclidean) add each neighbor's vote at ``class_scores[row, _y[neighbor]]``,
    a row of ``len(classes_)`` scores, unchecked: ``_y`` holds a code per training sample, in
    [0, len(classes_)) (``fit`` makes it with ``np.unique(y, return_inverse=True)``). Multi-output
    codes (a column per output) are read by NumPy's checked indexing, and checked the same way."""
    import numpy as np

    labels, classes = _plain(model, "_y"), _plain(model, "classes_")
    if labels is None or classes is None:
        return  # a regressor's targets, or not fitted: predict raises before the reduction
    if not isinstance(labels, np.ndarray) or labels.ndim not in (1, 2) or labels.dtype.kind not in "iu":
        raise _fail(model, "_y", f"{getattr(labels, 'dtype', type(labels).__name__)} is not class codes")
    if labels.shape[0] != samples:
        raise _fail(model, "_y", f"{labels.shape[0]} codes for {samples} training samples")
    if labels.ndim == 1:
        error = _range_error(model, "_y", labels, 0, len(classes), "the classes")
        if error is not None:
            raise error
        return
    if not isinstance(classes, list) or len(classes) != labels.shape[1]:
        raise _fail(model, "classes_", f"not a list of classes for each of the {labels.shape[1]} outputs")
    for output, known in enumerate(classes):
        error = _range_error(model, f"_y[:, {output}]", labels[:, output], 0, len(known), "the classes")
        if error is not None:
            raise error


def _fitted_weights(model: Any) -> Optional[Tuple[Any, int]]:
    """A linear model's ``coef_`` and the input width it is checked for; None when not fitted
    (no ``coef_``). A fitted model without its width is refused: its input goes unchecked."""
    coefficients = _plain(model, "coef_")
    if coefficients is None:
        return None
    width = _input_width(model)
    if width is None:
        raise _missing_width(model)
    return coefficients, width


def _check_sgd(model: Any) -> None:
    """SGD linear models (SGDClassifier, SGDRegressor, SGDOneClassSVM, Perceptron,
    PassiveAggressive*): ``fit``/``partial_fit`` hand ``coef_`` (or ``_standard_coef`` and
    ``_average_coef`` when averaging; the pickle's ``average`` chooses) to the Cython SGD loop,
    which reads and writes every weight at the input's feature indices and scales the whole
    averaged vector unchecked. The input is checked against ``n_features_in_`` (and, for
    classifiers, ``coef_``'s width): each of the three as wide as ``n_features_in_``, all of
    ``coef_``'s size. (Intercepts are read and written as scalars by NumPy's checked indexing.)"""
    import numpy as np

    fitted = _fitted_weights(model)
    if fitted is None:
        return  # not fitted: partial_fit allocates all three
    coefficients, width = fitted
    for name in ("coef_", "_standard_coef", "_average_coef"):
        weights = _plain(model, name)
        if weights is None and name != "coef_":
            continue
        shape = getattr(weights, "shape", None)
        if (
            not isinstance(weights, np.ndarray)
            or weights.ndim not in (1, 2)
            or weights.shape[-1] != width
            or weights.size != coefficients.size
        ):
            raise _fail(
                model,
                name,
                f"shape {shape} for {width} features (coef_ of shape {getattr(coefficients, 'shape', None)})",
            )


# FeatureHasher's bound (its parameter constraint): the Cython hashing takes each index modulo it.
_MAX_HASHED_FEATURES = 2**31 - 1


def _check_hashing(hasher: Any) -> None:
    """FeatureHasher, HashingVectorizer: ``transform`` hands ``n_features`` to the Cython hashing,
    which takes every feature's hash modulo it (C division: 0 kills the process with SIGFPE) and
    makes a sparse matrix that wide. Neither ``transform`` validates its parameters (``fit`` does):
    an integer in [1, 2**31 - 1], as the constructor's constraint requires."""
    count = _plain(hasher, "n_features")
    if count is None:
        return  # transform raises first
    width = _width(count)
    if width is None or not 1 <= width <= _MAX_HASHED_FEATURES:
        raise _fail(hasher, "n_features", f"{count!r} is not a feature count in [1, {_MAX_HASHED_FEATURES}]")


def _check_coordinate_descent(model: Any) -> None:
    """ElasticNet, Lasso, MultiTaskElasticNet, MultiTaskLasso: ``fit`` with ``warm_start`` hands
    ``coef_`` to the Cython coordinate descent as the starting weights, which reads and writes
    one per column of the input (dense and Gram solvers) or reads a column of the input for each
    weight (sparse and multi-task solvers), unchecked. ``fit`` leaves one weight per feature it
    was given (a row per target or task): ``coef_`` as wide as ``n_features_in_``."""
    import numpy as np

    fitted = _fitted_weights(model)
    if fitted is None:
        return  # not fitted: fit allocates the weights
    coefficients, width = fitted
    if (
        not isinstance(coefficients, np.ndarray)
        or coefficients.ndim not in (1, 2)
        or coefficients.shape[-1] != width
    ):
        raise _fail(
            model,
            "coef_",
            f"shape {getattr(coefficients, 'shape', None)} for {width} features (warm-started fit reads "
            "a weight per input column)",
        )


# The row layout of HDBSCAN's single linkage tree (sklearn.cluster._hdbscan._tree.HIERARCHY_dtype),
# which the Cython code reads as a packed struct.
_HIERARCHY_FIELDS = (
    ("left_node", "intp"),
    ("right_node", "intp"),
    ("value", "float64"),
    ("cluster_size", "intp"),
)


def _check_hdbscan(model: Any) -> None:
    """HDBSCAN: ``dbscan_clustering`` unions the nodes of ``_single_linkage_tree_`` in a
    union-find table of 2 * rows + 1 entries unchecked. Row i merges two nodes into node
    ``rows + 1 + i``: as ``fit`` builds it, both are ids in [0, rows + 1 + i) (a sample, or an
    earlier merge)."""
    import numpy as np

    tree = _plain(model, "_single_linkage_tree_")
    if tree is None:
        return
    layout = np.dtype([(name, kind) for name, kind in _HIERARCHY_FIELDS])
    if not isinstance(tree, np.ndarray) or tree.ndim != 1 or tree.dtype != layout:
        raise _fail(
            model,
            "_single_linkage_tree_",
            f"{getattr(tree, 'dtype', type(tree).__name__)} is not a linkage tree",
        )
    merged = len(tree) + 1 + np.arange(len(tree))
    for field in ("left_node", "right_node"):
        nodes = tree[field]
        bad = (nodes < 0) | (nodes >= merged)
        if bad.any():
            row = int(np.argmax(bad))
            raise _fail(
                model,
                f"_single_linkage_tree_[{row}].{field}",
                f"{int(nodes[row])} is not a sample or an earlier merge (the row makes {int(merged[row])})",
            )


def _check_hist_gradient_boosting(model: Any) -> None:
    """HistGradientBoosting models: ``predict`` makes ``f_idx_map`` (one entry per item of the
    bin mapper's ``is_categorical_``) and one known-categories bitset per categorical feature,
    and the Cython predictor reads ``f_idx_map[feature_idx]`` and that bitset row at every
    categorical split unchecked (fit and binned prediction read ``is_categorical_`` and the
    thresholds per feature too). The bin mapper's arrays hold one item per feature the model
    checks its input for, and every categorical split is on a feature the bin mapper holds as
    categorical. (The predictors' own nodes: ``_check_tree_predictors``.)"""
    import numpy as np

    _check_boosting_loss(model)
    predictors, mapper = _plain(model, "_predictors"), _plain(model, "_bin_mapper")
    if predictors is None or mapper is None:
        return
    width = _input_width(model)
    if width is None:
        raise _missing_width(model)
    categorical = _plain(mapper, "is_categorical_")
    if categorical is None:
        return  # a bin mapper of scikit-learn < 0.24: predict raises first
    if not isinstance(categorical, np.ndarray) or categorical.shape != (width,):
        raise _fail(
            model,
            "_bin_mapper.is_categorical_",
            f"shape {getattr(categorical, 'shape', None)} for {width} features",
        )
    bins = _plain(mapper, "n_bins_non_missing_")
    if bins is not None and np.shape(bins) != (width,):
        raise _fail(model, "_bin_mapper.n_bins_non_missing_", f"shape {np.shape(bins)} for {width} features")
    thresholds = _plain(mapper, "bin_thresholds_")
    if thresholds is not None and (not isinstance(thresholds, list) or len(thresholds) != width):
        raise _fail(model, "_bin_mapper.bin_thresholds_", f"not a list of {width} threshold arrays")
    if _categorical_splits_fit(predictors, categorical, width):
        return
    # Something is broken: each predictor on its own, to name it.
    for iteration, held in enumerate(predictors):
        for k, predictor in enumerate(held):
            nodes = predictor.nodes
            split = nodes[(nodes["is_leaf"] == 0) & (nodes["is_categorical"] != 0)]["feature_idx"]
            error = _range_error(
                model,
                f"_predictors[{iteration}][{k}].nodes.feature_idx",
                split,
                0,
                width,
                "the input's features",
            )
            if error is not None:
                raise error
            if split.size and not categorical[split].all():
                feature = int(split[np.argmax(categorical[split] == 0)])
                raise _fail(
                    model,
                    "_bin_mapper.is_categorical_",
                    f"feature {feature} has categorical splits but is not categorical",
                )


def _check_boosting_loss(model: Any) -> None:
    """A HistGradientBoosting model given a loss object (``loss`` is a ``BaseLoss``, not a name):
    ``fit`` uses it as is, also to continue a warm start, and the Cython multinomial gradient
    writes one column per column of the raw predictions (one per class of the training target)
    into gradients of ``loss.n_classes`` columns, unchecked. A multiclass loss has as many
    classes as the fitted model predicts (``n_trees_per_iteration_``, ``classes_``)."""
    loss = _plain(model, "loss")
    if loss is None or isinstance(loss, str) or not getattr(loss, "is_multiclass", False):
        return
    trees = _plain(model, "n_trees_per_iteration_")
    if trees is None:
        return  # not fitted: fit's baseline of n_classes columns must broadcast to the target's
    classes = _plain(model, "classes_")
    expected = {_width(trees)}
    if classes is not None:
        expected.add(len(classes) if len(classes) > 2 else 1)
    count = getattr(loss, "n_classes", None)
    if len(expected) != 1 or _width(count) not in expected:
        raise _fail(
            model,
            "loss.n_classes",
            f"{count!r} for {len(classes) if classes is not None else trees} classes (n_trees_per_iteration_ "
            f"{trees!r}): a warm-started fit writes a gradient column per class",
        )


def _categorical_splits_fit(predictors: Any, categorical: Any, width: int) -> bool:
    """Whether every categorical split of all predictors is on a feature in [0, width) that
    ``categorical`` marks: the nodes of all predictors joined and read once (one NumPy pass per
    predictor cost 4 us each, 100 of them most of the model's validation). False also when the
    predictors' node records cannot be joined (several layouts, not contiguous): then each is
    read alone."""
    import numpy as np

    arrays = [predictor.nodes for held in predictors for predictor in held]
    if not arrays:
        return True
    dtype = arrays[0].dtype
    if any(array.dtype != dtype for array in arrays):
        return False
    try:
        # Joined as bytes: np.concatenate promotes structured dtypes field by field, in Python.
        nodes = np.frombuffer(b"".join(arrays), dtype=dtype)
    except (TypeError, ValueError, BufferError):
        return False
    split = nodes["feature_idx"][(nodes["is_leaf"] == 0) & (nodes["is_categorical"] != 0)]
    if not split.size:
        return True
    split = split.astype(np.int64)
    return bool(int(split.min()) >= 0 and int(split.max()) < width and categorical[split].all())


# --------------------------------------------------------------------------------------------
# NumPy


def _check_random_generator(generator: Any) -> None:
    """NumPy bit generators, and the ``RandomState``/``Generator`` drawing from one: a state
    setter copies the state and keeps the position in it unchecked, and each draw reads
    ``key[pos++]`` (MT19937: 624 words, regenerated when pos reaches 624) or
    ``buffer[buffer_pos++]`` (Philox: 4 words) with it. The position in [0, 624] or [0, 4],
    as seeding and drawing keep it. PCG64, PCG64DXSM and SFC64 keep no position."""
    from numpy.random import MT19937, Philox
    from numpy.random.bit_generator import BitGenerator

    bit_generator = generator
    if not isinstance(generator, BitGenerator):
        bit_generator = generator._bit_generator  # a Cython attribute of RandomState and Generator
    # The bit generator's own getter, not one a subclass defines.
    if isinstance(bit_generator, MT19937):
        state = MT19937.state.__get__(bit_generator)
        position, field, end = state["state"]["pos"], "state.pos", 624
    elif isinstance(bit_generator, Philox):
        state = Philox.state.__get__(bit_generator)
        position, field, end = state["buffer_pos"], "state.buffer_pos", 4
    else:
        return
    if not 0 <= position <= end:
        raise _fail(generator, field, f"{position} is outside [0, {end}] (the words of its state)")


# --------------------------------------------------------------------------------------------
# scipy.sparse


def _check_sparse(matrix: Any) -> None:
    """Compressed (CSR/CSC/BSR) and COO matrices: scipy's own full format check (``indptr``
    monotone from 0 to nnz, ``indices`` below the shape, COO coordinates within it); its C++
    kernels trust all of it, and unpickling runs none of it."""
    try:
        check = getattr(matrix, "check_format", None)
        if check is not None:
            check(full_check=True)
        else:
            matrix._check()
    except (ValueError, TypeError, IndexError) as exc:
        raise _fail(matrix, "indices", str(exc)) from None


def _check_dia(matrix: Any) -> None:
    """DIA matrices: one row of ``data`` per offset, offsets distinct (what the constructor
    checks); the C++ kernels walk ``len(offsets)`` rows of ``data``."""
    import numpy as np

    data, offsets = matrix.data, matrix.offsets
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        raise _fail(matrix, "data", "not a two-dimensional array")
    if not isinstance(offsets, np.ndarray) or offsets.ndim != 1 or offsets.dtype.kind not in "iu":
        raise _fail(matrix, "offsets", "not a one-dimensional integer array")
    if data.shape[0] != len(offsets):
        raise _fail(matrix, "offsets", f"{len(offsets)} offsets for {data.shape[0]} diagonals")
    if len(np.unique(offsets)) != len(offsets):
        raise _fail(matrix, "offsets", "repeated offsets")


def _check_lil(matrix: Any) -> None:
    """LIL matrices: per row, sorted column indices inside the shape and as many values
    (``tocsr`` copies them into a CSR matrix unchecked)."""
    import numpy as np

    rows, values, shape = matrix.rows, matrix.data, matrix.shape
    if not (isinstance(rows, np.ndarray) and isinstance(values, np.ndarray)) or rows.shape != (shape[0],):
        raise _fail(matrix, "rows", f"not {shape[0]} rows")
    if values.shape != rows.shape:
        raise _fail(matrix, "data", f"shape {values.shape} for {shape[0]} rows")
    for number, (columns, items) in enumerate(zip(rows, values)):
        if not isinstance(columns, list) or not isinstance(items, list) or len(columns) != len(items):
            raise _fail(matrix, f"rows[{number}]", "not a list of as many columns as values")
        if columns and (
            not all(type(c) is int for c in columns)
            or columns[0] < 0
            or columns[-1] >= shape[1]
            or any(a >= b for a, b in zip(columns, columns[1:]))
        ):
            raise _fail(matrix, f"rows[{number}]", f"columns not increasing inside [0, {shape[1]})")


# --------------------------------------------------------------------------------------------
# pandas


def _check_categorical(categorical: Any) -> None:
    """codes in [-1, len(categories)): ``categories.take(codes)`` runs unchecked."""
    codes = categorical._ndarray
    error = _range_error(categorical, "codes", codes, -1, len(categorical.dtype.categories), "the categories")
    if error is not None:
        raise error


# Arrays up to this many items get pyarrow's full validation whatever their type (measured: 0.15
# against 5.8 us at 4 items, 3.5 against 6.3 us at 1,000, 48 against 8 us at 10,000).
_FULLY_VALIDATED_UP_TO = 1024


def _check_arrow(array: Any) -> None:
    """A pyarrow array whose offsets, lengths and buffers agree: ``_restore_array`` rebuilds one
    from a pickle's numbers without checking them, and reading it then reads wherever they
    point. pyarrow's full validation is the check it documents for untrusted data; for the
    binary-like types (pandas' strings) the same bounds are checked faster: pyarrow's
    structural validation (buffer sizes, the first and last offsets inside the data), the null
    count recounted and the offsets non-decreasing in NumPy (2.4x faster than the full
    validation on data in cache; right after a load both read at memory speed). The text is not
    read (UTF-8 validation read every byte: twice the load of a string column): a text that
    is not UTF-8 is an error where pandas turns it into ``str``, and a decoder can leave the
    buffer only past its last bytes, checked here. Small arrays (a categorical's categories)
    take the full validation: it costs less than the steps' fixed cost there."""
    import pyarrow as pa

    kind = array.type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    large = pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)
    try:
        if len(array) > _FULLY_VALIDATED_UP_TO and (text or large or pa.types.is_binary(kind)):
            array.validate()
            _check_null_count(array)
            _check_offsets_increase(array, 8 if large else 4)
            if text:
                _check_utf8_tail(array, 8 if large else 4)
        else:
            array.validate(full=True)
    except Exception as exc:
        raise _fail(array, "buffers", f"an Arrow array whose buffers do not hold it: {exc}") from None


def _check_null_count(array: Any) -> None:
    """The null count the pickle gave is the number of items its validity bitmap clears (code
    that sizes its output by the count writes by the bitmap)."""
    import pyarrow as pa

    validity = array.buffers()[0]
    if validity is None:
        return  # the structural validation refuses a count above 0 without a bitmap
    valid = pa.Array.from_buffers(pa.bool_(), len(array), [None, validity], offset=array.offset)
    if len(array) - valid.true_count != array.null_count:
        raise ValueError(f"null count {array.null_count} for {len(array) - valid.true_count} nulls")


# Offsets compared per chunk: the comparison's temporary stays this many bytes.
_OFFSET_CHUNK = 1 << 20


def _check_offsets_increase(strings: Any, width: int) -> None:
    """The ``width``-byte offsets of a binary-like array's items never decrease (its structural
    validation has checked that the buffer holds them and that the first and last lie inside
    the data, so then every one does)."""
    import numpy as np

    count = len(strings)
    if count < 2:
        return
    offsets = np.frombuffer(strings.buffers()[1], dtype=f"<i{width}")
    offsets = offsets[strings.offset : strings.offset + count + 1]
    for start in range(0, count, _OFFSET_CHUNK):
        chunk = offsets[start : start + _OFFSET_CHUNK + 1]
        if not np.greater_equal(chunk[1:], chunk[:-1]).all():
            item = start + int(np.argmax(chunk[1:] < chunk[:-1])) + 1
            raise ValueError(f"offset {item} ({int(offsets[item])}) is before the one ahead of it")


def _check_utf8_tail(strings: Any, width: int) -> None:
    """The text up to the array's last offset (``width``-byte offsets) does not end inside a
    UTF-8 sequence (offsets are already known to lie inside the data)."""
    if len(strings) == 0:
        return
    buffers = strings.buffers()
    offsets = memoryview(buffers[1]).cast("B")
    last = (strings.offset + len(strings)) * width
    end = int.from_bytes(offsets[last : last + width], "little", signed=True)
    data = memoryview(buffers[2]).cast("B") if buffers[2] is not None else memoryview(b"")
    tail = bytes(data[max(0, end - 4) : end])
    for back in range(1, len(tail) + 1):
        byte = tail[-back]
        if byte & 0xC0 != 0x80:  # the last lead (or ASCII) byte
            needed = 1 if byte < 0x80 else 2 if byte >> 5 == 0x6 else 3 if byte >> 4 == 0xE else 4
            if needed > back:
                raise ValueError("the text ends inside a UTF-8 sequence")
            return


def _check_multi_index(index: Any) -> None:
    """What pandas' own integrity check verifies and unpickling skips (``_new_Index`` makes a
    ``MultiIndex`` with ``verify_integrity=False``): one codes array per level, all of the
    index's length, each code in [-1, len(level)). The values of a level are taken at its codes
    with bounds checks off (``take_nd`` with fill), so a code past the level reads beyond it."""
    import numpy as np

    levels, codes = index._levels, index._codes
    if len(codes) != len(levels):
        raise _fail(index, "codes", f"{len(codes)} code arrays for {len(levels)} levels")
    length = None
    for number, (level, level_codes) in enumerate(zip(levels, codes)):
        if not isinstance(level_codes, np.ndarray) or level_codes.ndim != 1 or level_codes.dtype.kind != "i":
            raise _fail(index, f"codes[{number}]", "not a one-dimensional array of integers")
        if length is None:
            length = len(level_codes)
        elif len(level_codes) != length:
            raise _fail(index, f"codes[{number}]", f"{len(level_codes)} codes where level 0 has {length}")
        error = _range_error(index, f"codes[{number}]", level_codes, -1, len(level), "the level's values")
        if error is not None:
            raise error


# The data's dtype kinds each masked array class is made with (its constructor refuses others).
_MASKED_KINDS = {"BooleanArray": "b", "IntegerArray": "iu", "FloatingArray": "f"}


def _check_masked_array(array: Any) -> None:
    """A masked array (``IntegerArray``, ``FloatingArray``, ``BooleanArray``): a boolean
    ``_mask`` of exactly ``_data``'s shape, as its constructor requires. pandas' Cython kernels
    (group-bys, hashing, value counts, unique) read ``mask[i]`` for every item of the data with
    bounds checks off: a shorter mask is read past its end."""
    import numpy as np

    data, mask = array._data, array._mask
    if not isinstance(data, np.ndarray) or data.ndim == 0:
        raise _fail(array, "_data", f"{type(data).__name__} is not an array of values")
    kinds = next(
        (_MASKED_KINDS[c.__name__] for c in type(array).__mro__ if c.__name__ in _MASKED_KINDS), None
    )
    if kinds is not None and data.dtype.kind not in kinds:
        raise _fail(array, "_data", f"dtype {data.dtype} is not one this array holds")
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise _fail(array, "_mask", f"{getattr(mask, 'dtype', type(mask).__name__)} is not a boolean array")
    if mask.shape != data.shape:
        raise _fail(array, "_mask", f"shape {mask.shape} for data of shape {data.shape}")


def _check_sparse_array(array: Any) -> None:
    """A ``SparseArray``: one stored value per point of its sparse index (pandas' Cython sparse
    kernels read ``sp_values[i]`` for every point unchecked; the index itself checked its points
    against its length when the pickle made it)."""
    import numpy as np

    values, index = array._sparse_values, array._sparse_index
    if not isinstance(values, np.ndarray) or values.ndim != 1:
        raise _fail(array, "_sparse_values", "not a one-dimensional array")
    points = getattr(index, "npoints", None)
    if not isinstance(points, int):
        raise _fail(array, "_sparse_index", f"{type(index).__name__} is not a sparse index")
    if len(values) != points:
        raise _fail(array, "_sparse_values", f"{len(values)} values for the {points} points of its index")


def _check_interval_array(intervals: Any) -> None:
    """left and right of the same length: the interval tree and the comparisons pair them up
    by position."""
    left, right = intervals._left, intervals._right
    if len(left) != len(right):
        raise _fail(intervals, "_right", f"{len(right)} bounds for {len(left)} left bounds")


def _placed(placement: Any) -> Any:
    """What a ``BlockPlacement`` places: a range for a slice of positive step (the usual one,
    read without making its array), else the array."""
    import numpy as np

    indexer = placement.indexer
    if isinstance(indexer, slice):
        bounds = (indexer.start, indexer.stop, indexer.step)
        if all(type(b) is int for b in bounds) and bounds[2] > 0:
            return range(*bounds)
    return np.asarray(placement.as_array)


def _placement_error(owner: Any, field: str, placed: Any, items: int) -> Optional[NativeStateError]:
    """An item of ``placed`` (see ``_placed``) outside [0, items)."""
    if isinstance(placed, range):
        if len(placed) and (placed[0] < 0 or placed[-1] >= items):
            # The first one outside: the start, or the first at or past the end.
            bad = placed[0] if placed[0] < 0 else placed[max(0, -(-(items - placed.start) // placed.step))]
            return _fail(owner, field, f"item {bad} is outside [0, {items}) (the items axis)")
        return None
    return _range_error(owner, field, placed, 0, items, "the items axis")


def _check_manager_state(manager: Any, state: Any) -> None:
    """What a block manager's ``__setstate__`` reads of the ``"0.14.1"`` state, read the way
    it reads it (``ensure_index`` of each axis, ``BlockPlacement`` of each block's
    ``mgr_locs``): every placement inside the items axis. Other states pandas refuses itself."""
    if not (isinstance(state, tuple) and len(state) >= 4 and isinstance(state[3], dict)):
        return
    if "0.14.1" not in state[3]:
        return
    import importlib

    placement_class = importlib.import_module("pandas._libs.internals").BlockPlacement
    ensure_index = importlib.import_module("pandas.core.indexes.api").ensure_index
    fields = state[3]["0.14.1"]
    axes = [ensure_index(axis) for axis in fields["axes"]]
    items = len(axes[0]) if axes else 0
    for number, block in enumerate(fields["blocks"]):
        locations = block["mgr_locs"]
        placement = locations if isinstance(locations, placement_class) else placement_class(locations)
        error = _placement_error(manager, f"blocks[{number}].mgr_locs", _placed(placement), items)
        if error is not None:
            raise error


def _check_setstate_of(module: str, name: str) -> None:
    """Makes ``module.name``'s ``__setstate__`` check the state first (see
    :data:`SETSTATE_CHECKED`), once, while the guard is active. The module is imported here if
    it is not yet: the load that imports it may give the state right after."""
    import importlib

    from ._policy_state import patch_while_active

    cls = getattr(importlib.import_module(module), name, None)
    if not isinstance(cls, type):
        return

    def checker(inherited: Any) -> Any:
        def __setstate__(self: Any, state: Any) -> Any:
            try:
                # Looked up at each call: the benchmark turns the checks off and on.
                check = _SETSTATE_CHECKS.get(SETSTATE_CHECKED.get((module, name), ""))
                if check is not None:
                    check(self, state)
            except NativeStateError as error:
                raise unsafe_file_error(error, None) from None
            except Exception as exc:
                failed = _fail(
                    self, "__setstate__", f"its state could not be checked ({type(exc).__name__}: {exc})"
                )
                raise unsafe_file_error(failed, None) from None
            return inherited(self, state)

        return __setstate__

    patch_while_active(cls, "__setstate__", checker, f"{module}.{name}.__setstate__")


# The checks of SETSTATE_CHECKED, by name.
_SETSTATE_CHECKS: Dict[str, Callable[[Any, Any], None]] = {
    "block_manager": _check_manager_state,
    "lightgbm": _boosters.check_lightgbm_state,
    "xgboost": _boosters.check_xgboost_state,
}


def _check_made_by(module: str, name: str) -> None:
    """Makes ``module.name`` check what it makes (see :data:`CHECKED_ON_CREATION`), once, while
    the guard is active. The module is imported here if it is not yet."""
    import importlib

    from ._policy_state import patch_while_active

    owner = importlib.import_module(module)
    if not callable(getattr(owner, name, None)):
        return

    def checking(original: Any) -> Any:
        def made(*args: Any, **kwargs: Any) -> Any:
            array = original(*args, **kwargs)
            # Looked up at each call: the benchmark turns the checks off and on.
            if (module, name) in CHECKED_ON_CREATION:
                try:
                    _check_arrow(array)
                except NativeStateError as error:
                    raise unsafe_file_error(error, None) from None
            return array

        # Pickled by reference as the name it stands in for (pickle finds this very object there).
        made.__module__, made.__name__, made.__qualname__ = module, name, name
        return made

    patch_while_active(owner, name, checking, f"{module}.{name}")


def _check_block_manager(manager: Any) -> None:
    """Each block placed inside the items axis (the Cython ``_rebuild_blknos_and_blklocs``
    writes at every placement with bounds checks off), each item placed once, the block's
    shape matching its placement and the other axis (a series: its index)."""
    import numpy as np

    items = len(manager.axes[0])
    ranges: List[range] = []
    arrays: List[Any] = []
    for number, block in enumerate(manager.blocks):
        placed = _placed(block.mgr_locs)
        error = _placement_error(manager, f"blocks[{number}].mgr_locs", placed, items)
        if error is not None:
            raise error
        (ranges if isinstance(placed, range) else arrays).append(placed)
        # A frame's block holds its placement's columns, each as long as the index; a series'
        # one block is as long as its index (pandas' take and groupby kernels index the values
        # by the index's positions, unchecked).
        expected = (len(placed), len(manager.axes[1])) if manager.ndim == 2 else (items,)
        if block.ndim != manager.ndim or tuple(block.shape) != expected:
            raise _fail(
                manager,
                f"blocks[{number}].values",
                f"shape {tuple(block.shape)} for placement {expected}",
            )
    if manager.ndim != 2:
        return
    if not arrays and all(r.step == 1 for r in ranges):
        covered = 0
        for placed in sorted((r for r in ranges if r), key=lambda r: r.start):
            if placed.start != covered:
                break
            covered = placed.stop
        else:
            if covered == items:
                return
    every = np.concatenate(
        [np.arange(r.start, r.stop, r.step) for r in ranges] + arrays + [np.empty(0, np.intp)]
    )
    if every.size != items or np.unique(every).size != items:
        raise _fail(
            manager,
            "blocks",
            f"placements cover {np.unique(every).size} of {items} items ({every.size} placed)",
        )


# --------------------------------------------------------------------------------------------
# torch


# The rows of an RNN's weights per hidden unit, by mode.
_RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
# The modes each RNN class runs (its forward calls that kernel, whatever the mode says).
_RNN_MODES = (("LSTM", ("LSTM",)), ("GRU", ("GRU",)), ("RNN", ("RNN_TANH", "RNN_RELU")))
# What ``Module.__getattr__`` looks in after the instance dict, in order.
_MODULE_HOLDERS = ("_parameters", "_buffers", "_modules")
_ABSENT = object()


def _rnn_setting(module: Any, name: str, low: int) -> int:
    """An RNN size setting: an int (or NumPy integer, not a bool) of at least ``low``."""
    value = _plain(module, name)
    width = None if isinstance(value, bool) else _width(value)
    if width is None or width < low:
        raise _fail(module, name, f"{value!r} is not an int of at least {low}")
    return width


def _rnn_weight_shapes(
    gates: int, input_size: int, hidden: int, layers: int, bias: bool, directions: int, projection: int
) -> List[Tuple[str, Tuple[int, ...]]]:
    """The weights ``RNNBase.__init__`` makes for these settings, in its order, with their
    shapes: per layer and direction ``weight_ih`` (gates, layer input), ``weight_hh`` (gates,
    real hidden), with bias ``bias_ih`` and ``bias_hh`` (gates,), with a projection
    ``weight_hr`` (proj_size, hidden_size); layer 0's input is ``input_size``, the others' the
    real hidden size (proj_size or hidden_size) times the directions."""
    real = projection or hidden
    shapes: List[Tuple[str, Tuple[int, ...]]] = []
    for layer in range(layers):
        width = input_size if layer == 0 else real * directions
        for suffix in ("", "_reverse")[:directions]:
            made: List[Tuple[str, Tuple[int, ...]]] = [
                ("weight_ih", (gates, width)),
                ("weight_hh", (gates, real)),
            ]
            if bias:
                made += [("bias_ih", (gates,)), ("bias_hh", (gates,))]
            if projection:
                made.append(("weight_hr", (projection, hidden)))
            shapes.extend((f"{name}_l{layer}{suffix}", shape) for name, shape in made)
    return shapes


def _module_attribute(module: Any, name: str) -> Any:
    """What ``getattr(module, name)`` finds for a weight, read from the dicts: the instance
    dict, then the holders ``Module.__getattr__`` looks in (_ABSENT when none has it)."""
    state = getattr(module, "__dict__", _NO_DICT)
    if name in state:
        return state[name]
    for holder in _MODULE_HOLDERS:
        held = state.get(holder)
        if not isinstance(held, dict):
            raise _fail(module, holder, f"a {type(held).__name__}, not a dict")
        if name in held:
            return held[name]
    return _ABSENT


def _check_rnn(module: Any) -> None:
    """torch ``RNN``, ``LSTM``, ``GRU`` (``RNNBase``): forward makes the hidden state of
    ``hidden_size`` (``proj_size``) and hands ``_flat_weights`` (built again from the attributes
    ``_flat_weights_names`` names when those were replaced) to ``_VF.lstm``/``gru``/``rnn_*``
    with the settings; the CPU oneDNN LSTM takes its sizes from that state and reads every
    weight that large through its raw pointer (64 hidden units over weights made for 8 read
    NaN and heap values, 32,768 crash). The settings as the constructor checks them, the
    weight names it makes for them, and each weight, in ``_flat_weights`` and as the attribute,
    of the shape it gives."""
    tensor = sys.modules["torch"].Tensor  # loaded: the module's class is torch's
    rnn = sys.modules.get("torch.nn.modules.rnn")
    mode = _plain(module, "mode")
    modes: Tuple[str, ...] = tuple(_RNN_GATES)
    for name, allowed in _RNN_MODES:
        cls = getattr(rnn, name, None)
        if isinstance(cls, type) and isinstance(module, cls):
            modes = allowed
    if not (type(mode) is str and mode in modes):
        raise _fail(module, "mode", f"{mode!r} is not one of {', '.join(modes)}")
    input_size = _rnn_setting(module, "input_size", 1)
    hidden = _rnn_setting(module, "hidden_size", 1)
    layers = _rnn_setting(module, "num_layers", 1)
    projection = _rnn_setting(module, "proj_size", 0)
    if projection >= hidden or (projection and mode != "LSTM"):
        raise _fail(
            module, "proj_size", f"{projection} for hidden_size {hidden} (below it, and an LSTM's only)"
        )
    flags = {}
    for name in ("bias", "batch_first", "bidirectional"):
        flags[name] = _plain(module, name)
        if type(flags[name]) is not bool:
            raise _fail(module, name, f"{flags[name]!r} is not a bool")
    dropout = _plain(module, "dropout")
    if not (isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout <= 1):
        raise _fail(module, "dropout", f"{dropout!r} is not a probability")
    directions = 2 if flags["bidirectional"] else 1
    per_layer = (4 if flags["bias"] else 2) + (1 if projection else 0)
    names, weights = _plain(module, "_flat_weights_names"), _plain(module, "_flat_weights")
    count = layers * directions * per_layer
    settings = (
        f"{layers} layer(s) of {mode}, {directions} direction(s), bias {flags['bias']}, "
        f"proj_size {projection}"
    )
    if type(names) is not list or len(names) != count:
        size = len(names) if type(names) is list else type(names).__name__
        raise _fail(module, "_flat_weights_names", f"{size} names for the {count} weights of {settings}")
    if type(weights) is not list or len(weights) != count:
        size = len(weights) if type(weights) is list else type(weights).__name__
        raise _fail(module, "_flat_weights", f"{size} weights for the {count} of {settings}")
    shapes = _rnn_weight_shapes(
        _RNN_GATES[mode] * hidden, input_size, hidden, layers, flags["bias"], directions, projection
    )
    for index, ((name, shape), given, flat) in enumerate(zip(shapes, names, weights)):
        if type(given) is not str or given != name:
            raise _fail(module, f"_flat_weights_names[{index}]", f"{given!r}, not the {name!r} of {settings}")
        attribute = _module_attribute(module, name)
        for field, weight in ((name, attribute), (f"_flat_weights[{index}]", flat)):
            if field != name and weight is attribute:
                continue
            found = tuple(weight.shape) if isinstance(weight, tensor) else None
            if found != shape:
                what = f"shape {found}" if found is not None else "not a tensor"
                what = "missing" if weight is _ABSENT else what
                raise _fail(
                    module,
                    field,
                    f"{what}; input_size {input_size}, hidden_size {hidden} and {settings} make "
                    f"{name} {shape}",
                )


# Hook classes validated on the objects that hold them (found as _OWNER_CLASSES): the state a
# hook reads is its owner's.
VALIDATED_THROUGH_OWNERS: Tuple[Tuple[str, str], ...] = (("torch.nn.utils.weight_norm", "WeightNorm"),)


def _check_weight_norm(module: Any) -> None:
    """A torch module given a ``WeightNorm`` forward pre-hook (``weight_norm``): before each
    forward the hook computes its weight with ``torch._weight_norm(<name>_v, <name>_g, dim)``,
    whose fused CPU kernel (dim 0 or the last) writes one norm per slice of ``<name>_v`` along
    ``dim`` into a buffer of ``<name>_g``'s size and reads ``<name>_g`` as far: a ``<name>_g``
    of one value over 64 rows corrupts the heap. ``WeightNorm.apply`` makes ``<name>_g`` the
    norm of each such slice (dim -1: one value, the whole weight's norm)."""
    # Found as forward finds it (also in a holder when the instance dict has none).
    hooks = _module_attribute(module, "_forward_pre_hooks")
    hook_module, hook_name = VALIDATED_THROUGH_OWNERS[0]
    hook_class = getattr(sys.modules.get(hook_module), hook_name, None)
    if not hooks or not isinstance(hooks, dict) or not isinstance(hook_class, type):
        return
    tensor = sys.modules["torch"].Tensor
    for hook in hooks.values():
        if not isinstance(hook, hook_class):
            continue
        name, dim = _plain(hook, "name"), _plain(hook, "dim")
        if type(name) is not str:
            raise _fail(module, "_forward_pre_hooks", f"a WeightNorm of the weight {name!r}, not a name")
        weight, norms = _module_attribute(module, f"{name}_v"), _module_attribute(module, f"{name}_g")
        for field, value in ((f"{name}_v", weight), (f"{name}_g", norms)):
            if not isinstance(value, tensor):
                raise _fail(module, field, "missing" if value is _ABSENT else f"a {type(value).__name__}")
        if type(dim) is not int or not -max(weight.dim(), 1) <= dim < max(weight.dim(), 1):
            raise _fail(
                module, "_forward_pre_hooks", f"a WeightNorm over dim {dim!r} of a {weight.dim()}-d weight"
            )
        slices = 1 if dim == -1 else int(weight.shape[dim])
        if norms.numel() != slices:
            raise _fail(
                module,
                f"{name}_g",
                f"{norms.numel()} norms for the {slices} slices of {name}_v {tuple(weight.shape)} along dim "
                f"{dim}; the fused kernel writes one per slice into a buffer of {name}_g's size",
            )


# --------------------------------------------------------------------------------------------
# The walk


# The validated classes by module, with the checker's key; BinaryTree's name differs between
# scikit-learn versions.
_VALIDATED_CLASSES: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "sklearn.tree._tree": (("Tree", "tree"),),
    **{
        module: tuple(
            (name, "binary_tree")
            for name in ("BinaryTree", "BinaryTree64", "BinaryTree32", "KDTree", "BallTree")
        )
        for module in ("sklearn.neighbors._kd_tree", "sklearn.neighbors._ball_tree")
    },
    "sklearn.ensemble._hist_gradient_boosting.predictor": (("TreePredictor", "predictor"),),
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting": (("BaseHistGradientBoosting", "hist_gb"),),
    "scipy.sparse._compressed": (("_cs_matrix", "sparse"),),
    "scipy.sparse._coo": (("_coo_base", "sparse"),),
    "pandas.core.arrays.categorical": (("Categorical", "categorical"),),
    "pandas.core.arrays.interval": (("IntervalArray", "interval"),),
    "sklearn.tree._classes": (("BaseDecisionTree", "tree_estimator"),),
    "sklearn.ensemble._forest": (("BaseForest", "tree_ensemble"),),
    "sklearn.ensemble._gb": (("BaseGradientBoosting", "tree_ensemble"),),
    "sklearn.ensemble._bagging": (("BaseBagging", "tree_ensemble"),),
    "sklearn.svm._base": (("BaseLibSVM", "libsvm"),),
    "sklearn.cluster._kmeans": (("_BaseKMeans", "kmeans"),),
    "sklearn.feature_extraction.text": (("CountVectorizer", "vocabulary"), ("HashingVectorizer", "hashing")),
    "sklearn.feature_extraction._hash": (("FeatureHasher", "hashing"),),
    "sklearn.linear_model._coordinate_descent": (("ElasticNet", "coordinate_descent"),),
    "sklearn.feature_extraction._dict_vectorizer": (("DictVectorizer", "vocabulary"),),
    "sklearn.cluster._birch": (("Birch", "birch"),),
    "sklearn.preprocessing._encoders": (("OneHotEncoder", "one_hot"),),
    "sklearn.preprocessing._label": (("MultiLabelBinarizer", "multilabel"),),
    "sklearn.linear_model._stochastic_gradient": (("BaseSGD", "sgd"),),
    "sklearn.cluster._hdbscan.hdbscan": (("HDBSCAN", "hdbscan"),),
    "numpy.random.bit_generator": (("BitGenerator", "random"),),
    "numpy.random.mtrand": (("RandomState", "random"),),
    "numpy.random._generator": (("Generator", "random"),),
    "sklearn.neighbors._base": (("NeighborsBase", "neighbors"),),
    "scipy.interpolate._bsplines": (("BSpline", "bspline"),),
    "scipy.sparse._dia": (("_dia_base", "dia"),),
    "scipy.sparse._lil": (("_lil_base", "lil"),),
    "pandas.core.indexes.multi": (("MultiIndex", "multi_index"),),
    "pandas.core.arrays.masked": (("BaseMaskedArray", "masked"),),
    "pandas.core.arrays.sparse.array": (("SparseArray", "sparse_array"),),
    "pandas.core.internals.managers": (("BaseBlockManager", "block_manager"),),
    "torch.nn.modules.rnn": (("RNNBase", "rnn"),),
}


# Classes the walk also finds (not validated classes: their import and subclasses trigger
# nothing) because a validated hook reads their state: every torch module, for its WeightNorm.
_OWNER_CLASSES: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "torch.nn.modules.module": (("Module", "weight_norm"),),
}


def _classes(table: Optional[Dict[str, Tuple[Tuple[str, str], ...]]] = None) -> List[Tuple[type, str]]:
    """The validated classes of the libraries loaded so far, with the checker's key (looked up
    on every validation: a reloaded module has new classes)."""
    found = []
    for module_name, names in (_VALIDATED_CLASSES if table is None else table).items():
        module = sys.modules.get(module_name)
        if module is not None:
            for name, key in names:
                cls = getattr(module, name, None)
                if isinstance(cls, type):
                    found.append((cls, key))
    return found


def _walker(classes: List[Tuple[type, str]]) -> _native.NativeStateWalker:
    """The walker for the validated classes loaded so far (made again when they change)."""
    ndarray = getattr(sys.modules.get("numpy"), "ndarray", None)
    cached = getattr(_walker, "cache", None)
    if cached is not None and cached[0] == classes and cached[1] is ndarray:
        walker: _native.NativeStateWalker = cached[2]
        return walker
    numpy_bases = [getattr(sys.modules.get("numpy"), name, None) for name in _SKIPPED_NUMPY_BASES]
    skipped = _SKIPPED_BASES + [base for base in numpy_bases if isinstance(base, type)]
    walker = _native.NativeStateWalker(classes, _ATOMIC_TYPES, skipped, ndarray)
    _walker.cache = (classes, ndarray, walker)  # type: ignore[attr-defined]
    return walker


def _walk(
    root: Any, classes: List[Tuple[type, str]], walked: Optional[_native.WalkedObjects] = None
) -> Dict[str, List[Any]]:
    """Instances of the validated classes reachable from ``root``, by checker key: what the
    garbage collector sees of each object (containers, instance dicts, extension types'
    fields), and the items of object arrays (walked in Rust, see ``NativeStateWalker``); not
    looking again at what a nested load's walk looked at (``walked``)."""
    return _walker(classes).walk(root, walked)


def validate(result: Any, watch: Watch) -> None:
    """Checks what a load made: the captured instances, and, when the load imported from a
    walked library, every validated object reachable from its result. Raises NativeStateError
    (also when a checker itself fails on a state it cannot read: fail closed)."""
    try:
        _validate(result, watch)
    except NativeStateError:
        raise
    except Exception as exc:
        raise NativeStateError(
            "picklefence", "validate", f"a native state could not be checked ({type(exc).__name__}: {exc})"
        ) from None


# Captures a nested load leaves to the load it is nested in, which checks them before its caller
# gets anything: a tree estimator is checked with the ensemble that holds it (a boosting model's
# 900 estimators come from the nested load of their object array; checked there, their state
# was read twice).
_DEFERRED_TO_OUTER = ("tree_estimator",)


def _validate(result: Any, watch: Watch) -> None:
    found: Dict[str, List[Any]] = {}
    if watch.outer_captured is not None:
        for key in _DEFERRED_TO_OUTER:
            deferred = watch.captured.pop(key, None)
            if deferred:
                watch.outer_captured.setdefault(key, []).extend(deferred)
    if watch.triggered:
        classes = _classes()
        if classes:
            found = _walk(result, classes + _classes(_OWNER_CLASSES), watch.walked)
    for key, captured in watch.captured.items():
        walked = found.get(key)
        if walked:  # not twice what the walk found too (an instance built twice is checked twice)
            seen = {id(obj) for obj in walked}
            walked.extend(obj for obj in captured if id(obj) not in seen)
        else:
            found[key] = captured
    if not found:
        return
    _check_trees(found.get("tree", []))
    models = []
    for model in found.get("hist_gb", []):
        if getattr(model, "_predictors", None):
            width = _input_width(model)
            if width is None:  # predict would not check its input's width
                raise _missing_width(model)
            models.append((model._predictors, width))
    _check_tree_predictors(found.get("predictor", []), models)
    _check_tree_owners(found.get("tree_estimator", []), found.get("tree_ensemble", []))
    for key, check in _CHECKS_BY_KEY:
        for obj in found.get(key, []):
            check(obj)


# The checks that take one instance at a time, by walk key, in the order they run.
_CHECKS_BY_KEY: Tuple[Tuple[str, Callable[[Any], None]], ...] = (
    ("binary_tree", _check_binary_tree),
    ("sparse", _check_sparse),
    ("categorical", _check_categorical),
    ("interval", _check_interval_array),
    ("libsvm", _check_libsvm),
    ("kmeans", _check_kmeans),
    ("birch", _check_birch),
    ("vocabulary", _check_vocabulary),
    ("one_hot", _check_one_hot_encoder),
    ("multilabel", _check_multilabel_binarizer),
    ("sgd", _check_sgd),
    ("hashing", _check_hashing),
    ("coordinate_descent", _check_coordinate_descent),
    ("hdbscan", _check_hdbscan),
    ("hist_gb", _check_hist_gradient_boosting),
    ("random", _check_random_generator),
    ("neighbors", _check_neighbors),
    ("bspline", _check_bspline),
    ("dia", _check_dia),
    ("lil", _check_lil),
    ("multi_index", _check_multi_index),
    ("masked", _check_masked_array),
    ("sparse_array", _check_sparse_array),
    ("block_manager", _check_block_manager),
    ("rnn", _check_rnn),
    ("weight_norm", _check_weight_norm),
    # The walk files an RNN module under "rnn" only (first match wins): its hooks too.
    ("rnn", _check_weight_norm),
)


def unsafe_file_error(error: NativeStateError, filepath: Optional[str]) -> UnsafeFileError:
    module, _, name = error.cls.rpartition(".")
    violation = Violation(
        "native-state",
        module,
        name,
        None,
        f"{error.cls}.{error.field}: {error.message}; its compiled code trusts this state and would read or "
        "write out of bounds (or never finish) with it",
        "critical",
    )
    return UnsafeFileError([violation], filepath=filepath)

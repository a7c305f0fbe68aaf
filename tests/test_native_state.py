"""Validated native state: objects whose compiled code trusts their arrays are checked after a
guarded load, before the caller gets them. Each invariant is broken in a real object (its state
edited), pickled, and loaded under the guard: refused, naming the class and the field. The same
structures, intact and of several sizes, load unchanged. (That the broken files crash or hang an
unprotected process is shown by the class 6 gadgets of test_gadgets.py.)"""

from __future__ import annotations

import functools
import io
import pickle
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.cluster import Birch, BisectingKMeans, KMeans, MiniBatchKMeans
from sklearn.ensemble import (
    BaggingClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_extraction import DictVectorizer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics.pairwise import pairwise_kernels
from sklearn.neighbors import BallTree, KDTree, KernelDensity, KNeighborsClassifier, KNeighborsTransformer
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import picklefence
from picklefence import UnsafeFileError, _native

RNG = np.random.RandomState(0)
X = RNG.rand(300, 4)
Y = (X[:, 0] + X[:, 1] > 1).astype(int)


def _tree_with(edit: Callable[[np.ndarray], None]) -> DecisionTreeClassifier:
    clf = DecisionTreeClassifier(random_state=0).fit(X, Y)
    state = clf.tree_.__getstate__()
    nodes = state["nodes"].copy()
    edit(nodes)
    state["nodes"] = nodes
    clf.tree_.__setstate__(state)
    return clf


def _rootless_tree() -> DecisionTreeClassifier:
    """A fitted tree given a state of no nodes (predict starts at node 0 regardless: unprotected
    it never returned)."""
    clf = DecisionTreeClassifier(random_state=0).fit(X, Y)
    state = clf.tree_.__getstate__()
    state.update(
        nodes=state["nodes"][:0].copy(), values=state["values"][:0].copy(), node_count=0, max_depth=0
    )
    clf.tree_.__setstate__(state)
    return clf


def _set(nodes: np.ndarray, field: str, index: int, value: int) -> None:
    nodes[field][index] = value


def _with_max_depth(model: Any, max_depth: Any) -> Any:
    """``model`` (a tree estimator or an ensemble: its last tree) with its ``Tree``'s
    ``max_depth`` set to ``max_depth``, as a file could hold it."""
    tree = model.tree_ if hasattr(model, "tree_") else np.ravel(model.estimators_)[-1].tree_
    state = tree.__getstate__()
    state["max_depth"] = max_depth
    tree.__setstate__(state)
    return model


def _deep_tree() -> DecisionTreeRegressor:
    """A tree grown without a depth limit on noise: depth 48, 3999 nodes."""
    rng = np.random.RandomState(0)
    return DecisionTreeRegressor(random_state=0).fit(rng.rand(2000, 3), rng.rand(2000))


def _binary_tree_with(kind: type, item: int, edit: Callable[[Any], Any]) -> Any:
    tree = kind(X, leaf_size=5)
    state = list(tree.__getstate__())
    state[item] = edit(state[item].copy() if isinstance(state[item], np.ndarray) else state[item])
    tree.__setstate__(tuple(state))
    return tree


def _with_item(values: np.ndarray, index: Any, value: Any) -> np.ndarray:
    if isinstance(index, tuple):  # (field, row) of a structured array
        values[index[0]][index[1]] = value
    else:
        values[index] = value
    return values


def _csr(edit: Callable[[sp.csr_matrix], None]) -> sp.csr_matrix:
    matrix = sp.csr_matrix(RNG.rand(5, 6) > 0.5, dtype=float)
    edit(matrix)
    return matrix


def _predictor_with(
    field: str, value: int, other_layout: bool = False, **also: int
) -> HistGradientBoostingClassifier:
    """The first node of the last predictor changed; ``other_layout``: that predictor's records
    in another dtype than the others' (checked through the mixed-layout path)."""
    model = HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, Y)
    predictor = model._predictors[-1][0]
    if other_layout:
        dtype = predictor.nodes.dtype
        wider = np.dtype(
            [(name, "<i8" if name in ("left", "right") else dtype.fields[name][0]) for name in dtype.names]
        )
        predictor.nodes = predictor.nodes.astype(wider)
    for name, number in {field: value, **also}.items():
        predictor.nodes[name][0] = number
    return model


def _categorical(code: int) -> pd.Categorical:
    categorical = pd.Categorical.from_codes([0, 1, 2, 1], categories=["a", "b", "c"])
    categorical._ndarray[2] = code  # the codes array, as a file could hold it
    return categorical


def _multi_index_with_codes(codes: List[List[int]]) -> pd.Series:
    """A Series on a two-level MultiIndex (levels of 2 and 3 values) holding ``codes`` unchecked,
    as unpickling makes it."""
    index = pd.MultiIndex(levels=[["a", "b"], [1.0, 2.0, 3.0]], codes=codes, verify_integrity=False)
    return pd.Series(np.arange(len(codes[0]), dtype=float), index=index)


def _masked_with(data: Any = None, mask: Any = None, dtype: str = "Int64") -> Any:
    """A masked array (4 values) whose `_data` or `_mask` is replaced."""
    values = pd.array([True, False, None, True] if dtype == "boolean" else [1, 2, None, 4], dtype=dtype)
    if data is not None:
        object.__setattr__(values, "_data", data)
    if mask is not None:
        object.__setattr__(values, "_mask", mask)
    return values


def _sparse_array_with(stored: np.ndarray) -> pd.Series:
    """A Series of a SparseArray of 10 points whose stored values are replaced."""
    values = pd.arrays.SparseArray(np.r_[np.arange(1.0, 11.0), np.zeros(5)], fill_value=0.0)
    object.__setattr__(values, "_sparse_values", stored)
    return pd.Series(values)


def _edited(model: Any, **fields: Any) -> Any:
    """``model`` with instance attributes replaced, as a file could hold them."""
    for name, value in fields.items():
        object.__setattr__(model, name, value)
    return model


def _svc(**fit: Any) -> Any:
    from sklearn.svm import SVC

    x3 = X[:90] + np.repeat([0, 1, 2], 30)[:, None]
    return SVC(**fit).fit(x3 @ x3.T if fit.get("kernel") == "precomputed" else x3, np.repeat([0, 1, 2], 30))


def _wide_tree(estimator: Any, features: int) -> Any:
    """A ``Tree`` like ``estimator.tree_`` but built for ``features`` features, its root
    splitting on the last."""
    from sklearn.tree._tree import Tree

    state = estimator.tree_.__getstate__()
    state["nodes"] = state["nodes"].copy()
    state["nodes"]["feature"][0] = features - 1
    tree = Tree(features, np.array(estimator.tree_.n_classes), estimator.tree_.n_outputs)
    tree.__setstate__(state)
    return tree


def _item_set(model: Any, container: Any, index: int, value: Any) -> Any:
    """``model`` after ``container[index] = value`` (a list or array it holds)."""
    container[index] = value
    return model


def _spline_with(**fields: Any) -> Any:
    from sklearn.preprocessing import SplineTransformer

    model = SplineTransformer().fit(X)
    _edited(model.bsplines_[0], **fields)
    return model


def _frame_with_placement(locations: Any, block: int = 0) -> pd.DataFrame:
    """(block 1: a float and an int column, the int block placed where the float one is.)"""
    from pandas._libs.internals import BlockPlacement

    if block:
        frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]})
    else:
        frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    frame._mgr.blocks[block]._mgr_locs = BlockPlacement(locations)
    return frame


def _series_with_placement(locations: Any) -> pd.Series:
    from pandas._libs.internals import BlockPlacement

    series = pd.Series([1.0, 2.0])
    series._mgr.blocks[0]._mgr_locs = BlockPlacement(locations)
    return series


def _series_of_lengths(values: int, index: int, placed: int) -> pd.Series:
    """A series holding ``values`` values for an index of ``index`` labels, placed at the first
    ``placed`` (as a file could hold it)."""
    from pandas._libs.internals import BlockPlacement

    series = pd.Series(np.ones(values))
    series._mgr.axes[0] = pd.RangeIndex(index)
    series._mgr.blocks[0]._mgr_locs = BlockPlacement(slice(0, placed))
    return series


def _masked_node_data(node_data: np.ndarray) -> Any:
    """``node_data`` with its first node's range beyond the samples, that record masked: NumPy
    skips it, the compiled code reads the buffer."""
    _with_item(node_data, ("idx_end", 0), 10**6)
    masked = np.ma.masked_array(node_data)
    masked[0] = np.ma.masked
    return masked


def _boosting(trees_per_stage: int, **fields: Any) -> Any:
    """A fitted regressor whose stages hold ``trees_per_stage`` trees (its own, repeated)."""
    model = GradientBoostingRegressor(n_estimators=2, max_depth=2, random_state=0).fit(X, X[:, 0])
    return _edited(model, estimators_=np.repeat(model.estimators_, trees_per_stage, axis=1), **fields)


def _coo_row(row: int) -> sp.coo_matrix:
    matrix = sp.coo_matrix(np.eye(3))
    matrix.row[1] = row  # the constructor checks; a file's state is never checked
    return matrix


def _intervals_with_short_right() -> pd.arrays.IntervalArray:
    intervals = pd.arrays.IntervalArray.from_breaks([0.0, 1.0, 2.0, 3.0])
    intervals._right = intervals._right[:1]
    return intervals


def _indices_beyond(matrix: sp.csr_matrix) -> None:
    matrix.indices[0] = 10**6


def _indptr_backwards(matrix: sp.csr_matrix) -> None:
    matrix.indptr[2] = matrix.indptr[1] - 1 if matrix.indptr[1] else 5


BROKEN: Dict[str, Any] = {
    "tree child beyond node_count": (
        lambda: _tree_with(lambda n: _set(n, "left_child", 0, 10**9)),
        "Tree",
        "left_child",
    ),
    "tree child pointing back": (
        lambda: _tree_with(lambda n: _set(n, "right_child", 0, 0)),
        "Tree",
        "right_child",
    ),
    "tree without a root": (_rootless_tree, "Tree", "node_count"),
    # Both children of the root one node: a graph whose paths the partial dependence all visits.
    "tree node reached twice": (
        lambda: _tree_with(lambda n: _set(n, "right_child", 0, int(n["left_child"][0]))),
        "Tree",
        "right_child",
    ),
    "predictor node of two parents": (lambda: _predictor_with("right", 1), "TreePredictor", "right"),
    "tree half leaf": (lambda: _tree_with(lambda n: _set(n, "right_child", 0, -1)), "Tree", "nodes"),
    "tree feature beyond n_features": (
        lambda: _tree_with(lambda n: _set(n, "feature", 0, 99)),
        "Tree",
        "feature",
    ),
    # decision_path writes each sample's path into n_samples * (1 + max_depth) node ids.
    "tree max_depth below its depth": (lambda: _with_max_depth(_deep_tree(), 0), "Tree", "max_depth"),
    "forest tree max_depth below its depth": (
        lambda: _with_max_depth(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, Y), 1),
        "Tree",
        "max_depth",
    ),
    "tree max_depth negative": (lambda: _with_max_depth(_deep_tree(), -1), "Tree", "max_depth"),
    "tree max_depth that overflows the buffer size": (
        lambda: _with_max_depth(_deep_tree(), 2**62 - 1),
        "Tree",
        "max_depth",
    ),
    "kd_tree idx_array": (
        lambda: _binary_tree_with(KDTree, 1, lambda a: _with_item(a, 3, 10**12)),
        "KDTree",
        "idx_array",
    ),
    "ball_tree node range": (
        lambda: _binary_tree_with(BallTree, 2, lambda a: _with_item(a, ("idx_end", 0), 10**6)),
        "BallTree",
        "node_data",
    ),
    "csr indices": (lambda: _csr(_indices_beyond), "csr_matrix", "indices"),
    "csr indptr": (lambda: _csr(_indptr_backwards), "csr_matrix", "indices"),
    "coo row": (lambda: _coo_row(10**6), "coo_matrix", "indices"),
    "hist gradient boosting child": (lambda: _predictor_with("left", 4_000_000_000), "TreePredictor", "left"),
    "hist gradient boosting feature": (
        lambda: _predictor_with("feature_idx", 1000),
        "TreePredictor",
        "feature_idx",
    ),
    "hist gradient boosting bitset": (
        lambda: _predictor_with("bitset_idx", 1000, is_categorical=1),
        "TreePredictor",
        "bitset_idx",
    ),
    "categorical code": (lambda: _categorical(7), "Categorical", "codes"),
    "interval bounds": (lambda: _intervals_with_short_right(), "IntervalArray", "_right"),
    "multi index code": (lambda: _multi_index_with_codes([[0, 1, 0], [0, 2, 3]]), "MultiIndex", "codes[1]"),
    "multi index code below -1": (
        lambda: _multi_index_with_codes([[0, -2, 0], [0, 1, 2]]),
        "MultiIndex",
        "codes[0]",
    ),
    "multi index codes of unequal lengths": (
        lambda: _multi_index_with_codes([[0, 1, 0], [0, 1]]),
        "MultiIndex",
        "codes[1]",
    ),
    "masked array short mask": (
        lambda: pd.Series(_masked_with(mask=np.zeros(1, dtype=bool))),
        "IntegerArray",
        "_mask",
    ),
    "masked array mask of ints": (
        lambda: pd.Series(_masked_with(mask=np.zeros(4, dtype=np.int64))),
        "IntegerArray",
        "_mask",
    ),
    "boolean array short mask": (
        lambda: pd.Series(_masked_with(mask=np.zeros(2, dtype=bool), dtype="boolean")),
        "BooleanArray",
        "_mask",
    ),
    "sparse array values": (lambda: _sparse_array_with(np.ones(1)), "SparseArray", "_sparse_values"),
    # scikit-learn estimators and scipy structures whose compiled code trusts shapes and counts.
    "svm support_ longer than the vectors": (
        lambda: _edited(_svc(), support_=np.zeros(2000, np.int32)),
        "SVC",
        "support_",
    ),
    "svm _n_support negative, summing right": (
        lambda: (lambda m: _edited(m, _n_support=np.array([len(m.support_) + 10**7, -(10**7), 0], np.int32)))(
            _svc()
        ),
        "SVC",
        "_n_support",
    ),
    "svm _n_support of a sparse model": (
        lambda: (lambda m: _edited(m, _n_support=m._n_support + np.array([1000, 0, 0], np.int32)))(
            _edited(_svc(), _sparse=True)
        ),
        "SVC",
        "_n_support",
    ),
    "svm _n_support wider than the coefficients": (
        lambda: (lambda m: _edited(m, _n_support=np.r_[m._n_support, np.zeros(3000, np.int32)]))(_svc()),
        "SVC",
        "_dual_coef_",
    ),
    "svm _intercept_ short": (lambda: _edited(_svc(), _intercept_=np.zeros(1)), "SVC", "_intercept_"),
    "svm precomputed support_ beyond the samples": (
        lambda: (lambda m: _edited(m, support_=m.support_ + 10**8))(_svc(kernel="precomputed")),
        "SVC",
        "support_",
    ),
    "kmeans centers narrower than the input": (
        lambda: (lambda m: _edited(m, cluster_centers_=m.cluster_centers_[:, :1].copy()))(
            KMeans(3, n_init=1, random_state=0).fit(X)
        ),
        "KMeans",
        "cluster_centers_",
    ),
    "bisecting kmeans node center": (
        lambda: (lambda m: _item_set(m, m._bisecting_tree.left.__dict__, "center", np.zeros(1)))(
            BisectingKMeans(3, random_state=0).fit(X)
        ),
        "BisectingKMeans",
        "_bisecting_tree",
    ),
    "count vectorizer column beyond the vocabulary": (
        lambda: (lambda m: _edited(m, vocabulary_={**m.vocabulary_, "cat": 10**9}))(
            CountVectorizer().fit(["the cat sat", "the dog ate"])
        ),
        "CountVectorizer",
        "vocabulary_",
    ),
    "count vectorizer two terms in one column": (
        lambda: (lambda m: _edited(m, vocabulary_={**m.vocabulary_, "cat": m.vocabulary_["dog"]}))(
            TfidfVectorizer().fit(["the cat sat", "the dog ate"])
        ),
        "TfidfVectorizer",
        "vocabulary_",
    ),
    "count vectorizer column that is not a number": (
        lambda: _edited(CountVectorizer().fit(["the cat sat"]), vocabulary_={"the": 0, "cat": "x", "sat": 2}),
        "CountVectorizer",
        "vocabulary_",
    ),
    "dict vectorizer column beyond the vocabulary": (
        lambda: _edited(
            DictVectorizer(sparse=False).fit([{"a": 1, "b": 2}]), vocabulary_={"a": 0, "b": 2 * 10**9}
        ),
        "DictVectorizer",
        "vocabulary_",
    ),
    "birch norms shorter than the centers": (
        lambda: (lambda m: _edited(m, _subcluster_norms=np.zeros(1)))(Birch(n_clusters=None).fit(X)),
        "Birch",
        "_subcluster_norms",
    ),
    "one hot categories beyond the outputs": (
        lambda: (lambda m: _edited(m, categories_=[m.categories_[0], np.arange(-50.0, 4.0)]))(
            OneHotEncoder(sparse_output=False).fit(np.arange(60).reshape(30, 2) % 4)
        ),
        "OneHotEncoder",
        "_n_features_outs[1]",
    ),
    "one hot outputs as an array": (
        lambda: (lambda m: _edited(m, _n_features_outs=np.array(m._n_features_outs)))(
            OneHotEncoder().fit(np.arange(60).reshape(30, 2) % 4)
        ),
        "OneHotEncoder",
        "_n_features_outs",
    ),
    "spline coefficients short": (lambda: _spline_with(_c=np.zeros((2, 1))), "BSpline", "c"),
    "spline knots short": (lambda: _spline_with(_t=np.zeros(3)), "BSpline", "t"),
    "spline knots unsorted": (lambda: _spline_with(_t=np.arange(20.0)[::-1].copy()), "BSpline", "t"),
    "tree built for more features than its input": (
        lambda: (lambda m: _edited(m, tree_=_wide_tree(m, 10**8)))(
            DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, Y)
        ),
        "DecisionTreeClassifier",
        "tree_.n_features",
    ),
    "forest input narrower than its trees": (
        lambda: _edited(RandomForestClassifier(n_estimators=2, random_state=0).fit(X, Y), n_features_in_=1),
        "RandomForestClassifier",
        "estimators_[0].tree_.n_features",
    ),
    "isolation forest features beyond the input": (
        lambda: (lambda m: _item_set(m, m.estimators_features_, 0, m.estimators_features_[0] + 10**6))(
            IsolationForest(n_estimators=2, max_features=2, random_state=0).fit(X)
        ),
        "IsolationForest",
        "estimators_features_[0]",
    ),
    "neighbors _fit_X narrower than the input": (
        lambda: (lambda m: _edited(m, _fit_X=m._fit_X[:, :1].copy()))(
            KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(X, Y)
        ),
        "KNeighborsClassifier",
        "_fit_X",
    ),
    "neighbors graph sized below its samples": (
        lambda: _edited(
            KNeighborsTransformer(n_neighbors=2).fit(X),
            n_samples_fit_=6,
        ),
        "KNeighborsTransformer",
        "n_samples_fit_",
    ),
    "dia offsets without data": (
        lambda: (lambda m: _edited(m, offsets=np.arange(8, dtype=np.int32)))(
            sp.dia_matrix((np.ones((1, 8)), [0]), shape=(8, 8))
        ),
        "dia_matrix",
        "offsets",
    ),
    "lil column beyond the shape": (
        lambda: (lambda m: _item_set(m, m.rows, 0, [10**8]))(sp.lil_matrix(np.eye(3))),
        "lil_matrix",
        "rows[0]",
    ),
    "series values longer than the index": (
        lambda: _series_of_lengths(300, 2, 1),
        "SingleBlockManager",
        "blocks[0].values",
    ),
    "series index longer than the values": (
        lambda: _series_of_lengths(1, 10**7, 1),
        "SingleBlockManager",
        "blocks[0].values",
    ),
    "kd_tree n_nodes beyond node_data": (
        lambda: _binary_tree_with(KDTree, 6, lambda n: n + 9),
        "KDTree",
        "n_nodes",
    ),
    "kd_tree leaf_size zero": (lambda: _binary_tree_with(KDTree, 4, lambda n: 0), "KDTree", "leaf_size"),
    "kd_tree one slab of bounds": (
        lambda: _binary_tree_with(KDTree, 3, lambda bounds: bounds[:1].copy()),
        "KDTree",
        "node_bounds",
    ),
    "ball_tree two slabs of bounds": (
        lambda: _binary_tree_with(BallTree, 3, lambda bounds: np.concatenate([bounds, bounds])),
        "BallTree",
        "node_bounds",
    ),
    "kd_tree sample weights short": (
        lambda: _binary_tree_with(KDTree, 12, lambda weights: np.ones(3)),
        "KDTree",
        "sample_weight",
    ),
    "kd_tree node range masked": (
        lambda: _binary_tree_with(KDTree, 2, _masked_node_data),
        "KDTree",
        "node_data",
    ),
    "neighbors tree built on more rows than _fit_X": (
        lambda: (lambda m: _edited(m, _fit_X=m._fit_X[:10].copy(), n_samples_fit_=10))(
            KNeighborsTransformer(n_neighbors=2, algorithm="kd_tree").fit(X)
        ),
        "KNeighborsTransformer",
        "_tree.data",
    ),
    "boosting stages wider than n_trees_per_iteration_": (
        lambda: _boosting(3),
        "GradientBoostingRegressor",
        "estimators_",
    ),
    "boosting stages wider than the init predictions": (
        lambda: _boosting(3, n_trees_per_iteration_=3),
        "GradientBoostingRegressor",
        "init_",
    ),
    # The way around reading a linear init's width: a coef_ of no rows predicts no columns.
    "boosting linear init predicting no columns": (
        lambda: (lambda m: (setattr(m.init_, "coef_", np.zeros((0, X.shape[1]))), m)[1])(
            GradientBoostingRegressor(n_estimators=2, init=LinearRegression(), random_state=0).fit(X, X[:, 0])
        ),
        "GradientBoostingRegressor",
        "init_",
    ),
    "minibatch kmeans counts short": (
        lambda: (lambda m: _edited(m, _counts=np.zeros(1)))(
            MiniBatchKMeans(3, n_init=1, random_state=0).fit(X)
        ),
        "MiniBatchKMeans",
        "_counts",
    ),
    "kmeans negative thread count": (
        lambda: _edited(KMeans(3, n_init=1, random_state=0).fit(X), _n_threads=-5),
        "KMeans",
        "_n_threads",
    ),
    "svm callable kernel support_ beyond the samples": (
        lambda: (lambda m: _edited(m, support_=m.support_ + 10**8))(_svc(kernel=pairwise_kernels)),
        "SVC",
        "support_",
    ),
    "block placement": (lambda: _frame_with_placement(slice(5, 7)), "BlockManager", "mgr_locs"),
    "block placed over another": (
        lambda: _frame_with_placement(slice(0, 1), block=1),
        "BlockManager",
        "blocks",
    ),
    # Placements as arrays and strided slices take other paths than a plain slice.
    "block placement array": (lambda: _frame_with_placement(np.array([0, 9])), "BlockManager", "mgr_locs"),
    "block placement strided": (lambda: _frame_with_placement(slice(0, 4, 2)), "BlockManager", "mgr_locs"),
    "block placed over another by array": (
        lambda: _frame_with_placement(np.array([0]), block=1),
        "BlockManager",
        "blocks",
    ),
}


LOADERS: Dict[str, Callable[[bytes, Path], Any]] = {
    "pickle.loads": lambda data, path: pickle.loads(data),
    "pickle._Unpickler": lambda data, path: pickle._Unpickler(io.BytesIO(data)).load(),  # type: ignore[attr-defined]
    "joblib.load": lambda data, path: joblib.load(path),
}


def _dump(obj: Any, loader: str, path: Path) -> bytes:
    if loader == "joblib.load":
        joblib.dump({"model": obj}, path)
        return path.read_bytes()
    return pickle.dumps({"model": obj}, protocol=4)


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_native_state_is_refused_naming_the_field(case: str, loader: str, tmp_path: Path) -> None:
    _assert_refused_naming_the_field(BROKEN[case], loader, tmp_path)


def _assert_refused_naming_the_field(entry: Any, loader: str, tmp_path: Path) -> None:
    make, cls, field = entry
    path = tmp_path / "model.bin"
    data = _dump(make(), loader, path)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            LOADERS[loader](data, path)
    (violation,) = info.value.violations
    assert violation.kind == "native-state"
    assert cls in violation.message and field in violation.message, violation.message


# The BROKEN cases whose invariant the scanner also checks inside the file (issue 13: the same
# invariant where the arrays are in the pickle); the others it notes as left to the guard.
SCANNED_BROKEN = {
    "series values longer than the index",
    "series index longer than the values",
    "boosting stages wider than n_trees_per_iteration_",
    "boosting stages wider than the init predictions",
    "one hot numeric categories unsorted",
    "one hot numeric categories repeated",
    "one hot nan before a number",
    "one hot two nans",
    "one hot object numbers unsorted",
    "one hot object categories mixed",
    "count vectorizer column that is not a number",
    "multilabel column far beyond",
    "multilabel column before the first",
    "multilabel column not an integer",
    "multilabel cache not a dict",
    "sgd averaged coefficients of a model that does not average",
    "sgd averaged coefficients short",
    "sgd one-class averaged coefficients short",
    "sgd regressor coefficients narrower than its input",
    "sgd regressor input wider than its coefficients",
    "sgd standard coefficients short",
    "sgd without an input width",
    "hdbscan fields renamed",
    "hdbscan node far beyond",
    "hdbscan node negative",
    "hdbscan node of a later merge",
    "generator mt19937 position",
    "philox buffer position",
    "philox buffer position beyond",
    "random state over philox",
    "random state position far beyond",
    "random state position negative",
    "random state position past the key",
}


@pytest.mark.parametrize("writer", ["pickle", "joblib", "joblib zlib"])
@pytest.mark.parametrize("case", sorted(SCANNED_BROKEN))
def test_scanner_refuses_the_broken_cases_it_checks_inside_the_file(
    case: str, writer: str, tmp_path: Path
) -> None:
    """The scanner flags each such case as the guard does, naming the class and the field: a
    critical state violation, so ``picklefence scan`` fails."""
    make, cls, field = {**BROKEN, **RED_TEAM}[case]
    path = tmp_path / "model.bin"
    obj = {"model": make()}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(obj, protocol=4))
    else:
        joblib.dump(obj, path, compress=3 if writer == "joblib zlib" else 0)
    report = picklefence.scan_file(path)
    assert not report.is_safe, str(report)
    violations = [f for f in report.findings if f.kind == "state-violation"]
    assert violations and all(f.severity == "critical" for f in violations), str(report)
    assert any(cls in f.message and field in f.message for f in violations), str(report)


def test_a_masked_array_holds_the_data_kind_of_its_class() -> None:
    """pandas cannot even pickle a FloatingArray of ints (its dtype lookup fails), but a file
    can hold one: the check names the data (unit-tested on the object)."""
    from picklefence import _native_state

    for data, dtype in ((np.arange(4), "Float64"), (np.arange(4.0), "Int64"), (np.arange(4), "boolean")):
        values = _masked_with(data=data, dtype=dtype)
        with pytest.raises(_native_state.NativeStateError, match=r"\._data: dtype"):
            _native_state._check_masked_array(values)
    _native_state._check_masked_array(_masked_with(data=np.arange(4, dtype=np.uint8)))


def test_predictors_of_mixed_record_layouts_are_each_checked() -> None:
    """TreePredictor.__setstate__ casts the records to its own dtype today; a predictor whose
    records have another layout than the others' (another scikit-learn version) is read field
    by field, not at the first one's offsets."""
    from picklefence import _native_state

    predictors = [p for per_iteration in _predictor_with("feature_idx", 0)._predictors for p in per_iteration]
    dtype = predictors[-1].nodes.dtype
    wider = np.dtype(
        [(n, "<i8" if n in ("left", "right") else dtype.fields[n][0]) for n in reversed(dtype.names)]
    )
    records = np.zeros(len(predictors[-1].nodes), dtype=wider)
    for name in dtype.names:  # (astype between structured dtypes goes by position)
        records[name] = predictors[-1].nodes[name]
    predictors[-1].nodes = records
    _native_state._check_tree_predictors(predictors, [])
    predictors[-1].nodes["right"][0] = 10**12
    with pytest.raises(_native_state.NativeStateError, match=r"nodes\[0\]\.right"):
        _native_state._check_tree_predictors(predictors, [])


def test_a_predictor_with_two_dimensional_records_does_not_shift_the_next() -> None:
    """The predictors' records are joined and checked in one pass: a predictor whose ``nodes``
    is 2-D counts all its records, so the next predictor's broken first node is still read as
    its own (counting rows would read it from the 2-D array's tail and miss it)."""
    from picklefence import _native_state

    predictors = [p for per_iteration in _predictor_with("left", 10**9)._predictors for p in per_iteration]
    leaves = predictors[0].nodes.copy()
    leaves["is_leaf"] = 1
    predictors[0].nodes = np.stack([predictors[0].nodes, leaves])
    with pytest.raises(_native_state.NativeStateError, match=r"nodes\[0\]\.left") as info:
        _native_state._check_tree_predictors(predictors, [])
    assert "1000000000" in str(info.value)


def test_two_dimensional_predictor_records_are_all_checked_by_guard_and_scanner() -> None:
    """A ``nodes`` array of two rows: both the guard and the scanner read every record, so a
    broken node in the second row is refused by each (the scanner once counted rows only)."""
    model = _predictor_with("feature_idx", 0)
    predictor = model._predictors[0][0]
    broken = predictor.nodes.copy()
    broken["left"][0] = 10**9
    predictor.nodes = np.stack([predictor.nodes, broken])
    data = pickle.dumps(model, protocol=4)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError, match=r"TreePredictor\.nodes\[\d+\]\.left"):
            pickle.loads(data)
    findings = [f for f in picklefence.scan_bytes(data).findings if f.kind == "state-violation"]
    assert findings and "1000000000" in findings[0].message, findings


def test_a_categorical_split_then_a_broken_predictor() -> None:
    """A categorical split has its bitset rows read and its predictor checked again; the check
    then goes on to the predictors after it, and a broken one there is refused."""
    from picklefence import _native_state

    model = _predictor_with("feature_idx", 1000)
    first = model._predictors[0][0]
    internal = int(np.flatnonzero(first.nodes["is_leaf"] == 0)[0])
    first.nodes["is_categorical"][internal] = 1
    first.nodes["bitset_idx"][internal] = 0
    first.binned_left_cat_bitsets = np.zeros((1, 8), dtype=np.uint32)
    first.raw_left_cat_bitsets = np.zeros((1, 8), dtype=np.uint32)
    predictors = [p for per_iteration in model._predictors for p in per_iteration]
    asked: List[Any] = []

    def rows(predictor: Any) -> int:
        asked.append(predictor)
        return _native_state._bitset_rows(predictor)

    models = [(model._predictors, model.n_features_in_)]
    records = b"".join(p.nodes for p in predictors)
    fields = predictors[0].nodes.dtype.fields
    layout = [(fields[f][1], fields[f][0].str) for f in _native_state._PREDICTOR_FIELDS]
    shapes = list(zip([p.nodes.size for p in predictors], [model.n_features_in_] * len(predictors)))
    broken = _native.check_predictor_nodes(
        records, predictors[0].nodes.dtype.itemsize, layout, shapes, predictors, rows
    )
    assert asked == [first]
    assert broken is not None and broken[0] == len(predictors) - 1 and broken[2] == "feature_idx", broken
    with pytest.raises(_native_state.NativeStateError, match=r"nodes\[0\]\.feature_idx"):
        _native_state._check_tree_predictors(predictors, models)


def _loaded_guarded(values: Dict[str, Any], tmp_path: Path) -> List[Any]:
    """``values`` written by joblib and by pickle (protocol 5), each loaded under the guard."""
    path = tmp_path / "all.joblib"
    joblib.dump(values, path)
    data = pickle.dumps(values, protocol=5)
    with picklefence.safe_ml_environment():
        return [joblib.load(path), pickle.loads(data)]


@pytest.mark.parametrize("size", [1, 30, 300])
def test_intact_structures_load_unchanged(size: int, tmp_path: Path) -> None:
    x, y = X[: max(size, 10)], Y[: max(size, 10)]
    y = np.arange(len(y)) % 2 if len(set(y)) < 2 else y
    frame = pd.DataFrame(
        {
            "cat": pd.Categorical(np.array(["a", "b", "c"])[np.arange(size) % 3]),
            "x": np.arange(size, dtype=float),
            "y": np.arange(size),
            "z": np.arange(size) * 2.0,
        }
    )
    values = {
        "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y),
        "knn_kd": KNeighborsClassifier(n_neighbors=1, algorithm="kd_tree").fit(x, y),
        "knn_ball": KNeighborsClassifier(n_neighbors=1, algorithm="ball_tree").fit(x, y),
        "hgb": HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(x, y),
        "csr": sp.random(size, 7, density=0.3, format="csr", random_state=0),
        "csc": sp.random(size, 7, density=0.3, format="csc", random_state=0),
        "coo": sp.random(size, 7, density=0.3, format="coo", random_state=0),
        "bsr": sp.bsr_matrix(np.ones((2 * size, 4))),
        "frame": frame,
        "series": pd.Series(np.arange(size), dtype="category"),
        "multi": pd.Series(
            np.arange(size, dtype=float),
            index=pd.MultiIndex.from_arrays([np.arange(size) % 3, np.array(["x", "y"])[np.arange(size) % 2]]),
        ),
        "masked": pd.DataFrame(
            {
                "int": pd.array([None if i % 4 == 0 else i for i in range(size)], dtype="Int32"),
                "float": pd.array([None if i % 3 == 0 else i / 2 for i in range(size)], dtype="Float64"),
                "bool": pd.array([None if i % 5 == 0 else i % 2 == 0 for i in range(size)], dtype="boolean"),
            }
        ),
        "sparse": pd.Series(pd.arrays.SparseArray(np.where(np.arange(size) % 4 == 0, np.arange(size), 0))),
        "empty": pd.DataFrame(),
    }
    loaded = _loaded_guarded(values, tmp_path)
    for got in loaded:
        np.testing.assert_array_equal(got["forest"].predict(x), values["forest"].predict(x))
        np.testing.assert_array_equal(got["knn_kd"].predict(x), values["knn_kd"].predict(x))
        np.testing.assert_array_equal(got["knn_ball"].predict(x), values["knn_ball"].predict(x))
        np.testing.assert_array_equal(got["hgb"].predict(x), values["hgb"].predict(x))
        for key in ("csr", "csc", "coo", "bsr"):
            assert (got[key] != values[key]).nnz == 0
        pd.testing.assert_frame_equal(got["frame"], frame)
        pd.testing.assert_series_equal(got["series"], values["series"])
        for key in ("multi", "sparse"):
            pd.testing.assert_series_equal(got[key], values[key])
        pd.testing.assert_frame_equal(got["masked"], values["masked"])


def test_intact_models_the_shape_rules_read_load_unchanged(tmp_path: Path) -> None:
    """What the rules on stage widths, tree arrays, thread counts, callable kernels and series
    lengths read, as real fits make it: every such model loads and predicts as before."""
    y3 = (X[:, 0] * 3).astype(int)
    weights = np.linspace(0.5, 2.0, len(X))
    values = {
        "boosting 3 classes": GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, y3),
        "boosting binary": GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, Y),
        "boosting zero init": GradientBoostingClassifier(n_estimators=3, init="zero", random_state=0).fit(
            X, y3
        ),
        "boosting regressor": GradientBoostingRegressor(n_estimators=3, random_state=0).fit(X, X[:, 0]),
        "boosting tree init": GradientBoostingClassifier(
            n_estimators=2, init=DecisionTreeClassifier(max_depth=1), random_state=0
        ).fit(X, Y),
        # A regressor's init of another class: its predictions' width read from its state.
        **{
            f"boosting regressor {type(init).__name__} init": GradientBoostingRegressor(
                n_estimators=2, init=init, random_state=0
            ).fit(X, X[:, 0])
            for init in (
                LinearRegression(),
                Ridge(),
                DecisionTreeRegressor(max_depth=2),
                RandomForestRegressor(n_estimators=2, random_state=0),
            )
        },
        "density kd": KernelDensity(algorithm="kd_tree").fit(X, sample_weight=weights),
        "density ball": KernelDensity(algorithm="ball_tree").fit(X, sample_weight=weights),
        "neighbors kd": KNeighborsTransformer(n_neighbors=2, algorithm="kd_tree").fit(X),
        "minibatch": MiniBatchKMeans(3, n_init=1, random_state=0).fit(X),
        "svm callable": _svc(kernel=pairwise_kernels),
        "series": pd.Series(np.arange(7.0), index=list("abcdefg")),
        "empty series": pd.Series([], dtype=float),
    }
    loaded = _loaded_guarded(values, tmp_path)
    x3 = X[:90] + np.repeat([0, 1, 2], 30)[:, None]
    for got in loaded:
        for key in ("boosting 3 classes", "boosting binary", "boosting zero init", "boosting tree init"):
            np.testing.assert_array_equal(got[key].predict_proba(X), values[key].predict_proba(X))
        np.testing.assert_array_equal(
            got["boosting regressor"].predict(X), values["boosting regressor"].predict(X)
        )
        for key in ("density kd", "density ball"):
            np.testing.assert_allclose(got[key].score_samples(X[:20]), values[key].score_samples(X[:20]))
        assert (got["neighbors kd"].transform(X[:20]) != values["neighbors kd"].transform(X[:20])).nnz == 0
        np.testing.assert_array_equal(got["minibatch"].predict(X), values["minibatch"].predict(X))
        np.testing.assert_array_equal(got["svm callable"].predict(x3), values["svm callable"].predict(x3))
        pd.testing.assert_series_equal(got["series"], values["series"])
        pd.testing.assert_series_equal(got["empty series"], values["empty series"])


def test_validation_sees_objects_inside_object_arrays(tmp_path: Path) -> None:
    # numpy hides object-array items from the garbage collector; the walk reads them itself.
    broken = _tree_with(lambda n: _set(n, "left_child", 0, 10**9))
    holder = np.empty(2, dtype=object)
    holder[0], holder[1] = "x", [broken]
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError, match="left_child"):
            pickle.loads(pickle.dumps({"estimators": holder}))


def test_loads_without_validated_libraries_are_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    from picklefence import _native_state

    walked = []
    monkeypatch.setattr(_native_state, "_walk", lambda root, classes, seen=None: walked.append(root) or {})
    with picklefence.safe_ml_environment():
        pickle.loads(pickle.dumps({"weights": np.arange(3)}))
        assert not walked
        pickle.loads(pickle.dumps(pd.Series([1, 2])))
    assert walked


def _recording_walks(checked: List[List[str]]) -> Callable[..., Dict[str, List[Any]]]:
    from picklefence import _native_state

    walk = _native_state._walk

    def recording(root: Any, classes: Any, walked: Any = None) -> Dict[str, List[Any]]:
        found = walk(root, classes, walked)
        checked.append(sorted(f"{key}:{len(items)}" for key, items in found.items()))
        return found

    return recording


def test_what_a_nested_load_validated_is_not_walked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """joblib loads an object array by a nested load, which walks and checks what it holds;
    the outer load's walk does not look into it again, and still finds what the outer pickle
    made."""
    from picklefence import _native_state

    matrix = sp.random(5, 4, density=0.5, format="csr", random_state=0)
    inner = np.empty(2, dtype=object)
    inner[:] = [matrix, matrix.tocsc()]
    path = tmp_path / "matrices.joblib"
    joblib.dump({"outer": matrix.tocoo(), "inner": inner}, path)
    checked: List[List[str]] = []
    monkeypatch.setattr(_native_state, "_walk", _recording_walks(checked))
    with picklefence.safe_ml_environment():
        joblib.load(path)
    assert checked == [["sparse:2"], ["sparse:1"]], checked


def test_tree_ensembles_are_checked_without_a_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tree estimators and ensembles are recorded by their ``__setstate__`` (no walk of a
    900-tree model); the estimators of the nested load of a boosting model's object array are
    checked with the ensemble by the outer load, and each broken width is still refused."""
    from picklefence import _native_state

    model = GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0).fit(X, Y)
    path = tmp_path / "gb.joblib"
    joblib.dump(model, path)
    checked: List[List[str]] = []
    monkeypatch.setattr(_native_state, "_walk", _recording_walks(checked))
    owners: List[Tuple[int, int]] = []
    check_owners = _native_state._check_tree_owners
    monkeypatch.setattr(
        _native_state,
        "_check_tree_owners",
        lambda estimators, ensembles: (
            owners.append((len(estimators), len(ensembles))) or check_owners(estimators, ensembles)
        ),
    )
    with picklefence.safe_ml_environment():
        joblib.load(path)
    assert checked == []
    assert owners == [(0, 0), (5, 1)], owners  # the nested load, then the outer one with both
    # The ensemble is checked against the trees it holds, and each estimator against its own.
    for edited, field in (
        (lambda m: _edited(m, n_features_in_=1), r"estimators_\[0\]\.tree_\.n_features"),
        (
            lambda m: _edited(m.estimators_[0, 0], n_features_in_=1),
            r"Regressor\.tree_\.n_features: 4 for an input of 1 ",
        ),
        (
            lambda m: _edited(m.estimators_[0, 0], tree_=_wide_tree(m.estimators_[0, 0], 9)),
            r"tree_\.n_features: 9 ",
        ),
    ):
        broken = GradientBoostingClassifier(n_estimators=2, max_depth=2, random_state=0).fit(X, Y)
        edited(broken)
        joblib.dump(broken, path)
        data = pickle.dumps(broken)
        with picklefence.safe_ml_environment():
            with pytest.raises(UnsafeFileError, match=field):
                joblib.load(path)
            with pytest.raises(UnsafeFileError, match=field):
                pickle.loads(data)


def test_setstate_capture_cannot_be_sidestepped(tmp_path: Path) -> None:
    """The ways around a capture by ``__setstate__``: state given again after the first BUILD
    (the second BUILD is recorded too), an estimator of a user's subclass (its own class is
    patched when a load imports it, whatever its module), an estimator in a plain list beside
    its ensemble (checked on its own), the list of a forest's estimators grown after the
    forest's BUILD (read after the load), and protocols 0-5."""
    forest = RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(X, Y)
    wide = _edited(
        DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, Y),
        tree_=_wide_tree(forest.estimators_[0], 9),
    )
    good = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, Y)

    class Rebuilt:
        """Pickles ``good``, then BUILDs it again with the wide tree."""

        def __reduce__(self) -> Any:
            return (_identity, (good,), {**good.__getstate__(), "tree_": wide.tree_})

    files = {
        "second build": pickle.dumps(Rebuilt(), protocol=4),
        "user subclass": pickle.dumps(_edited(_UserTree(), **wide.__dict__), protocol=4),
        "beside the ensemble": pickle.dumps([forest, wide], protocol=4),
        **{f"protocol {p}": pickle.dumps({"m": wide}, protocol=p) for p in range(6)},
    }
    held = RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(X, Y)
    held.estimators_.append(_edited(DecisionTreeClassifier(), **wide.__dict__))
    files["held by the forest"] = pickle.dumps(held, protocol=4)
    also_allow = [f"{__name__}._UserTree", f"{__name__}._identity"]
    for name, data in files.items():
        with picklefence.safe_ml_environment(also_allow=also_allow):
            for load in (pickle.loads, lambda data: pickle.Unpickler(io.BytesIO(data)).load()):
                with pytest.raises(UnsafeFileError, match="n_features"):
                    load(data)
                    pytest.fail(f"{name}: loaded")


def test_a_users_subclass_of_a_validated_class_is_validated(tmp_path: Path) -> None:
    """A class a user allows (``also_allow``) that derives from a validated one lives in a module
    the guard does not know: importing it makes the load walked all the same, and its instances
    are checked as their base's (here a k-means model whose centers are narrower than its input,
    the Cython assignment reading each row as wide as the input)."""
    model = _edited(_UserKMeans(3, n_init=1, random_state=0).fit(X), cluster_centers_=np.zeros((3, 1)))
    path = tmp_path / "kmeans.joblib"
    joblib.dump({"model": model}, path)
    data = pickle.dumps({"model": model})
    with picklefence.safe_ml_environment(also_allow=[f"{__name__}._UserKMeans"]):
        for load in (lambda: pickle.loads(data), lambda: joblib.load(path)):
            with pytest.raises(UnsafeFileError, match=r"_UserKMeans\.cluster_centers_: shape \(3, 1\)"):
                load()
        intact = _UserKMeans(3, n_init=1, random_state=0).fit(X)
        assert (pickle.loads(pickle.dumps(intact)).predict(X) == intact.predict(X)).all()


class _UserKMeans(KMeans):
    """A user's k-means class, in a module the walk does not know."""


def _identity(obj: Any) -> Any:
    return obj


class _UserTree(DecisionTreeClassifier):
    """A user's estimator class, in a module the walk does not know."""


def test_nested_loads_keep_the_outer_note(tmp_path: Path) -> None:
    # joblib reads an object array with an inner unpickler in the middle of the outer load: the
    # outer load's own note (a validated class imported before it) must survive the inner one.
    broken = _tree_with(lambda n: _set(n, "left_child", 0, 10**9))
    path = tmp_path / "nested.joblib"
    joblib.dump([broken, np.array([1, "x"], dtype=object)], path)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError, match="left_child"):
            joblib.load(path)


def _compiled_classes_of_the_default_policy() -> List[str]:
    """Every class of the default policy (scikit-learn, scipy, pandas, array) that is, or
    derives from, a type of a compiled module."""
    import importlib
    import sys

    from picklefence._native import Policy

    found = []
    for module, name, *_ in Policy.ml_default().entries_with_roles():
        if not module.startswith(("sklearn", "scipy", "pandas", "array")):
            continue
        try:
            obj: Any = importlib.import_module(module)
            for part in name.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            continue  # a name of another library version
        if isinstance(obj, type) and any(
            (getattr(sys.modules.get(c.__module__), "__file__", "") or "").endswith((".so", ".pyd"))
            for c in obj.__mro__
            if c not in (object, dict, tuple, list)
        ):
            found.append(f"{module}:{name}")
    return found


def test_every_compiled_class_of_the_policy_is_validated_or_safe_by_a_stated_reason() -> None:
    # One list (policies/native_state.txt) says, for every compiled class the default policy
    # allows, whether the guard validates its state or why it need not; the scanner reads the
    # same list. Each `validate` entry must have a validator here.
    import importlib

    from picklefence import _native, _native_state

    entries = {(m, n): (verdict, why) for m, n, verdict, why in _native.native_state_classes()}
    assert all(why for _, why in entries.values())
    missing = [
        c
        for c in _compiled_classes_of_the_default_policy()
        if tuple(c.split(":")) not in entries and (c.split(":")[0], "*") not in entries
    ]
    assert not missing, f"compiled classes without a verdict in policies/native_state.txt: {missing}"
    for (module, name), (verdict, _) in entries.items():
        if verdict != "validate" or module == "torch._utils":
            continue  # torch sparse tensors: torch's own invariant check, run by the guard (_hook)
        found = getattr(importlib.import_module(module), name)
        if not isinstance(found, type):
            # A function (pyarrow's _restore_array): what it makes is checked as it is made.
            assert (module, name) in _native_state.CHECKED_ON_CREATION, f"{module}:{name} has no validator"
            continue
        kinds = [key for base, key in _native_state._classes() if issubclass(found, base)]
        checked = (module, name) in (
            *_native_state.CAPTURED,
            *_native_state.SETSTATE_CHECKED,
            *_native_state.CAPTURED_ARGUMENTS,
            *_native_state.WALKED_CLASSES,
            *_native_state.VALIDATED_THROUGH_OWNERS,
        )
        assert kinds or checked, f"{module}:{name} has no validator"
        assert module.startswith(_native_state.WALKED_MODULES) or checked


def test_scanner_notes_what_it_leaves_to_load_time_validation(tmp_path: Path) -> None:
    # The scanner does not read a torch sparse tensor's indices: an info note, no verdict.
    import torch

    path = tmp_path / "features.joblib"
    with torch.sparse.check_sparse_tensor_invariants(True):
        joblib.dump({"sparse": torch.sparse_coo_tensor([[0, 2]], [1.0, 2.0], (3,))}, path)
    report = picklefence.scan_file(path)
    assert report.is_safe, str(report)
    notes = [f for f in report.findings if f.kind == "native-state"]
    assert notes and all(f.severity == "info" for f in notes)
    assert notes[0].message.startswith("torch._utils._rebuild_sparse_tensor keeps state")
    assert "the guard validates them" in notes[0].message


def _tree_models() -> Dict[str, Any]:
    return {
        "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(X, Y),
        # Trees in an object array: joblib writes them as a nested pickle after the wrapper.
        "boosting": GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, Y),
        "hist": HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, Y),
        "kd": KNeighborsClassifier(n_neighbors=1, algorithm="kd_tree").fit(X, Y),
        "ball": KNeighborsClassifier(n_neighbors=1, algorithm="ball_tree").fit(X, Y),
    }


def _break(model: Any) -> Any:
    """The first tree's (or predictor's) root child beyond the nodes, as a file could hold it."""
    if hasattr(model, "_tree"):
        state = list(model._tree.__getstate__())
        state[1] = state[1].copy()
        state[1][0] = 10**12
        model._tree.__setstate__(tuple(state))
    elif hasattr(model, "estimators_"):
        tree = np.ravel(model.estimators_)[-1].tree_
        state = tree.__getstate__()
        nodes = state["nodes"].copy()
        nodes["left_child"][0] = 10**9
        state["nodes"] = nodes
        tree.__setstate__(state)
    else:
        model._predictors[0][0].nodes["right"][0] = 3_000_000_000
    return model


WRITERS: Dict[str, Callable[[Any, Path], None]] = {
    **{
        f"pickle protocol {protocol}": (
            lambda obj, path, protocol=protocol: path.write_bytes(pickle.dumps(obj, protocol))
        )
        for protocol in (0, 2, 3, 4, 5)
    },
    "joblib": lambda obj, path: joblib.dump(obj, path),
    "joblib zlib": lambda obj, path: joblib.dump(obj, path, compress=3),
}


_NODE_CLASSES = (
    "sklearn.tree._tree.Tree ",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor ",
    "sklearn.neighbors._kd_tree.",
    "sklearn.neighbors._ball_tree.",
)


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("kind", ["forest", "boosting", "hist", "kd", "ball"])
def test_scanner_checks_tree_nodes_inside_the_file(kind: str, writer: str, tmp_path: Path) -> None:
    """Trees and HistGradientBoosting predictors whose arrays are in the file: intact ones are
    clean (the note says they were checked), a broken one is a state violation naming the field."""
    path = tmp_path / "model.bin"
    WRITERS[writer](_tree_models()[kind], path)
    report = picklefence.scan_file(path)
    assert report.is_safe, str(report)
    notes = [f.message for f in report.findings if f.kind == "native-state"]
    # The node arrays are read in the file; what holds them (forests, neighbor models: shapes
    # against their input width) is noted as checked by the guard at load time.
    read_here = [n for n in notes if n.startswith(_NODE_CLASSES)]
    assert read_here and all("0 broken: intact" in n for n in read_here), notes
    assert all("the guard" in n for n in notes if n not in read_here), notes
    WRITERS[writer](_break(_tree_models()[kind]), path)
    report = picklefence.scan_file(path)
    assert not report.is_safe
    (broken,) = [f for f in report.findings if f.kind == "state-violation"]
    assert broken.severity == "critical"
    expected = {"hist": "right is 3000000000", "kd": "idx_array[0] is 1000000000000"}
    expected["ball"] = expected["kd"]
    assert expected.get(kind, "left_child is 1000000000") in broken.message


def _hand_pruned() -> DecisionTreeRegressor:
    """A deep tree pruned by hand, as users do: a split made a leaf (children -1), its subtree
    left unreached and ``max_depth`` left as it was, above the depth of what is reached."""
    model = _deep_tree()
    state = model.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][1] = nodes["right_child"][1] = -1
    state["nodes"] = nodes
    model.tree_.__setstate__(state)
    return model


_DEPTH_MODELS: Dict[str, Callable[[], Any]] = {
    # A root alone (one class): depth 0.
    "stump": lambda: DecisionTreeClassifier(random_state=0).fit(X, np.zeros(len(X), dtype=int)),
    "deep tree": _deep_tree,
    "hand-pruned tree": _hand_pruned,
    "cost-complexity pruned tree": lambda: DecisionTreeClassifier(ccp_alpha=0.01, random_state=0).fit(X, Y),
    "forest": lambda: RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y),
    "extra trees": lambda: ExtraTreesRegressor(n_estimators=5, random_state=0).fit(X, X[:, 0]),
    "boosting": lambda: GradientBoostingClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, Y),
    "isolation forest": lambda: IsolationForest(n_estimators=5, random_state=0).fit(X),
}


def _trees_of(model: Any) -> List[Any]:
    return [e.tree_ for e in np.ravel(getattr(model, "estimators_", [model]))]


@pytest.mark.parametrize("kind", sorted(_DEPTH_MODELS))
def test_trees_of_any_depth_load_and_scan_clean(kind: str, tmp_path: Path) -> None:
    """The builders store the depth of the nodes as ``max_depth`` (a hand-pruned tree keeps a
    higher one): every such tree loads through each loader, its ``decision_path`` unchanged,
    and scans clean."""
    model = _DEPTH_MODELS[kind]()
    trees = _trees_of(model)
    depths = [int(tree.compute_node_depths().max()) - 1 for tree in trees]
    if kind == "hand-pruned tree":
        assert trees[0].max_depth == 48 and trees[0].max_depth <= trees[0].node_count
    else:
        assert [tree.max_depth for tree in trees] == depths
    if kind == "stump":
        assert depths == [0] and trees[0].node_count == 1
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    data = pickle.dumps(model, protocol=5)
    with picklefence.safe_ml_environment():
        loaded = [
            pickle.loads(data),
            pickle._Unpickler(io.BytesIO(data)).load(),  # type: ignore[attr-defined]
            joblib.load(path),
        ]
    x = np.asarray(X, dtype=np.float32)
    for got in loaded:
        for mine, theirs in zip(_trees_of(got), trees):
            assert mine.max_depth == theirs.max_depth
            assert (mine.decision_path(x) != theirs.decision_path(x)).nnz == 0
    for written in (path, tmp_path / "model.pkl"):
        if written.suffix == ".pkl":
            written.write_bytes(data)
        report = picklefence.scan_file(written)
        assert report.is_safe, str(report)
        assert not [f for f in report.findings if f.kind == "state-violation"], str(report)


def test_a_lowered_max_depth_is_refused_naming_the_depth_of_the_nodes() -> None:
    """The guard's refusal names the field, its value and the depth it is below (or the node
    count it is above); the field-by-field path (node arrays of another layout) says the same."""
    from picklefence import _native_state

    for max_depth, expected in (
        (0, "Tree.max_depth: 0 is below the depth 48 of the nodes; decision_path writes past its buffer"),
        (-1, "Tree.max_depth: -1 is below the depth 48 of the nodes"),
        (2**62 - 1, f"Tree.max_depth: {2**62 - 1} is above node_count 3999"),
    ):
        data = pickle.dumps(_with_max_depth(_deep_tree(), max_depth))
        with picklefence.safe_ml_environment():
            with pytest.raises(UnsafeFileError) as info:
                pickle.loads(data)
        assert expected in str(info.value), str(info.value)
        tree = _with_max_depth(_deep_tree(), max_depth).tree_
        which, _, field, value, why = _native_state._check_trees_field_by_field([_deep_tree().tree_, tree])
        assert (which, field, value) == (1, "max_depth", max_depth)
        assert expected.split(": ", 1)[1] == f"{value} is {why}"[: len(expected.split(": ", 1)[1])]
    assert _native_state._check_trees_field_by_field([_deep_tree().tree_, _hand_pruned().tree_]) is None


@pytest.mark.parametrize("max_depth", [0, -1, 2**62 - 1])
def test_unprotected_a_wrong_max_depth_corrupts_decision_path(max_depth: int) -> None:
    """The gadget is real: without the guard, decision_path writes each sample's path of up to
    49 nodes into a buffer sized n_samples * (1 + max_depth) (none at all when that product wraps
    to 0) and the process dies."""
    data = pickle.dumps(_with_max_depth(_deep_tree(), max_depth))
    code = (
        "import pickle, sys, numpy as np\n"
        "obj = pickle.loads(sys.stdin.buffer.read())\n"
        "X = np.random.RandomState(1).rand(200000, 3)\n"
        "for _ in range(3):\n"
        "    obj.decision_path(X)\n"
        "print('returned')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=120)
    assert run.returncode < 0, (run.returncode, run.stdout[-200:], run.stderr[-300:])


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("kind", ["tree", "forest", "boosting"])
def test_scanner_checks_tree_max_depth_inside_the_file(kind: str, writer: str, tmp_path: Path) -> None:
    """A tree's ``max_depth`` is read with its nodes in the file: below their depth or above
    their count, a state violation naming it, its value and the depth or count."""
    make = {
        "tree": lambda: DecisionTreeClassifier(random_state=0).fit(X, Y),
        "forest": lambda: RandomForestClassifier(n_estimators=3, random_state=0).fit(X, Y),
        "boosting": lambda: GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, Y),
    }[kind]
    edited = _trees_of(make())[-1]
    depth, count = edited.max_depth, edited.node_count
    below = "of the nodes; decision_path writes past its buffer"
    path = tmp_path / "model.bin"
    for max_depth, expected in (
        (0, f"max_depth 0 is below the depth {depth} {below}"),
        (depth - 1, f"max_depth {depth - 1} is below the depth {depth} {below}"),
        (-5, f"max_depth -5 is below the depth {depth} {below}"),
        (2**62 - 1, f"max_depth {2**62 - 1} is above node_count {count}, "),
    ):
        WRITERS[writer](_with_max_depth(make(), max_depth), path)
        report = picklefence.scan_file(path)
        assert not report.is_safe
        (broken,) = [f for f in report.findings if f.kind == "state-violation"]
        assert broken.severity == "critical"
        assert "sklearn.tree._tree.Tree" in broken.message and expected in broken.message, broken.message
    # Up to node_count: a larger buffer, not a broken tree.
    WRITERS[writer](_with_max_depth(make(), count), path)
    assert picklefence.scan_file(path).is_safe


def _width_cases() -> Dict[str, Tuple[Any, str]]:
    """Tree models whose widths the scanner reads in the file, with what it must say of each
    ("" for intact)."""
    plain = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, Y)
    forest = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, Y)
    wide_member = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, Y)
    member = wide_member.estimators_[1]
    _edited(member, tree_=_wide_tree(member, 9), n_features_in_=9)
    return {
        "estimator": (plain, ""),
        "forest": (forest, ""),
        "numpy width": (
            _edited(DecisionTreeClassifier(max_depth=2).fit(X, Y), n_features_in_=np.int64(4)),
            "",
        ),
        "wide estimator": (
            _edited(DecisionTreeClassifier(max_depth=2).fit(X, Y), tree_=_wide_tree(plain, 9)),
            "tree_.n_features is 9 for an input of 4 features;",
        ),
        "forest member wider than the forest": (
            wide_member,
            "estimators_[1].tree_.n_features is 9 for an input of 4",
        ),
        "forest narrower than its trees": (
            _edited(
                RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(X, Y),
                n_features_in_=2,
            ),
            "estimators_[0].tree_.n_features is 4 for an input of 2",
        ),
    }


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("case", sorted(_width_cases()))
def test_scanner_checks_tree_widths_inside_the_file(case: str, writer: str, tmp_path: Path) -> None:
    """A tree estimator's ``Tree`` built for its input width, and a forest's trees for the
    forest's, read in the file (the ``Tree``'s width is its constructor's first argument; a width
    kept as a NumPy integer read too): the scanner and the guard agree on each."""
    model, broken = _width_cases()[case]
    path = tmp_path / "model.bin"
    WRITERS[writer](model, path)
    report = picklefence.scan_file(path)
    violations = [f.message for f in report.findings if f.kind == "state-violation"]
    with picklefence.safe_ml_environment():
        if broken:
            assert len(violations) == 1 and broken in violations[0], str(report)
            with pytest.raises(UnsafeFileError, match="n_features"):
                joblib.load(path) if writer.startswith("joblib") else pickle.loads(path.read_bytes())
        else:
            assert report.is_safe and not violations, str(report)
            loaded = joblib.load(path) if writer.startswith("joblib") else pickle.loads(path.read_bytes())
            assert (loaded.predict(X) == model.predict(X)).all()


def _shape_cases() -> Dict[str, Tuple[Any, str]]:
    """Estimators and masked arrays whose shapes the scanner reads in the file, with what it
    must say of each ("" for intact)."""
    from sklearn.neighbors import LocalOutlierFactor

    def masked(mask_items: int) -> Any:
        array = pd.array([1, None, 3], dtype="Int64")
        object.__setattr__(array, "_mask", np.zeros(mask_items, bool) if mask_items != 3 else array._mask)
        return {"ints": array, "bools": pd.array([True, None], dtype="boolean"), "series": pd.Series(array)}

    def kmeans(**fields: Any) -> Any:
        return _edited(KMeans(3, n_init=1, random_state=0).fit(X), **fields)

    def knn(**fields: Any) -> Any:
        return _edited(KNeighborsClassifier(3).fit(X, Y), **fields)

    def vectorizer(cls: Any, **columns: int) -> Any:
        model = (
            cls().fit(["the cat sat", "the dog ate"])
            if cls is CountVectorizer
            else cls().fit([{"a": 1, "b": 2}])
        )
        return _edited(model, vocabulary_={**model.vocabulary_, **columns})

    def multi_index(*codes: Any) -> Any:
        index = pd.MultiIndex(levels=[["a", "b"], [1, 2, 3]], codes=[[0, 1, 0], [0, 1, 2]])
        if codes:
            object.__setattr__(index, "_codes", tuple(np.array(c, np.int8) for c in codes))
        return pd.DataFrame({"v": [1.0, 2.0, 3.0]}, index=index)

    def sparse(*stored: float) -> Any:
        array = pd.arrays.SparseArray([0.0, 0.0, 1.5, 0.0, 2.0], fill_value=0.0)
        if stored:
            object.__setattr__(array, "_sparse_values", np.array(stored))
        return {"sparse": array, "series": pd.Series(array)}

    return {
        "sparse array": (sparse(), ""),
        "sparse array values short": (
            sparse(1.5),
            "_sparse_values has shape [1] for the 2 points of its index",
        ),
        "multi index": (multi_index(), ""),
        "multi index code beyond its level": (
            multi_index([0, 1, 50], [0, 1, 2]),
            "codes[0][2] is 50, outside [-1, 2) (the level's values)",
        ),
        "multi index codes of two lengths": (
            multi_index([0, 1, 0], [0, 1]),
            "codes[1] holds 2 codes where codes[0] holds 3",
        ),
        "vectorizer": (vectorizer(CountVectorizer), ""),
        "vectorizer column beyond": (
            vectorizer(CountVectorizer, cat=10**9),
            'vocabulary_["cat"] is 1000000000',
        ),
        "vectorizer shared column": (vectorizer(CountVectorizer, cat=0), "two terms share column 0"),
        "dict vectorizer": (vectorizer(DictVectorizer), ""),
        "dict vectorizer column beyond": (vectorizer(DictVectorizer, a=-1), 'vocabulary_["a"] is -1'),
        "kmeans": (kmeans(), ""),
        "kmeans narrow centers": (
            kmeans(cluster_centers_=np.zeros((3, 1))),
            "cluster_centers_ has shape [3, 1] for 4",
        ),
        "neighbors": (knn(), ""),
        "outlier factor": (LocalOutlierFactor(novelty=True).fit(X), ""),
        "neighbors narrow data": (knn(_fit_X=X[:, :2].copy()), "_fit_X has shape [300, 2] for 4 features"),
        "neighbors sample count": (knn(n_samples_fit_=10**9), "n_samples_fit_ is 1000000000 for 300"),
        "neighbors tree on more rows": (
            _edited(
                KNeighborsTransformer(n_neighbors=2, algorithm="kd_tree").fit(X),
                _fit_X=X[:10].copy(),
                n_samples_fit_=10,
            ),
            "_tree.data has shape [300, 4] for training data of shape [10, 4]",
        ),
        "neighbors kd tree": (KNeighborsClassifier(3, algorithm="kd_tree").fit(X, Y), ""),
        "kmeans counts short": (
            _edited(MiniBatchKMeans(3, n_init=1, random_state=0).fit(X), _counts=np.zeros(1)),
            "_counts has shape [1] for 3 centers",
        ),
        "minibatch kmeans": (MiniBatchKMeans(3, n_init=1, random_state=0).fit(X), ""),
        "kmeans negative threads": (kmeans(_n_threads=-5), "_n_threads is not a thread count"),
        "kd tree one slab": (
            _binary_tree_with(KDTree, 3, lambda bounds: bounds[:1].copy()),
            "node_bounds has shape [1, 63, 4] for 2 bound(s)",
        ),
        "kd tree n_nodes": (
            _binary_tree_with(KDTree, 6, lambda n: n + 9),
            "n_nodes is Some(72) for 63 nodes",
        ),
        "kd tree short weights": (
            _binary_tree_with(KDTree, 12, lambda weights: np.ones(3)),
            "sample_weight has shape [3] for 300 samples",
        ),
        "density kd weighted": (KernelDensity(algorithm="kd_tree").fit(X, sample_weight=np.ones(len(X))), ""),
        "density ball weighted": (
            KernelDensity(algorithm="ball_tree").fit(X, sample_weight=np.ones(len(X))),
            "",
        ),
        "masked": (masked(3), ""),
        "masked short mask": (masked(1), "_mask has shape [1] for data of shape [3]"),
        **_structure_cases(),
    }


@functools.cache
def _structure_cases() -> Dict[str, Tuple[Any, str]]:
    """SVMs, one-hot encoders, Birch and bisecting k-means, splines, DIA and LIL matrices whose
    arrays the scanner reads in the file, intact in their several forms and sizes, and broken
    as the guard refuses them (fitted once: each case only writes its object)."""
    from scipy.interpolate import BSpline, make_interp_spline
    from sklearn.preprocessing import SplineTransformer
    from sklearn.svm import SVC, SVR, NuSVC, NuSVR, OneClassSVM

    x3, y3 = X[:90] + np.repeat([0, 1, 2], 30)[:, None], np.repeat([0, 1, 2], 30)
    columns = np.array([["abcd"[i % 4], i % 7, i % 2] for i in range(60)], dtype=object)

    def encoder(**fit: Any) -> Any:
        return OneHotEncoder(**fit).fit(columns)

    def bisecting(centers: Any = None, **fit: Any) -> Any:
        model = BisectingKMeans(4, random_state=0, **fit).fit(sp.csr_matrix(X) if fit else X)
        if centers is not None:
            model._bisecting_tree.left.__dict__["center"] = centers
        return model

    def spline(**fields: Any) -> Any:
        return _spline_with(**fields) if fields else SplineTransformer(n_knots=4).fit(X)

    def lil(size: int, row: Any = None) -> Any:
        matrix = sp.lil_matrix(sp.random(size, 5, density=0.4, random_state=0))
        if row is not None:
            matrix.rows[0] = row
            matrix.data[0] = [1.0] * len(row)
        return matrix

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-learn 1.9 deprecates probability=True
        probability = _svc(probability=True, random_state=0)
    return {
        "svc": (_svc(), ""),
        "svc binary small": (SVC().fit(X[:10], np.arange(10) % 2), ""),
        "svc probability": (probability, ""),
        "svc precomputed": (_svc(kernel="precomputed"), ""),
        "svc callable kernel": (_svc(kernel=pairwise_kernels), ""),
        "svc callable kernel support beyond the samples": (
            (lambda m: _edited(m, support_=m.support_ + 10**8))(_svc(kernel=pairwise_kernels)),
            "outside [0, 90) (the training samples)",
        ),
        "svc sparse": (SVC().fit(sp.csr_matrix(x3), y3), ""),
        "nu svc": (NuSVC().fit(x3, y3), ""),
        "svr": (SVR().fit(X, X[:, 0]), ""),
        "nu svr sparse": (NuSVR().fit(sp.csr_matrix(X[:50]), X[:50, 0]), ""),
        "one class svm": (OneClassSVM().fit(X), ""),
        "svc support longer than the vectors": (
            _edited(_svc(), support_=np.zeros(2000, np.int32)),
            "support_ has 2000 indices for",
        ),
        "svc counts summing past the vectors": (
            (lambda m: _edited(m, _n_support=m._n_support + np.array([1000, 0, 0], np.int32)))(_svc()),
            "_n_support is [",
        ),
        "svc intercept short": (
            _edited(_svc(), _intercept_=np.zeros(1)),
            "_intercept_ has 1 values for 3 class pairs",
        ),
        "svc precomputed support beyond the samples": (
            (lambda m: _edited(m, support_=m.support_ + 10**8))(_svc(kernel="precomputed")),
            "is 1000000",
        ),
        "one hot": (encoder(), ""),
        "one hot dropping first": (encoder(drop="first"), ""),
        "one hot dropping binary": (encoder(drop="if_binary", handle_unknown="ignore"), ""),
        "one hot dropping chosen": (encoder(drop=["b", 3, 1]), ""),
        "one hot infrequent": (encoder(min_frequency=9, handle_unknown="infrequent_if_exist"), ""),
        "one hot infrequent dropped": (encoder(max_categories=3, drop="first", sparse_output=False), ""),
        "one hot categories beyond the outputs": (
            (lambda m: _edited(m, categories_=[m.categories_[0], np.arange(-50, 7), m.categories_[2]]))(
                encoder()
            ),
            "_n_features_outs[1]: item 7 is 7, outside [0, 7)",
        ),
        "one hot outputs as an array": (
            (lambda m: _edited(m, _n_features_outs=np.array(m._n_features_outs)))(encoder()),
            "_n_features_outs is not a list of counts",
        ),
        "birch": (Birch(n_clusters=None).fit(X), ""),
        "birch clustered": (Birch(n_clusters=3).fit(X[:40]), ""),
        "birch norms short": (
            _edited(Birch(n_clusters=None).fit(X), _subcluster_norms=np.zeros(1)),
            "_subcluster_norms has shape [1] for",
        ),
        "bisecting kmeans": (bisecting(), ""),
        "bisecting kmeans on sparse data": (bisecting(bisecting_strategy="largest_cluster"), ""),
        "kmeans on sparse data": (KMeans(3, n_init=1, random_state=0).fit(sp.csr_matrix(X)), ""),
        "bisecting kmeans node center narrow": (
            bisecting(np.zeros(1)),
            "_bisecting_tree: a node center of shape [1] for 4 features",
        ),
        "spline transformer": (spline(), ""),
        "spline transformer periodic": (SplineTransformer(degree=2, extrapolation="periodic").fit(X), ""),
        "bspline extrapolating": (BSpline(np.arange(10.0), np.ones(6), 3, extrapolate=True), ""),
        "bspline periodic": (BSpline(np.arange(10.0), np.ones(6), 3, extrapolate="periodic"), ""),
        "bspline of vectors": (make_interp_spline(np.arange(12.0), RNG.rand(12, 3)), ""),
        "bspline complex": (BSpline(np.arange(10.0), np.ones(6) * 1j, 3), ""),
        "spline coefficients short": (spline(_c=np.zeros((2, 1))), "c has 2 rows for"),
        "spline knots unsorted": (
            spline(_t=np.arange(20.0)[::-1].copy()),
            "knots not finite and non-decreasing",
        ),
        "dia matrix": (sp.dia_matrix((np.ones((3, 5)), [0, -1, 2]), shape=(5, 5)), ""),
        "dia array": (sp.dia_array(RNG.rand(30, 30) * np.tri(30, 30, 2)), ""),
        "dia empty": (sp.dia_matrix((4, 4)), ""),
        "dia offsets without data": (
            _edited(
                sp.dia_matrix((np.ones((1, 8)), [0]), shape=(8, 8)), offsets=np.arange(8, dtype=np.int32)
            ),
            "offsets holds 8 offsets for 1 diagonals",
        ),
        "dia offsets repeated": (
            _edited(
                sp.dia_matrix((np.ones((2, 8)), [0, 1]), shape=(8, 8)), offsets=np.array([1, 1], np.int32)
            ),
            "offsets repeats the offset 1",
        ),
        "lil matrix": (lil(6), ""),
        "lil matrix large": (lil(300), ""),
        "lil array": (sp.lil_array(np.eye(3)), ""),
        "lil empty": (sp.lil_matrix((0, 4)), ""),
        "lil without values": (sp.lil_matrix((3, 4)), ""),
        "lil column beyond the shape": (lil(6, [0, 10**8]), "rows[0][1] is 100000000"),
        "lil columns unsorted": (lil(6, [3, 1]), "rows[0][1] is 1: columns not increasing inside [0, 5)"),
    }


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("case", sorted(_shape_cases()))
def test_scanner_checks_estimator_shapes_and_masks_inside_the_file(
    case: str, writer: str, tmp_path: Path
) -> None:
    """k-means centers and nearest-neighbor training data as wide as the input, the neighbors'
    sample count, a masked array's mask as long as its data, a vectorizer's vocabulary mapping
    terms to distinct columns below its size, a ``MultiIndex``'s codes inside its levels (an
    index of a frame), a ``SparseArray``'s values one per point, and SVMs' counts, one-hot
    codes, Birch's norms, bisecting k-means centers, splines, DIA and LIL matrices
    (``_structure_cases``), read in the file: the scanner and the guard agree on each."""
    obj, broken = _shape_cases()[case]
    path = tmp_path / "model.bin"
    WRITERS[writer](obj, path)
    report = picklefence.scan_file(path)
    violations = [f.message for f in report.findings if f.kind == "state-violation"]
    load = (
        (lambda: joblib.load(path))
        if writer.startswith("joblib")
        else (lambda: pickle.loads(path.read_bytes()))
    )
    with picklefence.safe_ml_environment():
        if broken:
            # The series holds the broken array too (pickled twice where the writer has no memo).
            assert violations and all(broken in v for v in violations), str(report)
            with pytest.raises(UnsafeFileError, match="native-state"):
                load()
        else:
            assert report.is_safe and not violations, str(report)
            notes = [f.message for f in report.findings if f.kind == "native-state"]
            # Decompressed past the scanner's window, a joblib file is read as a stream: its
            # arrays are left to the guard (the outlier factor's KD tree makes it that long).
            streamed = writer == "joblib zlib" and any("cannot read those arrays" in n for n in notes)
            # Notes of classes the scanner never reads in files (a NumPy generator the model
            # keeps) say so; those it read say intact.
            checked = [n for n in notes if "the scanner checked" in n]
            assert streamed or (checked and all("0 broken: intact" in n for n in checked)), notes
            load()


def test_scanner_leaves_ensembles_it_cannot_read_to_the_guard(tmp_path: Path) -> None:
    """Bagging picks columns per estimator: the scanner says it left it to the guard (which checks
    them). (Gradient boosting's stages, an object array, it reads: SCANNED_BROKEN.)"""
    for model, why in (
        (BaggingClassifier(n_estimators=2, max_features=2).fit(X, Y), "columns picked per estimator"),
    ):
        path = tmp_path / "model.joblib"
        joblib.dump(model, path)
        report = picklefence.scan_file(path)
        assert report.is_safe, str(report)
        (note,) = [
            f.message for f in report.findings if f.kind == "native-state" and "sklearn.ensemble" in f.message
        ]
        assert f"not all could be read here ({why}" in note and "the guard validates them" in note, note


@pytest.mark.parametrize("compress", ["zlib", "gzip", "bz2", "xz", "lzma"])
def test_scanner_reads_a_compressed_joblib_file_s_arrays(tmp_path: Path, compress: str) -> None:
    """A compressed joblib file is scanned as it decompresses. A pickle past the 64 KiB that tell
    what a stream is used to be analysed as a stream, which keeps no arrays: a broken tree in
    such a file passed the scan with a note. Pickles up to 8 MiB are now held and read as a
    file's bytes; a longer one is still streamed, and noted as left to the guard."""
    intact = _tree_models()["forest"]
    broken = _break(_tree_models()["forest"])
    path = tmp_path / "model.joblib"
    for model, padding in ((intact, 100_000), (broken, 100_000), (broken, 1_100_000)):
        # Zeros: a pickle of 0.8 or 8.8 MB in a file of a few kB.
        joblib.dump({"model": model, "padding": np.zeros(padding)}, path, compress=(compress, 3))
        report = picklefence.scan_file(path)
        violations = [f.message for f in report.findings if f.kind == "state-violation"]
        notes = [f.message for f in report.findings if "the scanner cannot read those arrays" in f.message]
        if model is intact:
            assert report.is_safe and not violations and not notes, str(report)
        elif padding * 8 < 8 << 20:
            assert not report.is_safe and any("left_child" in v for v in violations), str(report)
        else:
            assert report.is_safe and not violations, str(report)
            assert any("sklearn.tree._tree.Tree" in note for note in notes), str(report)


class _Reduced:
    def __init__(self, reduced: Tuple[Any, ...]) -> None:
        self.reduced = reduced

    def __reduce__(self) -> Tuple[Any, ...]:
        return self.reduced


def _state_changed_after_build(cls: Any, args: Any, state: Dict[str, Any], later: Any) -> bytes:
    """Protocol 3: ``[state, cls(*args) BUILD state]``, then ``state["nodes"] = later`` through
    the memo, after the BUILD."""
    import pickletools

    outer = pickle.dumps([state, _Reduced((cls, args, state))], protocol=3)
    ops = list(pickletools.genops(outer))
    dict_at = next(i for i, (op, _, _) in enumerate(ops) if op.name == "EMPTY_DICT")
    put = ops[dict_at + 1]
    assert put[0].name in ("BINPUT", "LONG_BINPUT")
    out = io.BytesIO()
    fast = pickle.Pickler(out, protocol=3)
    fast.fast = True  # no memo: the array's opcodes can be spliced in
    fast.dump(later)
    value = out.getvalue()[2:-1]  # without PROTO and STOP
    key = b"nodes"
    get = (b"h" + bytes([put[1]])) if put[1] < 256 else (b"j" + struct.pack("<I", put[1]))
    splice = get + b"X" + struct.pack("<I", len(key)) + key + value + b"s" + b"0"
    assert outer.endswith(b".")
    return outer[:-1] + splice + b"."


def test_scanner_checks_the_state_a_tree_was_built_with() -> None:
    """Tree.__setstate__ copies the nodes: a state dict changed after the BUILD does not change
    the tree. The roles refuse the change itself (build-violation); the native-state check reads
    the dict as it was at the BUILD, so it names the broken nodes the tree holds, and not intact
    nodes set afterwards."""
    tree = _break(_tree_models()["forest"]).estimators_[-1].tree_
    cls, args, state = tree.__reduce__()
    intact = _tree_models()["forest"].estimators_[0].tree_.__getstate__()["nodes"]
    data = _state_changed_after_build(cls, args, state, intact)
    assert (pickle.loads(data)[0]["nodes"] == intact).all()  # the file is what it claims
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError):
            pickle.loads(data)
    kinds = {f.kind for f in picklefence.scan_bytes(data).findings}
    assert {"state-violation", "build-violation"} <= kinds, kinds
    # The other way round (intact at the BUILD, broken later) the tree is intact.
    good_state = _tree_models()["forest"].estimators_[0].tree_.__reduce__()[2]
    data = _state_changed_after_build(cls, args, good_state, state["nodes"])
    kinds = {f.kind for f in picklefence.scan_bytes(data).findings}
    assert "build-violation" in kinds and "state-violation" not in kinds, kinds


def test_an_array_built_again_after_a_tree_read_it_is_refused() -> None:
    """A tree built from broken nodes whose array is then built again with intact records: the
    tree keeps the broken copy. The scanner must not check the array's last state."""
    import pickletools

    broken = _break(_tree_models()["forest"]).estimators_[-1].tree_
    cls, args, state = broken.__reduce__()
    intact = _tree_models()["forest"].estimators_[0].tree_.__getstate__()["nodes"]
    outer = pickle.dumps([state, _Reduced((cls, args, state))], protocol=3)
    ops = list(pickletools.genops(outer))
    key_at = next(i for i, (op, arg, _) in enumerate(ops) if arg == "nodes")
    reduce_at = next(i for i in range(key_at, len(ops)) if ops[i][0].name == "REDUCE")
    put = ops[reduce_at + 1]
    assert put[0].name == "BINPUT"
    out = io.BytesIO()
    fast = pickle.Pickler(out, protocol=3)
    fast.fast = True
    fast.dump(intact.__reduce__()[2])
    splice = b"h" + bytes([put[1]]) + out.getvalue()[2:-1] + b"b" + b"0"
    data = outer[:-1] + splice + b"."
    assert (pickle.loads(data)[0]["nodes"] == intact).all()  # the array was built again
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError):
            pickle.loads(data)
    report = picklefence.scan_bytes(data)
    assert not report.is_safe, str(report)


def test_validation_finds_objects_in_big_containers() -> None:
    # Plain values are skipped by type: one broken object among many ints must still be found.
    broken = _tree_with(lambda n: _set(n, "left_child", 0, 10**9))
    values: List[Any] = list(range(10_000))
    values.insert(5_000, broken)
    frame = pd.DataFrame({"a": [1.0, 2.0]})  # a walked import (pandas)
    with picklefence.safe_ml_environment():
        assert pickle.loads(pickle.dumps({"frame": frame, "ids": list(range(10_000))}))["ids"][-1] == 9_999
        with pytest.raises(UnsafeFileError, match="left_child"):
            pickle.loads(pickle.dumps({"frame": frame, "values": values}))
        with pytest.raises(UnsafeFileError, match="left_child"):
            pickle.loads(pickle.dumps({"frame": frame, "values": tuple(values), "set": set(range(500))}))


def test_the_walk_looks_inside_whatever_can_hold_objects() -> None:
    """Subclasses of plain values and of ndarray may carry an instance dict; object arrays
    nest; cycles end; each instance is reported once."""
    from picklefence import _native_state

    class Tagged(np.ndarray):
        pass

    class Number(int):
        pass

    categorical = pd.Categorical(["a", "b"])
    tagged = np.zeros(2).view(Tagged)
    tagged.extra = {"c": categorical}  # type: ignore[attr-defined]
    number = Number(3)
    number.extra = categorical  # type: ignore[attr-defined]
    inner = np.empty(1, dtype=object)
    inner[0] = [categorical]
    outer = np.empty(1, dtype=object)
    outer[0] = inner
    cyclic: List[Any] = []
    cyclic.append(cyclic)
    classes = _native_state._classes()
    for root in (tagged, number, outer, [cyclic, (number, tagged, outer)]):
        found = _native_state._walk(root, classes)
        assert [id(c) for c in found["categorical"]] == [id(categorical)], root
    assert _native_state._walk([cyclic, np.zeros(3), 1, "x", Number(1)], classes) == {}


def test_every_tree_made_through_the_memoized_constructor_is_checked(tmp_path: Path) -> None:
    # A forest pickles the Tree class once and calls it from the memo for every tree: the
    # recording constructor the guard hands out is what the memo holds, so the last tree counts.
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, Y)
    state = forest.estimators_[-1].tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["right_child"][0] = 10**9
    state["nodes"] = nodes
    forest.estimators_[-1].tree_.__setstate__(state)
    path = tmp_path / "forest.joblib"
    joblib.dump(forest, path)
    data = pickle.dumps(forest, protocol=4)
    assert data.count(b"sklearn.tree._tree") == 1  # one import, the rest through the memo
    with picklefence.safe_ml_environment():
        for load in (lambda: joblib.load(path), lambda: pickle._Unpickler(io.BytesIO(data)).load()):  # type: ignore[attr-defined]
            with pytest.raises(UnsafeFileError, match=r"nodes\[0\]\.right_child"):
                load()


# Categoricals and sparse matrices whose arrays are in the file: the scanner checks them as the
# guard does (its class, the field the guard names, and the value in the scanner's message).
def _with_codes(categories: Any, code: int) -> pd.Series:
    values = pd.Categorical.from_codes([0, 1, 0, 1], categories=categories)
    values._ndarray[3] = code
    return pd.Series(values)


def _sparse(kind: str, edit: Callable[[Any], None]) -> Any:
    dense = np.eye(4)
    matrix = {
        "csr_matrix": lambda: sp.csr_matrix(dense),
        "csr_array": lambda: sp.csr_array(dense),
        "csc_matrix": lambda: sp.csc_matrix(dense),
        "bsr_matrix": lambda: sp.bsr_matrix(dense, blocksize=(2, 2)),
        "coo_matrix": lambda: sp.coo_matrix(dense),
        "coo_array": lambda: sp.coo_array(dense),
    }[kind]()
    edit(matrix)
    return matrix


def _index_beyond(matrix: Any) -> None:
    if hasattr(matrix, "indices"):
        matrix.indices[1] = 7
    else:
        matrix.coords[1][1] = 7


SCANNED: Dict[str, Tuple[Callable[[bool], Any], str, str]] = {
    # name: (make(broken), class in the messages, what the scanner's message says)
    "categorical of str": (
        lambda broken: _with_codes(["a", "b"], 2 if broken else 1),
        "Categorical",
        "codes[3] is 2, outside [-1, 2)",
    ),
    "categorical of a range": (
        lambda broken: _with_codes(pd.RangeIndex(10, 13), 3 if broken else 2),
        "Categorical",
        "codes[3] is 3, outside [-1, 3)",
    ),
    "categorical of a descending range": (
        lambda broken: _with_codes(pd.RangeIndex(10, 0, -5), 2 if broken else 1),
        "Categorical",
        "codes[3] is 2, outside [-1, 2)",
    ),
    "categorical of dates": (
        lambda broken: _with_codes(pd.to_datetime(["2020-01-01", "2021-01-01"]), -2 if broken else -1),
        "Categorical",
        "codes[3] is -2, outside [-1, 2)",
    ),
    "categorical of ints": (
        lambda broken: _with_codes(pd.Index([5, 6, 7]), 100 if broken else 0),
        "Categorical",
        "codes[3] is 100, outside [-1, 3)",
    ),
    **{
        kind: (
            lambda broken, kind=kind: _sparse(kind, _index_beyond if broken else lambda m: None),
            kind,
            "is 7, outside [0, 4)" if kind != "bsr_matrix" else "indices[1] is 7, outside [0, 2)",
        )
        for kind in ("csr_matrix", "csr_array", "csc_matrix", "bsr_matrix", "coo_matrix", "coo_array")
    },
    "csr indptr backwards": (
        lambda broken: _sparse("csr_matrix", _indptr_backwards if broken else lambda m: None),
        "csr_matrix",
        "indptr must not decrease",
    ),
    "interval bounds": (
        lambda broken: (
            _intervals_with_short_right() if broken else pd.arrays.IntervalArray.from_breaks([0.0, 1.0])
        ),
        "IntervalArray",
        "_right holds 1 bounds for 3 left bounds",
    ),
    "frame block placement": (
        lambda broken: _frame_with_placement(slice(5, 7) if broken else slice(0, 2)),
        "BlockManager",
        "blocks[0] is placed at item 5, outside [0, 2)",
    ),
    "frame block placement array": (
        lambda broken: _frame_with_placement(np.array([0, 9 if broken else 1])),
        "BlockManager",
        "blocks[0] is placed at item 9, outside [0, 2)",
    ),
    "series block placement": (
        lambda broken: _series_with_placement(slice(5, 7) if broken else slice(0, 2)),
        "SingleBlockManager",
        "blocks[0] is placed at item 5, outside [0, 2)",
    ),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("case", sorted(SCANNED))
def test_scanner_checks_categoricals_and_sparse_matrices_inside_the_file(
    case: str, writer: str, tmp_path: Path
) -> None:
    """Intact ones scan clean (the note says they were checked) and load under the guard; a
    broken one is a critical state violation in the scan and refused by the guard."""
    make, cls, message = SCANNED[case]
    path = tmp_path / "model.bin"
    WRITERS[writer]({"value": make(False)}, path)
    report = picklefence.scan_file(path)
    assert report.is_safe, str(report)
    notes = [
        f.message for f in report.findings if f.kind == "native-state" and cls in f.message.split(" ")[0]
    ]
    assert notes and all("0 broken: intact" in n for n in notes), notes
    with picklefence.safe_ml_environment():
        joblib.load(path) if writer.startswith("joblib") else pickle.loads(path.read_bytes())
    WRITERS[writer]({"value": make(True)}, path)
    report = picklefence.scan_file(path)
    assert not report.is_safe
    (broken,) = [f for f in report.findings if f.kind == "state-violation"]
    assert broken.severity == "critical" and cls in broken.message and message in broken.message, (
        broken.message
    )
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError):
            joblib.load(path) if writer.startswith("joblib") else pickle.loads(path.read_bytes())


def _late_built_attacks() -> Dict[str, Tuple[bytes, Callable[[Any], bool]]]:
    """An array taken (by a categorical, an index, a matrix) before its state is given: the
    taker holds the array object, the pickle gives it broken contents afterwards. Each with a
    check that the plain load holds an index beyond its bound."""
    from gadgets import Build, Call, G, Lit, New, Put, Ref, dumps

    def unbuilt(key: str) -> Any:
        return Put(key, Call(G("numpy.core.multiarray", "_reconstruct"), G("numpy", "ndarray"), (0,), b"b"))

    def state(values: np.ndarray) -> Any:
        _, shape, dtype, fortran, raw = values.__reduce__()[2]
        return (1, shape, Lit(dtype), fortran, raw)

    def categorical(categories: Any, codes: Any) -> Any:
        made = Call(
            G("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
            G("pandas", "Categorical"),
            82904607,
            None,
        )
        dtype = Build(New(G("pandas", "CategoricalDtype")), {"categories": categories, "ordered": False})
        return Build(made, (dtype, codes))

    index = Call(
        G("pandas.core.indexes.base", "_new_Index"),
        G("pandas", "Index"),
        {"data": unbuilt("cats"), "name": None},
    )
    matrix = Build(
        New(G("scipy.sparse._csr", "csr_matrix")),
        {
            "_shape": (4, 4),
            "maxprint": 50,
            "indptr": Lit(np.arange(5, dtype=np.int32)),
            "indices": unbuilt("indices"),
            "data": Lit(np.ones(4)),
        },
    )
    return {
        "codes given after the categorical took them": (
            dumps(
                [
                    categorical(Lit(pd.Index(["a", "b"])), unbuilt("codes")),
                    Build(Ref("codes"), state(np.array([0, 7, 0], dtype="i1"))),
                ]
            ),
            lambda loaded: int(loaded[0].codes.max()) >= len(loaded[0].categories),
        ),
        "categories given after the index took them": (
            dumps(
                [
                    categorical(index, Lit(np.array([0, 7, 0], dtype="i1"))),
                    Build(Ref("cats"), state(np.array(["a", "b"], dtype=object))),
                ]
            ),
            lambda loaded: int(loaded[0].codes.max()) >= len(loaded[0].categories),
        ),
        "indices given after the matrix took them": (
            dumps([matrix, Build(Ref("indices"), state(np.array([0, 1, 7, 3], dtype=np.int32)))]),
            lambda loaded: int(loaded[0].indices.max()) >= loaded[0].shape[1],
        ),
    }


@pytest.mark.parametrize("case", sorted(_late_built_attacks()))
def test_arrays_given_their_state_after_they_were_taken_are_refused(case: str) -> None:
    """The scanner cannot know what such an array holds when it was taken (a copy of an empty
    array, or the object filled in later): no real file does this, so it is a violation, and the
    guard (which checks what the load made) refuses the broken result."""
    data, beyond = _late_built_attacks()[case]
    assert beyond(pickle.loads(data))  # the plain load holds an index beyond its bound
    report = picklefence.scan_bytes(data)
    assert not report.is_safe, str(report)
    assert "state-violation" in {f.kind for f in report.findings}, str(report)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError):
            pickle.loads(data)


def test_scanner_checks_the_block_placements_of_older_frames() -> None:
    """A frame as pandas < 2 pickled it (its manager given the "0.14.1" state): the scanner
    reads the placements there, and the guard refuses a broken one before pandas writes at it
    (inside the load; the gadget suite shows the plain load's SIGSEGV)."""
    from gadgets import Call, G, older_frame

    intact = older_frame(Call(G("builtins", "slice"), 0, 2, 1))
    report = picklefence.scan_bytes(intact)
    assert report.is_safe, str(report)
    assert any("BlockManager" in f.message and "0 broken: intact" in f.message for f in report.findings)
    with picklefence.safe_ml_environment():
        loaded = pickle.loads(intact)["frame"]
    expected = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    expected.columns = pd.Index(["a", "b"], dtype=object)
    pd.testing.assert_frame_equal(loaded, expected)
    # A reversed slice places both columns too (pandas reads a missing stop as "down to 0").
    reversed_ = older_frame(Call(G("builtins", "slice"), 1, None, -1))
    assert picklefence.scan_bytes(reversed_).is_safe
    with picklefence.safe_ml_environment():
        assert list(pickle.loads(reversed_)["frame"]["a"]) == [3.0, 4.0]
    for placement, item in [(Call(G("builtins", "slice"), 5, 7, 1), 5), ([0, 2**40], 2**40)]:
        data = older_frame(placement)
        report = picklefence.scan_bytes(data)
        broken = [f for f in report.findings if f.kind == "state-violation"]
        assert broken and f"placed at item {item}, outside [0, 2)" in broken[0].message, str(report)
        with picklefence.safe_ml_environment():
            with pytest.raises(UnsafeFileError):
                pickle.loads(data)


def _manager_attacks() -> Dict[str, Tuple[bytes, bool]]:
    """Frames whose manager the scanner's reading of the pickle could get wrong, each with
    whether the scan must flag it (else it leaves the manager to the guard): three items at the
    call in the pickle's text, one in fact, and no count check (verify_integrity=False)."""
    from gadgets import Build, Call, G, Lit, Put, Ref, SetItem, frame_of

    def frame(axes: Any, after: Any = None) -> bytes:
        block = Call(
            G("pandas._libs.internals", "_unpickle_block"),
            Lit(np.ones((3, 2))),
            Call(G("builtins", "slice"), 0, 3, 1),
            2,
        )
        manager = Call(G("pandas.core.internals.managers", "BlockManager"), (block,), axes, False)
        return frame_of(manager, after)

    three = Lit(pd.Index(["a", "b", "c"], dtype=object))
    unbuilt = Put("data", Call(G("numpy.core.multiarray", "_reconstruct"), G("numpy", "ndarray"), (0,), b"b"))
    _, shape, dtype, fortran, raw = np.array(["a"], dtype=object).__reduce__()[2]
    return {
        # list[0] = ... is not followed by the scanner's evaluator: the list reads as changed.
        "first axis replaced by SETITEM before the call": (
            frame(
                SetItem(Put("axes", [three, Lit(pd.RangeIndex(2))]), 0, Lit(pd.Index(["a"], dtype=object)))
            ),
            False,
        ),
        "first axis's data given its state after the call": (
            frame(
                [
                    Call(
                        G("pandas.core.indexes.base", "_new_Index"), G("pandas", "Index"), {"data": unbuilt}
                    ),
                    Lit(pd.RangeIndex(2)),
                ],
                Build(Ref("data"), (1, shape, Lit(dtype), fortran, raw)),
            ),
            True,
        ),
    }


@pytest.mark.parametrize("case", sorted(_manager_attacks()))
def test_block_managers_the_scanner_cannot_read_as_made_are_not_called_intact(case: str) -> None:
    data, flagged = _manager_attacks()[case]
    report = picklefence.scan_bytes(data)
    notes = [f.message for f in report.findings if f.kind == "native-state" and "BlockManager" in f.message]
    assert not any("0 broken: intact" in n for n in notes), str(report)
    if flagged:
        assert not report.is_safe and "state-violation" in {f.kind for f in report.findings}, str(report)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError):
            pickle.loads(data)


def test_block_manager_setstate_is_checked_while_the_guard_is_active_and_restored_after() -> None:
    from pandas.core.internals.managers import BlockManager, SingleBlockManager

    classes = (BlockManager, SingleBlockManager)
    before = [cls.__dict__.get("__setstate__") for cls in classes]
    series = pickle.dumps(pd.Series([1.0, 2.0]))
    with picklefence.safe_ml_environment():
        assert list(pickle.loads(series)) == [1.0, 2.0]
        assert SingleBlockManager.__dict__.get("__setstate__") is not before[1]
        with pytest.raises(UnsafeFileError, match=r"blocks\[0\]\.mgr_locs: item 5 is outside \[0, 2\)"):
            pickle.loads(pickle.dumps(_series_with_placement(slice(5, 7))))
    assert [cls.__dict__.get("__setstate__") for cls in classes] == before


def test_tree_estimator_setstate_records_once_while_the_guard_is_active_and_is_restored_after() -> None:
    """The recorder sits on each class a load imports (a subclass whose base was patched first
    records its instances once, not twice), and deactivation leaves the classes as they were;
    the estimators still unpickle and predict."""
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.tree import ExtraTreeClassifier

    from picklefence import _native_state

    classes = (DecisionTreeClassifier, ExtraTreeClassifier, ExtraTreesClassifier)
    before = [cls.__dict__.get("__setstate__") for cls in classes]
    plain = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, Y)
    extra = ExtraTreeClassifier(max_depth=2, random_state=0).fit(X, Y)
    recorded: List[Dict[str, List[Any]]] = []
    validate = _native_state._validate
    with picklefence.safe_ml_environment():
        _native_state._validate = lambda result, watch: (
            recorded.append(dict(watch.captured)) or validate(result, watch)
        )
        try:
            pickle.loads(pickle.dumps(plain))
            loaded = pickle.loads(pickle.dumps([extra, ExtraTreesClassifier(n_estimators=2).fit(X, Y)]))
        finally:
            _native_state._validate = validate  # type: ignore[assignment]
        assert all(cls.__dict__.get("__setstate__") is not old for cls, old in zip(classes, before))
    # The second: the estimator, the forest's two and the forest's template (``estimator_``).
    assert [len(r.get("tree_estimator", [])) for r in recorded] == [1, 4]
    assert [len(r.get("tree_ensemble", [])) for r in recorded] == [0, 1]
    assert [cls.__dict__.get("__setstate__") for cls in classes] == before
    assert (loaded[0].predict(X) == extra.predict(X)).all()
    assert pickle.loads(pickle.dumps(plain)).predict(X[:3]).shape == (3,)


def test_a_state_dict_changed_after_the_build_that_read_it_is_not_called_intact() -> None:
    """A categorical given its state as a 1-tuple holding a memoized dict with broken codes; a
    SETITEM afterwards puts intact codes in that dict. pandas read the broken ones at the BUILD
    (the dict is not copied there), so the scanner must not judge the dict as it ends up."""
    from gadgets import Build, Call, G, Lit, Put, Ref, SetItem, dumps

    made = Call(
        G("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"), G("pandas", "Categorical"), 82904607, None
    )
    dtype = Build(
        Call(G("copyreg", "__newobj__"), G("pandas", "CategoricalDtype")),
        {"categories": Lit(pd.Index(["a", "b"])), "ordered": False},
    )
    fields = Put("fields", {"_ndarray": Lit(np.array([0, 7, 0], dtype="i1")), "_dtype": dtype})
    good = Put("good", Lit(np.zeros(3, dtype="i1")))  # built before the BUILD that reads the dict
    data = dumps([good, Build(made, (fields,)), SetItem(Ref("fields"), "_ndarray", Ref("good"))])
    loaded = pickle.loads(data)[1]
    assert int(loaded.codes.max()) >= len(loaded.categories)  # the plain load holds code 7
    report = picklefence.scan_bytes(data)
    notes = [f.message for f in report.findings if f.kind == "native-state" and "Categorical" in f.message]
    assert notes and "a state dict changed after the BUILD that read it" in notes[0], str(report)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError):
            pickle.loads(data)


def _older_manager_routes() -> Dict[str, bytes]:
    """An older manager state with a block at [0, 2**40] given by routes other than NEWOBJ of
    the class: copyreg's __newobj__ (another allowed name that makes the object), and a second
    BUILD through the memo after an intact first one."""
    from gadgets import Build, Call, G, Lit, New, Put, Ref, frame_of

    values = np.array([[1.0, 2.0], [3.0, 4.0]])
    axes = [Lit(pd.Index(["a", "b"], dtype=object)), Lit(pd.RangeIndex(2))]

    def state(placement: Any) -> Any:
        fields = {"axes": axes, "blocks": [{"values": Lit(values), "mgr_locs": placement}]}
        return (axes, [Lit(values)], axes, {"0.14.1": fields})

    manager = G("pandas.core.internals.managers", "BlockManager")
    intact = Put("manager", Build(New(manager), state(Call(G("builtins", "slice"), 0, 2, 1))))
    return {
        "copyreg.__newobj__": frame_of(Build(Call(G("copyreg", "__newobj__"), manager), state([0, 2**40]))),
        "a second BUILD through the memo": frame_of(intact, after=Build(Ref("manager"), state([0, 2**40]))),
    }


@pytest.mark.parametrize("route", sorted(_older_manager_routes()))
def test_older_manager_states_by_other_routes_are_refused(route: str) -> None:
    data = _older_manager_routes()[route]
    assert not picklefence.scan_bytes(data).is_safe
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError):
            pickle.loads(data)


# --------------------------------------------------------------------------------------------
# pyarrow arrays (pandas' string dtype with pyarrow installed): `_restore_array` rebuilds an
# array from the pickle's length, offsets and buffers without checking them against each other.

_ARROW_OFFSETS = struct.pack("<4q", 0, 1, 1, 4)
_ARROW_BEYOND = struct.pack("<4q", 0, 1, 1, 4 + 100_000)


def _arrow_pickles(protocol: int) -> Dict[str, Tuple[bytes, str, str]]:
    """Pickles of a frame's Arrow string column and of a bare pyarrow array whose last string
    ends 100,000 bytes past its 4-byte data buffer; with the class and field the refusal
    names."""
    pa = pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"s": pd.array(["a", None, "ccc"], dtype=pd.StringDtype("pyarrow"))})
    bare = {"column": pa.array(["a", None, "ccc"], type=pa.large_string())}
    cases = {}
    for label, obj, cls, field in (
        ("frame column", frame, "LargeStringArray", "buffers"),
        ("bare array", bare, "LargeStringArray", "buffers"),
    ):
        data = pickle.dumps(obj, protocol=protocol)
        assert data.count(_ARROW_OFFSETS) >= 1, label
        cases[label] = (data.replace(_ARROW_OFFSETS, _ARROW_BEYOND), cls, field)
    return cases


@pytest.fixture(params=["full validation", "stepwise"])
def arrow_checks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Small arrays get pyarrow's full validation, larger ones the stepwise checks (structure,
    null count, offsets, UTF-8 tail): each refusal is tested both ways."""
    from picklefence import _native_state

    if request.param == "stepwise":
        monkeypatch.setattr(_native_state, "_FULLY_VALIDATED_UP_TO", 0)
    return str(request.param)


def _the_refusal(loader: str, data: bytes, tmp_path: Path) -> Any:
    """The one violation the guard refuses `data` with, loaded by `loader` (from a file where
    the loader reads one)."""
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            LOADERS[loader](data, path)
    (violation,) = info.value.violations
    return violation


@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_arrow_arrays_whose_offsets_leave_their_buffers_are_refused(
    loader: str, protocol: int, tmp_path: Path, arrow_checks: str
) -> None:
    for label, (data, cls, field) in _arrow_pickles(protocol).items():
        violation = _the_refusal(loader, data, tmp_path)
        assert violation.kind == "native-state", label
        assert cls in violation.message and field in violation.message, (label, violation.message)
        # The scanner reads the same buffers in the file.
        report = picklefence.scan_bytes(data)
        (broken,) = [f for f in report.findings if f.kind == "state-violation"]
        assert broken.severity == "critical" and "_restore_array" in broken.message, broken.message
        assert "outside the 4 data bytes" in broken.message, broken.message


def test_unprotected_the_arrow_offsets_read_past_the_buffer() -> None:
    """The gadget is real: without the guard the last string is read from 100,000 bytes of
    memory past its 4-byte buffer (or the process dies)."""
    for label, (data, _, _) in _arrow_pickles(5).items():
        code = (
            "import pickle, sys, pyarrow as pa\n"
            "obj = pickle.loads(sys.stdin.buffer.read())\n"
            "array = obj['s'].array._pa_array.chunk(0) if hasattr(obj, 'columns') else obj['column']\n"
            "print(len(array.view(pa.large_binary())[2].as_py()))\n"
        )
        run = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=120)
        assert run.returncode < 0 or run.stdout.strip() == b"100003", (
            label,
            run.returncode,
            run.stderr[-300:],
        )


@pytest.mark.parametrize("rows", [1, 1000, 100_000])
def test_intact_arrow_columns_and_arrays_load_unchanged(rows: int, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    values = [None if i % 7 == 3 else f"value {i}" for i in range(rows)]
    frame = pd.DataFrame(
        {
            "s": pd.array(values, dtype=pd.StringDtype("pyarrow")),
            "c": pd.Categorical([f"k{i % 5}" for i in range(rows)]),
        }
    )
    arrays = {
        "large_string": pa.array(values, type=pa.large_string()),
        "string": pa.array(values, type=pa.string()),
        "int64": pa.array(list(range(rows)), type=pa.int64()),
        "sliced": pa.array(values, type=pa.large_string()).slice(rows // 2),
    }
    for protocol in (4, 5):
        for obj, same in (
            (frame, lambda a, b: a.equals(b)),
            (arrays, lambda a, b: a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)),
        ):
            data = pickle.dumps(obj, protocol=protocol)
            path = tmp_path / "obj.pkl"
            joblib.dump(obj, path)
            assert picklefence.scan_bytes(data).verdict == "clean"
            with picklefence.safe_ml_environment():
                for loader in sorted(LOADERS):
                    loaded = LOADERS[loader](data, path)
                    assert same(loaded, obj), (loader, protocol)


def test_scanner_checks_the_arrow_buffers_inside_the_file() -> None:
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"s": pd.array(["a", "b"], dtype=pd.StringDtype("pyarrow"))})
    report = picklefence.scan_bytes(pickle.dumps(frame, protocol=5))
    assert report.verdict == "clean"
    notes = [f.message for f in report.findings if f.kind == "native-state"]
    arrow = [n for n in notes if n.startswith("pyarrow.lib._restore_array")]
    assert len(arrow) == 1 and "0 broken: intact" in arrow[0], notes


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_arrow_text_that_ends_inside_a_utf8_sequence_is_refused(
    loader: str, tmp_path: Path, arrow_checks: str
) -> None:
    """Strings are validated as binary (offsets inside the data) plus their last bytes: a text
    ending in a lead byte would send a decoder past the buffer."""
    pa = pytest.importorskip("pyarrow")
    offsets = pa.py_buffer(struct.pack("<2i", 0, 2))
    broken = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(b"a\xe2")])
    data = pickle.dumps({"column": broken}, protocol=5)
    violation = _the_refusal(loader, data, tmp_path)
    assert ("UTF-8" if arrow_checks == "stepwise" else "UTF8") in violation.message, violation.message
    (flagged,) = [f for f in picklefence.scan_bytes(data).findings if f.kind == "state-violation"]
    assert "UTF-8" in flagged.message, flagged.message


# Offsets whose first and last lie inside the 4 data bytes but whose middle goes back: pyarrow's
# structural validation passes them, and item 1 spans [3, 1), a negative length.
_ARROW_BACKWARDS = [0, 3, 1, 4]


@pytest.mark.parametrize("width", [4, 8])
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_arrow_offsets_that_go_back_inside_the_data_are_refused(
    loader: str, width: int, tmp_path: Path, arrow_checks: str
) -> None:
    pa = pytest.importorskip("pyarrow")
    kind, code = (pa.string(), "<4i") if width == 4 else (pa.large_binary(), "<4q")
    offsets = pa.py_buffer(struct.pack(code, *_ARROW_BACKWARDS))
    broken = pa.Array.from_buffers(kind, 3, [None, offsets, pa.py_buffer(b"accc")])
    data = pickle.dumps({"column": broken}, protocol=5)
    violation = _the_refusal(loader, data, tmp_path)
    expected = "offset 2 (1) is before the one ahead of it" if arrow_checks == "stepwise" else "offset"
    assert expected in violation.message, violation.message
    (flagged,) = [f for f in picklefence.scan_bytes(data).findings if f.kind == "state-violation"]
    assert "offset[2] is 1, after 3" in flagged.message, flagged.message


def test_unprotected_arrow_offsets_that_go_back_read_outside_the_buffer() -> None:
    """The gadget is real: the item between offsets 3 and 1 has a length of -2, read as a huge
    one (the process dies, or the read fails: no intact value comes back)."""
    pa = pytest.importorskip("pyarrow")
    offsets = pa.py_buffer(struct.pack("<4q", *_ARROW_BACKWARDS))
    broken = pa.Array.from_buffers(pa.large_binary(), 3, [None, offsets, pa.py_buffer(b"accc")])
    code = "import pickle, sys\narray = pickle.loads(sys.stdin.buffer.read())\nprint(len(array[1].as_py()))\n"
    data = pickle.dumps(broken, protocol=5)
    run = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=120)
    assert run.returncode != 0, (run.stdout, run.stderr[-300:])


@pytest.mark.parametrize("chunk", [1, 2, 3, 1 << 20])
def test_arrow_offsets_are_compared_across_chunk_boundaries(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pair of neighbours is compared whatever the chunking, in a sliced array too (only
    the offsets of its own items count)."""
    pa = pytest.importorskip("pyarrow")
    from picklefence import _native_state

    monkeypatch.setattr(_native_state, "_OFFSET_CHUNK", chunk)
    monkeypatch.setattr(_native_state, "_FULLY_VALIDATED_UP_TO", 0)
    intact = [0, 1, 2, 2, 3, 5, 8, 8]
    data = pa.py_buffer(b"x" * 8)

    def array_of(offsets: List[int], offset: int = 0) -> Any:
        buffer = pa.py_buffer(struct.pack(f"<{len(offsets)}i", *offsets))
        return pa.Array.from_buffers(
            pa.string(), len(offsets) - 1 - offset, [None, buffer, data], offset=offset
        )

    _native_state._check_arrow(array_of(intact))
    for item in range(2, len(intact) - 1):
        backwards = [*intact[:item], intact[item - 1] - 1 if intact[item - 1] else 0, *intact[item + 1 :]]
        if backwards[item] >= backwards[item - 1]:
            continue
        with pytest.raises(_native_state.NativeStateError, match=f"offset {item} "):
            _native_state._check_arrow(array_of(backwards))
    # Before a slice's first item, offsets are not read.
    _native_state._check_arrow(array_of([7, 0, *intact[1:]], offset=1))


class _ArrowArrayOf:
    """Pickles as `_restore_array((type, length, nulls, offset, buffers, [], None))`."""

    def __init__(self, kind: Any, length: int, buffers: List[Any], nulls: int = 0, offset: int = 0) -> None:
        self.args = (kind, length, nulls, offset, buffers, [], None)

    def __reduce__(self) -> Any:
        import pyarrow.lib

        return (pyarrow.lib._restore_array, (self.args,))


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_an_arrow_null_count_other_than_the_bitmaps_is_refused(
    loader: str, tmp_path: Path, arrow_checks: str
) -> None:
    """Code that sizes its output by the null count writes by the bitmap: the two must agree
    (guard and scanner), for strings and fixed-width arrays, whole or sliced. (Given 0 nulls,
    pyarrow drops the bitmap; given -1, it counts them.)"""
    pa = pytest.importorskip("pyarrow")
    for intact in (
        pa.array(["a", None, "ccc", None], type=pa.large_string()),
        pa.array([1, None, 3, None], type=pa.int64()),
    ):
        for array in (intact, intact.slice(1, 2)):
            cases = [(array.null_count, False), (-1, False), (0, False), (array.null_count + 1, True)]
            if array.null_count > 1:
                cases.append((array.null_count - 1, True))
            for nulls, refused in cases:
                made = _ArrowArrayOf(
                    array.type, len(array), array.buffers(), nulls=nulls, offset=array.offset
                )
                data = pickle.dumps({"column": made}, protocol=5)
                assert picklefence.scan_bytes(data).is_safe is not refused, (array, nulls)
                if refused:
                    violation = _the_refusal(loader, data, tmp_path)
                    assert "null" in violation.message, violation.message
                else:
                    path = tmp_path / "intact.pkl"
                    path.write_bytes(data)
                    with picklefence.safe_ml_environment():
                        loaded = LOADERS[loader](data, path)["column"]
                    assert loaded.equals(array) if nulls else loaded.null_count == 0


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_arrow_arrays_with_fewer_buffers_than_their_layout_are_refused_before_they_are_made(
    loader: str, tmp_path: Path
) -> None:
    """pyarrow indexes the buffers by position while it makes the array: too few read past the
    list (a crash in the load, before any validation), so the pre-scan refuses them."""
    pa = pytest.importorskip("pyarrow")
    data_buffer = pa.py_buffer(b"\0" * 40)
    for kind, buffers in (
        (pa.int64(), [None]),
        (pa.large_string(), [None, pa.py_buffer(struct.pack("<6q", 0, 1, 2, 3, 4, 5))]),
        (pa.bool_(), []),
    ):
        data = pickle.dumps({"column": _ArrowArrayOf(kind, 5, buffers)}, protocol=5)
        violation = _the_refusal(loader, data, tmp_path)
        assert "buffers for a" in violation.message, violation.message
        assert not picklefence.scan_bytes(data).is_safe
    # The layout's own count passes the pre-scan (and the data is then validated).
    intact = pickle.dumps({"column": _ArrowArrayOf(pa.int64(), 5, [None, data_buffer])}, protocol=5)
    path = tmp_path / "intact.pkl"
    path.write_bytes(intact)
    with picklefence.safe_ml_environment():
        assert LOADERS[loader](intact, path)["column"].to_pylist() == [0] * 5


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_broken_arrow_array_is_refused_before_the_load_reads_it(loader: str, tmp_path: Path) -> None:
    """An index made from a bare Arrow array reads it inside the load; the array is checked as
    `_restore_array` makes it, so the load stops there (on every unpickling path)."""
    pa = pytest.importorskip("pyarrow")
    from pandas.core.indexes.base import _new_Index

    broken = _ArrowArrayOf(
        pa.large_string(),
        3,
        [None, pa.py_buffer(struct.pack("<4q", 0, 1, 1, 1 << 40)), pa.py_buffer(b"accc")],
    )

    class IndexOf:
        def __reduce__(self) -> Any:
            return (_new_Index, (pd.Index, {"data": broken, "name": None}))

    data = pickle.dumps({"index": IndexOf()}, protocol=5)
    path = tmp_path / "index.pkl"
    path.write_bytes(data)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError):
            LOADERS[loader](data, path)


def test_the_restore_array_wrapper_is_installed_while_guarded_pickles_by_name_and_is_restored() -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.lib

    original = pyarrow.lib._restore_array
    data = pickle.dumps(pa.array(["a", "b"]), protocol=5)
    with picklefence.safe_ml_environment():
        assert pickle.loads(data).to_pylist() == ["a", "b"]
        assert pyarrow.lib._restore_array is not original
        # pyarrow's own pickling now names the wrapper: by reference, as the name it replaces.
        again = pickle.dumps(pa.array(["c"]), protocol=5)
        assert b"_restore_array" in again and b"picklefence" not in again
        assert pickle.loads(again).to_pylist() == ["c"]
    assert pyarrow.lib._restore_array is original


def test_every_array_is_checked_when_one_import_makes_several() -> None:
    """The memo hands the same `_restore_array` to a second call: an intact array first does not
    let a broken one through."""
    pa = pytest.importorskip("pyarrow")
    intact = _ArrowArrayOf(pa.int64(), 1, [None, pa.py_buffer(b"\0" * 8)])
    broken = _ArrowArrayOf(pa.int64(), 100, [None, pa.py_buffer(b"\0" * 8)])
    data = pickle.dumps([intact, broken], protocol=5)
    assert data.count(b"_restore_array") == 1  # imported once, then taken from the memo
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError):
            pickle.loads(data)
    assert not picklefence.scan_bytes(data).is_safe


def _offsets_rewritten_after_the_array_was_made() -> bytes:
    """A protocol-5 pickle of an Arrow string column whose offsets buffer is a memoized
    bytearray (as pyarrow writes it); after `_restore_array` made (and the guard checked) the
    array, SETITEM into that bytearray moves the last offset 2**63 bytes on. pyarrow's buffer
    is a view of the bytearray, so the array the load returns reads wherever it points."""
    import pickletools

    pytest.importorskip("pyarrow")
    series = pd.Series(pd.array(["a", "bb", "ccc", "dddd"], dtype=pd.StringDtype("pyarrow")))
    data = pickle.dumps(series, protocol=5)
    ops = list(pickletools.genops(data))
    memo_keys = {}  # BYTEARRAY8 position -> its memo key
    key = 0
    for previous, (op, _, _) in zip(ops, ops[1:]):
        if op.name == "MEMOIZE":
            memo_keys[previous[2]] = key
            key += 1
    offsets_at, offsets = next((pos, arg) for op, arg, pos in ops if op.name == "BYTEARRAY8")
    dtype_key = next(i for i, (op, arg, _) in enumerate(ops) if arg == "_dtype")
    restored = max(i for i, (op, _, _) in enumerate(ops[:dtype_key]) if op.name == "REDUCE")
    after = ops[restored + 1][2]
    last_high_byte = 8 * (len(offsets) // 8 - 1) + 7
    rewrite = b"h" + bytes([memo_keys[offsets_at]]) + b"K" + bytes([last_high_byte]) + b"K\x7fs0"
    return data[:after] + rewrite + data[after:]


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_arrow_offsets_rewritten_after_the_array_was_checked_are_refused(loader: str, tmp_path: Path) -> None:
    data = _offsets_rewritten_after_the_array_was_made()
    violation = _the_refusal(loader, data, tmp_path)
    assert violation.kind == "build-violation" and "bytearray" in violation.message, violation
    report = picklefence.scan_bytes(data)
    assert not report.is_safe and [f.kind for f in report.findings if f.severity == "critical"] == [
        "build-violation"
    ], report.findings


def test_unprotected_arrow_offsets_rewritten_after_the_array_was_made_read_out_of_bounds() -> None:
    """The gadget is real: unprotected, reading the column reads 2**63 bytes past its buffer
    (the process dies)."""
    code = "import pickle, sys\nprint(pickle.loads(sys.stdin.buffer.read()).tolist())\n"
    data = _offsets_rewritten_after_the_array_was_made()
    run = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=120)
    assert run.returncode < 0, (run.returncode, run.stdout[-300:], run.stderr[-300:])


# --------------------------------------------------------------------------------------------
# Gadgets a red team found in fitted models with edited state (and the attacks on their checks):
# each is refused by the guard naming the field; unprotected, it crashes or misreads.


def _mlb(**fields: Any) -> Any:
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer().fit([["a", "b"], ["c"]])
    binarizer.transform([["a"]])  # makes _cached_dict
    return _edited(binarizer, **fields)


def _sgd(kind: str = "classifier", features: int = 4, **fit: Any) -> Any:
    from sklearn.linear_model import SGDClassifier, SGDOneClassSVM, SGDRegressor

    x = np.random.RandomState(0).rand(20, features)
    if kind == "regressor":
        return SGDRegressor(max_iter=2, tol=None, random_state=0, **fit).fit(x, x[:, 0])
    if kind == "one_class":
        return SGDOneClassSVM(max_iter=2, tol=None, random_state=0, **fit).fit(x)
    return SGDClassifier(max_iter=2, tol=None, random_state=0, **fit).fit(x, np.arange(20) % 2)


def _hdbscan(edit: Callable[[np.ndarray], Any]) -> Any:
    from sklearn.cluster import HDBSCAN

    model = HDBSCAN(min_cluster_size=5, copy=True).fit(np.random.RandomState(0).rand(50, 2))
    tree = model._single_linkage_tree_.copy()
    edited = edit(tree)
    return _edited(model, _single_linkage_tree_=tree if edited is None else edited)


def _hdbscan_node(field: str, row: int, value: int) -> Any:
    def edit(tree: np.ndarray) -> None:
        tree[field][row] = value

    return _hdbscan(edit)


def _hgb_categorical(**mapper: Any) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.RandomState(0)
    x = np.c_[rng.randint(0, 4, 2000), rng.rand(2000)].astype(float)
    model = HistGradientBoostingRegressor(max_iter=3, categorical_features=[0], random_state=0).fit(
        x, (x[:, 0] == 2) * 1.0 + rng.rand(2000) * 0.1
    )
    for name, value in mapper.items():
        object.__setattr__(model._bin_mapper, name, value)
    return model


def _hgb_feature_beyond(width: Any) -> Any:
    """A HistGradientBoosting model whose first predictor splits on feature 2**31, its width
    ``width`` (a NumPy integer: what the check's type test once skipped)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    x = np.random.RandomState(0).rand(500, 2)
    model = HistGradientBoostingRegressor(max_iter=2, random_state=0).fit(x, x[:, 0])
    nodes = model._predictors[0][0].nodes
    nodes["feature_idx"][np.flatnonzero(nodes["is_leaf"] == 0)] = 1 << 31
    return _edited(model, n_features_in_=width)


def _random_state(position: int) -> Any:
    state = list(np.random.RandomState(0).get_state())
    state[2] = position
    generator = np.random.RandomState(0)
    generator.set_state(tuple(state))
    return generator


def _mt19937_generator(position: int) -> Any:
    bit_generator = np.random.MT19937(0)
    state = bit_generator.state
    state["state"]["pos"] = position
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _philox(position: int) -> Any:
    bit_generator = np.random.Philox(0)
    state = bit_generator.state
    state["buffer_pos"] = position
    bit_generator.state = state
    return bit_generator


def _one_hot(categories: List[Any], fit: Any = None, **options: Any) -> Any:
    encoder = OneHotEncoder(sparse_output=False, **options).fit(
        fit if fit is not None else np.array([[1.0], [5.0]])
    )
    return _edited(encoder, categories_=categories)


def _swapped_linkage_fields(tree: np.ndarray) -> np.ndarray:
    """The tree's bytes under a dtype whose first two fields swap names: the Cython struct reads
    by position, a check by name would read the other column."""
    swapped = np.dtype(
        {
            "names": ["right_node", "left_node", "value", "cluster_size"],
            "formats": [np.intp, np.intp, np.float64, np.intp],
        }
    )
    return tree.view(swapped)


def _hasher(kind: str, n_features: Any) -> Any:
    """A FeatureHasher or HashingVectorizer (stateless: what fit checks, transform does not)."""
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.feature_extraction.text import HashingVectorizer

    hasher = FeatureHasher(n_features=16, input_type="string") if kind == "features" else HashingVectorizer()
    return _edited(hasher.fit([["a"]] if kind == "features" else ["a"]), n_features=n_features)


def _coordinate_descent(kind: str = "lasso", **fields: Any) -> Any:
    """A warm-starting Lasso, ElasticNet or MultiTaskLasso fitted on three features."""
    from sklearn.linear_model import ElasticNet, Lasso, MultiTaskLasso

    x = np.random.RandomState(0).rand(30, 3)
    if kind == "multitask":
        model = MultiTaskLasso(alpha=0.01, warm_start=True).fit(x, x[:, :2])
    else:
        model = (ElasticNet if kind == "enet" else Lasso)(alpha=0.01, warm_start=True).fit(x, x[:, 0])
    return _edited(model, **fields)


def _neighbor_classifier(kind: str = "k", labels: Any = None, **fields: Any) -> Any:
    """A brute-force, manhattan-metric neighbor classifier (predict_proba takes the Cython
    class-mode reduction) of 60 samples and two classes, its codes ``labels`` (an edit of them)."""
    from sklearn.neighbors import RadiusNeighborsClassifier

    x = np.random.RandomState(0).rand(60, 3)
    cls = KNeighborsClassifier if kind == "k" else RadiusNeighborsClassifier
    model = cls(algorithm="brute", metric="manhattan").fit(x, (x[:, 0] > 0.5).astype(int))
    if labels is not None:
        fields["_y"] = labels(model._y.copy())
    return _edited(model, **fields)


def _mahalanobis_neighbors(features: int = 3, fitted: bool = True, **fields: Any) -> Any:
    """A brute-force NearestNeighbors with the Mahalanobis metric (queries go to scipy's cdist)."""
    from sklearn.neighbors import NearestNeighbors

    model = NearestNeighbors(
        n_neighbors=3, algorithm="brute", metric="mahalanobis", metric_params={"VI": np.eye(features)}
    )
    if fitted:
        model.fit(np.random.RandomState(0).rand(20, features))
    return _edited(model, **fields)


def _haversine_tree_of_one_column() -> Any:
    """A haversine BallTree whose data and centroids are cut to one column."""
    state = list(BallTree(np.random.RandomState(0).rand(50, 2), metric="haversine").__getstate__())
    state[0], state[3] = state[0][:, :1].copy(), state[3][:, :, :1].copy()
    tree = BallTree.__new__(BallTree)
    tree.__setstate__(tuple(state))
    return tree


def _chained_tree(nodes: int = 119) -> DecisionTreeRegressor:
    """A fitted regression tree whose nodes form a chain of internal nodes each of whose children
    are both the next: in bounds, every node reached by one path but 2**(depth) paths in all."""
    from sklearn.tree._tree import Tree

    x = np.random.RandomState(0).rand(2000, 3)
    model = DecisionTreeRegressor(max_depth=6, random_state=0).fit(x, x[:, 0] + x[:, 1] * x[:, 2])
    state = model.tree_.__getstate__()
    records = state["nodes"][:nodes].copy()
    last = len(records) - 1
    records["left_child"][:last] = records["right_child"][:last] = np.arange(1, last + 1)
    records["feature"][:last] = 1
    records["left_child"][last] = records["right_child"][last] = -1
    state.update(
        nodes=records, node_count=len(records), max_depth=last, values=state["values"][: len(records)]
    )
    tree = Tree(model.tree_.n_features, np.array(model.tree_.n_classes), model.tree_.n_outputs)
    tree.__setstate__(state)
    return _edited(model, tree_=tree)


def _hgb_given_loss(loss_classes: Any, samples: int = 300, **fields: Any) -> Any:
    """A warm-starting HistGradientBoostingClassifier of three classes fitted with the
    multinomial loss object given as its ``loss``, then given one of ``loss_classes`` classes."""
    from sklearn._loss.loss import HalfMultinomialLoss
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.random.RandomState(0).rand(samples, 3)
    model = HistGradientBoostingClassifier(
        loss=HalfMultinomialLoss(n_classes=3), max_iter=2, warm_start=True, early_stopping=False
    ).fit(x, np.arange(samples) % 3)
    model.loss.n_classes = loss_classes
    return _edited(model, **fields)


def _two_output_labels(codes: np.ndarray) -> np.ndarray:
    both = np.c_[codes, codes]
    both[3, 1] = 2
    return both


RED_TEAM: Dict[str, Tuple[Callable[[], Any], str, str]] = {
    "multilabel column far beyond": (
        lambda: _mlb(_cached_dict={"a": 10**8, "b": 1, "c": 2}),
        "MultiLabelBinarizer",
        "_cached_dict",
    ),
    "multilabel column before the first": (
        lambda: _mlb(_cached_dict={"a": -2, "b": 1, "c": 2}),
        "MultiLabelBinarizer",
        "_cached_dict",
    ),
    "multilabel column not an integer": (
        lambda: _mlb(_cached_dict={"a": "x", "b": 1, "c": 2}),
        "MultiLabelBinarizer",
        "_cached_dict",
    ),
    "multilabel cache not a dict": (
        lambda: _mlb(_cached_dict=[("a", 10**8)]),
        "MultiLabelBinarizer",
        "_cached_dict",
    ),
    "sgd averaged coefficients short": (
        lambda: (lambda m: _edited(m, _average_coef=np.zeros(1)))(_sgd(average=True)),
        "SGDClassifier",
        "_average_coef",
    ),
    "sgd standard coefficients short": (
        lambda: (lambda m: _edited(m, _standard_coef=np.zeros(1)))(_sgd(average=True)),
        "SGDClassifier",
        "_standard_coef",
    ),
    # Not averaging, the pickle can still turn averaging on: its arrays are checked anyway.
    "sgd averaged coefficients of a model that does not average": (
        lambda: _edited(_sgd(), average=True, _average_coef=np.zeros(1), _standard_coef=np.zeros(4)),
        "SGDClassifier",
        "_average_coef",
    ),
    # The regressor checks its input against n_features_in_ only.
    "sgd regressor coefficients narrower than its input": (
        lambda: (lambda m: _edited(m, coef_=m.coef_[:1].copy()))(_sgd("regressor")),
        "SGDRegressor",
        "coef_",
    ),
    "sgd regressor input wider than its coefficients": (
        lambda: _edited(_sgd("regressor"), n_features_in_=np.int64(50_000)),
        "SGDRegressor",
        "coef_",
    ),
    "sgd one-class averaged coefficients short": (
        lambda: (lambda m: _edited(m, _average_coef=np.zeros(1)))(_sgd("one_class", average=True)),
        "SGDOneClassSVM",
        "_average_coef",
    ),
    "sgd without an input width": (
        lambda: (lambda m: (m.__dict__.pop("n_features_in_"), m)[1])(_sgd("regressor")),
        "SGDRegressor",
        "n_features_in_",
    ),
    "hdbscan node far beyond": (
        lambda: _hdbscan_node("left_node", 0, 1 << 40),
        "HDBSCAN",
        "_single_linkage_tree_[0].left_node",
    ),
    "hdbscan node negative": (
        lambda: _hdbscan_node("right_node", 3, -5),
        "HDBSCAN",
        "_single_linkage_tree_[3].right_node",
    ),
    # In the union-find table, but not a sample or an earlier merge.
    "hdbscan node of a later merge": (
        lambda: _hdbscan_node("left_node", 0, 97),
        "HDBSCAN",
        "_single_linkage_tree_[0].left_node",
    ),
    "hdbscan fields renamed": (
        lambda: _hdbscan(_swapped_linkage_fields),
        "HDBSCAN",
        "_single_linkage_tree_",
    ),
    "hist gradient boosting bin mapper without categories": (
        lambda: _hgb_categorical(is_categorical_=np.zeros(0, dtype=np.uint8)),
        "HistGradientBoostingRegressor",
        "_bin_mapper.is_categorical_",
    ),
    # The right length, but the split's feature is numerical there: f_idx_map sends it to row 0
    # of a bitset array with no rows.
    "hist gradient boosting categorical split on a numerical feature": (
        lambda: _hgb_categorical(is_categorical_=np.zeros(2, dtype=np.uint8)),
        "HistGradientBoostingRegressor",
        "_bin_mapper.is_categorical_",
    ),
    "hist gradient boosting bin counts short": (
        lambda: _hgb_categorical(n_bins_non_missing_=np.zeros(1, dtype=np.uint32)),
        "HistGradientBoostingRegressor",
        "_bin_mapper.n_bins_non_missing_",
    ),
    "hist gradient boosting width a numpy integer": (
        lambda: _hgb_feature_beyond(np.int64(2)),
        "TreePredictor",
        "feature_idx",
    ),
    "hist gradient boosting without a width": (
        lambda: (lambda m: (m.__dict__.pop("n_features_in_"), m)[1])(_hgb_feature_beyond(2)),
        "HistGradientBoostingRegressor",
        "n_features_in_",
    ),
    "random state position far beyond": (lambda: _random_state(10**9), "MT19937", "state.pos"),
    "random state position past the key": (lambda: _random_state(625), "MT19937", "state.pos"),
    "random state position negative": (lambda: _random_state(-1), "MT19937", "state.pos"),
    "generator mt19937 position": (lambda: _mt19937_generator(640), "MT19937", "state.pos"),
    "philox buffer position": (lambda: _philox(-(10**7)), "Philox", "state.buffer_pos"),
    "philox buffer position beyond": (lambda: _philox(5), "Philox", "state.buffer_pos"),
    "random state over philox": (
        lambda: np.random.RandomState(_philox(-(10**7))),
        "Philox",
        "state.buffer_pos",
    ),
    "one hot numeric categories unsorted": (
        lambda: _one_hot([np.array([5.0, 1.0])]),
        "OneHotEncoder",
        "categories_[0]",
    ),
    "one hot numeric categories repeated": (
        lambda: _one_hot([np.array([1.0, 1.0])]),
        "OneHotEncoder",
        "categories_[0]",
    ),
    "one hot nan before a number": (
        lambda: _one_hot([np.array([1.0, np.nan, 5.0])]),
        "OneHotEncoder",
        "categories_[0]",
    ),
    "one hot two nans": (
        lambda: _one_hot([np.array([1.0, np.nan, np.nan])]),
        "OneHotEncoder",
        "categories_[0]",
    ),
    # Object categories meet searchsorted too when the input is numeric.
    "one hot object numbers unsorted": (
        lambda: _one_hot([np.array([5, 1], dtype=object)], fit=np.array([[1], [5]], dtype=object)),
        "OneHotEncoder",
        "categories_[0]",
    ),
    "one hot object categories mixed": (
        lambda: _one_hot([np.array(["a", 1], dtype=object)], fit=np.array([["a"], ["b"]], dtype=object)),
        "OneHotEncoder",
        "categories_[0]",
    ),
    # Red team round 2 (scikit-learn): HashingVectorizer/FeatureHasher.transform run the Cython
    # hashing with n_features unvalidated (0: SIGFPE).
    "feature hasher without features": (lambda: _hasher("features", 0), "FeatureHasher", "n_features"),
    "hashing vectorizer without features": (lambda: _hasher("text", 0), "HashingVectorizer", "n_features"),
    "hashing vectorizer negative features": (lambda: _hasher("text", -5), "HashingVectorizer", "n_features"),
    "hashing vectorizer features beyond int32": (
        lambda: _hasher("text", 2**31),
        "HashingVectorizer",
        "n_features",
    ),
    "hashing vectorizer features a float": (lambda: _hasher("text", 16.0), "HashingVectorizer", "n_features"),
    # Around the rule: a zero of another integer type, which Py_ssize_t takes as 0.
    "feature hasher features a numpy zero": (
        lambda: _hasher("features", np.int64(0)),
        "FeatureHasher",
        "n_features",
    ),
    "feature hasher features a bool": (lambda: _hasher("features", False), "FeatureHasher", "n_features"),
    # A warm-started fit hands coef_ to the Cython coordinate descent, one weight per input column.
    "lasso coefficients narrower than its input": (
        lambda: _coordinate_descent(coef_=np.zeros(1)),
        "Lasso",
        "coef_",
    ),
    "elastic net coefficients wider than its input": (
        lambda: _coordinate_descent("enet", coef_=np.zeros(100_000)),
        "ElasticNet",
        "coef_",
    ),
    "multitask lasso coefficients wider than its input": (
        lambda: _coordinate_descent("multitask", coef_=np.zeros((2, 7))),
        "MultiTaskLasso",
        "coef_",
    ),
    "lasso coefficients a list": (lambda: _coordinate_descent(coef_=[0.0, 0.0, 0.0]), "Lasso", "coef_"),
    "lasso without an input width": (
        lambda: (lambda m: (m.__dict__.pop("n_features_in_"), m)[1])(_coordinate_descent(coef_=np.zeros(1))),
        "Lasso",
        "n_features_in_",
    ),
    # The class-mode reductions add each neighbor's vote at class_scores[row, _y[neighbor]].
    "neighbors class code far beyond": (
        lambda: _neighbor_classifier(labels=lambda codes: np.full_like(codes, 10**9)),
        "KNeighborsClassifier",
        "_y",
    ),
    "neighbors class code negative": (
        lambda: _neighbor_classifier(labels=lambda codes: _with_item(codes, 5, -1)),
        "KNeighborsClassifier",
        "_y",
    ),
    "radius neighbors class code just beyond": (
        lambda: _neighbor_classifier("radius", labels=lambda codes: _with_item(codes, 0, 2)),
        "RadiusNeighborsClassifier",
        "_y",
    ),
    # Y_labels[neighbor] for a neighbor past the codes reads beyond them.
    "neighbors fewer codes than samples": (
        lambda: _neighbor_classifier(labels=lambda codes: codes[:1]),
        "KNeighborsClassifier",
        "_y",
    ),
    "neighbors class codes not integers": (
        lambda: _neighbor_classifier(labels=lambda codes: codes.astype(float)),
        "KNeighborsClassifier",
        "_y",
    ),
    "neighbors multi-output class code beyond": (
        lambda: _neighbor_classifier(
            labels=_two_output_labels, classes_=[np.array([0, 1])] * 2, outputs_2d_=True
        ),
        "KNeighborsClassifier",
        "_y[:, 1]",
    ),
    # scipy's cdist reads the Mahalanobis VI as features x features, unchecked.
    "neighbors mahalanobis matrix smaller than the input": (
        lambda: _mahalanobis_neighbors(effective_metric_params_={"VI": np.eye(1)}),
        "NearestNeighbors",
        "effective_metric_params_['VI']",
    ),
    "neighbors mahalanobis parameter not square": (
        lambda: _mahalanobis_neighbors(metric_params={"VI": np.ones((3, 2))}),
        "NearestNeighbors",
        "metric_params['VI']",
    ),
    "unfitted neighbors mahalanobis parameter a vector": (
        lambda: _mahalanobis_neighbors(fitted=False, metric_params={"VI": np.ones(3)}),
        "NearestNeighbors",
        "metric_params['VI']",
    ),
    # A warm-started fit writes a gradient column per class into loss.n_classes columns.
    "hist gradient boosting multiclass loss of fewer classes": (
        lambda: _hgb_given_loss(2),
        "HistGradientBoostingClassifier",
        "loss.n_classes",
    ),
    "hist gradient boosting multiclass loss classes a float": (
        lambda: _hgb_given_loss(3.0),
        "HistGradientBoostingClassifier",
        "loss.n_classes",
    ),
    # Around the rule: the stored tree count made to agree with the loss (fit recounts the classes).
    "hist gradient boosting loss and tree count below the classes": (
        lambda: _hgb_given_loss(2, n_trees_per_iteration_=2),
        "HistGradientBoostingClassifier",
        "loss.n_classes",
    ),
    # The haversine metric reads two values of each point (one past the last of a 1-column tree).
    "ball tree haversine of one column": (_haversine_tree_of_one_column, "BallTree", "data"),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("case", sorted(RED_TEAM))
def test_red_team_gadgets_are_refused_naming_the_field(case: str, loader: str, tmp_path: Path) -> None:
    _assert_refused_naming_the_field(RED_TEAM[case], loader, tmp_path)


# What each gadget does unprotected (`obj` is the loaded object): the process dies, or prints
# UNCHECKED when the library went on with the broken state.
RED_TEAM_TRIGGERS: Dict[str, Tuple[Callable[[], Any], str]] = {
    "multilabel column beyond": (
        lambda: _mlb(sparse_output=True, _cached_dict={"a": 7, "b": 1, "c": 2}),
        "y = obj.transform([['a', 'b']])\nprint('UNCHECKED' if y.indices.max() >= y.shape[1] else y.indices)",
    ),
    "sgd averaged coefficients short": (
        lambda: (lambda m: _edited(m, _average_coef=np.zeros(1)))(_sgd(features=50_000, average=True)),
        "import numpy as np\nobj.partial_fit(np.random.RandomState(1).rand(20, 50_000), np.arange(20) % 2)\n"
        "print('UNCHECKED')",  # 50,000 features trained into a 1-item array
    ),
    "hdbscan node far beyond": (
        lambda: _hdbscan_node("left_node", 0, 1 << 40),
        "print(obj.dbscan_clustering(cut_distance=1.0, min_cluster_size=5))",
    ),
    "hist gradient boosting bin mapper without categories": (
        lambda: _hgb_categorical(is_categorical_=np.zeros(0, dtype=np.uint8)),
        "import numpy as np\nquery = np.c_[np.arange(256), np.full(256, 0.5)].astype(float)\n"
        "for _ in range(3): obj.predict(query)\nprint('UNCHECKED')",
    ),
    "hist gradient boosting width a numpy integer": (
        lambda: _hgb_feature_beyond(np.int64(2)),
        "import numpy as np\nprint(obj.predict(np.random.RandomState(1).rand(3, 2)))",
    ),
    "random state position far beyond": (
        lambda: _random_state(10**9),
        "print(obj.randint(0, 2**32, 12, dtype='uint64'))",
    ),
    "philox buffer position": (lambda: _philox(-(10**7)), "print(obj.random_raw(3))"),
    "one hot numeric categories unsorted": (
        lambda: _edited(_one_hot([np.array([5.0, 1.0])]), sparse_output=True),
        "import numpy as np\ny = obj.transform(np.array([[5.0]]))\n"
        "print('UNCHECKED' if y.indices.max() >= y.shape[1] else y.indices)",
    ),
    "feature hasher without features": (
        lambda: _hasher("features", 0),
        "print(obj.transform([['a', 'b']]))",  # C modulo by zero: SIGFPE
    ),
    "lasso coefficients wider than its input": (
        lambda: _coordinate_descent(coef_=np.zeros(100_000)),
        "import numpy as np, scipy.sparse as sp\nx = np.random.RandomState(0).rand(30, 3)\n"
        "obj.fit(sp.csc_matrix(x), x[:, 0])\nprint('UNCHECKED')",  # a column pointer per weight
    ),
    "neighbors class code far beyond": (
        lambda: _neighbor_classifier(labels=lambda codes: np.full_like(codes, 10**9)),
        "import numpy as np\nprint(obj.predict_proba(np.random.RandomState(1).rand(50, 3)).sum())",
    ),
    "radius neighbors class code just beyond": (
        # One vote a row past each sample's scores: heap corruption, or another row's count.
        lambda: _neighbor_classifier("radius", labels=lambda codes: np.full_like(codes, 2), radius=5.0),
        "import numpy as np\np = obj.predict_proba(np.random.RandomState(1).rand(50, 3))\n"
        "print('UNCHECKED' if not np.allclose(p.sum(axis=1), 1) or p[0, 0] > 0 else p[:2])",
    ),
    "neighbors mahalanobis matrix smaller than the input": (
        lambda: _mahalanobis_neighbors(3000, effective_metric_params_={"VI": np.eye(1)}),
        "import numpy as np\nprint(obj.kneighbors(np.random.RandomState(1).rand(5, 3000))[0])",
    ),
    "tree node reached twice": (
        _chained_tree,  # 2**118 paths: killed by its CPU limit
        "import resource, numpy as np\nfrom sklearn.inspection import partial_dependence\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (5, 5))\n"
        "partial_dependence(obj, np.random.RandomState(0).rand(20, 3), [0], method='recursion')\n"
        "print('finished')",
    ),
    "hist gradient boosting multiclass loss of fewer classes": (
        lambda: _hgb_given_loss(2, samples=3000),
        "import numpy as np\nx = np.random.RandomState(0).rand(3000, 3)\nobj.set_params(max_iter=4)\n"
        "obj.fit(x, np.arange(3000) % 3)\nprint('UNCHECKED')",  # glibc: corrupted top size
    ),
}


@pytest.mark.parametrize("case", sorted(RED_TEAM_TRIGGERS))
def test_unprotected_red_team_gadgets_crash_or_misread(case: str) -> None:
    """The gadgets are real: without the guard the same state crashes the process (reads far
    past an array) or the library builds a structure that points outside itself."""
    make, trigger = RED_TEAM_TRIGGERS[case]
    code = "import pickle, sys, warnings\nwarnings.simplefilter('ignore')\n"
    code += "obj = pickle.loads(sys.stdin.buffer.read())\n" + trigger + "\n"
    run = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(make()), capture_output=True, timeout=300
    )
    assert run.returncode < 0 or run.stdout.strip().endswith(b"UNCHECKED"), (
        run.returncode,
        run.stdout[-300:],
        run.stderr[-300:],
    )


def _fitted_red_team_classes(size: int) -> Dict[str, Any]:
    """The classes of the red team's gadgets as fit, partial_fit and draws leave them, in
    several sizes and options."""
    from sklearn.cluster import HDBSCAN
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import (
        PassiveAggressiveClassifier,
        Perceptron,
        SGDClassifier,
        SGDOneClassSVM,
        SGDRegressor,
    )
    from sklearn.preprocessing import MultiLabelBinarizer

    rng = np.random.RandomState(size)
    x = rng.rand(max(size, 12), 3)
    y2, y3 = np.arange(len(x)) % 2, np.arange(len(x)) % 3
    models: Dict[str, Any] = {
        "labels": MultiLabelBinarizer().fit([["a", "b"], ["c"], [str(i) for i in range(size)]]),
        "labels given": MultiLabelBinarizer(classes=[3, 1, 2], sparse_output=True).fit([[1], [2]]),
        "perceptron": Perceptron(random_state=0).fit(x, y3),
        "passive aggressive": PassiveAggressiveClassifier(random_state=0).fit(x, y2),
        "unfitted sgd": SGDClassifier(),
    }
    models["labels"].transform([["a"]])
    models["labels given"].transform([[1]])
    for average in (False, True, 10):
        models[f"sgd {average}"] = SGDClassifier(average=average, max_iter=3, tol=None).fit(x, y3)
        models[f"sgd binary {average}"] = SGDClassifier(average=average, max_iter=3, tol=None).fit(x, y2)
        models[f"sgd regressor {average}"] = SGDRegressor(average=average, max_iter=3, tol=None).fit(
            x, x[:, 0]
        )
        models[f"sgd one-class {average}"] = SGDOneClassSVM(average=average, max_iter=3, tol=None).fit(x)
        warm = SGDClassifier(average=average, warm_start=True, max_iter=3, tol=None).fit(x, y3)
        models[f"sgd warm {average}"] = warm.fit(x, y3)
        partial = SGDClassifier(average=average).partial_fit(x, y3, classes=[0, 1, 2])
        models[f"sgd partial {average}"] = partial.partial_fit(x, y3)
        models[f"sgd regressor partial {average}"] = SGDRegressor(average=average).partial_fit(x, x[:, 1])
    broken = x.copy()
    broken[:2, 0], broken[2:3, 1] = np.nan, np.inf
    for smallest in (2, 5):
        models[f"hdbscan {smallest}"] = HDBSCAN(
            min_cluster_size=smallest, store_centers="both", copy=True
        ).fit(x)
    models["hdbscan non-finite"] = HDBSCAN(min_cluster_size=3, copy=True).fit(broken)
    categorical = np.c_[rng.randint(0, 4, len(x)), rng.randint(0, 30, len(x)), x].astype(float)
    models["hist categorical"] = HistGradientBoostingRegressor(max_iter=3, categorical_features=[0, 1]).fit(
        categorical, x[:, 0]
    )
    models["hist numpy width"] = _edited(
        HistGradientBoostingRegressor(max_iter=3).fit(x, x[:, 0]), n_features_in_=np.int64(3)
    )
    numbers = np.c_[rng.randint(0, 9, len(x)), np.where(np.arange(len(x)) % 5 == 0, np.nan, x[:, 0].round(1))]
    words = np.array([["x", "y", None, "z"][i % 4] for i in range(len(x))], dtype=object).reshape(-1, 1)
    with_nan = np.c_[words, np.where(np.arange(len(x)) % 7 == 0, np.nan, 1.0).astype(object)]
    for options in ({}, {"drop": "first"}, {"handle_unknown": "ignore"}, {"min_frequency": 3}):
        models[f"one hot numbers {options}"] = OneHotEncoder(**options).fit(numbers)
        if "drop" not in options:  # None among the words: drop cannot sort them
            models[f"one hot objects {options}"] = OneHotEncoder(**options).fit(with_nan)
        models[f"one hot strings {options}"] = OneHotEncoder(**options).fit(
            np.array(list("bca") * 4)[:, None]
        )
    models.update(_fitted_round_two_classes(x, y3, size))
    state = np.random.RandomState(size)
    state.rand(size)
    mt = np.random.Generator(np.random.MT19937(size))
    mt.random(size)
    philox = np.random.Generator(np.random.Philox(size))
    philox.random(size)
    models.update(
        {
            "random state": state,
            "fresh random state": np.random.RandomState(0),
            "generator": np.random.default_rng(size),
            "mt19937 generator": mt,
            "philox generator": philox,
            "sfc64": np.random.SFC64(size),
            "random state over philox": np.random.RandomState(np.random.Philox(size)),
        }
    )
    return models


def _fitted_round_two_classes(x: np.ndarray, y3: np.ndarray, size: int) -> Dict[str, Any]:
    """The classes of the second red team round (hashing, coordinate descent, neighbor
    classifiers) as fit, warm-started fits and their parameters leave them."""
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import ElasticNet, Lasso, LassoCV, MultiTaskElasticNet, MultiTaskLasso
    from sklearn.neighbors import NearestNeighbors, RadiusNeighborsClassifier

    models: Dict[str, Any] = {
        "hasher": FeatureHasher(n_features=size, input_type="string").fit(),
        "hasher widest": FeatureHasher(n_features=2**31 - 1, input_type="string"),
        "hashing vectorizer": HashingVectorizer(n_features=size),
        "hashing vectorizer numpy width": HashingVectorizer(n_features=np.int64(size)).fit(["a b"]),
        "unfitted lasso": Lasso(),
        "lasso cv": LassoCV(cv=3).fit(x, x[:, 0]),
        "multitask lasso": MultiTaskLasso(alpha=0.01).fit(x, x[:, :2]),
        "multitask elastic net warm": MultiTaskElasticNet(alpha=0.01, warm_start=True).fit(x, x[:, 1:]),
        "elastic net two targets": ElasticNet(alpha=0.01).fit(x, x[:, :2]),
        "lasso sparse": Lasso(alpha=0.01).fit(sp.csc_matrix(x), x[:, 0]),
        "radius neighbors outliers": RadiusNeighborsClassifier(
            radius=0.3, outlier_label="most_frequent", algorithm="brute", metric="manhattan"
        ).fit(x, y3),
        "neighbors strings": KNeighborsClassifier(n_neighbors=1, metric="chebyshev").fit(
            x, np.array(["b", "a", "c"])[y3]
        ),
        "neighbors two outputs": KNeighborsClassifier(n_neighbors=1).fit(x, np.c_[y3, y3 % 2]),
        "neighbors distance": KNeighborsClassifier(
            n_neighbors=2, weights="distance", algorithm="kd_tree"
        ).fit(x, y3),
    }
    covariance = np.cov(x.T) + np.eye(3)
    models["neighbors mahalanobis"] = NearestNeighbors(
        n_neighbors=1,
        algorithm="brute",
        metric="mahalanobis",
        metric_params={"VI": np.linalg.inv(covariance)},
    ).fit(x)
    models["unfitted neighbors mahalanobis"] = NearestNeighbors(
        metric="mahalanobis", metric_params={"VI": np.eye(3)}
    )
    models["neighbors haversine"] = NearestNeighbors(n_neighbors=1, metric="haversine").fit(x[:, :2])
    models["ball tree haversine"] = BallTree(x[:, :2], leaf_size=2, metric="haversine")
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss
    from sklearn.ensemble import HistGradientBoostingClassifier

    given = HistGradientBoostingClassifier(
        loss=HalfMultinomialLoss(n_classes=3), max_iter=2, warm_start=True, early_stopping=False
    )
    models["hist given multinomial loss warm refit"] = given.fit(x, y3).set_params(max_iter=3).fit(x, y3)
    models["hist given binomial loss"] = HistGradientBoostingClassifier(
        loss=HalfBinomialLoss(), max_iter=2, early_stopping=False
    ).fit(x, y3 % 2)
    models["unfitted hist given loss"] = HistGradientBoostingClassifier(loss=HalfMultinomialLoss(n_classes=4))
    warm = Lasso(alpha=0.01, warm_start=True).fit(x, x[:, 0])
    models["lasso warm refit"] = warm.fit(x, x[:, 1])
    for precompute in (False, True):
        models[f"elastic net {precompute}"] = ElasticNet(alpha=0.01, precompute=precompute).fit(x, x[:, 2])
    for algorithm in ("brute", "ball_tree"):
        models[f"neighbors {algorithm}"] = KNeighborsClassifier(
            n_neighbors=min(3, len(x)), algorithm=algorithm, metric="manhattan"
        ).fit(x, y3)
    return models


def _same(got: Any, expected: Any) -> None:
    """Loaded and original behave alike (what each class does with its checked state)."""
    probe = np.random.RandomState(7).rand(5, 3)
    if hasattr(expected, "dbscan_clustering"):
        np.testing.assert_array_equal(got.dbscan_clustering(0.3), expected.dbscan_clustering(0.3))
    elif hasattr(expected, "classes_") and hasattr(expected, "_cached_dict"):
        rows = [[c] for c in expected.classes_]
        assert (got.transform(rows) != expected.transform(rows)).sum() == 0
    elif isinstance(expected, OneHotEncoder):
        rows = np.array([[c[0] for c in expected.categories_]], dtype=object)
        assert (got.transform(rows) != expected.transform(rows)).sum() == 0
    elif hasattr(expected, "_y") and hasattr(expected, "classes_"):
        np.testing.assert_array_equal(got.predict(probe), expected.predict(probe))
        if not expected.outputs_2d_:
            np.testing.assert_array_equal(got.predict_proba(probe), expected.predict_proba(probe))
    elif hasattr(expected, "kneighbors") and getattr(expected, "_fit_X", None) is not None:
        query = probe[:, : expected.n_features_in_]
        for got_part, expected_part in zip(got.kneighbors(query), expected.kneighbors(query)):
            np.testing.assert_array_equal(got_part, expected_part)
    elif isinstance(expected, BallTree):
        query = probe[:, : expected.data.shape[1]]
        for got_part, expected_part in zip(got.query(query, k=2), expected.query(query, k=2)):
            np.testing.assert_array_equal(got_part, expected_part)
    elif hasattr(expected, "n_features") and hasattr(expected, "alternate_sign"):
        rows = (
            [["a", "b"], ["c"]]
            if hasattr(expected, "input_type") and expected.input_type == "string"
            else None
        )
        sample = rows if rows is not None else ["a b", "c"]
        assert (got.transform(sample) != expected.transform(sample)).nnz == 0
    elif hasattr(expected, "coef_") and expected.coef_ is not None:
        decide = "decision_function" if hasattr(expected, "decision_function") else "predict"
        np.testing.assert_array_equal(getattr(got, decide)(probe), getattr(expected, decide)(probe))
    elif hasattr(expected, "_predictors"):
        width = expected.n_features_in_
        query = np.random.RandomState(7).randint(0, 4, (5, width)).astype(float)
        np.testing.assert_array_equal(got.predict(query), expected.predict(query))
    elif hasattr(expected, "random_raw"):
        assert got.random_raw(5).tolist() == expected.random_raw(5).tolist()
    elif hasattr(expected, "random_sample") or hasattr(expected, "random"):
        draw = getattr(expected, "random_sample", None) or expected.random
        assert np.array_equal(getattr(got, draw.__name__)(5), draw(5))


@pytest.mark.parametrize("size", [1, 30, 300])
def test_fitted_red_team_classes_load_unchanged(size: int, tmp_path: Path) -> None:
    values = _fitted_red_team_classes(size)
    loaded = _loaded_guarded(values, tmp_path)
    for got in loaded:
        # Each compared with a copy loaded unguarded (draws advance a generator's state).
        for name, expected in pickle.loads(pickle.dumps(values, protocol=5)).items():
            _same(got[name], expected)


# --------------------------------------------------------------------------------------------
# torch RNN modules: forward hands the weights to the compiled kernels with sizes from the
# settings (the CPU oneDNN LSTM reads every weight as large as hidden_size makes it).


def _rnn_with(make: Callable[[], Any], edit: Callable[[Any], Any]) -> Any:
    torch.manual_seed(0)
    module = make()
    edit(module)
    return module


def _with_weight(name: str, *shape: int) -> Callable[[Any], Any]:
    """Replaces a weight (the parameter and its ``_flat_weights`` entry, as assignment does)."""
    return lambda module: setattr(module, name, torch.nn.Parameter(torch.zeros(shape)))


def _with_names(edit: Callable[[List[str]], Any]) -> Callable[[Any], Any]:
    """Edits ``_flat_weights_names`` (and the weight references ``__getstate__`` zips with it)."""

    def edited(module: Any) -> None:
        edit(module._flat_weights_names)
        module._flat_weight_refs = [None] * len(module._flat_weights_names)

    return edited


def _as_class(cls: Any) -> Callable[[Any], Any]:
    return lambda module: setattr(module, "__class__", cls)


RNN_BROKEN: Dict[str, Tuple[Callable[[], Any], str, str]] = {
    "lstm hidden_size beyond its weights": (
        lambda: _rnn_with(
            lambda: torch.nn.LSTM(4, 8, batch_first=True), lambda m: setattr(m, "hidden_size", 64)
        ),
        "LSTM.weight_ih_l0",
        "hidden_size 64",
    ),
    "gru weight of the wrong shape": (
        lambda: _rnn_with(lambda: torch.nn.GRU(4, 8, num_layers=2), _with_weight("weight_hh_l1", 24, 4)),
        "GRU.weight_hh_l1",
        "shape (24, 4)",
    ),
    "rnn reverse bias of the wrong shape": (
        lambda: _rnn_with(
            lambda: torch.nn.RNN(4, 8, nonlinearity="relu", bidirectional=True),
            _with_weight("bias_ih_l0_reverse", 1),
        ),
        "RNN.bias_ih_l0_reverse",
        "shape (1,)",
    ),
    "lstm projection weight of the wrong shape": (
        lambda: _rnn_with(lambda: torch.nn.LSTM(4, 8, proj_size=3), _with_weight("weight_hr_l0", 3, 2)),
        "LSTM.weight_hr_l0",
        "(3, 8)",
    ),
    "lstm proj_size not below hidden_size": (
        lambda: _rnn_with(lambda: torch.nn.LSTM(4, 8, proj_size=4), lambda m: setattr(m, "proj_size", 8)),
        "LSTM.proj_size",
        "8 for hidden_size 8",
    ),
    "gru with a projection": (
        lambda: _rnn_with(lambda: torch.nn.GRU(4, 8), lambda m: setattr(m, "proj_size", 2)),
        "GRU.proj_size",
        "2 for hidden_size 8",
    ),
    "lstm weight name missing": (
        lambda: _rnn_with(lambda: torch.nn.LSTM(4, 8), _with_names(lambda names: names.pop())),
        "LSTM._flat_weights_names",
        "3 names for the 4 weights",
    ),
    "lstm weight name extra": (
        lambda: _rnn_with(
            lambda: torch.nn.LSTM(4, 8), _with_names(lambda names: names.append("weight_ih_l1"))
        ),
        "LSTM._flat_weights_names",
        "5 names for the 4 weights",
    ),
    "lstm weight names swapped": (
        lambda: _rnn_with(
            lambda: torch.nn.LSTM(4, 8),
            _with_names(lambda names: names.__setitem__(slice(2, 4), ["bias_hh_l0", "bias_ih_l0"])),
        ),
        "LSTM._flat_weights_names[2]",
        "'bias_hh_l0'",
    ),
    "lstm num_layers beyond its weights": (
        lambda: _rnn_with(lambda: torch.nn.LSTM(4, 8), lambda m: setattr(m, "num_layers", 3)),
        "LSTM._flat_weights_names",
        "3 layer(s)",
    ),
    "lstm flat weight other than its parameter": (
        lambda: _rnn_with(
            lambda: torch.nn.LSTM(4, 8), lambda m: m._flat_weights.__setitem__(1, torch.zeros(32, 2))
        ),
        "LSTM._flat_weights[1]",
        "shape (32, 2)",
    ),
    # forward builds _flat_weights again from getattr, which finds the instance dict first.
    "lstm weight shadowed in the instance dict": (
        lambda: _rnn_with(
            lambda: torch.nn.LSTM(4, 8), lambda m: m.__dict__.__setitem__("weight_hh_l0", torch.zeros(32, 2))
        ),
        "LSTM.weight_hh_l0",
        "shape (32, 2)",
    ),
    # LSTM.forward calls the LSTM kernel whatever the mode: four gates over GRU's three.
    "gru weights run as an lstm": (
        lambda: _rnn_with(lambda: torch.nn.GRU(4, 8), _as_class(torch.nn.LSTM)),
        "LSTM.mode",
        "'GRU'",
    ),
    "rnn num_layers zero": (
        lambda: _rnn_with(lambda: torch.nn.RNN(4, 8), lambda m: setattr(m, "num_layers", 0)),
        "RNN.num_layers",
        "0 is not an int of at least 1",
    ),
    "lstm batch_first not a bool": (
        lambda: _rnn_with(lambda: torch.nn.LSTM(4, 8), lambda m: setattr(m, "batch_first", 1)),
        "LSTM.batch_first",
        "1 is not a bool",
    ),
}


def _save_rnn(module: Any, loader: str, path: Path) -> Callable[[], Any]:
    """Writes ``module`` as ``loader`` reads it; returns the load."""
    if loader == "torch.load":
        torch.save(module, path)
        return lambda: torch.load(path, weights_only=False)
    data = pickle.dumps(module, protocol=4)
    return lambda: pickle.loads(data)


@pytest.mark.parametrize("loader", ["torch.load", "pickle.loads"])
@pytest.mark.parametrize("case", sorted(RNN_BROKEN))
def test_broken_rnn_modules_are_refused_naming_the_field(case: str, loader: str, tmp_path: Path) -> None:
    make, field, detail = RNN_BROKEN[case]
    load = _save_rnn(make(), loader, tmp_path / "model.pt")
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            load()
    (violation,) = info.value.violations
    assert violation.kind == "native-state"
    assert f"torch.nn.modules.rnn.{field}:" in violation.message and detail in violation.message, (
        violation.message
    )


def test_a_users_subclass_of_an_rnn_is_validated(tmp_path: Path) -> None:
    """An RNN of a user's class (allowed by ``also_allow``, in a module the walk does not know)
    makes the load walked all the same, and is checked as the RNN it derives from."""
    broken = _rnn_with(lambda: _UserLSTM(4, 8), lambda m: setattr(m, "hidden_size", 64))
    for loader in ("torch.load", "pickle.loads"):
        load = _save_rnn(broken, loader, tmp_path / "model.pt")
        with picklefence.safe_ml_environment(also_allow=[f"{__name__}._UserLSTM"]):
            with pytest.raises(UnsafeFileError, match=r"_UserLSTM\.weight_ih_l0: shape \(32, 4\)"):
                load()


class _NestedTorchFile:
    """Pickles as ``torch.storage._load_from_bytes(data)``: a torch file inside the pickle."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> Any:
        import torch.storage

        return (torch.storage._load_from_bytes, (self.data,))


def test_an_rnn_from_a_nested_torch_file_is_validated(tmp_path: Path) -> None:
    """The outer pickle imports no RNN class: the nested torch file's own guarded load
    imports it and checks what it made."""
    broken = _rnn_with(lambda: torch.nn.GRU(4, 8), lambda m: setattr(m, "hidden_size", 64))
    inner = io.BytesIO()
    torch.save(broken, inner)
    outer = {"model": _NestedTorchFile(inner.getvalue())}
    for loader in ("torch.load", "pickle.loads"):
        load = _save_rnn(outer, loader, tmp_path / "outer.pt")
        with picklefence.safe_ml_environment():
            with pytest.raises(UnsafeFileError, match=r"GRU\.weight_ih_l0: shape \(24, 4\)"):
                load()


def test_unprotected_an_lstm_with_hidden_size_beyond_its_weights_reads_past_them(tmp_path: Path) -> None:
    """The gadget is real: unprotected, the CPU oneDNN LSTM computes 64 hidden units from weights
    made for 8 (a quarter of the first weight's rows and a 32nd of the second's exist: the rest
    is read from past their buffers, NaN or heap values), or the process dies."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("the oneDNN LSTM is not built in")
    path = tmp_path / "lstm.pt"
    torch.save(
        _rnn_with(lambda: torch.nn.LSTM(4, 8, batch_first=True), lambda m: setattr(m, "hidden_size", 64)),
        path,
    )
    code = (
        "import sys, torch\n"
        "module = torch.load(sys.argv[1], weights_only=False)\n"
        "with torch.no_grad():\n"
        "    out, _ = module(torch.ones(1, 3, 4))\n"
        "print(out.shape[-1], int(out[..., 8:].isnan().sum()))\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
    assert run.returncode < 0 or run.stdout.split()[:1] == [b"64"], (
        run.returncode,
        run.stdout[-300:],
        run.stderr[-300:],
    )


def _intact_rnns() -> Dict[str, Any]:
    torch.manual_seed(0)
    modules = {
        "lstm": torch.nn.LSTM(4, 8, num_layers=2, bidirectional=True, batch_first=True),
        "lstm projection": torch.nn.LSTM(4, 8, num_layers=2, proj_size=3),
        "lstm projection no bias": torch.nn.LSTM(4, 8, bias=False, proj_size=3, bidirectional=True),
        "gru": torch.nn.GRU(4, 6, num_layers=3, dropout=0.25, batch_first=True),
        "rnn relu": torch.nn.RNN(4, 5, nonlinearity="relu", bidirectional=True, bias=False),
        "rnn tanh": torch.nn.RNN(4, 5, num_layers=2),
        "double": torch.nn.GRU(4, 6, bidirectional=True).to(torch.float64),
        "sequential": torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LSTM(4, 8)),
        "user model": _UserRNNModel(),
        "user lstm": _UserLSTM(4, 8, num_layers=2),
    }
    for module in modules.values():
        module.eval()
    return modules


def _tensors(value: Any) -> List[Any]:
    """The tensors of an RNN's output (output, hidden state or an LSTM's pair), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for item in value for t in _tensors(item)]


def _rnn_outputs(modules: Dict[str, Any]) -> Dict[str, List[Any]]:
    x = torch.linspace(-1, 1, 24).reshape(2, 3, 4)
    runs = {key: lambda module, x=x: module(x) for key in modules}
    runs["double"] = lambda module: module(x.double())
    runs["sequential"] = lambda module: module[1](module[0](x))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "LSTM with projections is not supported with oneDNN")
        return {key: _tensors(run(modules[key])) for key, run in runs.items()}


def test_intact_rnn_modules_load_and_run_unchanged(tmp_path: Path) -> None:
    """Bidirectional, stacked, projected, bias-free, batch-first RNNs of every mode, one in
    float64, one in a Sequential, one in a user's model and one of a user's LSTM class: each
    loads under the guard and gives the same outputs and hidden states."""
    modules = _intact_rnns()
    expected = _rnn_outputs(modules)
    also_allow = [f"{__name__}._UserRNNModel", f"{__name__}._UserLSTM"]
    for loader in ("torch.load", "pickle.loads"):
        load = _save_rnn(modules, loader, tmp_path / "models.pt")
        with picklefence.safe_ml_environment(also_allow=also_allow):
            got = _rnn_outputs(load())
        for key, tensors in expected.items():
            assert len(got[key]) == len(tensors) > 1 or key == "user model", (loader, key)
            assert all(torch.equal(a, b) for a, b in zip(got[key], tensors)), (loader, key)


def test_loads_of_modules_without_an_rnn_are_not_walked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from picklefence import _native_state

    walked: List[Any] = []
    monkeypatch.setattr(_native_state, "_walk", lambda root, classes, seen=None: walked.append(root) or {})
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.LayerNorm(4)), path)
    with picklefence.safe_ml_environment():
        torch.load(path, weights_only=False)
        assert not walked
        torch.save(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.GRU(4, 4)), path)
        torch.load(path, weights_only=False)
    assert walked


class _UserLSTM(torch.nn.LSTM):
    """A user's LSTM class, in a module the walk does not know."""


class _UserRNNModel(torch.nn.Module):
    """A user's model holding an LSTM."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x: Any) -> Any:
        return self.head(self.rnn(x)[0])


# --------------------------------------------------------------------------------------------
# torch weight normalization: a WeightNorm forward pre-hook computes its module's weight with
# torch._weight_norm, whose fused CPU kernel writes one norm per slice of <name>_v into a buffer
# of <name>_g's size.


def _weight_normed(module: Any, dim: Any = 0, name: str = "weight", norms: Any = None) -> Any:
    """``module`` with a WeightNorm hook on ``name``; ``norms`` replaces its ``<name>_g``."""
    from torch.nn.utils import weight_norm

    torch.manual_seed(0)
    module = weight_norm(module, name=name, dim=dim)
    if norms is not None:
        setattr(module, f"{name}_g", torch.nn.Parameter(norms))
    return module


WEIGHT_NORM_BROKEN: Dict[str, Tuple[Callable[[], Any], str]] = {
    "one norm for 64 rows": (
        lambda: _weight_normed(torch.nn.Linear(16, 64), norms=torch.ones(1, 1)),
        "Linear.weight_g: 1 norms for the 64 slices",
    ),
    "norms for the rows over the last dim": (
        lambda: _weight_normed(torch.nn.Linear(16, 64), dim=1, norms=torch.ones(64, 1)),
        "Linear.weight_g: 64 norms for the 16 slices",
    ),
    "norms of a conv short": (
        lambda: _weight_normed(torch.nn.Conv1d(3, 8, 3), norms=torch.ones(2, 1, 1)),
        "Conv1d.weight_g: 2 norms for the 8 slices",
    ),
    "dim beyond the weight": (
        lambda: (lambda m: (setattr(m._forward_pre_hooks[next(iter(m._forward_pre_hooks))], "dim", 5), m)[1])(
            _weight_normed(torch.nn.Linear(16, 8))
        ),
        "Linear._forward_pre_hooks: a WeightNorm over dim 5",
    ),
    "a sequential's second layer": (
        lambda: torch.nn.Sequential(
            torch.nn.Linear(4, 16), _weight_normed(torch.nn.Linear(16, 64), norms=torch.ones(4, 1))
        ),
        "Linear.weight_g: 4 norms for the 64 slices",
    ),
    "an lstm's weight": (
        lambda: _weight_normed(torch.nn.LSTM(4, 8), name="weight_hh_l0", norms=torch.ones(2, 1)),
        "LSTM.weight_hh_l0_g: 2 norms for the 32 slices",
    ),
}


@pytest.mark.parametrize("loader", ["torch.load", "pickle.loads", "joblib.load"])
@pytest.mark.parametrize("case", sorted(WEIGHT_NORM_BROKEN))
def test_weight_norms_that_do_not_fit_their_weight_are_refused(
    case: str, loader: str, tmp_path: Path
) -> None:
    make, message = WEIGHT_NORM_BROKEN[case]
    path = tmp_path / "model.pt"
    load = (
        _save_rnn(make(), loader, path) if loader != "joblib.load" else functools.partial(joblib.load, path)
    )
    if loader == "joblib.load":
        joblib.dump({"model": make()}, path)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            load()
    (violation,) = info.value.violations
    assert violation.kind == "native-state" and message in violation.message, violation.message


def test_unprotected_one_weight_norm_for_many_rows_corrupts_the_heap(tmp_path: Path) -> None:
    """The gadget is real: unprotected, a forward through a Linear of 4096 rows whose weight_g
    holds one norm writes 4095 norms past that one-value buffer; glibc aborts the process."""
    path = tmp_path / "linear.pt"
    torch.save(_weight_normed(torch.nn.Linear(16, 4096), norms=torch.ones(1, 1)), path)
    code = (
        "import sys, torch\n"
        "module = torch.load(sys.argv[1], weights_only=False)\n"
        "with torch.no_grad():\n"
        "    for _ in range(4):\n"
        "        module(torch.ones(2, 16))\n"
        "print('survived')\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
    assert run.returncode < 0, (run.returncode, run.stdout[-300:], run.stderr[-300:])


def test_intact_weight_normed_modules_load_unchanged(tmp_path: Path) -> None:
    """Weight norm over every dim WeightNorm.apply takes (0, the last, None: the whole weight,
    and a negative one), of linear, conv, transposed conv and RNN weights, and a bias."""
    from torch.nn.utils import weight_norm

    torch.manual_seed(0)
    modules = {
        "linear rows": weight_norm(torch.nn.Linear(16, 8)),
        "linear columns": weight_norm(torch.nn.Linear(16, 8), dim=1),
        "linear whole": weight_norm(torch.nn.Linear(16, 8), dim=None),
        "linear negative": weight_norm(torch.nn.Linear(16, 8), dim=-2),
        "conv": weight_norm(torch.nn.Conv1d(16, 4, 3, padding=1)),
        "transposed conv": weight_norm(torch.nn.ConvTranspose1d(16, 4, 3), dim=1),
        "bias": weight_norm(torch.nn.Linear(16, 8), name="bias"),
        "gru": weight_norm(torch.nn.GRU(16, 8), name="weight_hh_l0"),
        "sequential": torch.nn.Sequential(weight_norm(torch.nn.Linear(16, 300)), torch.nn.Linear(300, 2)),
    }
    x = torch.linspace(-1, 1, 32).reshape(2, 16)
    inputs = {key: x for key in modules}
    inputs["conv"] = inputs["transposed conv"] = x.reshape(1, 16, 2)
    inputs["gru"] = x.reshape(1, 2, 16)

    def outputs(loaded: Dict[str, Any]) -> Dict[str, List[Any]]:
        with torch.no_grad():
            return {key: _tensors(module(inputs[key])) for key, module in loaded.items()}

    expected = outputs(modules)
    for loader in ("torch.load", "pickle.loads"):
        load = _save_rnn(modules, loader, tmp_path / "models.pt")
        with picklefence.safe_ml_environment():
            got = outputs(load())
        for key, tensors in expected.items():
            assert all(torch.equal(a, b) for a, b in zip(got[key], tensors)), key


def test_a_weight_norm_hook_found_through_a_holder_is_checked() -> None:
    """The way around a check of the instance dict's hooks: forward finds _forward_pre_hooks
    through Module.__getattr__ (in _modules) when the instance dict has none. Module.__setstate__
    refuses such a state today; the check reads the hooks as forward finds them all the same."""
    from picklefence import _native_state

    module = _weight_normed(torch.nn.Linear(16, 64), norms=torch.ones(2, 1))
    hooks = module.__dict__.pop("_forward_pre_hooks")
    module.__dict__["_modules"]["_forward_pre_hooks"] = hooks
    assert module._forward_pre_hooks is hooks
    with pytest.raises(_native_state.NativeStateError, match=r"weight_g: 2 norms for the 64 slices"):
        _native_state._check_weight_norm(module)


def _intact_of_the_scanned_shapes(size: int) -> Dict[str, Any]:
    """Intact objects of the classes whose shapes the scanner reads in the file since it checks
    series lengths, boosting stages, one-hot category order, SGD weights, multi-label columns,
    HDBSCAN's linkage tree and NumPy bit generators' positions."""
    rng = np.random.RandomState(size)
    x = rng.rand(size, 3)
    labels = np.arange(size) % 3
    words = np.array([["b", "a", "zz", "é"][i % 4] for i in range(size)], dtype=object).reshape(-1, 1)
    with_missing = words.copy()
    with_missing[::3, 0] = None
    numbers = x.round(1)
    numbers[::4, 0] = np.nan
    return {
        "series": pd.Series(rng.rand(size)),
        "series of labels": pd.Series(np.arange(size), index=[f"r{i}" for i in range(size)]),
        "series of categories": pd.Series(pd.Categorical(labels)),
        "series of intervals": pd.Series(pd.arrays.IntervalArray.from_breaks(np.arange(size + 1.0))),
        "sparse series": pd.Series(pd.arrays.SparseArray(np.where(x[:, 0] > 0.5, 1.0, 0.0))),
        "series of nullable ints": pd.Series(pd.array(list(range(size)), dtype="Int64")),
        "frame": pd.DataFrame(
            {
                "f": x[:, 0],
                "i": labels,
                "c": pd.Categorical(labels),
                "t": pd.date_range("2020", periods=size, tz="UTC"),
                "s": pd.arrays.SparseArray(np.zeros(size)),
            }
        ),
        "frame on a MultiIndex": pd.DataFrame(
            {"a": labels}, index=pd.MultiIndex.from_arrays([np.arange(size), labels])
        ),
        "boosting binary": GradientBoostingClassifier(n_estimators=2, max_depth=1).fit(x, labels % 2),
        "boosting multiclass": GradientBoostingClassifier(n_estimators=2, max_depth=1).fit(x, labels),
        "boosting regressor": GradientBoostingRegressor(n_estimators=2, loss="huber").fit(x, x[:, 0]),
        "boosting from zero": GradientBoostingClassifier(n_estimators=2, init="zero").fit(x, labels),
        "one hot numbers with nan": OneHotEncoder().fit(numbers),
        "one hot words": OneHotEncoder(drop="first").fit(words),
        "one hot words with None": OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=2).fit(
            with_missing
        ),
        "one hot ints": OneHotEncoder(sparse_output=False).fit(labels.reshape(-1, 1) - 1),
        "sgd": _sgd(features=3),
        "sgd averaged": _sgd("regressor", average=True),
        "sgd one-class": _sgd("one_class"),
        "multilabel": _mlb(),
        "multilabel of ints": _fitted_binarizer([[int(i), int(i) + 1] for i in labels]),
        "hdbscan": _hdbscan(lambda tree: None),
        "random state": _random_state(size % 625),
        "random state over philox": np.random.RandomState(_philox(size % 5)),
        "generator": _mt19937_generator(624),
        "seeded generator": np.random.Generator(np.random.MT19937(size)),
    }


def _fitted_binarizer(labels: List[List[Any]]) -> Any:
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer().fit(labels)
    binarizer.transform(labels[:1])  # makes _cached_dict
    return binarizer


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("size", [3, 30, 300])
def test_intact_objects_of_the_newly_scanned_shapes_scan_clean(
    size: int, writer: str, tmp_path: Path
) -> None:
    """No false positives: series, frames, gradient boosting models and one-hot encoders as
    pandas and scikit-learn make them scan clean, their notes saying the instances are intact."""
    path = tmp_path / "model.bin"
    WRITERS[writer](_intact_of_the_scanned_shapes(size), path)
    report = picklefence.scan_file(path)
    violations = [f.message for f in report.findings if f.kind == "state-violation"]
    assert report.is_safe and not violations, str(report)
    checked = (
        "BlockManager",
        "GradientBoosting",
        "OneHotEncoder",
        "linear_model",
        "MultiLabelBinarizer",
        "HDBSCAN",
        "numpy.random",
    )
    notes = [
        f.message
        for f in report.findings
        if f.kind == "native-state" and any(c in f.message for c in checked)
    ]
    assert notes and all("0 broken: intact" in n for n in notes), notes

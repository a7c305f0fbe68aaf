"""Benign sample objects for tests/test_benign_sweep.py, and a comparison that knows them.

Everything here is deterministic (fixed seeds, tiny data) and built lazily: the registries map a
sample id to a zero-argument builder, so collecting the tests costs no fitting or tensor work.
The scikit-learn cases are enumerated from ``sklearn.utils.all_estimators()`` and the instances
scikit-learn's own common tests use; each fitted estimator is cached for the serialisations.
"""

from __future__ import annotations

import argparse
import array
import collections
import dataclasses
import datetime
import decimal
import fractions
import functools
import math
import random
import types
import uuid
import warnings
import zoneinfo
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

Builder = Callable[[], Any]

# --------------------------------------------------------------------------------------------
# Comparison


def assert_same(a: Any, b: Any, where: str = "obj") -> None:
    """Asserts that ``b`` (the loaded object) is equivalent to ``a`` (the original)."""
    # Lazy imports: torch is heavy and only some families need it.
    import torch

    if isinstance(a, torch.Tensor):
        _assert_same_tensor(a, b, where)
        return
    if isinstance(a, torch.nn.Module):
        assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
        assert_same(a.state_dict(), b.state_dict(), f"{where}.state_dict()")
        assert a.training == b.training, f"{where}: training flag differs"
        return
    if isinstance(a, (torch.Size, torch.device, torch.dtype)):
        assert type(b) is type(a) and a == b, f"{where}: {b!r} != {a!r}"
        return
    if a is pd.NaT or a is pd.NA:
        assert b is a, f"{where}: {b!r} is not {a!r}"
        return
    if isinstance(a, pd.DataFrame):
        assert isinstance(b, pd.DataFrame), f"{where}: {type(b)}"
        pd.testing.assert_frame_equal(a, b, check_exact=True, check_freq=True, check_flags=True)
        assert a.attrs == b.attrs, f"{where}: attrs differ"
        _assert_same_tz_columns(a.dtypes.tolist(), b.dtypes.tolist(), where)
        return
    if isinstance(a, pd.Series):
        assert isinstance(b, pd.Series), f"{where}: {type(b)}"
        pd.testing.assert_series_equal(a, b, check_exact=True, check_freq=True)
        _assert_same_tz_columns([a.dtype], [b.dtype], where)
        return
    if isinstance(a, pd.Index):
        assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
        pd.testing.assert_index_equal(a, b, exact=True, check_exact=True)
        if isinstance(a, pd.DatetimeIndex):
            assert a.freq == b.freq, f"{where}: freq {b.freq} != {a.freq}"
            _assert_same_tz(a.tz, b.tz, where)
        return
    if isinstance(a, pd.api.extensions.ExtensionArray):
        assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
        pd.testing.assert_extension_array_equal(a, b)
        return
    if isinstance(a, (pd.Timestamp, datetime.datetime, datetime.time)):
        assert type(b) is type(a) and a == b, f"{where}: {b!r} != {a!r}"
        _assert_same_tz(a.tzinfo, b.tzinfo, where)
        return
    if isinstance(a, datetime.tzinfo):
        _assert_same_tz(a, b, where)
        return
    if isinstance(a, pd.DateOffset) or type(a).__module__.startswith("pandas._libs.tslibs.offsets"):
        assert type(b) is type(a) and a == b, f"{where}: {b!r} != {a!r}"
        assert getattr(a, "n", None) == getattr(b, "n", None), f"{where}: n differs"
        return
    if sp.issparse(a):
        assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
        assert a.format == b.format and a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a.toarray(), b.toarray(), err_msg=where)
        return
    if isinstance(a, np.ma.MaskedArray):
        assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
        np.testing.assert_array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b), err_msg=where)
        assert a.fill_value == b.fill_value, f"{where}: fill_value differs"
        assert_same(a.data, b.data, f"{where}.data")
        return
    if isinstance(a, np.ndarray):
        assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {b.dtype}{b.shape} != {a.dtype}{a.shape}"
        assert a.flags.f_contiguous == b.flags.f_contiguous, f"{where}: memory order differs"
        if a.dtype.hasobject:
            for i, (x, y) in enumerate(zip(a.ravel(order="K").tolist(), b.ravel(order="K").tolist())):
                assert_same(x, y, f"{where}[{i}]")
        else:
            np.testing.assert_array_equal(a, b, err_msg=where, strict=True)
        return
    if isinstance(a, np.generic):
        assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
        return
    if isinstance(a, np.dtype):
        assert a == b and type(a) is type(b), f"{where}: {b!r} != {a!r}"
        return
    if isinstance(a, np.random.Generator):
        assert type(b) is type(a) and type(b.bit_generator) is type(a.bit_generator), where
        assert_same(a.bit_generator.state, b.bit_generator.state, f"{where}.state")
        assert_same(a.random(3), b.random(3), f"{where}.random(3)")
        return
    if isinstance(a, np.random.RandomState):
        assert type(b) is type(a), where
        assert_same(a.get_state(), b.get_state(), f"{where}.get_state()")
        return
    if isinstance(a, np.random.BitGenerator):
        assert type(b) is type(a), where
        assert_same(a.state, b.state, f"{where}.state")
        return
    if isinstance(a, np.random.SeedSequence):
        assert type(b) is type(a), where
        assert (a.entropy, a.spawn_key, a.pool_size, a.n_children_spawned) == (
            b.entropy,
            b.spawn_key,
            b.pool_size,
            b.n_children_spawned,
        ), where
        assert_same(a.generate_state(4), b.generate_state(4), f"{where}.generate_state")
        return
    if isinstance(a, (dict, collections.OrderedDict)):
        assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
        assert list(a.keys()) == list(b.keys()), f"{where}: keys {list(b)} != {list(a)}"
        if isinstance(a, collections.defaultdict):
            assert a.default_factory is b.default_factory, f"{where}: default_factory differs"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
        return
    if isinstance(a, (list, tuple, collections.deque)):
        assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
        assert len(a) == len(b), f"{where}: len {len(b)} != {len(a)}"
        if isinstance(a, collections.deque):
            assert a.maxlen == b.maxlen, f"{where}: maxlen differs"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
        return
    if isinstance(a, (types.SimpleNamespace, argparse.Namespace)):
        assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
        assert_same(vars(a), vars(b), where)
        return
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
        return
    if isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), f"{where}: {b!r} is not nan"
        return
    if isinstance(a, decimal.Decimal) and a.is_nan():
        assert isinstance(b, decimal.Decimal) and b.is_nan(), f"{where}: {b!r}"
        return
    if isinstance(a, array.array):
        assert type(b) is type(a) and a.typecode == b.typecode and a == b, f"{where}: {b!r} != {a!r}"
        return
    assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
    assert a == b, f"{where}: {b!r} != {a!r}"


def _tz_key(tz: Any) -> Tuple[str, str]:
    return (type(tz).__module__ + "." + type(tz).__qualname__, str(tz))


def _assert_same_tz(a: Any, b: Any, where: str) -> None:
    if a is None:
        assert b is None, f"{where}: tz {b!r} != None"
        return
    assert _tz_key(a) == _tz_key(b), f"{where}: tz {_tz_key(b)} != {_tz_key(a)}"
    moment = datetime.datetime(2024, 7, 1, 12)
    assert a.utcoffset(moment) == b.utcoffset(moment), f"{where}: utcoffset differs"


def _assert_same_tz_columns(a: List[Any], b: List[Any], where: str) -> None:
    for x, y in zip(a, b):
        if isinstance(x, pd.DatetimeTZDtype):
            _assert_same_tz(x.tz, y.tz, where)


def _assert_same_tensor(a: Any, b: Any, where: str) -> None:
    import torch

    assert type(b) is type(a), f"{where}: {type(b)} is not {type(a)}"
    assert (a.dtype, a.shape, a.layout, a.requires_grad) == (b.dtype, b.shape, b.layout, b.requires_grad), (
        f"{where}: {b.dtype} {tuple(b.shape)} {b.layout} rg={b.requires_grad} != "
        f"{a.dtype} {tuple(a.shape)} {a.layout} rg={a.requires_grad}"
    )
    if a.is_quantized:
        assert a.qscheme() == b.qscheme(), where
        assert torch.equal(a.int_repr(), b.int_repr()), where
        if a.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            assert (a.q_scale(), a.q_zero_point()) == (b.q_scale(), b.q_zero_point()), where
        else:
            assert torch.equal(a.q_per_channel_scales(), b.q_per_channel_scales()), where
            assert torch.equal(a.q_per_channel_zero_points(), b.q_per_channel_zero_points()), where
        return
    if a.layout != torch.strided:
        assert torch.equal(a.to_dense(), b.to_dense()), where
        return
    assert a.stride() == b.stride() and a.storage_offset() == b.storage_offset(), (
        f"{where}: stride/offset {b.stride()}/{b.storage_offset()} != {a.stride()}/{a.storage_offset()}"
    )
    try:
        same = torch.equal(a.detach(), b.detach())
    except (RuntimeError, NotImplementedError):  # float4, bits*, complex32: compare the bytes
        same = torch.equal(
            a.detach().contiguous().view(torch.uint8), b.detach().contiguous().view(torch.uint8)
        )
    assert same, f"{where}: values differ"


# --------------------------------------------------------------------------------------------
# scikit-learn: cases from all_estimators()

# Data: N_SAMPLES rows, N_FEATURES features in [0, 1) (non-negative for the estimators that need
# it), three balanced classes.
N_SAMPLES = 45
N_FEATURES = 5


def _sk_data() -> Dict[str, Any]:
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(N_SAMPLES, N_FEATURES))
    y3 = np.arange(N_SAMPLES) % 3
    X[:, 0] += y3 * 0.7  # learnable
    y2 = (y3 == 0).astype(np.int64)
    yr = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1 * rng.normal(size=N_SAMPLES)
    Xs = X.copy()
    Xs[Xs < 0.4] = 0.0
    Xs[:, 0] = X[:, 0] + 0.05  # no empty row
    return {
        "X": X,
        "X_sparse": sp.csr_matrix(Xs),
        "y2": y2,
        "y3": y3.astype(np.int64),
        "yr": yr,
        "Y_multiclass": np.column_stack([y2, y3]),
        "Y_multilabel": np.column_stack([y2, (X[:, 1] > 0.5).astype(np.int64)]),
        "Y_reg": np.column_stack([yr, X[:, 2] * 2 - X[:, 3]]),
    }


SK_DATA = _sk_data()

TEXTS = [
    "the cat sat on the mat",
    "the dog ran in the park",
    "a cat and a dog",
    "machine learning models are pickled",
    "never unpickle untrusted files",
    "the quick brown fox jumps over the lazy dog",
] * 5
TEXT_Y = np.array([0, 1, 0, 2, 2, 1] * 5)


@dataclasses.dataclass(frozen=True)
class SkCase:
    """One fitted estimator: an instance of ``all_estimators()`` (or an extra) and a target kind."""

    id: str
    name: str
    index: int
    target: str


def _sk_instances() -> Dict[str, List[Any]]:
    from sklearn.utils import all_estimators
    from sklearn.utils._test_common.instance_generator import _construct_instances

    out: Dict[str, List[Any]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls in all_estimators():
            if name in SK_NOT_CONSTRUCTED:
                continue
            out[name] = list(_construct_instances(cls))
    return out


# Classes of all_estimators() that _construct_instances cannot build on its own; built in
# SK_EXTRAS instead (FrozenEstimator wraps an already fitted estimator).
SK_NOT_CONSTRUCTED = {"FrozenEstimator"}


def _instance_label(name: str, instances: List[Any], index: int) -> str:
    """``Name`` or, for several instances, ``Name[param=value]`` with the first parameter that
    tells this instance from another one."""
    if len(instances) == 1:
        return name
    other = instances[1 if index == 0 else 0].get_params(deep=False)
    for key, value in instances[index].get_params(deep=False).items():
        if repr(other.get(key)) != repr(value):
            text = type(value).__name__ if hasattr(value, "get_params") else repr(value)
            steps = getattr(value, "steps", value if key == "steps" else None)
            if steps is not None:
                text = "-".join(type(s).__name__ for _, s in steps)
            return f"{name}[{key}={text}]"
    return f"{name}[{index}]"


def _sk_targets(est: Any) -> List[str]:
    from sklearn.base import is_classifier, is_regressor
    from sklearn.utils import get_tags

    tags = get_tags(est)
    it, tt = tags.input_tags, tags.target_tags
    if tt.one_d_labels or tt.two_d_labels:
        return ["labels"]
    if it.string and not it.two_d_array:
        return ["text"]
    if it.dict and not it.two_d_array:
        return ["dicts"]
    if it.three_d_array and not it.two_d_array:
        return ["images"]
    sparse_ok = it.sparse and not it.pairwise and not it.categorical and not it.one_d_array
    out: List[str] = []
    if is_classifier(est):
        if tt.single_output:
            out.append("binary")
            if tags.classifier_tags is None or tags.classifier_tags.multi_class:
                out.append("multiclass")
        if tt.multi_output:
            out.append("multioutput")
    elif is_regressor(est):
        if tt.single_output:
            out.append("regression")
        if tt.multi_output:
            out.append("multioutput")
    else:
        out.append("unsupervised")
    if sparse_ok:
        out.append("sparse")
    return out


# Extra estimators in real-world configurations: "extra:name" -> (targets, build(target)), where
# build returns (estimator, X_fit, y_fit, X_eval).
SK_EXTRAS: Dict[str, Tuple[List[str], Callable[[str], Tuple[Any, Any, Any, Any]]]] = {}


def _extra(*targets: str) -> Callable[[Callable[[str], Tuple[Any, Any, Any, Any]]], Any]:
    def register(fn: Callable[[str], Tuple[Any, Any, Any, Any]]) -> Any:
        SK_EXTRAS["extra:" + fn.__name__.lstrip("_")] = (list(targets), fn)
        return fn

    return register


def _frame(n: int = N_SAMPLES) -> pd.DataFrame:
    rng = np.random.RandomState(1)
    colours = np.array(["red", "green", "blue", "black"])
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.uniform(size=n),
            "colour": colours[np.arange(n) % 4],
            "size": np.array(["S", "M", "L"])[np.arange(n) % 3],
        }
    )


@_extra("multiclass")
def _pipeline_tfidf_logreg(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    est = Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), stop_words="english", sublinear_tf=True)),
            ("clf", LogisticRegression(max_iter=200)),
        ]
    )
    return est, TEXTS, TEXT_Y, TEXTS


@_extra("text")
def _count_vectorizer_char_wb(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(analyzer="char_wb", ngram_range=(2, 3), max_features=50), TEXTS, None, TEXTS


@_extra("text")
def _tfidf_vectorizer_vocabulary(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    est = TfidfVectorizer(vocabulary=["cat", "dog", "fox"], token_pattern=r"(?u)\b\w+\b", dtype=np.float32)
    return est, TEXTS, None, TEXTS


@_extra("multiclass")
def _column_transformer_frame(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), make_column_selector(dtype_include=np.number)),
            ("colour", OneHotEncoder(handle_unknown="ignore"), ["colour"]),
            ("size", OrdinalEncoder(categories=[["S", "M", "L"]]), ["size"]),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    X = _frame()
    return Pipeline([("pre", pre), ("clf", LogisticRegression())]), X, SK_DATA["y3"], X


@_extra("multiclass")
def _grid_search_make_scorer(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.metrics import fbeta_score, make_scorer
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    scorer = make_scorer(fbeta_score, beta=2, average="macro")
    est = GridSearchCV(SVC(), {"C": [0.1, 1.0], "kernel": ["rbf", "linear"]}, scoring=scorer, cv=3)
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("multiclass")
def _grid_search_multimetric(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier

    est = GridSearchCV(
        KNeighborsClassifier(),
        {"n_neighbors": [1, 3, 5], "weights": ["uniform", "distance"]},
        scoring={"acc": "accuracy", "f1": "f1_macro", "nll": "neg_log_loss"},
        refit="acc",
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        return_train_score=True,
    )
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


# Not a benign-sweep case: scipy.stats frozen distributions pickle numpy.vectorize objects over
# bound methods (getattr of arbitrary attributes), which no policy can verify; the refusal is
# tested in test_benign_sweep.py::test_scipy_distribution_search_is_refused and documented.
def randomized_search_scipy_distributions(target: str) -> Tuple[Any, Any, Any, Any]:
    from scipy.stats import loguniform, randint
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RandomizedSearchCV

    est = RandomizedSearchCV(
        LogisticRegression(),
        {"C": loguniform(1e-2, 1e2), "max_iter": randint(50, 200)},
        n_iter=3,
        cv=3,
        random_state=0,
    )
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("multiclass")
def _stacking_classifier(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.ensemble import RandomForestClassifier, StackingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    est = StackingClassifier(
        [
            ("rf", RandomForestClassifier(n_estimators=5, random_state=0)),
            ("svc", SVC(probability=True, random_state=0)),
        ],
        final_estimator=LogisticRegression(),
        cv=3,
    )
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("multiclass")
def _voting_classifier_soft(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.ensemble import VotingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.tree import DecisionTreeClassifier

    est = VotingClassifier(
        [
            ("nb", GaussianNB()),
            ("lr", LogisticRegression()),
            ("dt", DecisionTreeClassifier(max_depth=3, random_state=0)),
        ],
        voting="soft",
        weights=[1, 2, 1],
    )
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("multiclass")
def _calibrated_isotonic(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    est = CalibratedClassifierCV(LinearSVC(random_state=0), method="isotonic", cv=3)
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("binary")
def _calibrated_sigmoid_ensemble_false(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.naive_bayes import GaussianNB

    est = CalibratedClassifierCV(GaussianNB(), method="sigmoid", cv=3, ensemble=False)
    return est, SK_DATA["X"], SK_DATA["y2"], SK_DATA["X"]


@_extra("multiclass")
def _self_training(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.semi_supervised import SelfTrainingClassifier
    from sklearn.svm import SVC

    y = SK_DATA["y3"].copy()
    y[::4] = -1
    est = SelfTrainingClassifier(SVC(probability=True, random_state=0), max_iter=3)
    return est, SK_DATA["X"], y, SK_DATA["X"]


@_extra("regression")
def _transformed_target_numpy_funcs(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import Ridge

    est = TransformedTargetRegressor(regressor=Ridge(), func=np.log1p, inverse_func=np.expm1)
    return est, SK_DATA["X"], np.abs(SK_DATA["yr"]), SK_DATA["X"]


@_extra("regression")
def _transformed_target_transformer(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import QuantileTransformer

    est = TransformedTargetRegressor(
        regressor=LinearRegression(),
        transformer=QuantileTransformer(n_quantiles=10, output_distribution="normal"),
    )
    return est, SK_DATA["X"], SK_DATA["yr"], SK_DATA["X"]


@_extra("unsupervised")
def _function_transformer_numpy(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.preprocessing import FunctionTransformer

    est = FunctionTransformer(np.log1p, inverse_func=np.expm1, validate=True, check_inverse=True)
    return est, SK_DATA["X"], None, SK_DATA["X"]


@_extra("unsupervised")
def _function_transformer_kw_args(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.preprocessing import FunctionTransformer

    est = FunctionTransformer(np.clip, kw_args={"a_min": 0.2, "a_max": 0.8}, feature_names_out="one-to-one")
    return est, SK_DATA["X"], None, SK_DATA["X"]


@_extra("multiclass")
def _knn_kd_tree(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.neighbors import KNeighborsClassifier

    est = KNeighborsClassifier(n_neighbors=3, algorithm="kd_tree", leaf_size=5)
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("multiclass")
def _knn_ball_tree_manhattan(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.neighbors import KNeighborsClassifier

    est = KNeighborsClassifier(n_neighbors=3, algorithm="ball_tree", metric="manhattan", weights="distance")
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("unsupervised")
def _kd_tree_standalone(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.neighbors import KDTree

    return KDTree(SK_DATA["X"], leaf_size=4), None, None, SK_DATA["X"]


@_extra("unsupervised")
def _ball_tree_standalone(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.neighbors import BallTree

    return BallTree(SK_DATA["X"], leaf_size=4, metric="chebyshev"), None, None, SK_DATA["X"]


@_extra("multiclass")
def _random_forest_n_jobs_2(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.ensemble import RandomForestClassifier

    est = RandomForestClassifier(n_estimators=10, n_jobs=2, random_state=0, oob_score=True)
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("multiclass")
def _hist_gradient_boosting_pandas_categorical(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = _frame()
    X["colour"] = X["colour"].astype("category")
    X["size"] = pd.Categorical(X["size"], categories=["S", "M", "L"], ordered=True)
    est = HistGradientBoostingClassifier(max_iter=10, categorical_features="from_dtype", random_state=0)
    return est, X, SK_DATA["y3"], X


@_extra("regression")
def _hist_gradient_boosting_regressor_categorical_mask(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.ensemble import HistGradientBoostingRegressor

    X = SK_DATA["X"].copy()
    X[:, 4] = np.arange(N_SAMPLES) % 4
    X[::7, 1] = np.nan
    est = HistGradientBoostingRegressor(
        max_iter=10, categorical_features=[False, False, False, False, True], loss="absolute_error"
    )
    return est, X, SK_DATA["yr"], X


@_extra("multiclass")
def _gradient_boosting_3_classes(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.ensemble import GradientBoostingClassifier

    est = GradientBoostingClassifier(n_estimators=10, random_state=0, subsample=0.8)
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("multiclass")
def _sgd_log_loss_early_stopping(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.linear_model import SGDClassifier

    est = SGDClassifier(loss="log_loss", early_stopping=True, validation_fraction=0.2, random_state=0)
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("binary")
def _sgd_modified_huber_averaged(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.linear_model import SGDClassifier

    est = SGDClassifier(loss="modified_huber", average=True, class_weight="balanced", random_state=0)
    return est, SK_DATA["X"], SK_DATA["y2"], SK_DATA["X"]


@_extra("multiclass")
def _mlp_classifier_adam(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.neural_network import MLPClassifier

    est = MLPClassifier(hidden_layer_sizes=(8, 4), max_iter=30, early_stopping=True, random_state=0)
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("regression")
def _mlp_regressor_lbfgs(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.neural_network import MLPRegressor

    est = MLPRegressor(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=50, random_state=0)
    return est, SK_DATA["X"], SK_DATA["yr"], SK_DATA["X"]


@_extra("unsupervised")
def _one_hot_encoder_strings(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.preprocessing import OneHotEncoder

    X = _frame()[["colour", "size"]].to_numpy(dtype=object)
    est = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=2, drop="if_binary")
    return est, X, None, X


@_extra("unsupervised")
def _one_hot_encoder_frame_dense(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.preprocessing import OneHotEncoder

    X = _frame()[["colour", "size"]]
    return OneHotEncoder(sparse_output=False, dtype=np.float32), X, None, X


@_extra("unsupervised")
def _ordinal_encoder_strings_unknown(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.preprocessing import OrdinalEncoder

    X = _frame()[["colour", "size"]].to_numpy(dtype=object)
    est = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2)
    return est, X, None, X


@_extra("multiclass")
def _target_encoder_strings(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.preprocessing import TargetEncoder

    X = _frame()[["colour", "size"]].to_numpy(dtype=object)
    return TargetEncoder(random_state=0), X, SK_DATA["y3"], X


@_extra("labels")
def _label_encoder_strings(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.preprocessing import LabelEncoder

    y = np.array(["cat", "dog", "bird", "cat", "fish"])
    return LabelEncoder(), None, y, y


@_extra("labels")
def _multilabel_binarizer_strings(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.preprocessing import MultiLabelBinarizer

    y = [("sci-fi", "thriller"), ("comedy",), ("comedy", "sci-fi")]
    return MultiLabelBinarizer(), None, y, y


@_extra("unsupervised")
def _simple_imputer_strings_most_frequent(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.impute import SimpleImputer

    X = _frame()[["colour", "size"]].to_numpy(dtype=object)
    X[::5, 0] = np.nan
    return SimpleImputer(strategy="most_frequent", add_indicator=True), X, None, X


@_extra("unsupervised")
def _knn_imputer_with_missing(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.impute import KNNImputer

    X = SK_DATA["X"].copy()
    X[::6, 2] = np.nan
    return KNNImputer(n_neighbors=3, add_indicator=True), X, None, X


@_extra("unsupervised")
def _iterative_imputer(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    X = SK_DATA["X"].copy()
    X[::6, 2] = np.nan
    return IterativeImputer(max_iter=3, random_state=0), X, None, X


@_extra("dicts")
def _dict_vectorizer_strings(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.feature_extraction import DictVectorizer

    X = [{"city": "Paris", "temp": 20.0}, {"city": "London", "temp": 12.5}, {"city": "Rome", "rain": 1}]
    return DictVectorizer(sparse=False), X, None, X


@_extra("binary")
def _frozen_estimator(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression

    inner = LogisticRegression().fit(SK_DATA["X"], SK_DATA["y2"])
    return FrozenEstimator(inner), SK_DATA["X"], SK_DATA["y2"], SK_DATA["X"]


@_extra("binary", "multiclass")
def _logistic_regression_string_labels_frame(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame(SK_DATA["X"], columns=[f"feature_{i}" for i in range(N_FEATURES)])
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)
    y = names[SK_DATA["y3"]] if target == "multiclass" else names[SK_DATA["y2"]]
    return LogisticRegression(class_weight="balanced"), X, y, X


@_extra("multiclass")
def _decision_tree_class_weight(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.tree import DecisionTreeClassifier

    est = DecisionTreeClassifier(max_depth=4, class_weight={0: 1.0, 1: 2.0, 2: 0.5}, random_state=0)
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("unsupervised")
def _standard_scaler_pandas_output(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.preprocessing import StandardScaler

    X = pd.DataFrame(SK_DATA["X"], columns=list("abcde"))
    return StandardScaler().set_output(transform="pandas"), X, None, X


@_extra("unsupervised")
def _feature_union_make_union(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.pipeline import make_union

    est = make_union(PCA(n_components=2, random_state=0), TruncatedSVD(n_components=2, random_state=0))
    return est, SK_DATA["X"], None, SK_DATA["X"]


@_extra("regression")
def _stacking_regressor_passthrough(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.ensemble import GradientBoostingRegressor, StackingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.svm import SVR

    est = StackingRegressor(
        [("svr", SVR()), ("gbr", GradientBoostingRegressor(n_estimators=5, random_state=0))],
        final_estimator=RidgeCV(),
        passthrough=True,
        cv=3,
    )
    return est, SK_DATA["X"], SK_DATA["yr"], SK_DATA["X"]


@_extra("multiclass")
def _ovr_one_vs_one_svc(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.multiclass import OneVsOneClassifier
    from sklearn.svm import SVC

    est = OneVsOneClassifier(SVC(kernel="poly", degree=2))
    return est, SK_DATA["X"], SK_DATA["y3"], SK_DATA["X"]


@_extra("regression")
def _gaussian_process_kernels(target: str) -> Tuple[Any, Any, Any, Any]:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = ConstantKernel(1.0) * RBF(length_scale=np.ones(N_FEATURES)) + WhiteKernel(0.1)
    est = GaussianProcessRegressor(kernel=kernel, random_state=0, n_restarts_optimizer=0)
    return est, SK_DATA["X"], SK_DATA["yr"], SK_DATA["X"]


def sk_cases() -> List[SkCase]:
    """Every (estimator instance, target) case, in a stable order."""
    cases: List[SkCase] = []
    for name, instances in sorted(SK_INSTANCES.items()):
        for index, inst in enumerate(instances):
            label = _instance_label(name, instances, index)
            for target in _sk_targets(inst):
                cases.append(SkCase(f"{label}-{target}", name, index, target))
    for name, (targets, _) in SK_EXTRAS.items():
        for target in targets:
            cases.append(SkCase(f"{name}-{target}", name, -1, target))
    return cases


SK_INSTANCES = _sk_instances()


class FitSkip(Exception):
    """The estimator itself cannot fit this (optional) target: the case is skipped."""


@functools.cache
def fit_case(case: SkCase) -> Tuple[Any, Any]:
    """The fitted estimator of a case and the data to call its methods on (cached)."""
    from sklearn.base import clone
    from sklearn.utils._testing import set_random_state

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case.index < 0:
            est, X, y, X_eval = SK_EXTRAS[case.name][1](case.target)
            if X is None and y is None:  # KDTree/BallTree: built, not fitted
                return est, X_eval
            if case.target == "labels":
                return est.fit(y), X_eval
            set_random_state(est, 0)
            return (est.fit(X, y) if y is not None else est.fit(X)), X_eval
        est = clone(SK_INSTANCES[case.name][case.index])
        set_random_state(est, 0)
        X, y, X_eval = _sk_inputs(est, case.target)
        try:
            if case.target == "labels":
                est.fit(y)
            else:
                est.fit(X, y)
        except (ValueError, TypeError, NotImplementedError) as exc:
            if case.target in ("multioutput", "sparse"):
                reason = (str(exc).strip().splitlines() or [""])[0]
                raise FitSkip(
                    f"{case.name} cannot fit {case.target}: {type(exc).__name__}: {reason}"
                ) from exc
            raise
        return est, X_eval


def _sk_inputs(est: Any, target: str) -> Tuple[Any, Any, Any]:
    from sklearn.base import is_classifier
    from sklearn.utils import get_tags
    from sklearn.utils.estimator_checks import _enforce_estimator_tags_X, _enforce_estimator_tags_y

    d = SK_DATA
    name = type(est).__name__
    if target == "labels":
        if get_tags(est).target_tags.two_d_labels:
            y: Any = [(0, 1), (2,), (1, 2), (0,)]
            return None, y, y
        return None, d["y3"], d["y3"]
    if target == "text":
        return TEXTS, TEXT_Y, TEXTS
    if target == "dicts":
        X = [{"a": float(r[0]), "b": float(r[1]), "c": "x" if r[2] > 0.5 else "y"} for r in d["X"]]
        if name == "FeatureHasher":
            return X, None, X
        return X, d["y2"], X
    if target == "images":
        images = np.random.RandomState(0).uniform(size=(3, 20, 20))
        return images, None, images
    X = d["X_sparse"] if target == "sparse" else d["X"]
    dictionary = getattr(est, "dictionary", None)
    if isinstance(dictionary, np.ndarray):  # SparseCoder: X must match its dictionary's width
        X = X[:, : dictionary.shape[1]]
    if type(est).__module__.startswith("sklearn.impute") or name == "MissingIndicator":
        X = X.copy()
        X[::6, 2] = np.nan
    if target != "sparse":
        X = _enforce_estimator_tags_X(est, X)
    elif get_tags(est).input_tags.positive_only:
        X = abs(X)
    if target == "multioutput":
        if is_classifier(est):
            y = d["Y_multilabel"] if _prefers_multilabel(est) else d["Y_multiclass"]
        else:
            y = d["Y_reg"].copy()
    elif target == "regression" or (target == "sparse" and not is_classifier(est) and _is_regressor(est)):
        y = d["yr"].copy()
    elif target == "multiclass":
        y = d["y3"].copy()
    else:
        y = d["y2"].copy()
    if target == "sparse" and not get_tags(est).target_tags.single_output:
        y = d["Y_multilabel"] if is_classifier(est) else d["Y_reg"].copy()
    if y.ndim == 1:
        y = _enforce_estimator_tags_y(est, y)
    elif get_tags(est).target_tags.positive_only:
        y = y - y.min() + 1
    return X, y, X


def _is_regressor(est: Any) -> bool:
    from sklearn.base import is_regressor

    return bool(is_regressor(est))


def _prefers_multilabel(est: Any) -> bool:
    # ClassifierChain and OneVsRestClassifier take multi-label indicator targets, not
    # multi-class multi-output ones.
    return type(est).__name__ in {"ClassifierChain", "OneVsRestClassifier"}


SK_METHODS = ("predict", "predict_proba", "decision_function", "transform", "score_samples", "query")


def sk_outputs(est: Any, X: Any) -> Dict[str, Any]:
    """Whatever the fitted estimator computes on X (method -> result or exception type)."""
    out: Dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in SK_METHODS:
            try:
                fn = getattr(est, method)
            except AttributeError:
                continue
            if method == "query" and not hasattr(est, "get_arrays"):
                continue
            try:
                out[method] = _dense(fn(X))
            except Exception as exc:
                out[method] = f"raises {type(exc).__name__}"
        if not out:  # clusterers, embeddings, biclusterings: the fitted attributes
            for attr in sorted(vars(est)):
                if attr.endswith("_") and not attr.startswith("_"):
                    value = getattr(est, attr)
                    if isinstance(value, (np.ndarray, int, float, str)) or sp.issparse(value):
                        out[attr] = _dense(value)
    return out


def _dense(value: Any) -> Any:
    if sp.issparse(value):
        return value.toarray()
    if isinstance(value, (pd.DataFrame, pd.Series)):
        return value.to_numpy()
    if isinstance(value, tuple):
        return tuple(_dense(v) for v in value)
    return value


# --------------------------------------------------------------------------------------------
# pandas


def _pd_tz_samples() -> Dict[str, Any]:
    import dateutil.tz

    zones: Dict[str, Any] = {
        "utc": datetime.timezone.utc,
        "fixed_plus0530": datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
        "fixed_minus08_named": datetime.timezone(datetime.timedelta(hours=-8), "PST"),
        "zoneinfo_london": zoneinfo.ZoneInfo("Europe/London"),
        "dateutil_new_york": dateutil.tz.gettz("America/New_York"),
        "dateutil_tzutc": dateutil.tz.tzutc(),
        "dateutil_tzoffset": dateutil.tz.tzoffset("X", 3600),
        "str_Europe_Paris": "Europe/Paris",
    }
    try:
        import pytz

        zones["pytz_tokyo"] = pytz.timezone("Asia/Tokyo")
        zones["pytz_utc"] = pytz.utc
        zones["pytz_fixed_offset"] = pytz.FixedOffset(-150)
    except ImportError:  # pragma: no cover - pytz is installed for the sweep
        pass
    return zones


PD_TZ = _pd_tz_samples()


def _pd_samples() -> Dict[str, Builder]:
    s: Dict[str, Builder] = {}
    n = 6
    ints = [1, 2, None, 4, 5, 6]

    for dt in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"):
        s[f"series_nullable_{dt}"] = functools.partial(pd.Series, ints, dtype=dt, name="x")
    for dt in ("Float32", "Float64"):
        s[f"series_nullable_{dt}"] = functools.partial(pd.Series, [1.5, None, 3.0, 4, 5, 6], dtype=dt)
    s["series_nullable_boolean"] = functools.partial(pd.Series, [True, False, None] * 2, dtype="boolean")
    for dt in ("int8", "int64", "uint32", "float16", "float32", "float64", "bool", "complex128", "object"):
        s[f"series_numpy_{dt}"] = functools.partial(pd.Series, np.arange(n).astype(dt))
    s["series_object_mixed"] = lambda: pd.Series([1, "a", None, 2.5, (1, 2), decimal.Decimal("1.1")])
    s["series_str_default"] = lambda: pd.Series(["a", "bb", None, "ccc", "d", "e"], dtype="str")
    s["series_string_python"] = lambda: pd.Series(["a", "bb", None, "ccc", "d", "e"], dtype="string[python]")
    s["series_string_python_na_nan"] = lambda: pd.Series(
        ["a", None, "c"], dtype=pd.StringDtype("python", na_value=np.nan)
    )
    if _has("pyarrow"):
        s["series_string_pyarrow"] = lambda: pd.Series(["a", None, "c"], dtype="string[pyarrow]")
        s["series_arrow_int64"] = lambda: pd.Series([1, None, 3], dtype="int64[pyarrow]")
    s["series_category_strings"] = lambda: pd.Series(list("abcabc"), dtype="category")
    s["series_category_ordered_ints"] = lambda: pd.Series(
        pd.Categorical([3, 1, 2, 3, 1, 2], categories=[3, 2, 1], ordered=True)
    )
    s["series_category_with_nan"] = lambda: pd.Series(pd.Categorical(["x", None, "y", "x"]))
    for unit in ("ns", "us", "ms", "s"):
        s[f"series_datetime64_{unit}"] = functools.partial(
            lambda u: pd.Series(pd.date_range("2024-01-01", periods=n, freq="D", unit=u)), unit
        )
    s["series_datetime64_with_nat"] = lambda: pd.Series(pd.to_datetime(["2024-01-01", None, "2024-03-01"]))
    for label, tz in PD_TZ.items():
        s[f"series_datetime_tz_{label}"] = functools.partial(
            lambda z: pd.Series(pd.date_range("2024-03-30", periods=n, freq="12h", tz=z)), tz
        )
        s[f"timestamp_tz_{label}"] = functools.partial(lambda z: pd.Timestamp("2024-07-01 12:30", tz=z), tz)
        s[f"datetimeindex_tz_{label}"] = functools.partial(
            lambda z: pd.date_range("2024-10-26", periods=4, freq="D", tz=z, name="when"), tz
        )
    s["frame_datetime_tz_mixed_zones"] = lambda: pd.DataFrame(
        {label: pd.date_range("2024-01-01", periods=3, freq="h", tz=tz) for label, tz in PD_TZ.items()}
    )
    s["series_timedelta64"] = lambda: pd.Series(pd.to_timedelta([1, 2, None, 4], unit="h"))
    s["series_timedelta64_s"] = lambda: pd.Series(pd.to_timedelta([1, 2, 3], unit="s").as_unit("s"))
    for freq in ("D", "M", "Q-DEC", "Y", "h", "W-SUN", "B"):
        s[f"series_period_{freq}"] = functools.partial(
            lambda f: pd.Series(pd.period_range("2024-01-01", periods=4, freq=f)), freq
        )
    s["series_interval_int"] = lambda: pd.Series(pd.interval_range(0, 5))
    s["series_interval_float_closed_both"] = lambda: pd.Series(
        pd.IntervalIndex.from_breaks([0.0, 0.5, 1.5, 3.0], closed="both")
    )
    s["series_interval_datetime"] = lambda: pd.Series(
        pd.interval_range(pd.Timestamp("2024-01-01"), periods=3, freq="W")
    )
    s["series_sparse_float"] = lambda: pd.Series(pd.arrays.SparseArray([0.0, 0.0, 1.5, np.nan, 0.0]))
    s["series_sparse_int_fill"] = lambda: pd.Series(pd.arrays.SparseArray([0, 0, 3, 0, 7], fill_value=0))
    s["series_sparse_bool"] = lambda: pd.Series(pd.arrays.SparseArray([False, True, False], dtype=bool))
    s["series_named_with_index_name"] = lambda: pd.Series(
        [1.0, 2.0], index=pd.Index(["a", "b"], name="key"), name="value"
    )

    s["frame_every_dtype"] = _pd_frame_every_dtype
    s["frame_multiindex_columns"] = lambda: pd.DataFrame(
        np.arange(12).reshape(3, 4),
        columns=pd.MultiIndex.from_product([["a", "b"], ["x", "y"]], names=["l0", "l1"]),
    )
    s["frame_multiindex_rows"] = lambda: pd.DataFrame(
        {"v": np.arange(6.0)},
        index=pd.MultiIndex.from_arrays(
            [list("aabbcc"), pd.date_range("2024-01-01", periods=6, tz="UTC")], names=["k", "t"]
        ),
    )
    s["frame_attrs_and_flags"] = _pd_frame_attrs
    s["frame_empty"] = lambda: pd.DataFrame()
    s["frame_empty_typed"] = lambda: pd.DataFrame(
        {"a": pd.Series([], dtype="Int64"), "b": pd.Series([], dtype="str")}
    )
    s["frame_wide_float32_block"] = lambda: pd.DataFrame(np.ones((4, 30), dtype=np.float32))
    s["frame_period_index"] = lambda: pd.DataFrame(
        {"v": [1, 2, 3]}, index=pd.period_range("2024Q1", periods=3, freq="Q")
    )
    s["frame_groupby_result"] = lambda: (
        pd.DataFrame({"k": list("abab"), "v": [1.0, 2.0, 3.0, 4.0]}).groupby("k").agg(["sum", "mean"])
    )
    s["frame_resampled"] = lambda: (
        pd.Series(np.arange(10.0), index=pd.date_range("2024-01-01", periods=10, freq="h"))
        .resample("3h")
        .mean()
        .to_frame()
    )

    s["index_int64"] = lambda: pd.Index([3, 1, 2], name="i")
    s["index_float64"] = lambda: pd.Index([0.5, np.nan, 2.0])
    s["index_str"] = lambda: pd.Index(["a", "b", "c"])
    s["index_object"] = lambda: pd.Index(["a", 1, None], dtype=object)
    s["index_bool"] = lambda: pd.Index([True, False])
    s["index_nullable_Int64"] = lambda: pd.Index([1, None, 3], dtype="Int64")
    s["rangeindex"] = lambda: pd.RangeIndex(2, 20, 3, name="r")
    s["rangeindex_default"] = lambda: pd.RangeIndex(5)
    s["multiindex"] = lambda: pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["x", "y"])
    s["multiindex_with_nan_level"] = lambda: pd.MultiIndex.from_arrays([["a", None, "b"], [1.0, 2.0, np.nan]])
    s["categoricalindex"] = lambda: pd.CategoricalIndex(list("abca"), categories=list("cba"), ordered=True)
    s["datetimeindex_naive_freq"] = lambda: pd.date_range("2024-01-01", periods=5, freq="15min")
    s["datetimeindex_business_freq"] = lambda: pd.bdate_range("2024-01-01", periods=5)
    s["datetimeindex_no_freq"] = lambda: pd.DatetimeIndex(["2024-01-01", "2024-02-03"])
    s["timedeltaindex"] = lambda: pd.timedelta_range("1 day", periods=3, freq="6h")
    s["periodindex"] = lambda: pd.period_range("2024-01", periods=3, freq="M")
    s["intervalindex"] = lambda: pd.interval_range(0.0, 1.0, periods=4, closed="left")

    s["categorical_array"] = lambda: pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True)
    s["integer_array"] = lambda: pd.array([1, None, 3], dtype="Int32")
    s["datetime_array_tz"] = lambda: pd.array(pd.date_range("2024-01-01", periods=2, tz="UTC"))

    offsets = pd.offsets
    for label, build in {
        "Day": lambda: offsets.Day(3),
        "Hour": lambda: offsets.Hour(5),
        "Minute": lambda: offsets.Minute(-2),
        "BusinessDay": lambda: offsets.BusinessDay(2),
        "BusinessDay_offset": lambda: offsets.BusinessDay(1, offset=datetime.timedelta(hours=2)),
        "CustomBusinessDay_holidays": lambda: offsets.CustomBusinessDay(
            holidays=["2024-12-25", "2024-12-26"], weekmask="Mon Tue Wed Thu Fri"
        ),
        "MonthEnd": lambda: offsets.MonthEnd(),
        "MonthBegin": lambda: offsets.MonthBegin(2),
        "QuarterEnd": lambda: offsets.QuarterEnd(startingMonth=3),
        "YearBegin": lambda: offsets.YearBegin(month=4),
        "Week_weekday": lambda: offsets.Week(weekday=0),
        "WeekOfMonth": lambda: offsets.WeekOfMonth(week=1, weekday=2),
        "DateOffset_months": lambda: pd.DateOffset(months=1, days=2),
        "DateOffset_normalize": lambda: pd.DateOffset(years=1, normalize=True),
        "Easter": lambda: offsets.Easter(),
        "FY5253": lambda: offsets.FY5253(weekday=4, startingMonth=12, variation="nearest"),
    }.items():
        s[f"offset_{label}"] = build

    s["timestamp_naive"] = lambda: pd.Timestamp("2024-02-29 13:45:10.123456789")
    s["timestamp_unit_s"] = lambda: pd.Timestamp("2024-01-01").as_unit("s")
    s["timestamp_with_freq_free_nanos"] = lambda: pd.Timestamp(1_700_000_000_123_456_789)
    s["timedelta_scalar"] = lambda: pd.Timedelta(days=1, hours=2, nanoseconds=3)
    s["period_scalar_M"] = lambda: pd.Period("2024-05", freq="M")
    s["period_scalar_Q"] = lambda: pd.Period("2024Q3", freq="Q-MAR")
    s["interval_scalar_int"] = lambda: pd.Interval(0, 5, closed="right")
    s["interval_scalar_timestamp"] = lambda: pd.Interval(
        pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"), closed="both"
    )
    s["nat"] = lambda: pd.NaT
    s["na"] = lambda: pd.NA
    s["dict_of_mixed_pandas"] = lambda: {
        "frame": pd.DataFrame({"a": [1, 2]}),
        "series": pd.Series([1.0], index=pd.DatetimeIndex(["2024-01-01"], tz="UTC")),
        "ts": pd.Timestamp("2024-01-01", tz="Europe/London"),
    }
    return s


def _pd_frame_every_dtype() -> pd.DataFrame:
    import dateutil.tz

    n = 3
    frame = pd.DataFrame(
        {
            "int64": np.arange(n),
            "float64": np.linspace(0, 1, n),
            "bool": [True, False, True],
            "Int64": pd.array([1, None, 3], dtype="Int64"),
            "Float32": pd.array([0.5, None, 1.5], dtype="Float32"),
            "boolean": pd.array([True, None, False], dtype="boolean"),
            "str": pd.Series(["a", None, "c"], dtype="str"),
            "string": pd.array(["x", None, "z"], dtype="string[python]"),
            "object": ["a", 1, None],
            "category": pd.Categorical(["u", "v", "u"]),
            "datetime": pd.date_range("2024-01-01", periods=n),
            "datetime_utc": pd.date_range("2024-01-01", periods=n, tz=datetime.timezone.utc),
            "datetime_london": pd.date_range("2024-01-01", periods=n, tz=zoneinfo.ZoneInfo("Europe/London")),
            "datetime_ny_dateutil": pd.date_range(
                "2024-01-01", periods=n, tz=dateutil.tz.gettz("America/New_York")
            ),
            "timedelta": pd.to_timedelta([1, 2, 3], unit="D"),
            "period": pd.period_range("2024-01", periods=n, freq="M"),
            "interval": pd.interval_range(0, n),
            "sparse": pd.arrays.SparseArray([0.0, 1.0, 0.0]),
            "complex": np.array([1 + 2j, 0j, -1j]),
        },
        index=pd.Index(["r0", "r1", "r2"], name="row"),
    )
    if "pytz_tokyo" in PD_TZ:
        frame["datetime_tokyo_pytz"] = pd.date_range("2024-01-01", periods=n, tz=PD_TZ["pytz_tokyo"])
    return frame


def _pd_frame_attrs() -> pd.DataFrame:
    frame = pd.DataFrame({"a": [1, 2, 3]}).set_flags(allows_duplicate_labels=False)
    frame.attrs = {"source": "sensor-7", "units": {"a": "m/s"}, "version": 2}
    return frame


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


PD_SAMPLES = _pd_samples()


# --------------------------------------------------------------------------------------------
# NumPy


def _np_samples() -> Dict[str, Builder]:
    s: Dict[str, Builder] = {}
    base = np.arange(12)
    dtypes = [
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "longdouble",
        "complex64",
        "complex128",
        "clongdouble",
        ">i4",
        ">f8",
        "<U5",
        "S5",
        "V4",
        "datetime64[ns]",
        "datetime64[D]",
        "datetime64[s]",
        "timedelta64[ms]",
        "timedelta64[D]",
    ]
    for dt in dtypes:
        label = dt.replace("<", "le_").replace(">", "be_").replace("[", "_").replace("]", "")
        if dt == "V4":
            s[f"array_{label}"] = lambda: np.frombuffer(bytes(range(48)), dtype="V4").copy()
        elif dt in ("<U5", "S5"):
            s[f"array_{label}"] = functools.partial(lambda d: np.array(["a", "bc", "hello"], dtype=d), dt)
        else:
            s[f"array_{label}"] = functools.partial(lambda d: base.astype(d).reshape(3, 4), dt)
    s["array_S5_bytes"] = lambda: np.array([b"ab", b"\x00\xff"], dtype="S5")
    s["array_object_mixed"] = lambda: np.array(
        [1, "two", None, 3.5, [4, 5], {"k": np.int64(6)}, (7,), np.float32(8)], dtype=object
    )
    s["array_object_2d_strings"] = lambda: np.array([["a", "b"], ["c", None]], dtype=object)
    s["array_object_of_arrays"] = lambda: _ragged()
    s["array_structured"] = lambda: np.array(
        [(1, 2.5, b"ab", "x"), (3, -1.0, b"cd", "yz")],
        dtype=[("id", "<i4"), ("score", "<f8"), ("tag", "S2"), ("name", "<U3")],
    )
    s["array_structured_nested_aligned"] = lambda: np.zeros(
        3, dtype=np.dtype([("pos", "<f4", (3,)), ("meta", [("a", "u1"), ("b", ">i8")])], align=True)
    )
    s["array_structured_with_titles_offsets"] = lambda: np.zeros(
        2, dtype=np.dtype({"names": ["a", "b"], "formats": ["<i2", "<f4"], "offsets": [0, 8], "itemsize": 16})
    )
    s["array_stringdtype"] = lambda: np.array(["short", "a much longer string than 15 bytes", ""], dtype="T")
    s["array_stringdtype_na_object"] = lambda: np.array(
        ["x", np.nan, "y"], dtype=np.dtypes.StringDType(na_object=np.nan)
    )
    s["array_0d_float"] = lambda: np.array(3.25)
    s["array_0d_object"] = lambda: np.array({"a": 1}, dtype=object)
    s["array_empty"] = lambda: np.empty((0, 3), dtype=np.float32)
    s["array_fortran"] = lambda: np.asfortranarray(base.reshape(3, 4).astype(np.float64))
    s["array_noncontiguous_view"] = lambda: base.reshape(3, 4)[:, ::2]
    s["array_broadcast_zero_strides"] = lambda: np.broadcast_to(np.arange(3.0), (4, 3))
    s["array_large_1mb"] = lambda: np.random.default_rng(0).random(131072)
    s["masked_array"] = lambda: np.ma.masked_array(
        [1.0, 2.0, 3.0], mask=[False, True, False], fill_value=-9.0
    )
    s["masked_array_structured"] = lambda: np.ma.masked_array(
        np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "i4"), ("b", "f8")]),
        mask=[(False, True), (True, False)],
    )
    s["masked_array_nomask_int"] = lambda: np.ma.masked_array(np.arange(4))
    s["matrix"] = lambda: np.matrix([[1, 2], [3, 4]])
    s["recarray"] = lambda: np.rec.fromrecords([(1, "a", 0.5), (2, "b", 1.5)], names="id,name,x")
    for label, value in {
        "scalar_float64": lambda: np.float64(1.5),
        "scalar_float32": lambda: np.float32(-0.0),
        "scalar_float16": lambda: np.float16(2.5),
        "scalar_longdouble": lambda: np.longdouble("1.25"),
        "scalar_int8": lambda: np.int8(-7),
        "scalar_uint64": lambda: np.uint64(2**64 - 1),
        "scalar_int64": lambda: np.int64(-(2**63)),
        "scalar_bool": lambda: np.bool_(True),
        "scalar_complex128": lambda: np.complex128(1 - 2j),
        "scalar_str": lambda: np.str_("héllo"),
        "scalar_bytes": lambda: np.bytes_(b"\x00ab"),
        "scalar_datetime64": lambda: np.datetime64("2024-01-01T12:00", "m"),
        "scalar_datetime64_nat": lambda: np.datetime64("NaT", "ns"),
        "scalar_timedelta64": lambda: np.timedelta64(5, "h"),
        "scalar_void_structured": lambda: np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")])[0],
        "scalar_nan": lambda: np.float64("nan"),
    }.items():
        s[label] = value
    s["dtype_float64"] = lambda: np.dtype("float64")
    s["dtype_structured"] = lambda: np.dtype([("a", ">i4"), ("b", "<U3", (2,))])
    s["dtype_datetime"] = lambda: np.dtype("datetime64[us]")
    s["dtype_stringdtype"] = lambda: np.dtypes.StringDType()
    s["rng_default_rng"] = lambda: np.random.default_rng(0)
    s["rng_generator_PCG64"] = lambda: np.random.Generator(np.random.PCG64(1))
    s["rng_generator_PCG64DXSM"] = lambda: np.random.Generator(np.random.PCG64DXSM(2))
    s["rng_generator_Philox"] = lambda: np.random.Generator(np.random.Philox(3))
    s["rng_generator_SFC64"] = lambda: np.random.Generator(np.random.SFC64(4))
    s["rng_generator_MT19937"] = lambda: np.random.Generator(np.random.MT19937(5))
    s["rng_generator_advanced"] = _advanced_generator
    s["rng_bit_generator_PCG64"] = lambda: np.random.PCG64(6)
    s["rng_randomstate"] = lambda: np.random.RandomState(0)
    s["rng_randomstate_with_gauss"] = _randomstate_with_gauss
    s["rng_seedsequence"] = lambda: np.random.SeedSequence(42)
    s["rng_seedsequence_spawned"] = lambda: np.random.SeedSequence(42).spawn(2)[1]
    s["rng_legacy_get_state"] = lambda: np.random.RandomState(3).get_state()
    s["dict_of_arrays"] = lambda: {
        "w": np.ones((2, 2), dtype=np.float32),
        "b": np.zeros(2),
        "step": np.int64(3),
    }
    return s


def _ragged() -> np.ndarray:
    out = np.empty(3, dtype=object)
    out[0], out[1], out[2] = np.arange(2), np.arange(3.0), np.array(["a"])
    return out


def _advanced_generator() -> np.random.Generator:
    g = np.random.default_rng(7)
    g.random(5)
    g.bit_generator.advance(3)
    return g


def _randomstate_with_gauss() -> np.random.RandomState:
    r = np.random.RandomState(1)
    r.standard_normal()  # leaves has_gauss=1
    return r


NP_SAMPLES = _np_samples()

# Samples that np.save/np.load and .npz can hold: plain ndarrays (not subclasses).
NP_ARRAY_SAMPLES = [
    name for name in NP_SAMPLES if name.startswith("array_") and not name.startswith("array_large")
] + ["array_large_1mb"]


# --------------------------------------------------------------------------------------------
# scipy.sparse


def _sp_samples() -> Dict[str, Builder]:
    dense = np.array([[0, 1.5, 0, 0], [2.0, 0, 0, 3.0], [0, 0, 0, 0], [0, 4.0, 5.0, 0]])
    s: Dict[str, Builder] = {}
    for fmt in ("csr", "csc", "coo", "bsr", "dia", "dok", "lil"):
        for kind, ctor in (("matrix", f"{fmt}_matrix"), ("array", f"{fmt}_array")):
            s[f"{fmt}_{kind}"] = functools.partial(lambda c: getattr(sp, c)(dense), ctor)
    s["csr_matrix_int32_unsorted"] = lambda: sp.csr_matrix(
        (np.array([1, 2, 3], dtype=np.int32), np.array([2, 0, 1]), np.array([0, 2, 3])), shape=(2, 3)
    )
    s["csr_array_bool"] = lambda: sp.csr_array(dense > 1)
    s["coo_array_1d"] = lambda: sp.coo_array(np.array([0, 0, 3.0, 0, 1.0]))
    s["bsr_array_blocksize"] = lambda: sp.bsr_array(dense, blocksize=(2, 2))
    s["csr_matrix_float32_empty"] = lambda: sp.csr_matrix((3, 5), dtype=np.float32)
    return s


SP_SAMPLES = _sp_samples()


# --------------------------------------------------------------------------------------------
# stdlib data


def _stdlib_samples() -> Dict[str, Builder]:
    s: Dict[str, Builder] = {
        "ordereddict": lambda: collections.OrderedDict([("b", 1), ("a", [2, 3])]),
        "defaultdict_list": _defaultdict_list,
        "defaultdict_int": lambda: collections.defaultdict(int, {"x": 3}),
        "defaultdict_set": lambda: collections.defaultdict(set, {"x": {1}}),
        "defaultdict_dict": lambda: collections.defaultdict(dict, {"x": {"y": 1}}),
        "counter": lambda: collections.Counter("mississippi"),
        "deque_maxlen": lambda: collections.deque([1, 2, 3], maxlen=3),
        "deque_plain": lambda: collections.deque(["a"]),
        "datetime_naive": lambda: datetime.datetime(2024, 2, 29, 23, 59, 59, 999999),
        "datetime_fold": lambda: datetime.datetime(2024, 11, 3, 1, 30, fold=1),
        "datetime_utc": lambda: datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        "datetime_fixed_offset": lambda: datetime.datetime(
            2024, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-3, minutes=-30), "NST")
        ),
        "datetime_zoneinfo": lambda: datetime.datetime(2024, 7, 1, tzinfo=zoneinfo.ZoneInfo("Europe/London")),
        "zoneinfo": lambda: zoneinfo.ZoneInfo("America/New_York"),
        "date": lambda: datetime.date(1999, 12, 31),
        "time": lambda: datetime.time(12, 30, 15, 500),
        "time_tz": lambda: datetime.time(12, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
        "timedelta": lambda: datetime.timedelta(days=-1, seconds=5, microseconds=7),
        "timezone_utc": lambda: datetime.timezone.utc,
        "timezone_named": lambda: datetime.timezone(datetime.timedelta(hours=9), "JST"),
        "decimal": lambda: decimal.Decimal("3.14159265358979323846264338327950288"),
        "decimal_specials": lambda: [
            decimal.Decimal("-0"),
            decimal.Decimal("Infinity"),
            decimal.Decimal("1E+5"),
        ],
        "decimal_nan": lambda: decimal.Decimal("NaN"),
        "fraction": lambda: fractions.Fraction(-22, 7),
        "uuid4_fixed": lambda: uuid.UUID("12345678-1234-4678-9234-567812345678"),
        "uuid1_safe": lambda: uuid.UUID(int=0x1234, is_safe=uuid.SafeUUID.safe),
        "array_d": lambda: array.array("d", [1.0, 2.5, -3.0]),
        "array_b": lambda: array.array("b", [-1, 0, 1]),
        "array_u": lambda: array.array("u", "héllo"),
        "array_Q": lambda: array.array("Q", [2**64 - 1]),
        "set": lambda: {1, "a", (2, 3)},
        "frozenset": lambda: frozenset({1.5, "b"}),
        "bytearray": lambda: bytearray(b"\x00\x01binary\xff"),
        "bytes": lambda: bytes(range(256)),
        "complex": lambda: complex(1.5, -2.0),
        "slice": lambda: slice(1, None, 2),
        "range": lambda: range(2, 30, 4),
        "nested_containers": lambda: {
            "list": [1, 2.5, "three", None, True],
            "tuple": (1, (2, (3,))),
            "dict": {1: "int key", (1, 2): "tuple key", frozenset({1}): "frozenset key"},
            "big": 2**100,
            "neg": -(2**70),
            "float": [float("inf"), -0.0, 1e-308],
            "str": "ünïcödé \U0001f600",
        },
        "ellipsis_notimplemented": lambda: [Ellipsis, NotImplemented, None],
        "float_nan": lambda: float("nan"),
        "random_getstate": lambda: random.Random(0).getstate(),
        "simplenamespace": lambda: types.SimpleNamespace(lr=0.1, layers=[2, 3]),
        "argparse_namespace": lambda: argparse.Namespace(lr=0.1, name="run", flags={"a": True}),
        "shared_references": _shared_references,
    }
    return s


def _defaultdict_list() -> collections.defaultdict:  # type: ignore[type-arg]
    d: collections.defaultdict = collections.defaultdict(list)  # type: ignore[type-arg]
    d["a"].append(1)
    d["b"].extend([2, 3])
    return d


def _shared_references() -> Dict[str, Any]:
    shared = [1, 2]
    return {"a": shared, "b": shared, "t": (shared, shared)}


STDLIB_SAMPLES = _stdlib_samples()


# --------------------------------------------------------------------------------------------
# torch


def torch_dtypes() -> List[Any]:
    """Every tensor dtype torch can create and save (quantized ones are separate samples)."""
    import torch

    names = [
        "float32", "float64", "float16", "bfloat16", "complex32", "complex64", "complex128", "bool",
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
        "float4_e2m1fn_x2", "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2",
    ]  # fmt: skip
    return [getattr(torch, n) for n in names if hasattr(torch, n)]


def _tensor_of(dtype: Any) -> Any:
    import torch

    size = torch.empty(0, dtype=dtype).element_size()
    raw = (torch.arange(6 * size, dtype=torch.int64) * 37 % 120).to(torch.uint8)
    if dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        return torch.linspace(-2, 3, 6, dtype=dtype).reshape(2, 3)
    if dtype == torch.bool:
        return torch.tensor([[True, False, True], [False, False, True]])
    return raw.view(dtype).reshape(2, 3)


def _torch_samples() -> Dict[str, Builder]:
    import torch

    s: Dict[str, Builder] = {}
    for dtype in torch_dtypes():
        s["tensor_" + str(dtype).replace("torch.", "")] = functools.partial(_tensor_of, dtype)
    s["tensor_0d"] = lambda: torch.tensor(3.5)
    s["tensor_empty"] = lambda: torch.empty(0, 4)
    s["tensor_transposed"] = lambda: torch.arange(12.0).reshape(3, 4).t()
    s["tensor_sliced_offset"] = lambda: torch.arange(20.0)[3:15:2]
    s["tensor_expanded_zero_stride"] = lambda: torch.arange(3.0).expand(4, 3)
    s["tensor_channels_last"] = lambda: (
        torch.arange(48.0).reshape(1, 3, 4, 4).to(memory_format=torch.channels_last)
    )
    s["tensors_sharing_storage"] = _shared_storage
    s["tensor_as_strided"] = lambda: torch.arange(16.0).as_strided((3, 3), (4, 1), 2)
    s["parameter_requires_grad"] = lambda: torch.nn.Parameter(torch.ones(2, 2))
    s["parameter_frozen"] = lambda: torch.nn.Parameter(torch.zeros(3), requires_grad=False)
    s["tensor_requires_grad_leaf"] = lambda: torch.ones(3, requires_grad=True)
    s["sparse_coo"] = lambda: torch.tensor([[0, 1.5, 0], [2.0, 0, 3.0]]).to_sparse()
    s["sparse_coo_uncoalesced"] = lambda: torch.sparse_coo_tensor(
        torch.tensor([[0, 0, 1], [1, 1, 2]]), torch.tensor([1.0, 2.0, 3.0]), (2, 3)
    )
    s["sparse_coo_hybrid"] = lambda: torch.arange(12.0).reshape(3, 2, 2).to_sparse(sparse_dim=1)
    s["sparse_csr"] = lambda: torch.tensor([[0, 1.5, 0], [2.0, 0, 3.0]]).to_sparse_csr()
    s["sparse_csc"] = lambda: torch.tensor([[0, 1.5, 0], [2.0, 0, 3.0]]).to_sparse_csc()
    s["sparse_bsr"] = lambda: torch.arange(16.0).reshape(4, 4).to_sparse_bsr((2, 2))
    s["quantized_per_tensor_quint8"] = lambda: torch.quantize_per_tensor(
        torch.linspace(-1, 1, 6), 0.1, 10, torch.quint8
    )
    s["quantized_per_tensor_qint8"] = lambda: torch.quantize_per_tensor(
        torch.linspace(-1, 1, 6), 0.05, 0, torch.qint8
    )
    s["quantized_per_tensor_qint32"] = lambda: torch.quantize_per_tensor(
        torch.linspace(-1, 1, 6), 0.01, 0, torch.qint32
    )
    s["quantized_per_channel_qint8"] = lambda: torch.quantize_per_channel(
        torch.linspace(-1, 1, 6).reshape(2, 3), torch.tensor([0.1, 0.2]), torch.tensor([0, 1]), 0, torch.qint8
    )
    s["torch_size"] = lambda: torch.Size([2, 3, 4])
    s["torch_devices"] = lambda: [torch.device("cpu"), torch.device("cuda", 1), torch.device("meta")]
    s["torch_dtypes"] = lambda: [*torch_dtypes(), torch.quint8, torch.qint8]
    s["torch_layouts"] = lambda: [torch.sparse_coo, torch.strided, torch.sparse_csr]
    # Not here: torch memory formats pickled by themselves name a path through a module namespace
    # (test_benign_sweep.py::test_torch_memory_formats_are_refused).
    s["torch_return_types_topk"] = lambda: torch.topk(torch.arange(5.0), 2)
    s["nested_tensors"] = lambda: {
        "layers": [{"w": torch.ones(2, 2), "b": torch.zeros(2)}, {"w": torch.eye(2), "b": None}],
        "pair": (torch.tensor([1]), torch.tensor([2.0], dtype=torch.float16)),
        "od": collections.OrderedDict([("x", torch.arange(3)), ("shape", torch.Size([3]))]),
    }

    for name, ctor in _TORCH_MODULES.items():
        s[f"state_dict_{name}"] = functools.partial(lambda c: _module(c).state_dict(), ctor)
        s[f"module_{name}"] = functools.partial(_module, ctor)
    s["module_spectral_norm_hooks"] = _spectral_norm_module
    s["module_weight_norm_hooks"] = _weight_norm_module

    for name in _OPTIMIZERS:
        s[f"optimizer_{name}"] = functools.partial(_optimizer_state, name)
    for name in _SCHEDULERS:
        s[f"lr_scheduler_{name}"] = functools.partial(_scheduler_state, name)

    s["checkpoint_full"] = _checkpoint_full
    s["checkpoint_hparams_namespaces"] = _checkpoint_namespaces
    s["checkpoint_rng_states"] = _checkpoint_rng_states
    s["checkpoint_lightning_like"] = _checkpoint_lightning_like
    s["checkpoint_with_numpy"] = lambda: {
        "mean": np.array([0.485, 0.456, 0.406], dtype=np.float32),
        "classes": np.array(["cat", "dog"]),
        "step": np.int64(10),
        "weights": torch.ones(3),
    }
    s["training_args_bin"] = _training_args
    s["checkpoint_with_training_args"] = lambda: {
        "args": _training_args(),
        "model": _module(_TORCH_MODULES["linear"]).state_dict(),
        "epoch": 1.0,
    }
    return s


def _shared_storage() -> Dict[str, Any]:
    import torch

    base = torch.arange(10.0)
    return {"base": base, "head": base[:4], "tail": base[6:], "matrix": base[:9].view(3, 3).t()}


def _torch_module_ctors() -> Dict[str, Callable[[], Any]]:
    import torch
    from torch import nn

    return {
        "linear": lambda: nn.Linear(4, 3),
        "mlp_sequential": lambda: nn.Sequential(
            nn.Linear(4, 8),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(8, 8),
            nn.GELU(approximate="tanh"),
            nn.Linear(8, 2),
            nn.LogSoftmax(dim=-1),
        ),
        "cnn": lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 4, 3, padding="same", groups=2, bias=False),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
            nn.Linear(4, 3),
        ),
        "conv1d_transpose_upsample": lambda: nn.Sequential(
            nn.Conv1d(2, 2, 3), nn.ConvTranspose1d(2, 2, 3), nn.Upsample(scale_factor=2), nn.InstanceNorm1d(2)
        ),
        "layernorm_groupnorm": lambda: nn.Sequential(nn.LayerNorm(6), nn.GroupNorm(2, 2)),
        "embedding": lambda: nn.Embedding(10, 4, padding_idx=0),
        "embedding_bag": lambda: nn.EmbeddingBag(10, 3, mode="mean"),
        "lstm": lambda: nn.LSTM(4, 5, num_layers=2, batch_first=True, bidirectional=True),
        "gru": lambda: nn.GRU(4, 3),
        "rnn_tanh": lambda: nn.RNN(4, 3, nonlinearity="tanh"),
        "multihead_attention": lambda: nn.MultiheadAttention(8, 2, batch_first=True),
        "transformer_encoder": lambda: nn.TransformerEncoder(
            nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True),
            num_layers=2,
            enable_nested_tensor=False,
        ),
        "transformer_decoder_layer_gelu": lambda: nn.TransformerDecoderLayer(
            8, 2, dim_feedforward=16, activation="gelu", norm_first=True
        ),
        "module_containers": lambda: nn.ModuleDict(
            {
                "blocks": nn.ModuleList([nn.Linear(2, 2), nn.Identity()]),
                "params": nn.ParameterList([nn.Parameter(torch.ones(2)), nn.Parameter(torch.zeros(1))]),
                "named": nn.ParameterDict({"scale": nn.Parameter(torch.tensor(2.0))}),
            }
        ),
        "bilinear_prelu": lambda: nn.Sequential(nn.PReLU(3), nn.Softmax(dim=1), nn.Hardswish()),
    }


_TORCH_MODULES = _torch_module_ctors()

# A forward input for every whole-module sample (run in eval mode on the original and the load).
TORCH_PROBES: Dict[str, Callable[[], Tuple[Any, ...]]] = {}


def _probes() -> None:
    import torch

    g = torch.Generator().manual_seed(0)
    TORCH_PROBES.update(
        {
            "module_linear": lambda: (torch.rand(2, 4, generator=g),),
            "module_mlp_sequential": lambda: (torch.rand(2, 4, generator=g),),
            "module_cnn": lambda: (torch.rand(2, 1, 6, 6, generator=g),),
            "module_conv1d_transpose_upsample": lambda: (torch.rand(1, 2, 7, generator=g),),
            "module_layernorm_groupnorm": lambda: (torch.rand(2, 2, 6, generator=g),),
            "module_embedding": lambda: (torch.tensor([[1, 2, 0]]),),
            "module_embedding_bag": lambda: (torch.tensor([[1, 2], [3, 4]]),),
            "module_lstm": lambda: (torch.rand(2, 3, 4, generator=g),),
            "module_gru": lambda: (torch.rand(3, 2, 4, generator=g),),
            "module_rnn_tanh": lambda: (torch.rand(3, 2, 4, generator=g),),
            "module_multihead_attention": lambda: (torch.rand(1, 3, 8, generator=g),) * 3,
            "module_transformer_encoder": lambda: (torch.rand(2, 3, 8, generator=g),),
            "module_transformer_decoder_layer_gelu": lambda: (
                torch.rand(3, 1, 8, generator=g),
                torch.rand(4, 1, 8, generator=g),
            ),
            "module_bilinear_prelu": lambda: (torch.rand(2, 3, generator=g),),
            "module_spectral_norm_hooks": lambda: (torch.rand(2, 4, generator=g),),
            "module_weight_norm_hooks": lambda: (torch.rand(2, 4, generator=g),),
        }
    )


def _module(ctor: Callable[[], Any]) -> Any:
    import torch

    torch.manual_seed(0)
    module = ctor()
    module.eval()
    return module


def _spectral_norm_module() -> Any:
    import torch

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.nn.Sequential(torch.nn.utils.spectral_norm(torch.nn.Linear(4, 3)))
    module.eval()
    return module


def _weight_norm_module() -> Any:
    import torch

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.nn.Sequential(torch.nn.utils.weight_norm(torch.nn.Linear(4, 3)))
    module.eval()
    return module


_OPTIMIZERS = [
    "SGD_momentum_nesterov",
    "Adam",
    "Adam_amsgrad",
    "Adam_tensor_lr",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    "ASGD",
    "Rprop",
    "LBFGS",
]


def _stepped(name: str) -> Tuple[Any, Any]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    params = model.parameters()
    opt = {
        "SGD_momentum_nesterov": lambda: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True),
        "Adam": lambda: torch.optim.Adam(params, lr=1e-3, betas=(0.8, 0.99)),
        "Adam_amsgrad": lambda: torch.optim.Adam(params, amsgrad=True, weight_decay=1e-4),
        "Adam_tensor_lr": lambda: torch.optim.Adam(params, lr=torch.tensor(0.01)),
        "AdamW": lambda: torch.optim.AdamW(params, lr=1e-3),
        "RMSprop": lambda: torch.optim.RMSprop(params, momentum=0.5, centered=True),
        "Adagrad": lambda: torch.optim.Adagrad(params),
        "Adadelta": lambda: torch.optim.Adadelta(params),
        "Adamax": lambda: torch.optim.Adamax(params),
        "NAdam": lambda: torch.optim.NAdam(params, decoupled_weight_decay=True),
        "RAdam": lambda: torch.optim.RAdam(params),
        "ASGD": lambda: torch.optim.ASGD(params),
        "Rprop": lambda: torch.optim.Rprop(params),
        "LBFGS": lambda: torch.optim.LBFGS(params, history_size=3, max_iter=2),
    }[name]()
    x = torch.rand(5, 4)

    def closure() -> Any:
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    for _ in range(2):
        opt.step(closure)
    return model, opt


def _optimizer_state(name: str) -> Any:
    return _stepped(name)[1].state_dict()


_SCHEDULERS = [
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "OneCycleLR",
    "CyclicLR",
    "LambdaLR",
    "MultiplicativeLR",
    "LinearLR",
    "ConstantLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "ChainedScheduler",
]


def _scheduler_state(name: str) -> Any:
    from torch.optim import lr_scheduler as S

    _, opt = _stepped("SGD_momentum_nesterov")
    sched = {
        "StepLR": lambda: S.StepLR(opt, step_size=2, gamma=0.5),
        "MultiStepLR": lambda: S.MultiStepLR(opt, milestones=[2, 4, 4]),
        "ExponentialLR": lambda: S.ExponentialLR(opt, gamma=0.9),
        "CosineAnnealingLR": lambda: S.CosineAnnealingLR(opt, T_max=10, eta_min=1e-5),
        "CosineAnnealingWarmRestarts": lambda: S.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2),
        "OneCycleLR": lambda: S.OneCycleLR(opt, max_lr=0.5, total_steps=20, anneal_strategy="linear"),
        "CyclicLR": lambda: S.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=3, mode="exp_range"),
        "LambdaLR": lambda: S.LambdaLR(opt, lr_lambda=lambda epoch: 0.95**epoch),
        "MultiplicativeLR": lambda: S.MultiplicativeLR(opt, lr_lambda=lambda epoch: 0.9),
        "LinearLR": lambda: S.LinearLR(opt, start_factor=0.1, total_iters=4),
        "ConstantLR": lambda: S.ConstantLR(opt, factor=0.5, total_iters=2),
        "PolynomialLR": lambda: S.PolynomialLR(opt, total_iters=5, power=2.0),
        "ReduceLROnPlateau": lambda: S.ReduceLROnPlateau(opt, mode="max", patience=1),
        "SequentialLR": lambda: S.SequentialLR(
            opt, [S.LinearLR(opt, start_factor=0.5, total_iters=2), S.ExponentialLR(opt, 0.9)], milestones=[2]
        ),
        "ChainedScheduler": lambda: S.ChainedScheduler(
            [S.ConstantLR(opt, factor=0.5, total_iters=2), S.ExponentialLR(opt, gamma=0.9)]
        ),
    }[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(3):
            opt.step()
            if name == "ReduceLROnPlateau":
                sched.step(float(epoch))
            else:
                sched.step()
    return sched.state_dict()


def _checkpoint_full() -> Dict[str, Any]:
    import torch

    model, opt = _stepped("AdamW")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
    return {
        "epoch": 7,
        "global_step": 1234,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": opt.state_dict(),
        "scheduler_state_dict": sched.state_dict(),
        "best_val_loss": 0.123,
        "metrics": {"acc": [0.5, 0.75], "loss": (1.0, 0.5)},
        "hparams": {"lr": 1e-3, "batch_size": 32, "layers": [4, 3, 1], "activation": "relu", "tied": None},
        "model_class": "Sequential",
        "torch_version": torch.__version__,
    }


def _checkpoint_namespaces() -> Dict[str, Any]:
    import torch

    return {
        "args": argparse.Namespace(lr=0.01, epochs=3, data="/data/x", seed=0, devices=[0, 1]),
        "config": types.SimpleNamespace(hidden=16, dropout=0.1, nested=types.SimpleNamespace(a=1)),
        "state_dict": torch.nn.Linear(2, 2).state_dict(),
    }


def _checkpoint_rng_states() -> Dict[str, Any]:
    """What transformers' Trainer writes to rng_state.pth (and most training loops copy)."""
    import torch

    torch.manual_seed(0)
    return {
        "python": random.Random(0).getstate(),
        "numpy": np.random.RandomState(0).get_state(),
        "cpu": torch.get_rng_state(),
    }


def _checkpoint_lightning_like() -> Dict[str, Any]:
    import torch

    return {
        "epoch": 2,
        "global_step": 60,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": collections.OrderedDict(
            (f"model.{k}", v) for k, v in _module(_TORCH_MODULES["mlp_sequential"]).state_dict().items()
        ),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 3, "completed": 2}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min'}": {
                "best_model_score": torch.tensor(0.25),
                "best_model_path": "/ckpts/epoch=1.ckpt",
                "best_k_models": {"/ckpts/epoch=1.ckpt": torch.tensor(0.25)},
            }
        },
        "optimizer_states": [_optimizer_state("Adam")],
        "lr_schedulers": [_scheduler_state("CosineAnnealingLR")],
        "hyper_parameters": {"lr": 0.001, "hidden": 8},
    }


def _training_args() -> Any:
    import os
    import tempfile

    from transformers import TrainingArguments

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TrainingArguments(output_dir=os.path.join(tempfile.gettempdir(), "picklefence-sweep-run"))


def torch_samples() -> Dict[str, Builder]:
    if not TORCH_SAMPLES:
        TORCH_SAMPLES.update(_torch_samples())
        _probes()
    return TORCH_SAMPLES


TORCH_SAMPLES: Dict[str, Builder] = {}

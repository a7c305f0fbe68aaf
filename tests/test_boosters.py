"""The boosters of the named policies ``lightgbm`` and ``xgboost`` (picklefence/_boosters.py):
their pickles hold the whole model as text or UBJSON, which ``Booster.__setstate__`` hands to a
C++ parser that trusts it. Intact models of several kinds load unchanged under the guard; each
edit the check refuses is named; unprotected, the edited files crash the process or return heap
bytes as predictions (run in a subprocess)."""

from __future__ import annotations

import copyreg
import io
import json
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import joblib
import numpy as np
import pandas as pd
import pytest

import picklefence
from picklefence import Policy, UnsafeFileError
from picklefence._boosters import _UBJSON

lgb = pytest.importorskip("lightgbm")
xgb = pytest.importorskip("xgboost")

RNG = np.random.RandomState(0)
X = RNG.rand(400, 4)
Y = (X[:, 0] > 0.5).astype(int)
Y3 = (X[:, 0] * 3).astype(int)
POLICIES = {"lightgbm": Policy.named("lightgbm"), "xgboost": Policy.named("xgboost")}


def _categorical_frame() -> Tuple[pd.DataFrame, Any]:
    rng = np.random.RandomState(1)  # the same frame at every call
    frame = pd.DataFrame({"a": rng.rand(400), "c": pd.Categorical(rng.choice(list("abcdefghij"), 400))})
    return frame, ((frame["a"] > 0.5) ^ frame["c"].isin(list("abc"))).astype(int)


def _lightgbm_models() -> Dict[str, Any]:
    frame, labels = _categorical_frame()
    return {
        "binary": lgb.LGBMClassifier(n_estimators=5, num_leaves=8, verbose=-1).fit(X, Y),
        "binary, 40 trees of 31 leaves": lgb.LGBMClassifier(n_estimators=40, verbose=-1).fit(X, Y),
        "multiclass": lgb.LGBMClassifier(n_estimators=5, num_leaves=8, verbose=-1).fit(X, Y3),
        "regression": lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(X, X[:, 1]),
        "categorical": lgb.LGBMClassifier(
            n_estimators=5, num_leaves=4, verbose=-1, min_data_per_group=5, cat_smooth=1
        ).fit(frame, labels),
        "linear trees": lgb.LGBMRegressor(n_estimators=3, num_leaves=4, verbose=-1, linear_tree=True).fit(
            X, X[:, 1] * 2
        ),
        "one-vs-rest booster": lgb.train(
            {"verbose": -1, "objective": "multiclassova", "num_class": 3}, lgb.Dataset(X, Y3), 3
        ),
        "ranker": lgb.LGBMRanker(n_estimators=3, verbose=-1, min_child_samples=2).fit(X, Y3, group=[100] * 4),
        "stumps": lgb.LGBMRegressor(n_estimators=2, verbose=-1).fit(X, np.ones(400)),
        "unfitted": lgb.LGBMClassifier(),
    }


def _xgb_categorical() -> Any:
    frame, labels = _categorical_frame()
    return xgb.XGBClassifier(n_estimators=2, max_depth=2, enable_categorical=True, tree_method="hist").fit(
        frame, labels
    )


def _xgboost_models() -> Dict[str, Any]:
    return {
        "binary": xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(X, Y),
        "binary, 50 trees of depth 6": xgb.XGBClassifier(n_estimators=50, max_depth=6).fit(X, Y),
        "multiclass": xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(X, Y3),
        "regression": xgb.XGBRegressor(n_estimators=5).fit(X, X[:, 1]),
        "dart": xgb.XGBRegressor(n_estimators=3, booster="dart").fit(X, X[:, 1]),
        # gamma prunes splits: pruned nodes are deleted and their ids reused, so children can
        # come before their parent.
        "pruned": xgb.XGBRegressor(n_estimators=5, max_depth=6, gamma=0.5).fit(X, X[:, 1]),
        "random forest": xgb.XGBRFClassifier(n_estimators=4, max_depth=3).fit(X, Y),
        "two targets": xgb.XGBRegressor(n_estimators=3, max_depth=3).fit(X, X[:, :2]),
        "categorical": _xgb_categorical(),
        "unfitted": xgb.XGBClassifier(),
    }


def _predictions(model: Any) -> Any:
    try:
        if getattr(model, "n_features_in_", 4) == 2:  # fitted on the categorical frame
            return model.predict(_categorical_frame()[0])
        return model.predict(X)
    except Exception as exc:  # an unfitted model: the same error loaded or not
        return type(exc).__name__


def _files(model: Any) -> Dict[str, Callable[[], Any]]:
    data = pickle.dumps(model, protocol=4)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    stored = buffer.getvalue()
    return {"pickle": lambda: pickle.loads(data), "joblib": lambda: joblib.load(io.BytesIO(stored))}


@pytest.mark.parametrize(
    "library, name",
    [("lightgbm", name) for name in _lightgbm_models()] + [("xgboost", name) for name in _xgboost_models()],
)
def test_intact_boosters_load_unchanged(library: str, name: str) -> None:
    model = (_lightgbm_models if library == "lightgbm" else _xgboost_models)()[name]
    expected = _predictions(model)
    for how, load in _files(model).items():
        with picklefence.safe_ml_environment(policy=POLICIES[library]):
            loaded = load()
        np.testing.assert_array_equal(np.asarray(_predictions(loaded)), np.asarray(expected), err_msg=how)


# -- LightGBM: the model text, edited in the pickle -------------------------------------------


def _lightgbm_text(model: Any) -> str:
    return model.booster_.model_to_string()


def _with_text(model: Any, edit: Callable[[str], str]) -> bytes:
    """``model`` pickled (protocol 2: its text one BINUNICODE) with its model text edited."""
    text = _lightgbm_text(model)
    edited = edit(text)
    assert edited != text, "the edit changed nothing"
    data = pickle.dumps(model, protocol=2)
    old, new = text.encode(), edited.encode()
    assert data.count(old) == 1
    return data.replace(struct.pack("<I", len(old)) + old, struct.pack("<I", len(new)) + new)


def _replace(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, count)

    return edit


def _tree_field(field: str, value: str, tree: int = 0) -> Callable[[str], str]:
    """Sets ``field`` of tree ``tree`` to ``value``."""

    def edit(text: str) -> str:
        start = text.index(f"Tree={tree}\n")
        line = text.index(f"\n{field}=", start) + 1
        end = text.index("\n", line)
        return text[:line] + f"{field}={value}" + text[end:]

    return edit


def _without_tree_sizes(text: str) -> str:
    start = text.index("tree_sizes=")
    return text[:start] + text[text.index("\n", start) + 1 :]


def _then(*edits: Callable[[str], str]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        for one in edits:
            text = one(text)
        return text

    return edit


def _lgb_binary() -> Any:
    return lgb.LGBMClassifier(n_estimators=3, num_leaves=4, verbose=-1).fit(X, Y)


def _lgb_categorical() -> Any:
    frame, labels = _categorical_frame()
    return lgb.LGBMClassifier(
        n_estimators=2, num_leaves=4, verbose=-1, min_data_per_group=5, cat_smooth=1
    ).fit(frame, labels)


def _lgb_linear() -> Any:
    return lgb.LGBMRegressor(n_estimators=1, num_leaves=3, verbose=-1, linear_tree=True).fit(
        X, X[:, 1] * 2 + X[:, 2]
    )


LIGHTGBM_BROKEN: Dict[str, Tuple[Callable[[], Any], Callable[[str], str], str]] = {
    "child beyond the nodes": (_lgb_binary, _tree_field("left_child", "9 -1 -2"), "trees[0].left_child"),
    "child before its parent (a loop)": (
        _lgb_binary,
        _tree_field("right_child", "0 -3 -4"),
        "right_child[0]",
    ),
    "leaf beyond the leaves": (_lgb_binary, _tree_field("left_child", "1 -9 -2"), "trees[0].left_child"),
    "split feature beyond max_feature_idx": (
        _lgb_binary,
        _tree_field("split_feature", "0 7 0"),
        "split_feature",
    ),
    "fewer child indices than nodes": (_lgb_binary, _tree_field("left_child", "1 -1"), "left_child"),
    "num_leaves above the arrays": (_lgb_binary, _tree_field("num_leaves", "9"), "leaf_value"),
    "a value that is not a number": (_lgb_binary, _tree_field("threshold", "0.5 x 0.5"), "threshold"),
    # LightGBM reads "1\t2" as 1 and then 0s (node 1's child node 0: a loop); str.split saw 1 and 2.
    "a tab between values": (_lgb_binary, _tree_field("left_child", "1\t-1 -2"), "left_child"),
    "a line without =": (_lgb_binary, _tree_field("shrinkage", "1\nnot a key"), "not key=value"),
    "tree_sizes off by one": (
        _lgb_binary,
        lambda text: _replace(
            text[text.index("tree_sizes=") : text.index("\n", text.index("tree_sizes="))],
            "tree_sizes="
            + " ".join(str(int(n) + 1) for n in text.split("tree_sizes=")[1].split("\n")[0].split()),
        )(text),
        "tree_sizes",
    ),
    "a tree cut short at the end": (
        _lgb_binary,
        lambda text: _without_tree_sizes(text)[: _without_tree_sizes(text).index("end of trees")].rstrip(
            "\n"
        ),
        "trees[2]",
    ),
    "trees per iteration above num_class": (
        _lgb_binary,
        _replace("num_tree_per_iteration=1", "num_tree_per_iteration=3"),
        "num_tree_per_iteration",
    ),
    "num_class above the trees per iteration": (
        _lgb_binary,
        _replace("num_class=1", "num_class=9"),
        "num_class 9",
    ),
    "category set beyond num_cat": (_lgb_categorical, _tree_field("threshold", "0.5 5 1"), "category sets"),
    "category boundaries decreasing": (
        _lgb_categorical,
        _tree_field("cat_boundaries", "0 2 1"),
        "cat_boundaries",
    ),
    "linear-leaf feature beyond max_feature_idx": (
        _lgb_linear,
        lambda text: _then(_tree_field("num_features", "1 0 0"), _tree_field("leaf_features", "11"))(
            _tree_field("leaf_coeff", "0.5")(text)
        ),
        "leaf_features",
    ),
    "a NUL character": (_lgb_binary, _replace("shrinkage=1", "shrinkage=1\0"), "NUL"),
}


@pytest.mark.parametrize("case", sorted(LIGHTGBM_BROKEN))
def test_broken_lightgbm_model_text_is_refused_naming_the_field(case: str) -> None:
    make, edit, field = LIGHTGBM_BROKEN[case]
    _assert_refused_naming(_with_text(make(), edit), "lightgbm", "lightgbm.basic.Booster", field)


def _assert_refused_naming(data: bytes, library: str, cls: str, field: str) -> None:
    with picklefence.safe_ml_environment(policy=POLICIES[library]):
        with pytest.raises(UnsafeFileError) as info:
            pickle.loads(data)
    (violation,) = info.value.violations
    assert violation.kind == "native-state"
    assert cls in violation.message and field in violation.message, violation.message


# -- XGBoost: the serialised model, decoded, edited and encoded again -------------------------


def _ubjson(value: Any) -> bytes:
    """UBJSON as XGBoost writes it (typed arrays for NumPy arrays)."""
    markers = {("i", 1): b"i", ("u", 1): b"U", ("i", 2): b"I", ("i", 4): b"l", ("i", 8): b"L", ("f", 4): b"d"}
    markers[("f", 8)] = b"D"
    if isinstance(value, _Raw):
        return bytes(value)
    if isinstance(value, dict):
        out = b"{"
        for key, item in value.items():
            raw = key.encode()
            out += b"L" + struct.pack(">q", len(raw)) + raw + _ubjson(item)
        return out + b"}"
    if isinstance(value, np.ndarray):
        big = value.astype(value.dtype.newbyteorder(">"))
        marker = markers[(value.dtype.kind, value.dtype.itemsize)]
        return b"[$" + marker + b"#L" + struct.pack(">q", len(value)) + big.tobytes()
    if isinstance(value, list):
        return b"[" + b"".join(_ubjson(item) for item in value) + b"]"
    if isinstance(value, str):
        raw = value.encode()
        return b"SL" + struct.pack(">q", len(raw)) + raw
    if isinstance(value, bool) or value is None:
        return {True: b"T", False: b"F", None: b"Z"}[value]
    if isinstance(value, int):
        return b"L" + struct.pack(">q", value)
    return b"D" + struct.pack(">d", value)


class _BoosterPickler(pickle.Pickler):
    """Pickles ``booster`` with ``state`` instead of its own."""

    def __init__(self, file: Any, booster: Any, state: Dict[str, Any]) -> None:
        super().__init__(file, protocol=4)
        self.booster, self.state = booster, state

    def reducer_override(self, obj: Any) -> Any:
        if obj is self.booster:
            return (copyreg.__newobj__, (type(obj),), self.state)  # type: ignore[attr-defined]
        return NotImplemented


def _with_state(model: Any, state: Dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    _BoosterPickler(buffer, model.get_booster(), state).dump(model)
    return buffer.getvalue()


def _xgb_pickle(model: Any, edit: Callable[[Dict[str, Any]], Any]) -> bytes:
    """``model`` pickled with its booster's serialised model decoded, edited and encoded."""
    state = model.get_booster().__getstate__()
    decoded = _UBJSON(bytes(state["handle"])).value()
    edit(decoded)
    return _with_state(model, dict(state, handle=bytearray(_ubjson(decoded))))


def _trees(decoded: Dict[str, Any]) -> Any:
    return decoded["Model"]["learner"]["gradient_booster"]["model"]["trees"]


def _set(field: str, index: int, value: int, tree: int = 0) -> Callable[[Dict[str, Any]], None]:
    def edit(decoded: Dict[str, Any]) -> None:
        array = _trees(decoded)[tree][field].copy()
        array[index] = value
        _trees(decoded)[tree][field] = array

    return edit


def _xgb_binary() -> Any:
    return xgb.XGBClassifier(n_estimators=2, max_depth=2).fit(X, Y)


def _cats(decoded: Dict[str, Any]) -> Any:
    return decoded["Model"]["learner"]["gradient_booster"]["model"]["cats"]


class _Raw(bytes):
    """UBJSON bytes written as they are."""


def _nested(decoded: Dict[str, Any]) -> None:
    decoded["Config"]["deep"] = _Raw(b"[" * 10_000 + b"]" * 10_000)


XGBOOST_BROKEN: Dict[str, Tuple[Callable[[Dict[str, Any]], Any], str]] = {
    # 2**30 nodes on: gigabytes past the node array, never mapped.
    "child beyond the nodes": (_set("left_children", 0, 2**30), "trees[0].left_children"),
    "child pointing at the root (a loop)": (_set("right_children", 0, 0), "trees[0].left_children"),
    "node the child of two splits": (_set("right_children", 0, 1), "child of two splits"),
    "split feature beyond num_feature": (_set("split_indices", 0, 100_000), "trees[0].split_indices"),
    "parent beyond the nodes": (_set("parents", 1, 2**30), "trees[0].parents"),
    "tree_info beyond the outputs": (
        lambda d: d["Model"]["learner"]["gradient_booster"]["model"].__setitem__(
            "tree_info", np.array([0, 5], dtype=">i4")
        ),
        "tree_info",
    ),
    "num_trees above the trees": (
        lambda d: d["Model"]["learner"]["gradient_booster"]["model"]["gbtree_model_param"].__setitem__(
            "num_trees", "3"
        ),
        "num_trees",
    ),
    "nesting deeper than a model's": (_nested, "nested deeper"),
    "gblinear (not checked)": (
        lambda d: d["Model"]["learner"]["gradient_booster"].__setitem__("name", "gblinear"),
        "cannot check",
    ),
}
# Edits of a model with categorical splits (node 1 and 2 of its first tree).
XGBOOST_CATEGORICAL_BROKEN: Dict[str, Tuple[Callable[[Dict[str, Any]], Any], str]] = {
    "category segment past the categories": (_set("categories_sizes", 1, 1000), "categories_segments"),
    "negative category": (_set("categories", 0, -7), "trees[0].categories"),
    "category bitset of 2**31 bits": (_set("categories", 0, 2**31 - 1), "MiB"),
    "categorical node beyond the tree": (_set("categories_nodes", 1, 1000), "categories_nodes"),
    "categorical node of a numeric split": (_set("categories_nodes", 0, 0), "not categorical"),
    "category order beyond its feature": (
        lambda d: _cats(d).__setitem__("sorted_idx", np.arange(10, 20, dtype=">i4")),
        "cats.sorted_idx",
    ),
    "category name offsets past the names": (
        lambda d: _cats(d)["enc"][1].__setitem__("offsets", np.arange(0, 1100, 100, dtype=">i4")),
        "offsets",
    ),
}


@pytest.mark.parametrize("case", sorted(XGBOOST_BROKEN))
def test_broken_xgboost_model_is_refused_naming_the_field(case: str) -> None:
    edit, field = XGBOOST_BROKEN[case]
    _assert_refused_naming(_xgb_pickle(_xgb_binary(), edit), "xgboost", "xgboost.core.Booster", field)


@pytest.mark.parametrize("case", sorted(XGBOOST_CATEGORICAL_BROKEN))
def test_broken_xgboost_categories_are_refused_naming_the_field(case: str) -> None:
    edit, field = XGBOOST_CATEGORICAL_BROKEN[case]
    data = _xgb_pickle(_xgb_categorical(), edit)
    _assert_refused_naming(data, "xgboost", "xgboost.core.Booster", field)


def test_a_truncated_xgboost_model_is_refused() -> None:
    model = _xgb_binary()
    state = model.get_booster().__getstate__()
    whole = bytes(state["handle"])
    with picklefence.safe_ml_environment(policy=POLICIES["xgboost"]):
        for end in (1, len(whole) // 3, len(whole) - 1):
            with pytest.raises(UnsafeFileError, match="model"):
                pickle.loads(_with_state(model, dict(state, handle=bytearray(whole[:end]))))


# -- Unprotected, the same files crash or misread ---------------------------------------------

_UNPROTECTED = textwrap.dedent(
    """
    import json, pickle, sys
    import numpy as np
    model = pickle.loads(open(sys.argv[1], "rb").read())
    x = np.random.RandomState(1).rand(50, 4)
    out = model.predict_proba(x) if hasattr(model, "predict_proba") else model.predict(x)
    print(json.dumps(np.asarray(out).tolist()))
    """
)


def _run_unprotected(data: bytes, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    return subprocess.run(
        [sys.executable, "-c", _UNPROTECTED, str(path)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "library, case",
    [
        ("lightgbm", "child beyond the nodes"),
        ("lightgbm", "num_leaves above the arrays"),
        ("xgboost", "child beyond the nodes"),
        ("xgboost", "parent beyond the nodes"),
    ],
)
def test_unprotected_the_broken_boosters_crash(library: str, case: str, tmp_path: Path) -> None:
    """A child index past the nodes: SIGSEGV at predict; LightGBM's parser ends the process
    (std::terminate) on a count it checks inside its parallel loop; XGBoost's loader reads the
    parent's node unchecked."""
    if library == "lightgbm":
        make, edit, _ = LIGHTGBM_BROKEN[case]
        data = _with_text(make(), edit)
    else:
        data = _xgb_pickle(_xgb_binary(), XGBOOST_BROKEN[case][0])
    done = _run_unprotected(data, tmp_path)
    assert done.returncode < 0, (done.returncode, done.stdout[-300:], done.stderr[-300:])


def test_unprotected_lightgbm_returns_heap_bytes_as_predictions(tmp_path: Path) -> None:
    """num_class 9 for one tree per iteration: predict_proba returns nine columns per row, eight
    of them never written (the heap's old bytes)."""
    model = _lgb_binary()
    data = _with_text(model, _replace("num_class=1", "num_class=9"))
    done = _run_unprotected(data, tmp_path)
    if done.returncode == 0:
        misread = np.asarray(json.loads(done.stdout), dtype=float)
        intact = model.predict_proba(np.random.RandomState(1).rand(50, 4))
        assert misread.shape != intact.shape or not np.allclose(misread, intact)
    else:
        assert done.returncode < 0, done.stderr[-300:]

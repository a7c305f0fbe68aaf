"""Files written by old releases of the libraries (Python 2.7 to 3.8; numpy 1.16-1.24, pandas
0.24-2.0, scikit-learn 0.20-1.3, joblib 0.14-1.3, torch 1.10 and 1.13): every one that today's
libraries load scans clean and loads under the guard as it loads without it.

The files in tests/fixtures/old_versions were written by scripts/old_versions/make_old_fixtures.py
in virtual environments of those versions (the manifest lists them); only the files today's
libraries can load at all are kept. They cannot be made at test time: the old libraries are not
installed here."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any, Callable, Dict, List

import joblib
import numpy as np
import pandas as pd
import pytest

import picklefence

FIXTURES = Path(__file__).parent / "fixtures" / "old_versions"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())


def _load_torch(path: Path) -> Any:
    import torch

    return torch.load(path, weights_only=False)


def _load_pickle(path: Path, **options: Any) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f, **options)


def _load_npz(path: Path) -> Any:
    with np.load(path, allow_pickle=True) as archive:
        return {key: archive[key] for key in archive.files}


LOADERS: Dict[str, Callable[[Path], Any]] = {
    "pickle": _load_pickle,
    # How Python 2 pickles of NumPy data are read on Python 3.
    "pickle-latin1": lambda path: _load_pickle(path, encoding="latin1"),
    "joblib": joblib.load,
    "joblib-compressed": joblib.load,
    "to_pickle": pd.read_pickle,
    "torch.save": _load_torch,
    "torch.save-legacy": _load_torch,
    "np.save": lambda path: np.load(path, allow_pickle=True),
    "np.savez": _load_npz,
    "np.savez_compressed": _load_npz,
}


def _same(a: Any, b: Any) -> bool:
    """Equal values: arrays and frames by value, objects by their attributes or pickled state,
    anything else by its repr without ids (an old estimator's repr asks for parameters added
    since)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.kind == "O":
            return all(_same(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist()))
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, (pd.DataFrame, pd.Series, pd.Index)):
        return bool(a.equals(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if type(a).__module__.startswith("torch"):
        import torch

        if isinstance(a, torch.Tensor):
            return bool(torch.equal(a, b))
    if hasattr(a, "__dict__"):
        return _same(vars(a), vars(b))
    getstate = getattr(type(a), "__getstate__", object.__getstate__)
    if getstate is not object.__getstate__:
        return _same(a.__getstate__(), b.__getstate__())
    without_ids = re.compile(r" at 0x[0-9a-f]+")
    return without_ids.sub("", repr(a)) == without_ids.sub("", repr(b))


def _cases() -> List[Any]:
    cases = []
    for entry in MANIFEST["files"]:
        path = FIXTURES / entry["file"]
        cases.append(pytest.param(path, entry["loader"], id=entry["file"]))
    return cases


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("path", "loader"), _cases())
def test_files_of_old_releases_scan_clean_and_load_under_the_guard(path: Path, loader: str) -> None:
    report = picklefence.scan_file(path)
    assert report.verdict == "clean", [f.message for f in report.findings if f.severity != "info"]
    plain = LOADERS[loader](path)
    with picklefence.safe_ml_environment():
        guarded = LOADERS[loader](path)
    try:
        same = _same(plain, guarded)
    except AttributeError as error:
        # An old object today's library cannot compare, print or pickle again (a pandas 1.x
        # StringDtype has no `_storage`, a scipy 1.10 dok_matrix no `_dict`), loaded or not
        # under the guard: the same type, broken the same way.
        with pytest.raises(AttributeError, match=re.escape(str(error))):
            _same(guarded, plain)
        same = type(plain) is type(guarded)
    assert same, (type(plain), type(guarded))


def test_the_corpus_covers_every_release_and_writer() -> None:
    by_env: Dict[str, int] = {}
    for entry in MANIFEST["files"]:
        env = entry["file"].split("/", 1)[0]
        by_env[env] = by_env.get(env, 0) + 1
    assert set(by_env) == {"py27", "py36", "py37", "py38"} and min(by_env.values()) >= 50, by_env
    assert {e["loader"] for e in MANIFEST["files"]} == set(LOADERS)
    assert MANIFEST["libraries"]["py27"]["pandas"].startswith("0.24")


# The old patterns the policy takes, each with the attacks an allowed old name invites.
STRING_DTYPE = ("pandas.core.arrays.string_", "StringDtype")
OLD_TICK = ("pandas.tseries.offsets", "Hour")
PERIOD_MIXIN = ("pandas._libs.tslibs.period", "__pyx_unpickle_PeriodMixin")
NEW_BLOCK = ("pandas.core.internals.blocks", "new_block")


def _block_partial(keywords: Any, args: Any = (), func: Any = None) -> Any:
    """pandas 1.3's `functools.partial(new_block, ndim=2)` as its pickle writes it: the partial
    made from the function, then BUILD of `(func, args, keywords, dict)`."""
    from gadgets import Build, Call, G

    made = Call(G("functools", "partial"), G(*NEW_BLOCK))
    return Build(made, (G(*NEW_BLOCK) if func is None else func, args, keywords, None))


def _block(partial: Any, *args: Any) -> Any:
    """A block: the partial called with the values and the placement."""
    from gadgets import Call, G, Lit

    values = Lit(np.arange(6.0).reshape(2, 3))
    return Call(partial, *(args or (values, Call(G("builtins", "slice"), 0, 2, 1))))


def _old_patterns() -> Dict[str, Any]:
    from gadgets import Build, Call, G, Lit, New

    ordinals = np.array([600, 601], dtype=np.int64)
    period_state = {"_data": Lit(ordinals), "_dtype": Lit(pd.PeriodDtype("M")), "_cache": {}}
    return {
        "pandas 1.1-2.0 string dtype": Build(New(G(*STRING_DTYPE)), {"storage": "python"}),
        "pandas < 1 tick offset": Build(New(G(*OLD_TICK)), {"n": 3, "normalize": False, "_cache": {}}),
        "pandas 1.x period array": Build(
            Call(G(*PERIOD_MIXIN), G("pandas.core.arrays.period", "PeriodArray"), 222419149, None),
            (period_state,),
        ),
        "pandas 1.3 block": _block(_block_partial({"ndim": 2})),
        "pandas 1.3 block, positional arguments in the partial": _block(
            _block_partial({"ndim": 2}, args=(Lit(np.arange(3.0).reshape(1, 3)),)),
            Call(G("builtins", "slice"), 0, 1, 1),
        ),
    }


@pytest.mark.parametrize("pattern", sorted(_old_patterns()))
def test_the_old_patterns_scan_clean(pattern: str) -> None:
    from gadgets import dumps

    data = dumps(_old_patterns()[pattern], proto=2)
    assert picklefence.scan_bytes(data).verdict == "clean", picklefence.scan_bytes(data).findings


def test_old_string_dtypes_and_ticks_load_under_the_guard_as_without_it() -> None:
    from gadgets import dumps

    # pandas 1.3's blocks load under the guard in the corpus's frames (pd.read_pickle places them).
    for pattern in ("pandas 1.1-2.0 string dtype", "pandas < 1 tick offset"):
        data = dumps(_old_patterns()[pattern], proto=2)
        plain = pickle.loads(data)
        with picklefence.safe_ml_environment():
            guarded = pickle.loads(data)
        assert type(guarded) is type(plain), pattern
        assert pickle.dumps(guarded, protocol=2) == pickle.dumps(plain, protocol=2), pattern
    assert guarded.n == 3


def _attacks() -> Dict[str, Any]:
    from gadgets import Build, Call, G, New, Put, Ref, SetItem

    return {
        # A state that hands the dtype a callable where pandas calls a method.
        "string dtype given a callable attribute": Build(
            New(G(*STRING_DTYPE)), {"storage": "python", "construct_array_type": G("os", "system")}
        ),
        "string dtype given a special name": Build(
            New(G(*STRING_DTYPE)), {"__setstate__": G("builtins", "eval")}
        ),
        "old tick given a callable": Build(New(G(*OLD_TICK)), {"n": G("os", "getcwd"), "normalize": False}),
        # The Cython reconstructor's state: one dict of attributes, judged like any BUILD.
        "period reconstructor given a callable attribute": Build(
            Call(G(*PERIOD_MIXIN), G("pandas.core.arrays.period", "PeriodArray"), 222419149, None),
            ({"_data": G("os", "system")},),
        ),
        "period reconstructor given a class outside the policy": Call(
            G(*PERIOD_MIXIN), G("subprocess", "Popen"), 222419149, None
        ),
        "period reconstructor given a state": Call(
            G(*PERIOD_MIXIN), G("pandas.core.arrays.period", "PeriodArray"), 222419149, ("x",)
        ),
        # The old names are reconstructed, never called with the pickle's arguments.
        "old tick called": Call(G(*OLD_TICK), 2**62),
        "old imputer called": Call(G("sklearn.impute", "SimpleImputer"), G("os", "system")),
        # A call of a partial is a call of its function: keywords by the function's schema.
        "block partial given a block class": _block(
            _block_partial({"ndim": 2, "klass": G("numpy", "float64")})
        ),
        "block partial given an unnamed keyword": _block(_block_partial({"ndim": 2, "dtype": "f8"})),
        "block partial given a huge ndim": _block(_block_partial({"ndim": 2**40})),
        "block partial given too many arguments": _block(_block_partial({"ndim": 2}), 1, 2, 2, None, 5),
        "block partial holding a class as a positional argument": _block(
            _block_partial({"ndim": 2}, args=(G("numpy", "float64"),))
        ),
        "partial built around another allowed function": _block(
            _block_partial({"ndim": 2}, func=G("pandas.core.internals.managers", "BlockManager"))
        ),
        "partial of an allowed function it may not call": _block(
            _block_partial({}, func=G("sklearn.utils.validation", "check_array"))
        ),
        "partial of a value-only class": _block(_block_partial(None, func=G("numpy", "float64"))),
        # Keywords changed after the partial's state was judged (partial keeps the dict itself).
        "block partial keywords changed after its BUILD": Call(
            _block_partial(Put("kw", {"ndim": 2})),
            SetItem(Ref("kw"), "klass", G("numpy", "float64")),
            Call(G("builtins", "slice"), 0, 2, 1),
        ),
        # Keywords in a dict made before the partial: not kept, so not readable.
        "block partial keywords made before it": [Put("kw", {"ndim": 2}), _block(_block_partial(Ref("kw")))],
        "block partial built twice": _block(
            Build(
                _block_partial({"ndim": 2}),
                (G(*NEW_BLOCK), (), {"ndim": 2, "klass": G("numpy", "float64")}, None),
            )
        ),
        # The function itself never under an attribute, where a library would call it.
        "new_block stored as an attribute": Build(New(G(*STRING_DTYPE)), {"storage": G(*NEW_BLOCK)}),
    }


@pytest.mark.parametrize("attack", sorted(_attacks()))
def test_attacks_through_the_old_names_are_refused(attack: str, tmp_path: Path) -> None:
    from gadgets import dumps

    data = dumps(_attacks()[attack], proto=2)
    assert not picklefence.scan_bytes(data).is_safe
    with picklefence.safe_ml_environment():
        with pytest.raises(picklefence.UnsafeFileError):
            pickle.loads(data)

"""The guard with real libraries: torch, numpy, scikit-learn, joblib, pandas.

Benign files load with identical results under the default policy (nothing is allowed
extra); payloads are refused with the right module and name and never run."""

from __future__ import annotations

import inspect
import io
import pickle
from pathlib import Path
from typing import Any, Callable, Dict, List

import joblib
import numpy as np
import pandas as pd
import pytest
import torch

import picklefence
from pfhelpers import MarkerWriter, NonSeekable, SubprocessPayload, SystemPayload
from picklefence import UnsafeFileError

# --------------------------------------------------------------------------------------------
# torch


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.bn = torch.nn.BatchNorm2d(2)
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.relu(self.fc(self.bn(self.conv(x)).flatten(1)))


def _checkpoint() -> Dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = model(torch.rand(5, 4)).sum()
    loss.backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": 3,
        "tensors": [
            torch.arange(6, dtype=dtype).reshape(2, 3)
            for dtype in (
                torch.float32,
                torch.float64,
                torch.float16,
                torch.bfloat16,
                torch.int64,
                torch.int8,
                torch.uint8,
            )
        ]
        + [torch.tensor([True, False]), torch.zeros(3, 3).t(), torch.rand(4)[1:3]],
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_torch_checkpoint_loads_identically(zipfile: bool, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save(_checkpoint(), path, _use_new_zipfile_serialization=zipfile)
    plain = torch.load(path, weights_only=False)
    with picklefence.safe_ml_environment():
        guarded = torch.load(path, weights_only=False)
        with open(path, "rb") as f:
            from_file = torch.load(f, weights_only=False)
    assert _same(plain, guarded) and _same(plain, from_file)


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("payload", [SystemPayload, SubprocessPayload])
def test_torch_payload_refused(zipfile: bool, payload: Any, tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save(
        {"model": torch.nn.Linear(2, 2).state_dict(), "x": payload(marker)},
        path,
        _use_new_zipfile_serialization=zipfile,
    )
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            torch.load(path, weights_only=False)
    assert not marker.exists()
    expected = ("posix", "system") if payload is SystemPayload else ("subprocess", "call")
    assert (info.value.module, info.value.name) == expected
    assert info.value.violations[0].offset is not None


def test_torch_whole_module_needs_also_allow(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = TinyNet().eval()
    path = tmp_path / "net.pt"
    torch.save(net, path)
    x = torch.rand(1, 1, 4, 4)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            torch.load(path, weights_only=False)
    assert (info.value.module, info.value.name) == (__name__, "TinyNet")
    assert f'also_allow=["{__name__}.TinyNet"]' in str(info.value)
    with picklefence.safe_ml_environment(also_allow=[f"{__name__}.TinyNet"]):
        loaded = torch.load(path, weights_only=False)
    assert isinstance(loaded, TinyNet) and torch.equal(loaded(x), net(x))


def test_torch_standard_whole_module_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3),
        torch.nn.BatchNorm2d(2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    ).eval()
    path = tmp_path / "seq.pt"
    torch.save(model, path)
    x = torch.rand(1, 1, 4, 4)
    with picklefence.safe_ml_environment():
        loaded = torch.load(path, weights_only=False)
    assert torch.equal(loaded(x), model(x))


def test_torch_weights_only_keeps_torchs_own_unpickler(tmp_path: Path, marker: Path) -> None:
    good, evil = tmp_path / "good.pt", tmp_path / "evil.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), good)
    torch.save({"x": SystemPayload(marker)}, evil)
    with picklefence.safe_ml_environment():
        assert set(torch.load(good, weights_only=True)) == {"weight", "bias"}
        with pytest.raises(pickle.UnpicklingError) as info:
            torch.load(evil, weights_only=True)
        assert not isinstance(info.value, UnsafeFileError)  # torch's own refusal
    assert not marker.exists()


class _DeclaredStorage(pickle.Pickler):
    """Writes a marker object as a legacy torch storage persistent id declaring ``numel``."""

    marker = object()

    def __init__(self, file: Any, numel: int) -> None:
        super().__init__(file, protocol=2)
        self.numel = numel

    def persistent_id(self, obj: Any) -> Any:
        if obj is self.marker:
            return ("storage", torch.FloatStorage, "0", "cpu", self.numel, None)
        return None


def _legacy_file(numel: int, keys: List[str], data: bytes) -> bytes:
    """A legacy torch file: magic, version, sys info, the data pickle, storage keys, raw data."""
    buffer = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buffer, protocol=2)
    _DeclaredStorage(buffer, numel).dump([_DeclaredStorage.marker])
    pickle.dump(keys, buffer, protocol=2)
    buffer.write(data)
    return buffer.getvalue()


@pytest.mark.parametrize("keys", [[], ["0"]], ids=["no-data", "short-data"])
def test_torch_legacy_storages_larger_than_the_file_are_refused(keys: List[str], tmp_path: Path) -> None:
    """torch's legacy loader allocates each storage its persistent id declares while the data
    pickle loads, before it reads the data: declared sizes beyond the file are refused by the
    guard (before the allocation) and flagged by the scanner."""
    numel = 1 << 26  # 256 MiB declared in a file of a few hundred bytes
    raw = (2).to_bytes(8, "little") + b"\0" * 8 if keys else b""
    path = tmp_path / "declared.pt"
    path.write_bytes(_legacy_file(numel, keys, raw))
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError, match="torch allocates every declared storage"):
            torch.load(path, weights_only=False)
    report = picklefence.scan_file(path)
    assert report.verdict == "unsafe"
    assert any(v.kind == "container" and "allocates" in v.message for v in report.violations)
    # The same layout with the data present loads.
    fine = tmp_path / "fine.pt"
    fine.write_bytes(_legacy_file(2, ["0"], (2).to_bytes(8, "little") + b"\0" * 8))
    with picklefence.safe_ml_environment():
        (storage,) = torch.load(fine, weights_only=False)
    assert len(storage) == 2
    assert picklefence.scan_file(fine).verdict == "clean"


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_torch_sparse_indices_are_checked_in_every_format(zipfile: bool, layout: str, tmp_path: Path) -> None:
    """torch validates loaded sparse tensors only under weights_only=True; the guard checks them
    for every load (the legacy format fills storages after the pickle: checked at its end)."""
    good = torch.tensor([[0, 1.5, 0], [2.0, 0, 3.0]])
    if layout == "coo":
        good = good.to_sparse()
        bad = torch.sparse_coo_tensor(
            torch.tensor([[0, 1 << 20]]), torch.tensor([1.0, 2.0]), (2,), check_invariants=False
        )
    else:
        good = good.to_sparse_csr()
        bad = torch.sparse_csr_tensor(
            torch.tensor([0, 1, 2]),
            torch.tensor([0, 1 << 20]),
            torch.tensor([1.0, 2.0]),
            (2, 2),
            check_invariants=False,
        )
    good_path, bad_path = tmp_path / "good.pt", tmp_path / "bad.pt"
    torch.save(good, good_path, _use_new_zipfile_serialization=zipfile)
    torch.save(bad, bad_path, _use_new_zipfile_serialization=zipfile)
    original = torch._utils._validate_loaded_sparse_tensors
    with picklefence.safe_ml_environment():
        assert torch.equal(torch.load(good_path, weights_only=False).to_dense(), good.to_dense())
        with pytest.raises(UnsafeFileError, match="_rebuild_sparse_tensor") as info:
            torch.load(bad_path, weights_only=False)
        assert "indices break its invariants" in str(info.value)
        assert not torch._utils._get_sparse_tensors_to_validate()
    assert torch._utils._validate_loaded_sparse_tensors is original
    # Without the guard the same file loads (torch does not check it).
    assert torch.load(bad_path, weights_only=False).layout is bad.layout


@pytest.mark.parametrize("wrap", ["seekable", "non-seekable"])
def test_torch_legacy_stream_position(wrap: str, tmp_path: Path) -> None:
    """Two legacy checkpoints and a trailer in one stream read exactly as without the guard."""
    buffer = io.BytesIO()
    first, second = _checkpoint(), {"w": torch.rand(3)}
    torch.save(first, buffer, _use_new_zipfile_serialization=False)
    torch.save(second, buffer, _use_new_zipfile_serialization=False)
    buffer.write(b"TRAILER")
    data = buffer.getvalue()

    def run() -> Any:
        f: Any = io.BytesIO(data) if wrap == "seekable" else io.BufferedReader(NonSeekable(data))
        results: List[Any] = []
        for _ in range(2):
            try:
                results.append(torch.load(f, weights_only=False))
            except Exception as error:  # torch needs seekable files for the legacy format
                results.append(type(error))
        return results, f.read()

    plain_results, plain_rest = run()
    with picklefence.safe_ml_environment():
        guarded_results, guarded_rest = run()
    assert guarded_rest == plain_rest
    assert all(_same(a, b) for a, b in zip(plain_results, guarded_results))
    if wrap == "seekable":
        assert plain_rest == b"TRAILER" and _same(guarded_results[0], first)


# --------------------------------------------------------------------------------------------
# numpy

DTYPES = [
    "?",
    "b",
    "B",
    "i2",
    "u2",
    "i4",
    "u4",
    "i8",
    "u8",
    ">i4",
    "f2",
    "f4",
    "f8",
    ">f8",
    "g",
    "c8",
    "c16",
    "G",
    "M8[ns]",
    "M8[D]",
    "m8[s]",
    "U5",
    "S5",
    "V3",
    "O",
    [("a", "i4"), ("b", "f8", (2,))],
    # Structured dtypes whose fields the scanner measures against the item size: nested, with
    # a structured subarray, padded, gapped, overlapping, titled, with str and time fields.
    [("a", [("x", "u1"), ("y", "<c16", (2,))]), ("s", "U3"), ("t", "M8[ns]"), ("m", [("x", "f4")], (2, 2))],
    np.dtype([("a", "i1"), ("b", "<i8")], align=True),
    np.dtype({"names": ["a"], "formats": ["i8"], "offsets": [8], "itemsize": 24}),
    [(("title", "a"), "i8"), ("b", "V7")],
]


def _array(dtype: Any) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "O":
        return np.array([1, "two", None, {"k": [1.5]}, (1, 2), np.float32(3)], dtype=object)
    return (
        np.arange(24, dtype="u1").view("u1").repeat(dt.itemsize)[: 6 * dt.itemsize].view(dt)
        if dt.itemsize
        else np.zeros(6, dt)
    )


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        if a.dtype.kind != "O"
        else a.tolist() == b.tolist()
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_numpy_arrays_of_every_dtype(dtype: Any, tmp_path: Path) -> None:
    array = _array(dtype)
    path = tmp_path / "a.npy"
    np.save(path, array, allow_pickle=True)
    pickled = {p: pickle.dumps(array, protocol=p) for p in (2, 4, 5)}
    scalar = pickle.dumps(array[0] if array.dtype.kind != "O" else np.float64(1.5), protocol=4)
    plain = [np.load(path, allow_pickle=True)] + [pickle.loads(data) for data in pickled.values()]
    assert _arrays_equal(plain[0], array)
    with picklefence.safe_ml_environment():
        guarded = [np.load(path, allow_pickle=True)] + [pickle.loads(data) for data in pickled.values()]
        guarded_scalar = pickle.loads(scalar)
    assert all(_arrays_equal(a, b) for a, b in zip(plain, guarded))
    assert repr(guarded_scalar) == repr(pickle.loads(scalar))


def test_structured_arrays_numpy_save_cannot_write_load_unchanged() -> None:
    """Object fields make numpy pickle the items as a list, stored field by field at their
    offsets; overlapping fields have no .npy header: the scanner's field-extent rule reads
    these pickles (and a record array from a frame) as they are."""
    table = np.array(
        [(1, "a", 1.5), (2, None, 2.5), (3, [1], -1.0)], dtype=[("n", "i8"), ("o", "O"), ("x", "f4")]
    )
    overlapping = np.dtype({"names": ["a", "b"], "formats": ["i8", "i4"], "offsets": [0, 0], "itemsize": 8})
    union = np.arange(3, dtype="i8").view(overlapping)
    records = pd.DataFrame({"x": [1, 2], "s": ["a", "b"]}).to_records()
    for data in (pickle.dumps([table, union, records], protocol=p) for p in (2, 4, 5)):
        with picklefence.safe_ml_environment():
            got = pickle.loads(data)
        for loaded, made in zip(got, (table, union, records)):
            assert loaded.dtype == made.dtype and loaded.tolist() == made.tolist()


class _DtypeState:
    """Pickles as ``numpy.dtype(descr, False, True)`` given ``state`` (an edited dtype)."""

    def __init__(self, descr: str, state: Any) -> None:
        self.descr, self.state = descr, state

    def __reduce__(self) -> Any:
        return (np.dtype, (self.descr, False, True), self.state)


class _ArrayOf:
    """Pickles as an array of ``count`` items of ``dtype`` from ``data``, as numpy pickles one."""

    def __init__(self, dtype: Any, count: int, data: Any) -> None:
        self.dtype, self.count, self.data = dtype, count, data

    def __reduce__(self) -> Any:
        reconstruct = np._core.multiarray._reconstruct  # type: ignore[attr-defined]
        return (reconstruct, (np.ndarray, (0,), b"b"), (1, (self.count,), self.dtype, False, self.data))


def _structured_past_its_items(case: str) -> _ArrayOf:
    """A 16-byte structured dtype edited so that a part lies past its items, in an array."""
    i8, obj = np.dtype("i8"), np.dtype("O")
    fields, subarray, flags, data = None, None, 16, b"\0" * 64
    if case == "field past the items":
        fields = {"a": (i8, 0), "b": (i8, 1 << 20)}
    elif case == "field straddling the end":
        fields = {"a": (i8, 0), "b": (i8, 9)}
    elif case == "negative offset":
        fields = {"a": (i8, -8), "b": (i8, 8)}
    elif case == "field of a larger subarray":
        fields = {"a": (np.dtype(("i8", (1 << 17,))), 0)}
    elif case == "object field past the items":  # stored at the load, past every item
        fields, flags, data = {"a": (obj, 0), "b": (obj, 1 << 22)}, 27, [(1, 2)] * 4
    elif case == "subarray larger than the items":
        subarray = (i8, (1 << 17,))
    names = tuple(fields) if fields else None
    state = (3, "|", subarray, names, fields, 16, 1, flags)
    return _ArrayOf(_DtypeState("V16", state), 4, data)


_PAST_ITEMS = [
    "field past the items",
    "field straddling the end",
    "negative offset",
    "field of a larger subarray",
    "object field past the items",
    "subarray larger than the items",
]


@pytest.mark.parametrize("loader", ["pickle.loads", "pickle._Unpickler", "numpy.load", "joblib.load"])
@pytest.mark.parametrize("case", _PAST_ITEMS)
def test_structured_dtype_parts_past_their_items_are_refused(case: str, loader: str, tmp_path: Path) -> None:
    """numpy's dtype.__setstate__ checks no field offset or subarray against the item size:
    reading such a field reads past each item, assigning it writes there, and an array of
    objects is stored there as numpy loads it (gadget dtype_field_past_its_items). Refused
    before the load."""
    table = _structured_past_its_items(case)
    data = pickle.dumps(table, protocol=4)
    path, npy = tmp_path / "table.pkl", tmp_path / "tables.npy"
    path.write_bytes(data)
    np.save(npy, np.array([table, None], dtype=object), allow_pickle=True)
    loads: Dict[str, Callable[[], Any]] = {
        "pickle.loads": lambda: pickle.loads(data),
        "pickle._Unpickler": lambda: pickle._Unpickler(io.BytesIO(data)).load(),  # type: ignore[attr-defined]
        "numpy.load": lambda: np.load(npy, allow_pickle=True),
        "joblib.load": lambda: joblib.load(path),
    }
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            loads[loader]()
    assert any(
        v.kind == "state-violation"
        and v.name == "dtype"
        and ("field" in v.message or "subarray" in v.message)
        for v in info.value.violations
    ), str(info.value)


def test_numpy_npz_and_pickle_files(tmp_path: Path) -> None:
    objects = np.array([{"a": 1}, [1, 2], "s"], dtype=object)
    np.savez(tmp_path / "x.npz", objects=objects, floats=np.arange(5.0))
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"arr": np.arange(3), "m": np.ma.masked_array([1, 2], mask=[0, 1])}, f)
    with picklefence.safe_ml_environment():
        with np.load(tmp_path / "x.npz", allow_pickle=True) as npz:
            assert npz["objects"].tolist() == objects.tolist()
            assert npz["floats"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        loaded = np.load(tmp_path / "plain.pkl", allow_pickle=True)
    assert loaded["arr"].tolist() == [0, 1, 2] and loaded["m"].mask.tolist() == [False, True]


def test_numpy_object_array_payload_refused(tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "evil.npy"
    np.save(path, np.array([1, SystemPayload(marker)], dtype=object), allow_pickle=True)
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump([SystemPayload(marker)], f)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            np.load(path, allow_pickle=True)
        assert (info.value.module, info.value.name) == ("posix", "system")
        assert info.value.filepath == str(path)
        # For a file that is not .npy, numpy wraps the error in its own UnpicklingError.
        with pytest.raises(pickle.UnpicklingError) as wrapped:
            np.load(tmp_path / "evil.pkl", allow_pickle=True)
        cause = wrapped.value.__cause__
        assert isinstance(cause, UnsafeFileError) and (cause.module, cause.name) == ("posix", "system")
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# scikit-learn via pickle and joblib


def _estimators() -> Dict[str, Any]:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.RandomState(0)
    X = rng.rand(80, 4)
    y = (X[:, 0] + X[:, 1] > 1).astype(int)
    return {
        "LogisticRegression": LogisticRegression().fit(X, y),
        "RandomForest": RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y),
        "GradientBoosting": GradientBoostingClassifier(n_estimators=8, random_state=0).fit(X, y),
        "Pipeline": Pipeline([("scale", StandardScaler()), ("svc", SVC(random_state=0))]).fit(X, y),
        "SVC": SVC().fit(X, y),
        "KMeans": KMeans(n_clusters=3, n_init=2, random_state=0).fit(X),
        "PCA": PCA(2).fit(X),
        "TfidfVectorizer": TfidfVectorizer().fit(["the cat sat", "the dog ran", "a cat ran"]),
        "DecisionTreeRegressor": DecisionTreeRegressor(random_state=0).fit(X, X[:, 2]),
        "KNeighbors": KNeighborsClassifier().fit(X, y),
        "GaussianNB": GaussianNB().fit(X, y),
        "OneHotEncoder": OneHotEncoder().fit([["a"], ["b"]]),
        # Object-dtype arrays (categories of strings, numpy scalars): joblib writes each as a
        # nested pickle after its wrapper.
        "OneHotEncoderStrings": OneHotEncoder().fit(np.array([["a", "x"], ["b", "y"]], dtype=object)),
        "LabelEncoder": LabelEncoder().fit(["cat", "dog", "bird"]),
    }


def _outputs(name: str, est: Any) -> Any:
    if name == "TfidfVectorizer":
        return est.transform(["the cat ran"]).toarray().tolist()
    if name == "OneHotEncoder":
        return est.transform([["b"]]).toarray().tolist()
    if name == "OneHotEncoderStrings":
        return est.transform(np.array([["b", "x"]], dtype=object)).toarray().tolist()
    if name == "LabelEncoder":
        return est.transform(["dog", "cat"]).tolist()
    X = np.random.RandomState(1).rand(10, 4)
    if hasattr(est, "predict"):
        return est.predict(X).tolist()
    return est.transform(X).tolist()


ESTIMATORS = _estimators()
COMPRESSORS = [0, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)]


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_sklearn_via_pickle(name: str, tmp_path: Path) -> None:
    est = ESTIMATORS[name]
    path = tmp_path / "est.pkl"
    with open(path, "wb") as f:
        pickle.dump(est, f, protocol=4)
    with picklefence.safe_ml_environment():
        with open(path, "rb") as f:
            loaded = pickle.load(f)
        loaded_bytes = pickle.loads(path.read_bytes())
    assert _outputs(name, loaded) == _outputs(name, est) == _outputs(name, loaded_bytes)


@pytest.mark.parametrize("compress", COMPRESSORS, ids=lambda c: str(c[0]) if c else "none")
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_sklearn_via_joblib(name: str, compress: Any, tmp_path: Path) -> None:
    est = ESTIMATORS[name]
    path = tmp_path / "est.joblib"
    joblib.dump(est, path, compress=compress)
    with picklefence.safe_ml_environment():
        loaded = joblib.load(path)
    assert _outputs(name, loaded) == _outputs(name, est)


@pytest.mark.parametrize("compress", [0, ("gzip", 3)], ids=lambda c: str(c[0]) if c else "none")
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_scanner_passes_what_the_guard_loads(name: str, compress: Any, tmp_path: Path) -> None:
    # One policy, one engine: the static scan of a benign model file is clean, with no
    # violation, however the file is written.
    est = ESTIMATORS[name]
    joblib_path = tmp_path / "est.joblib"
    joblib.dump(est, joblib_path, compress=compress)
    pickle_path = tmp_path / "est.pkl"
    pickle_path.write_bytes(pickle.dumps(est, protocol=5))
    for path in (joblib_path, pickle_path):
        report = picklefence.scan_file(path)
        assert report.is_safe, str(report)


def test_scanner_passes_joblib_object_arrays(tmp_path: Path) -> None:
    values = {
        "scalars": np.array([np.float64(1.5), np.int64(2), np.bool_(True)], dtype=object),
        "mixed": np.array([1.0, "x", None, (1, 2)], dtype=object),
        "after": np.arange(10.0),
    }
    path = tmp_path / "objects.joblib"
    joblib.dump(values, path)
    report = picklefence.scan_file(path)
    assert report.is_safe, str(report)
    with picklefence.safe_ml_environment():
        loaded = joblib.load(path)
    assert loaded["mixed"].tolist() == values["mixed"].tolist()


@pytest.mark.parametrize("compress", COMPRESSORS, ids=lambda c: str(c[0]) if c else "none")
def test_joblib_payload_refused(compress: Any, tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "evil.joblib"
    joblib.dump(
        {"arr": np.arange(1000.0), "evil": SystemPayload(marker), "arr2": np.ones(5)}, path, compress=compress
    )
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            joblib.load(path)
    assert (info.value.module, info.value.name) == ("posix", "system")
    assert info.value.violations[0].offset is not None, "refused by the pre-scan"
    assert not marker.exists()


@pytest.mark.parametrize("compress", COMPRESSORS, ids=lambda c: str(c[0]) if c else "none")
def test_joblib_prescan_runs_before_anything(compress: Any, tmp_path: Path, marker: Path) -> None:
    """Arrays before and after an allowed constructor with a side effect, then a bad import:
    nothing runs, so the pre-scan read past the raw array bytes correctly."""
    first = tmp_path / "FIRST"
    path = tmp_path / "evil.joblib"
    value = [
        np.arange(5000.0),
        MarkerWriter.unconstructed(str(first)),
        np.ones((7, 3), "i2"),
        SystemPayload(marker),
    ]
    joblib.dump(value, path, compress=compress)
    with picklefence.safe_ml_environment(also_allow=["pfhelpers.MarkerWriter"]):
        with pytest.raises(UnsafeFileError) as info:
            joblib.load(path)
        with open(path, "rb") as f:
            with pytest.raises(UnsafeFileError):
                joblib.load(f)
    assert (info.value.module, info.value.name) == ("posix", "system")
    assert not first.exists() and not marker.exists()


def test_joblib_imported_before_activation_is_covered(tmp_path: Path, marker: Path) -> None:
    from joblib import numpy_pickle

    assert issubclass(numpy_pickle.NumpyUnpickler, pickle._Unpickler)  # type: ignore[attr-defined]
    path = tmp_path / "evil.joblib"
    joblib.dump([SubprocessPayload(marker)], path)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            numpy_pickle.load(path)
    assert (info.value.module, info.value.name) == ("subprocess", "call")
    assert not marker.exists()


@pytest.mark.parametrize("wrap", ["seekable", "non-seekable"])
def test_joblib_stream_position(wrap: str) -> None:
    buffer = io.BytesIO()
    first = {"a": np.arange(10_000.0), "b": [np.ones((3, 3), dtype="i2"), "x"]}
    joblib.dump(first, buffer)
    joblib.dump(np.arange(7), buffer)
    buffer.write(b"TRAILER")
    data = buffer.getvalue()

    def run() -> Any:
        f: Any = io.BytesIO(data) if wrap == "seekable" else io.BufferedReader(NonSeekable(data))
        out: List[Any] = []
        for _ in range(2):
            try:
                out.append(joblib.load(f))
            except Exception as error:
                out.append(type(error))
        return out, f.read()

    plain, plain_rest = run()
    with picklefence.safe_ml_environment():
        guarded, guarded_rest = run()
    assert guarded_rest == plain_rest
    assert repr(guarded) == repr(plain)


@pytest.mark.parametrize("offset", [0, 5])
def test_joblib_mmap_mode_maps_the_arrays_of_the_file(offset: int, tmp_path: Path) -> None:
    # With mmap_mode, joblib maps each array at file_handle.tell() of the real file: the guard
    # must leave that handle (and its positions) alone, also for a pickle that starts mid-file.
    values = {"a": np.arange(50_000.0), "b": [np.ones((30, 3), dtype="i2"), "x"]}
    path = tmp_path / "arrays.joblib"
    joblib.dump(values, path)
    if offset:
        path.write_bytes(b"#" * offset + path.read_bytes())

    def run() -> Any:
        with open(path, "rb") as f:
            f.seek(offset)
            if offset:  # joblib.load only opens paths: call its unpickler on the open file
                from joblib.numpy_pickle import NumpyUnpickler

                extra = {}
                if "ensure_native_byte_order" in inspect.signature(NumpyUnpickler).parameters:
                    extra["ensure_native_byte_order"] = False  # joblib >= 1.5
                return NumpyUnpickler(str(path), f, mmap_mode="r", **extra).load()
            return joblib.load(path, mmap_mode="r")

    plain = run()
    with picklefence.safe_ml_environment():
        guarded = run()
    assert isinstance(guarded["a"], np.memmap)
    assert np.array_equal(guarded["a"], plain["a"]) and np.array_equal(guarded["a"], values["a"])
    assert np.array_equal(guarded["b"][0], values["b"][0])


# --------------------------------------------------------------------------------------------
# pandas


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "int": [1, 2, 3],
            "float": [0.5, np.nan, 2.5],
            "str": ["a", "b", None],
            "cat": pd.Categorical(["x", "y", "x"]),
            "time": pd.to_datetime(["2020-01-01", "2021-06-01", "2022-12-31"]),
            "tz": pd.date_range("2020-01-01", periods=3, tz="UTC"),
            "delta": pd.to_timedelta([1, 2, 3], unit="s"),
            "bool": [True, False, True],
            "nullable": pd.array([1, None, 3], dtype="Int64"),
            "period": pd.period_range("2020-01", periods=3, freq="M"),
        },
        index=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)]),
    )


@pytest.mark.parametrize("compression", [None, "gzip", "bz2", "xz", "zip"])
def test_pandas_read_pickle(compression: Any, tmp_path: Path) -> None:
    frame = _frame()
    path = tmp_path / "frame.pkl"
    frame.to_pickle(path, compression=compression)
    series = tmp_path / "series.pkl"
    frame["float"].to_pickle(series)
    with picklefence.safe_ml_environment():
        loaded = pd.read_pickle(path, compression=compression)
        loaded_series = pd.read_pickle(series)
    pd.testing.assert_frame_equal(loaded, frame)
    pd.testing.assert_series_equal(loaded_series, frame["float"])


def test_pandas_payload_refused_including_compat_fallback(tmp_path: Path, marker: Path) -> None:
    from pandas.compat import pickle_compat

    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"df": _frame(), "x": SystemPayload(marker)}, f, protocol=2)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            pd.read_pickle(path)
        assert (info.value.module, info.value.name) == ("posix", "system")
        with open(path, "rb") as f:
            with pytest.raises(UnsafeFileError) as info:
                pickle_compat.Unpickler(f).load()  # the fallback read_pickle uses
        assert info.value.violations[0].offset is not None
        with open(path, "rb") as f:
            with pytest.raises(UnsafeFileError):
                pickle_compat.load(f) if hasattr(pickle_compat, "load") else pickle_compat.Unpickler(f).load()
    assert not marker.exists()


def test_pandas_compat_unpickler_loads_benign(tmp_path: Path) -> None:
    from pandas.compat import pickle_compat

    frame = _frame()
    with picklefence.safe_ml_environment():
        loaded = pickle_compat.Unpickler(io.BytesIO(pickle.dumps(frame, protocol=4))).load()
    pd.testing.assert_frame_equal(loaded, frame)


def _unused(_: Callable[..., Any]) -> None:  # keeps linters quiet about helper imports
    pass


@pytest.mark.parametrize("wrap", ["seekable", "non-seekable"])
@pytest.mark.parametrize("name", ["KMeans", "Pipeline", "RandomForest"])
def test_joblib_estimator_streams(wrap: str, name: str) -> None:
    """Estimators whose joblib layout the pre-scan may stop early on still load from one stream
    exactly as without the guard, with the stream left where joblib leaves it."""
    buffer = io.BytesIO()
    joblib.dump(ESTIMATORS[name], buffer)
    buffer.write(b"TRAILER")
    data = buffer.getvalue()

    def run() -> Any:
        f: Any = io.BytesIO(data) if wrap == "seekable" else io.BufferedReader(NonSeekable(data))
        return _outputs(name, joblib.load(f)), f.read()

    plain = run()
    with picklefence.safe_ml_environment():
        guarded = run()
    assert guarded == plain and plain[1] == b"TRAILER"


# --------------------------------------------------------------------------------------------
# Tensors pickled without torch.save: torch.storage._load_from_bytes(<a nested torch file>)


class _NestedTorchFile:
    """Pickles as torch.storage._load_from_bytes(data)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> Any:
        return (torch.storage._load_from_bytes, (self.data,))


@pytest.mark.parametrize("protocol", [2, 5])
def test_pickled_tensor_nested_file_is_scanned(protocol: int, tmp_path: Path, marker: Path) -> None:
    benign = pickle.dumps(torch.arange(4.0), protocol=protocol)
    report = picklefence.scan_bytes(benign)
    assert report.is_safe, report.findings
    assert any("<nested torch file" in f.location for f in report.findings), report.findings
    with picklefence.safe_ml_environment():
        assert torch.equal(pickle.loads(benign), torch.arange(4.0))

    nested = io.BytesIO()
    torch.save(SystemPayload(marker), nested, _use_new_zipfile_serialization=False)
    evil = pickle.dumps(_NestedTorchFile(nested.getvalue()), protocol=protocol)
    report = picklefence.scan_bytes(evil)
    assert not report.is_safe
    assert any(
        f.kind == "dangerous-import" and "<nested torch file" in f.location for f in report.findings
    ), report.findings
    with picklefence.safe_ml_environment():
        with pytest.raises(picklefence.UnsafeFileError):
            pickle.loads(evil)
    assert not marker.exists()


LOADERS: Dict[str, Callable[[Path], Any]] = {
    "torch.load": lambda path: torch.load(path, weights_only=False),
    "torch.load legacy": lambda path: torch.load(path, weights_only=False),
    "numpy.load": lambda path: np.load(path, allow_pickle=True),
    "joblib.load": joblib.load,
    "pandas.read_pickle": pd.read_pickle,
}


def write_for(loader: str, path: Path, payload: Any) -> None:
    if loader == "torch.load":
        torch.save({"x": payload}, path)
    elif loader == "torch.load legacy":
        torch.save({"x": payload}, path, _use_new_zipfile_serialization=False)
    elif loader == "numpy.load":
        np.save(path, np.array([payload], dtype=object), allow_pickle=True)
    elif loader == "joblib.load":
        joblib.dump({"x": payload}, path)
    else:
        pd.to_pickle({"x": payload}, path)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_refusals_through_library_loaders_name_the_file(
    loader: str, tmp_path: Path, marker: Path, guard: None
) -> None:
    """torch reads `data.pkl` out of the zip into memory: the refusal still names the file the
    user asked for, by path and by open file object."""
    path = tmp_path / ("model.npy" if loader == "numpy.load" else "model.bin")  # np.save adds .npy
    write_for(loader, path, SystemPayload(marker))
    with pytest.raises(UnsafeFileError) as refused:
        LOADERS[loader](path)
    assert refused.value.filepath == str(path)
    assert f"file '{path}'" in str(refused.value)
    if loader.startswith("torch"):
        with open(path, "rb") as opened, pytest.raises(UnsafeFileError) as refused:
            torch.load(opened, weights_only=False)
        assert refused.value.filepath == str(path)
        with pytest.raises(UnsafeFileError) as refused:
            torch.load(io.BytesIO(path.read_bytes()), weights_only=False)
        assert refused.value.filepath is None and "this pickle" in str(refused.value)
    assert not marker.exists()

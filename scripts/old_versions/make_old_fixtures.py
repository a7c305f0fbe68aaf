# -*- coding: utf-8 -*-
"""Write a corpus of small, BENIGN model files with whatever (old) ML libraries are installed.

Usage: python make_old_fixtures.py OUTDIR

Must run unchanged on Python 2.7 and 3.x: no f-strings, no annotations.
Every sample is wrapped in try/except; failures are recorded in OUTDIR/manifest.json
under "failed" and the script goes on.

Files are named <kind>.<variant>.<ext>, e.g. sk_logreg.pickle-p2.pkl.
"""
from __future__ import print_function

import io
import json
import os
import pickle
import platform
import sys
import traceback
import warnings
import zipfile
import zlib

warnings.simplefilter("ignore")

HIGHEST = pickle.HIGHEST_PROTOCOL

OUT = None
MANIFEST = {"python": sys.version.split()[0], "platform": platform.platform(),
            "files": [], "failed": [], "skipped": []}
LIBS = {}


def _err_text():
    et, ev, _ = sys.exc_info()
    msg = str(ev).strip().splitlines()
    return "%s: %s" % (et.__name__, msg[0] if msg else "")


def _lib(name):
    try:
        mod = __import__(name)
        for part in name.split(".")[1:]:
            mod = getattr(mod, part)
        LIBS[name] = getattr(mod, "__version__", "?")
        return mod
    except Exception:
        LIBS[name] = None
        return None


def _sniff_pickle_protocol(data):
    """Protocol of a pickle stream starting at data[0] (None if no PROTO opcode -> 0/1)."""
    if len(data) >= 2 and data[0:1] == b"\x80":
        return ord(data[1:2])
    return None


def _sniff_file_protocol(path, writer):
    try:
        with open(path, "rb") as f:
            data = f.read()
        if writer.startswith("torch.save") and zipfile.is_zipfile(path):
            z = zipfile.ZipFile(path)
            for n in z.namelist():
                if n.endswith("/data.pkl") or n == "data.pkl":
                    return _sniff_pickle_protocol(z.read(n))
            return None
        if writer == "joblib-compressed":
            # joblib zlib format: raw zlib stream (new style); old style has a 'ZF' header
            try:
                raw = zlib.decompress(data)
            except Exception:
                try:
                    raw = zlib.decompressobj().decompress(data[data.index(b"x"):])
                except Exception:
                    return None
            return _sniff_pickle_protocol(raw)
        if writer == "np.save":
            # .npy: magic(6) ver(2) header_len(2 or 4) header, then the data (pickle if object)
            major = ord(data[6:7])
            if major == 1:
                hl = ord(data[8:9]) + 256 * ord(data[9:10])
                start = 10 + hl
            else:
                hl = (ord(data[8:9]) + 256 * ord(data[9:10]) + 65536 * ord(data[10:11])
                      + 16777216 * ord(data[11:12]))
                start = 12 + hl
            return _sniff_pickle_protocol(data[start:start + 2])
        return _sniff_pickle_protocol(data)
    except Exception:
        return None


def _record(fname, kind, writer, protocol_requested):
    path = os.path.join(OUT, fname)
    size = os.path.getsize(path)
    proto = _sniff_file_protocol(path, writer)
    if proto is None:
        proto = protocol_requested
    MANIFEST["files"].append({
        "file": fname, "kind": kind, "writer": writer,
        "protocol": proto, "size": size,
        "libs": dict((k, v) for k, v in LIBS.items() if v is not None),
    })


def _fail(kind, writer, err=None):
    MANIFEST["failed"].append({"kind": kind, "writer": writer,
                               "error": err if err is not None else _err_text()})
    print("FAILED %s [%s]: %s" % (kind, writer, MANIFEST["failed"][-1]["error"]))


def save_pickles(obj, kind, joblib_too=False, ext="pkl"):
    """pickle protocol 2 and highest; optionally joblib plain and compress=3."""
    protos = [2] if HIGHEST == 2 else [2, HIGHEST]
    for p in protos:
        fname = "%s.pickle-p%d.%s" % (kind, p, ext)
        try:
            with open(os.path.join(OUT, fname), "wb") as f:
                pickle.dump(obj, f, protocol=p)
            _record(fname, kind, "pickle", p)
        except Exception:
            _fail(kind, "pickle-p%d" % p)
    if joblib_too:
        joblib = _lib("joblib")
        if joblib is None:
            _fail(kind, "joblib", "joblib not importable")
            return
        for writer, kw, suffix in (("joblib", {}, "joblib"),
                                   ("joblib-compressed", {"compress": 3}, "joblib-c3")):
            fname = "%s.%s.joblib" % (kind, suffix)
            try:
                joblib.dump(obj, os.path.join(OUT, fname), **kw)
                _record(fname, kind, writer, None)
            except Exception:
                _fail(kind, writer)


def sample(kind, writer_hint=""):
    """Decorator-free helper: run builder() and return its object or None (failure recorded)."""
    def run(builder, *args):
        try:
            return builder(*args)
        except Exception:
            _fail(kind, "build" + (":" + writer_hint if writer_hint else ""))
            return None
    return run


# --------------------------------------------------------------------------- sklearn

def make_sklearn():
    np = _lib("numpy")
    sk = _lib("sklearn")
    if sk is None or np is None:
        MANIFEST["skipped"].append("sklearn: not importable")
        return
    rng = np.random.RandomState(0)
    X = rng.rand(40, 4)
    y = (X[:, 0] + X[:, 1] > 1.0).astype(int)
    y3 = (X[:, 0] * 3).astype(int)
    yr = X[:, 0] * 2.0 + X[:, 2]

    def b_logreg():
        from sklearn.linear_model import LogisticRegression
        return LogisticRegression(solver="lbfgs", random_state=0).fit(X, y)

    def b_rf():
        from sklearn.ensemble import RandomForestClassifier
        return RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, y3)

    def b_gb():
        from sklearn.ensemble import GradientBoostingClassifier
        return GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0).fit(X, y)

    def b_dtr():
        from sklearn.tree import DecisionTreeRegressor
        return DecisionTreeRegressor(max_depth=4, random_state=0).fit(X, yr)

    def b_knn(alg):
        from sklearn.neighbors import KNeighborsClassifier
        return KNeighborsClassifier(n_neighbors=3, algorithm=alg).fit(X, y)

    def b_kmeans():
        from sklearn.cluster import KMeans
        return KMeans(n_clusters=3, n_init=3, random_state=0).fit(X)

    def b_svc():
        from sklearn.svm import SVC
        return SVC(gamma="scale", random_state=0).fit(X, y)

    def b_pipeline():
        pd = _lib("pandas")
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler, OneHotEncoder
        from sklearn.linear_model import LogisticRegression
        try:
            from sklearn.compose import ColumnTransformer
        except ImportError:
            ColumnTransformer = None
        if ColumnTransformer is None or pd is None:
            return Pipeline([("scale", StandardScaler()),
                             ("clf", LogisticRegression(solver="lbfgs"))]).fit(X, y)
        df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1],
                           "c": np.array(["red", "green", "blue", "red"] * 10, dtype=object)})
        pre = ColumnTransformer([("num", StandardScaler(), ["a", "b"]),
                                 ("cat", OneHotEncoder(handle_unknown="ignore"), ["c"])])
        return Pipeline([("pre", pre), ("clf", LogisticRegression(solver="lbfgs"))]).fit(df, y)

    def b_tfidf():
        from sklearn.feature_extraction.text import TfidfVectorizer
        docs = [u"the cat sat on the mat", u"the dog ate my homework",
                u"cats and dogs are pets", u"a model file is a program"]
        return TfidfVectorizer().fit(docs)

    def b_hgb():
        try:
            from sklearn.ensemble import HistGradientBoostingClassifier
        except ImportError:
            from sklearn.experimental import enable_hist_gradient_boosting  # noqa: F401
            from sklearn.ensemble import HistGradientBoostingClassifier
        return HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, y)

    def b_iforest():
        from sklearn.ensemble import IsolationForest
        return IsolationForest(n_estimators=5, random_state=0).fit(X)

    def b_pca():
        from sklearn.decomposition import PCA
        return PCA(n_components=2, random_state=0).fit(X)

    def b_labelenc():
        from sklearn.preprocessing import LabelEncoder
        return LabelEncoder().fit(["cat", "dog", "fish", "dog"])

    # a few cheap extras
    def b_mlp():
        from sklearn.neural_network import MLPClassifier
        return MLPClassifier(hidden_layer_sizes=(5,), max_iter=20, random_state=0).fit(X, y)

    def b_gnb():
        from sklearn.naive_bayes import GaussianNB
        return GaussianNB().fit(X, y)

    def b_gridsearch():
        from sklearn.model_selection import GridSearchCV
        from sklearn.linear_model import Ridge
        return GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=3).fit(X, yr)

    def b_imputer():
        try:
            from sklearn.impute import SimpleImputer
        except ImportError:
            from sklearn.preprocessing import Imputer as SimpleImputer
        Xn = X.copy()
        Xn[0, 0] = np.nan
        return SimpleImputer(strategy="mean").fit(Xn)

    builders = [
        ("sk_logreg", b_logreg, ()),
        ("sk_random_forest", b_rf, ()),
        ("sk_gradient_boosting", b_gb, ()),
        ("sk_decision_tree_reg", b_dtr, ()),
        ("sk_knn_kd_tree", b_knn, ("kd_tree",)),
        ("sk_knn_ball_tree", b_knn, ("ball_tree",)),
        ("sk_kmeans", b_kmeans, ()),
        ("sk_svc", b_svc, ()),
        ("sk_pipeline_columntransformer", b_pipeline, ()),
        ("sk_tfidf", b_tfidf, ()),
        ("sk_hist_gradient_boosting", b_hgb, ()),
        ("sk_isolation_forest", b_iforest, ()),
        ("sk_pca", b_pca, ()),
        ("sk_label_encoder", b_labelenc, ()),
        ("sk_mlp", b_mlp, ()),
        ("sk_gaussian_nb", b_gnb, ()),
        ("sk_gridsearch_ridge", b_gridsearch, ()),
        ("sk_simple_imputer", b_imputer, ()),
    ]
    for kind, fn, args in builders:
        obj = sample(kind)(fn, *args)
        if obj is not None:
            save_pickles(obj, kind, joblib_too=True)


# --------------------------------------------------------------------------- pandas

def make_pandas():
    np = _lib("numpy")
    pd = _lib("pandas")
    if pd is None:
        MANIFEST["skipped"].append("pandas: not importable")
        return
    n = 6

    def b_mixed():
        return pd.DataFrame({
            "i": np.arange(n, dtype="int64"),
            "f": np.linspace(0.0, 1.0, n),
            "s": ["a", "b", "c", "d", "e", "f"],
            "b": [True, False] * 3,
            "dt": pd.date_range("2020-01-01", periods=n, freq="D"),
            "dt_tz": pd.date_range("2020-01-01", periods=n, freq="H", tz="US/Eastern"),
            "dt_utc": pd.date_range("2020-01-01", periods=n, freq="H", tz="UTC"),
            "cat": pd.Categorical(["x", "y", "x", "z", "y", "x"]),
            "td": pd.to_timedelta(np.arange(n), unit="s"),
        })

    def b_multiindex():
        idx = pd.MultiIndex.from_product([["a", "b"], [1, 2, 3]], names=["letter", "num"])
        return pd.DataFrame({"v": np.arange(n, dtype="float64"), "w": list("uvwxyz")}, index=idx)

    def b_series():
        return pd.Series([1.5, 2.5, np.nan, 4.0], index=list("abcd"), name="ser")

    def b_sparse():
        SparseArray = getattr(getattr(pd, "arrays", None), "SparseArray", None) \
            or getattr(pd, "SparseArray")
        return pd.DataFrame({"dense": np.arange(8),
                             "sparse": SparseArray([0.0, 0.0, 1.5, 0.0, 0.0, 0.0, 2.0, 0.0],
                                                   fill_value=0.0)})

    def b_period():
        return pd.Series(np.arange(4), index=pd.period_range("2020-01", periods=4, freq="M"))

    def b_interval():
        return pd.Series(np.arange(4), index=pd.interval_range(start=0, end=4))

    def b_nullable():
        d = {"Int64": pd.array([1, None, 3], dtype="Int64")}
        try:
            d["boolean"] = pd.array([True, None, False], dtype="boolean")
        except Exception:
            pass
        try:
            d["string"] = pd.array(["a", None, "c"], dtype="string")
        except Exception:
            pass
        return pd.DataFrame(d)

    def b_categorical_ordered():
        return pd.Series(pd.Categorical(["lo", "hi", "mid"], categories=["lo", "mid", "hi"],
                                        ordered=True))

    def b_datetime_index_freq():
        return pd.DataFrame({"x": np.arange(5.0)},
                            index=pd.date_range("2021-03-01", periods=5, freq="15min",
                                                tz="Europe/Berlin"))

    builders = [
        ("pd_frame_mixed", b_mixed),
        ("pd_frame_multiindex", b_multiindex),
        ("pd_series", b_series),
        ("pd_frame_sparse", b_sparse),
        ("pd_series_period_index", b_period),
        ("pd_series_interval_index", b_interval),
        ("pd_frame_nullable", b_nullable),
        ("pd_series_categorical_ordered", b_categorical_ordered),
        ("pd_frame_datetime_index_tz", b_datetime_index_freq),
    ]
    for kind, fn in builders:
        obj = sample(kind)(fn)
        if obj is None:
            continue
        save_pickles(obj, kind)
        fname = "%s.to_pickle.pkl" % kind
        try:
            obj.to_pickle(os.path.join(OUT, fname))
            _record(fname, kind, "to_pickle", HIGHEST)
        except Exception:
            _fail(kind, "to_pickle")


# --------------------------------------------------------------------------- numpy

def make_numpy():
    np = _lib("numpy")
    if np is None:
        MANIFEST["skipped"].append("numpy: not importable")
        return
    rng = np.random.RandomState(1)
    arrays = []

    def add(name, fn):
        try:
            arrays.append((name, fn()))
        except Exception:
            _fail("np_" + name, "build")

    add("float16", lambda: rng.rand(5, 3).astype(np.float16))
    add("float32", lambda: rng.rand(5, 3).astype(np.float32))
    add("float64", lambda: rng.rand(5, 3))
    add("float64_fortran", lambda: np.asfortranarray(rng.rand(4, 3)))
    add("int8", lambda: np.arange(-5, 5, dtype=np.int8))
    add("int16", lambda: np.arange(-5, 5, dtype=np.int16))
    add("int32", lambda: np.arange(-5, 5, dtype=np.int32))
    add("int64", lambda: np.arange(-5, 5, dtype=np.int64))
    add("uint8", lambda: np.arange(10, dtype=np.uint8))
    add("bool", lambda: np.array([True, False, True]))
    add("complex64", lambda: (rng.rand(4) + 1j * rng.rand(4)).astype(np.complex64))
    add("complex128", lambda: rng.rand(4) + 1j * rng.rand(4))
    add("datetime64", lambda: np.array(["2020-01-01", "2021-06-15T12:00"],
                                       dtype="datetime64[ns]"))
    add("timedelta64", lambda: np.array([1, 2, 3], dtype="timedelta64[s]"))
    add("structured", lambda: np.array([(1, 2.5, b"ab"), (3, 4.5, b"cd")],
                                       dtype=[("id", "<i4"), ("val", "<f8"), ("tag", "S2")]))
    add("unicode", lambda: np.array([u"alpha", u"beta"], dtype="U5"))
    add("scalar0d", lambda: np.array(3.25))
    add("object_str", lambda: np.array([u"a", u"bb", u"ccc"], dtype=object))

    for name, arr in arrays:
        kind = "np_" + name
        save_pickles(arr, kind)
        fname = "%s.np_save.npy" % kind
        try:
            np.save(os.path.join(OUT, fname), arr, allow_pickle=True)
            _record(fname, kind, "np.save", None)
        except Exception:
            _fail(kind, "np.save")

    # scalar objects (numpy.core.multiarray.scalar in the pickle)
    try:
        save_pickles({"f64": np.float64(1.5), "i32": np.int32(7), "b": np.bool_(True)},
                     "np_scalars")
    except Exception:
        _fail("np_scalars", "pickle")

    plain = dict((n, a) for n, a in arrays if a.dtype != object)
    for writer, fn in (("np.savez", getattr(np, "savez")),
                       ("np.savez_compressed", getattr(np, "savez_compressed"))):
        fname = "np_arrays.%s.npz" % writer.split(".")[1]
        try:
            fn(os.path.join(OUT, fname), **plain)
            _record(fname, "np_arrays", writer, None)
        except Exception:
            _fail("np_arrays", writer)
    save_pickles(dict(arrays), "np_array_dict")


# --------------------------------------------------------------------------- scipy

def make_scipy():
    np = _lib("numpy")
    sp = _lib("scipy")
    if sp is None:
        MANIFEST["skipped"].append("scipy: not importable")
        return
    import scipy.sparse as sps
    dense = np.array([[0, 0, 1.5], [2.0, 0, 0], [0, 3.0, 0], [0, 0, 0]])
    for name, ctor in (("csr", "csr_matrix"), ("csc", "csc_matrix"), ("coo", "coo_matrix"),
                       ("lil", "lil_matrix"), ("dok", "dok_matrix"),
                       ("csr_array", "csr_array"), ("coo_array", "coo_array")):
        kind = "sp_" + name
        if not hasattr(sps, ctor):
            MANIFEST["skipped"].append("%s: scipy.sparse.%s not available" % (kind, ctor))
            continue
        obj = sample(kind)(lambda: getattr(sps, ctor)(dense))
        if obj is not None:
            save_pickles(obj, kind, joblib_too=(name == "csr"))


# --------------------------------------------------------------------------- torch

def make_torch():
    torch = _lib("torch")
    if torch is None:
        MANIFEST["skipped"].append("torch: not importable")
        return
    import torch.nn as nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(16, 4)
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    model.eval()

    objs = []

    def add(kind, fn):
        try:
            objs.append((kind, fn()))
        except Exception:
            _fail(kind, "build")

    add("torch_state_dict", lambda: model.state_dict())
    add("torch_whole_module", lambda: model)
    add("torch_checkpoint", lambda: {"model": model.state_dict(),
                                     "optimizer": opt.state_dict(), "epoch": 3})

    def tensors():
        d = {"int8": torch.arange(-4, 4, dtype=torch.int8),
             "float16": torch.randn(3, 2).half()}
        if hasattr(torch, "bfloat16"):
            d["bfloat16"] = torch.randn(3, 2).to(torch.bfloat16)
        base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
        d["view_shared_storage"] = base[:, 1:3]
        d["base"] = base
        d["bool"] = torch.tensor([True, False])
        d["int64"] = torch.arange(5)
        return d
    add("torch_tensor_dict", tensors)

    has_zip_kw = True
    for kind, obj in objs:
        fname = "%s.torch_save-zip.pt" % kind
        try:
            torch.save(obj, os.path.join(OUT, fname))
            _record(fname, kind, "torch.save", 2)
        except Exception:
            _fail(kind, "torch.save")
        if has_zip_kw:
            fname = "%s.torch_save-legacy.pt" % kind
            try:
                torch.save(obj, os.path.join(OUT, fname), _use_new_zipfile_serialization=False)
                _record(fname, kind, "torch.save-legacy", 2)
            except TypeError:
                has_zip_kw = False
                _fail(kind, "torch.save-legacy")
            except Exception:
                _fail(kind, "torch.save-legacy")
    # plain pickle of tensors (storage reduced via torch.storage._load_from_bytes)
    for kind, obj in objs:
        if kind in ("torch_tensor_dict", "torch_state_dict"):
            save_pickles(obj, kind, ext="pkl")


def main():
    global OUT
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    OUT = os.path.abspath(sys.argv[1])
    if not os.path.isdir(OUT):
        os.makedirs(OUT)
    for name in ("numpy", "scipy", "pandas", "sklearn", "joblib", "torch"):
        _lib(name)
    for section in (make_numpy, make_scipy, make_pandas, make_sklearn, make_torch):
        try:
            section()
        except Exception:
            _fail(section.__name__, "section", traceback.format_exc().strip().splitlines()[-1])
    MANIFEST["libs"] = dict((k, v) for k, v in LIBS.items() if v is not None)
    MANIFEST["highest_protocol"] = HIGHEST
    text = json.dumps(MANIFEST, indent=1, sort_keys=True)
    with io.open(os.path.join(OUT, "manifest.json"), "w", encoding="utf-8") as f:
        f.write(text if isinstance(text, type(u"")) else text.decode("utf-8"))
    total = sum(e["size"] for e in MANIFEST["files"])
    print("wrote %d files (%d bytes), %d failures, to %s"
          % (len(MANIFEST["files"]), total, len(MANIFEST["failed"]), OUT))


if __name__ == "__main__":
    main()

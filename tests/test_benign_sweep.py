"""Benign sweep: real files that the guard must load and the scanner must pass.

Every case writes one benign file into its tmp dir and asserts both:

* the guard loads it: inside ``picklefence.safe_ml_environment()`` (default policy, nothing
  allowed extra) the library's own loader (``pickle.load``, ``joblib.load``, ``pandas.read_pickle``,
  ``torch.load(weights_only=False)``, ``numpy.load(allow_pickle=True)``) returns an object
  equivalent to the original, with no exception;
* the scanner passes it: ``picklefence.scan_file`` reports it clean; ``test_cli_*`` also runs
  ``picklefence scan DIR --format json`` over a directory of every sample of a family.

A failing case here is a false positive of picklefence (or a regression in the library's own
pickling): do not skip or xfail it, fix the policy or the analyzer.

Families and their parameters: scikit-learn (every estimator of ``all_estimators()`` with the
instances scikit-learn's common tests use, plus real-world configurations "extra:*") x target
{binary, multiclass, multioutput, regression, unsupervised, sparse, text, dicts, labels, images} x
{pickle protocol 5, pickle protocol 2, joblib compress 0, joblib compress 3}; pandas objects x
{to_pickle plain/gzip/bz2/xz/zstd, pickle protocol 2/5}; torch objects x {torch.save zip, legacy,
pickle, joblib}; NumPy objects x {pickle protocol 0/2/5} and arrays x {npy, npz, npz compressed};
scipy.sparse x {pickle 2/5, joblib 0/3}; stdlib data x pickle protocols 0-5.

Skips (nothing else is skipped; every other case is fitted, written and loaded):
- FrozenEstimator is not built from ``all_estimators()``: it wraps an already fitted estimator and
  cannot be constructed on its own; it is covered as "extra:frozen_estimator".
- Targets are generated from each instance's tags (multioutput only where
  ``target_tags.multi_output``, sparse only where ``input_tags.sparse``); a multioutput or sparse
  case that the estimator's own ``fit`` rejects anyway is skipped with the estimator's error. On
  this data that is HalvingGridSearchCV/HalvingRandomSearchCV[estimator=Pipeline-PCA-Ridge]-sparse:
  the first halving round fits PCA on too few samples ("n_components=0 must be between 1 and ...").
- torch's legacy format cannot read back the uint16/uint32/uint64/complex32/float8*/float4/bits*
  tensors it writes (``UntypedStorage has no attribute 'dtype'`` without the guard too): those
  cases are skipped after their scan was asserted clean.

Set ``PICKLEFENCE_SWEEP_WEIGHTS_ONLY_OUT=FILE`` to write the observed ``torch.load(...,
weights_only=True)`` outcome of every torch.save file (JSON) for comparison with
``WEIGHTS_ONLY_REFUSES`` below.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import joblib
import numpy as np
import pandas as pd
import pytest
import torch

import benign_samples as bs
import picklefence

# Library warnings (deprecations, convergence on tiny data) are not what this sweep is about.
pytestmark = pytest.mark.filterwarnings("ignore")

# --------------------------------------------------------------------------------------------
# The check shared by every family


def _scan(path: Path) -> Any:
    scan = getattr(picklefence, "scan_path", None) or picklefence.scan_file
    return scan(path)


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def _describe(exc: BaseException) -> str:
    """The error's first line and, for a refusal, every violation (kind and import)."""
    seen = exc
    while seen is not None and not isinstance(seen, picklefence.UnsafeFileError):
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    if isinstance(seen, picklefence.UnsafeFileError):
        parts = [f"{v.kind} {v.qualified_name or ''}".strip() for v in seen.violations]
        return f"UnsafeFileError: {'; '.join(dict.fromkeys(parts))}"
    return f"{type(exc).__name__}: {_first_line(str(exc))}"


def guarded_load_and_scan(path: Path, load: Callable[[Path], Any]) -> Any:
    """Loads ``path`` with ``load`` under the guard and scans it; fails listing both problems."""
    problems: List[str] = []
    loaded: Any = None
    library_cannot_load = ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with picklefence.safe_ml_environment():
                loaded = load(path)
    except Exception as exc:
        library_cannot_load = _library_cannot_load(path, load, exc)
        if not library_cannot_load:
            problems.append(f"guard: {_describe(exc)}")
    try:
        report = _scan(path)
        if not report.is_safe:
            findings = dict.fromkeys(f"{f.kind} {f.qualified_name or ''}".strip() for f in report.violations)
            problems.append(f"scan: {report.verdict}: {'; '.join(findings)}")
    except Exception as exc:
        problems.append(f"scan raised {_describe(exc)}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    if library_cannot_load:
        pytest.skip(f"the library itself cannot load this file (scan is clean): {library_cannot_load}")
    return loaded


def _library_cannot_load(path: Path, load: Callable[[Path], Any], guarded: BaseException) -> str:
    """The error, if the load fails the same way without the guard (torch's legacy format cannot
    read back uint16/uint32/uint64/complex32/float8/bits tensors it wrote)."""
    if "UnsafeFileError" in _describe(guarded):
        return ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load(path)
    except Exception as plain:
        if type(plain) is type(guarded) and str(plain) == str(guarded):
            return _describe(plain)
    return ""


def _pickle_dump(protocol: int) -> Callable[[Any, Path], None]:
    def dump(obj: Any, path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=protocol)

    return dump


def _pickle_load(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def _joblib_dump(compress: int) -> Callable[[Any, Path], None]:
    def dump(obj: Any, path: Path) -> None:
        joblib.dump(obj, path, compress=compress)

    return dump


# name -> (file suffix, dump, load)
Format = Tuple[str, Callable[[Any, Path], None], Callable[[Path], Any]]

PICKLE_FORMATS: Dict[str, Format] = {
    f"pickle{p}": (f".p{p}.pkl", _pickle_dump(p), _pickle_load) for p in range(pickle.HIGHEST_PROTOCOL + 1)
}
JOBLIB_FORMATS: Dict[str, Format] = {
    "joblib0": (".joblib", _joblib_dump(0), joblib.load),
    "joblib3": (".joblib.z", _joblib_dump(3), joblib.load),
}


def _roundtrip(obj: Any, tmp_path: Path, fmt: Format, stem: str = "sample") -> Tuple[Path, Any]:
    suffix, dump, load = fmt
    path = tmp_path / (stem + suffix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dump(obj, path)
    return path, guarded_load_and_scan(path, load)


def assert_faithful(
    obj: Any, loaded: Any, path: Path, load: Callable[[Path], Any], where: str = "obj"
) -> None:
    """``loaded`` is equivalent to ``obj``; or, where the library's own round trip changes the
    object too (NumPy reads big-endian arrays of protocol < 5 back in native order), to what the
    same loader returns for the same file without the guard."""
    try:
        bs.assert_same(obj, loaded, where)
        return
    except AssertionError as guarded:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = load(path)
        try:
            bs.assert_same(obj, reference, where)
        except AssertionError as plain:
            if str(plain) != str(guarded):
                raise
        else:
            raise
        bs.assert_same(reference, loaded, where)


# --------------------------------------------------------------------------------------------
# 1. scikit-learn

SK_FORMATS: Dict[str, Format] = {
    "pickle5": PICKLE_FORMATS["pickle5"],
    "pickle2": PICKLE_FORMATS["pickle2"],
    **JOBLIB_FORMATS,
}
SK_CASES = bs.sk_cases()
_SK_FITTED: Dict[bs.SkCase, Any] = {}


def _fitted(case: bs.SkCase) -> Tuple[Any, Any]:
    if case not in _SK_FITTED:
        try:
            _SK_FITTED[case] = bs.fit_case(case)
        except bs.FitSkip as exc:
            _SK_FITTED[case] = exc
    result = _SK_FITTED[case]
    if isinstance(result, bs.FitSkip):
        pytest.skip(str(result))
    return result  # type: ignore[no-any-return]


def _assert_same_outputs(expected: Dict[str, Any], got: Dict[str, Any]) -> None:
    assert list(got) == list(expected), f"methods {list(got)} != {list(expected)}"
    for method, want in expected.items():
        have = got[method]
        for i, (w, h) in enumerate(zip(*((want, have) if isinstance(want, tuple) else ((want,), (have,))))):
            where = f"{method}[{i}]"
            if isinstance(w, str) or not hasattr(w, "dtype"):
                assert type(h) is type(w) and str(h) == str(w), f"{where}: {h!r} != {w!r}"
            elif np.issubdtype(w.dtype, np.inexact):
                np.testing.assert_allclose(h, w, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=where)
            else:
                np.testing.assert_array_equal(h, w, err_msg=where)


@pytest.mark.parametrize("fmt", list(SK_FORMATS))
@pytest.mark.parametrize("case", SK_CASES, ids=[c.id for c in SK_CASES])
def test_sklearn(case: bs.SkCase, fmt: str, tmp_path: Path) -> None:
    est, X_eval = _fitted(case)
    path, loaded = _roundtrip(est, tmp_path, SK_FORMATS[fmt], "estimator")
    assert type(loaded) is type(est)
    # The unguarded load of the same file is the reference: methods that consume a stored
    # RandomState then start from the same state in both.
    reference = SK_FORMATS[fmt][2](path)
    _assert_same_outputs(bs.sk_outputs(reference, X_eval), bs.sk_outputs(loaded, X_eval))


# --------------------------------------------------------------------------------------------
# 2. pandas


def _pd_to_pickle(compression: Any) -> Callable[[Any, Path], None]:
    def dump(obj: Any, path: Path) -> None:
        pd.to_pickle(obj, path, compression=compression)

    return dump


PD_FORMATS: Dict[str, Format] = {
    "to_pickle": (".pkl", _pd_to_pickle(None), pd.read_pickle),
    "to_pickle_gzip": (".pkl.gz", _pd_to_pickle("gzip"), pd.read_pickle),
    "to_pickle_bz2": (".pkl.bz2", _pd_to_pickle("bz2"), pd.read_pickle),
    "to_pickle_xz": (".pkl.xz", _pd_to_pickle("xz"), pd.read_pickle),
    "to_pickle_zstd": (".pkl.zst", _pd_to_pickle("zstd"), pd.read_pickle),
    "pickle2": PICKLE_FORMATS["pickle2"],
    "pickle5": PICKLE_FORMATS["pickle5"],
}


@pytest.mark.parametrize("fmt", list(PD_FORMATS))
@pytest.mark.parametrize("name", list(bs.PD_SAMPLES))
def test_pandas(name: str, fmt: str, tmp_path: Path) -> None:
    if fmt == "to_pickle_zstd" and not bs._has("zstandard"):
        pytest.skip("zstandard is not installed")
    obj = _build(bs.PD_SAMPLES[name])
    path, loaded = _roundtrip(obj, tmp_path, PD_FORMATS[fmt])
    assert_faithful(obj, loaded, path, PD_FORMATS[fmt][2])


# --------------------------------------------------------------------------------------------
# 3. torch

# Which benign torch.save files torch.load(weights_only=True) refuses, observed with torch
# 2.15.0, numpy 2.4.6, transformers 5.25.0 (the same for the zip and the legacy format): sample
# -> the first global its WeightsUnpickler refused (it stops at the first). Every other
# torch.save sample of TORCH_SAMPLES loads with weights_only=True. Not listed: the legacy files
# of uint16/uint32/uint64/complex32/float8*/float4/bits* tensors, which torch cannot read back
# at all (weights_only or not). Regenerate with PICKLEFENCE_SWEEP_WEIGHTS_ONLY_OUT=FILE; the
# test records each outcome (record_property "weights_only") but never asserts on it.
WEIGHTS_ONLY_REFUSES: Dict[str, str] = {
    "checkpoint_full": "Unsupported global torch.torch_version.TorchVersion",
    "checkpoint_hparams_namespaces": "Unsupported global argparse.Namespace",
    "checkpoint_rng_states": "Unsupported global numpy._core.multiarray._reconstruct",
    "checkpoint_with_numpy": "Unsupported global numpy._core.multiarray._reconstruct",
    "checkpoint_with_training_args": "Unsupported global transformers.training_args.TrainingArguments",
    "module_bilinear_prelu": "Unsupported global torch.nn.modules.container.Sequential",
    "module_cnn": "Unsupported global torch.nn.modules.container.Sequential",
    "module_conv1d_transpose_upsample": "Unsupported global torch.nn.modules.container.Sequential",
    "module_embedding": "Unsupported global torch.nn.modules.sparse.Embedding",
    "module_embedding_bag": "Unsupported global torch.nn.modules.sparse.EmbeddingBag",
    "module_gru": "Unsupported global torch.nn.modules.rnn.GRU",
    "module_layernorm_groupnorm": "Unsupported global torch.nn.modules.container.Sequential",
    "module_linear": "Unsupported global torch.nn.modules.linear.Linear",
    "module_lstm": "Unsupported global torch.nn.modules.rnn.LSTM",
    "module_mlp_sequential": "Unsupported global torch.nn.modules.container.Sequential",
    "module_module_containers": "Unsupported global torch.nn.modules.container.ModuleDict",
    "module_multihead_attention": "Unsupported global torch.nn.modules.activation.MultiheadAttention",
    "module_rnn_tanh": "Unsupported global torch.nn.modules.rnn.RNN",
    "module_spectral_norm_hooks": "Unsupported global torch.nn.modules.container.Sequential",
    "module_transformer_decoder_layer_gelu": (
        "Unsupported global torch.nn.modules.transformer.TransformerDecoderLayer"
    ),
    "module_transformer_encoder": "Unsupported global torch.nn.modules.transformer.TransformerEncoder",
    "module_weight_norm_hooks": "Unsupported global torch.nn.modules.container.Sequential",
    "torch_return_types_topk": "Unsupported global torch.return_types.topk",
    "training_args_bin": "Unsupported global transformers.training_args.TrainingArguments",
}

WEIGHTS_ONLY_OBSERVED: Dict[str, str] = {}


def _torch_save(zipfile: bool) -> Callable[[Any, Path], None]:
    def dump(obj: Any, path: Path) -> None:
        torch.save(obj, path, _use_new_zipfile_serialization=zipfile)

    return dump


def _torch_load(path: Path) -> Any:
    return torch.load(path, weights_only=False)


TORCH_FORMATS: Dict[str, Format] = {
    "zip": (".pt", _torch_save(True), _torch_load),
    "legacy": (".pt", _torch_save(False), _torch_load),
    "pickle": (".pkl", _pickle_dump(pickle.DEFAULT_PROTOCOL), _pickle_load),
    "joblib": (".joblib", _joblib_dump(0), joblib.load),
}
TORCH_SAMPLES = bs.torch_samples()


def _weights_only_outcome(path: Path) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(path, weights_only=True)
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {_weights_only_reason(exc)}"
    return "loads"


def _weights_only_reason(exc: BaseException) -> str:
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"Unsupported global {found.group(1)}"
    for line in text.splitlines():
        if "Unsupported" in line or "Trying to" in line:
            return line.strip()[:160]
    return _first_line(text)[:160]


@pytest.fixture(scope="module", autouse=True)
def _write_weights_only_table() -> Iterator[None]:
    yield
    out = os.environ.get("PICKLEFENCE_SWEEP_WEIGHTS_ONLY_OUT")
    if out and WEIGHTS_ONLY_OBSERVED:
        Path(out).write_text(json.dumps(WEIGHTS_ONLY_OBSERVED, indent=1, sort_keys=True))


# torch.save pickles with protocol 2, which cannot write a memory format (it pickles as the
# dotted global torch._utils."torch.channels_last"); only pickle and joblib can.
TORCH_PICKLE_ONLY = {"torch_memory_formats"}
TORCH_CASES = [
    pytest.param(name, fmt, id=f"{name}-{fmt}")
    for name in TORCH_SAMPLES
    for fmt in TORCH_FORMATS
    if not (name in TORCH_PICKLE_ONLY and fmt in ("zip", "legacy"))
]


@pytest.mark.parametrize(("name", "fmt"), TORCH_CASES)
def test_torch(name: str, fmt: str, tmp_path: Path, record_property: Callable[[str, Any], None]) -> None:
    if name in ("training_args_bin", "checkpoint_with_training_args"):
        try:
            import transformers  # noqa: F401
        except Exception as exc:
            pytest.skip(f"transformers cannot be imported: {exc}")
    obj = _build(TORCH_SAMPLES[name])
    stem = "training_args" if name == "training_args_bin" else "model"
    suffix, dump, load = TORCH_FORMATS[fmt]
    if name == "training_args_bin" and fmt in ("zip", "legacy"):
        suffix = ".bin"
    path = tmp_path / (stem + suffix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dump(obj, path)
    if fmt in ("zip", "legacy"):
        outcome = _weights_only_outcome(path)
        WEIGHTS_ONLY_OBSERVED[f"{name}[{fmt}]"] = outcome
        record_property("weights_only", outcome)
    loaded = guarded_load_and_scan(path, load)
    assert_faithful(obj, loaded, path, load)
    probe = bs.TORCH_PROBES.get(name)
    if probe is not None:
        inputs = probe()
        with torch.no_grad():
            bs.assert_same(obj(*inputs), loaded(*inputs), "forward")


# --------------------------------------------------------------------------------------------
# 4. NumPy

NP_FORMATS: Dict[str, Format] = {f"pickle{p}": PICKLE_FORMATS[f"pickle{p}"] for p in (0, 2, 5)}


def _np_save(obj: Any, path: Path) -> None:
    np.save(path, obj, allow_pickle=True)


def _np_load(path: Path) -> Any:
    return np.load(path, allow_pickle=True)


def _npz_dump(compressed: bool) -> Callable[[Any, Path], None]:
    def dump(obj: Any, path: Path) -> None:
        arrays = {"sample": obj, "index": np.arange(3), "labels": np.array(["a", None], dtype=object)}
        (np.savez_compressed if compressed else np.savez)(path, **arrays)

    return dump


def _npz_load(path: Path) -> Any:
    with np.load(path, allow_pickle=True) as archive:
        return {name: archive[name] for name in archive.files}["sample"]


NP_ARRAY_FORMATS: Dict[str, Format] = {
    "npy": (".npy", _np_save, _np_load),
    "npz": (".npz", _npz_dump(False), _npz_load),
    "npz_compressed": (".npz", _npz_dump(True), _npz_load),
}


@pytest.mark.parametrize("fmt", list(NP_FORMATS))
@pytest.mark.parametrize("name", list(bs.NP_SAMPLES))
def test_numpy_pickle(name: str, fmt: str, tmp_path: Path) -> None:
    obj = _build(bs.NP_SAMPLES[name])
    path, loaded = _roundtrip(obj, tmp_path, NP_FORMATS[fmt])
    assert_faithful(obj, loaded, path, NP_FORMATS[fmt][2])


@pytest.mark.parametrize("fmt", list(NP_ARRAY_FORMATS))
@pytest.mark.parametrize("name", bs.NP_ARRAY_SAMPLES)
def test_numpy_save(name: str, fmt: str, tmp_path: Path) -> None:
    obj = _build(bs.NP_SAMPLES[name])
    path, loaded = _roundtrip(obj, tmp_path, NP_ARRAY_FORMATS[fmt])
    # np.save writes the array's values in C or Fortran order, not its view's strides.
    expected = np.array(obj, order="K") if obj.flags.f_contiguous else np.ascontiguousarray(obj)
    assert_faithful(expected, loaded, path, NP_ARRAY_FORMATS[fmt][2])


# --------------------------------------------------------------------------------------------
# 5. scipy.sparse

SP_FORMATS: Dict[str, Format] = {
    "pickle2": PICKLE_FORMATS["pickle2"],
    "pickle5": PICKLE_FORMATS["pickle5"],
    **JOBLIB_FORMATS,
}


@pytest.mark.parametrize("fmt", list(SP_FORMATS))
@pytest.mark.parametrize("name", list(bs.SP_SAMPLES))
def test_scipy_sparse(name: str, fmt: str, tmp_path: Path) -> None:
    obj = _build(bs.SP_SAMPLES[name])
    path, loaded = _roundtrip(obj, tmp_path, SP_FORMATS[fmt])
    assert_faithful(obj, loaded, path, SP_FORMATS[fmt][2])


# --------------------------------------------------------------------------------------------
# 6. stdlib data


@pytest.mark.parametrize("fmt", list(PICKLE_FORMATS))
@pytest.mark.parametrize("name", list(bs.STDLIB_SAMPLES))
def test_stdlib(name: str, fmt: str, tmp_path: Path) -> None:
    obj = _build(bs.STDLIB_SAMPLES[name])
    path, loaded = _roundtrip(obj, tmp_path, PICKLE_FORMATS[fmt])
    assert_faithful(obj, loaded, path, PICKLE_FORMATS[fmt][2])


# --------------------------------------------------------------------------------------------
# The CLI over a directory of every sample of a family (one file format each)


def _build(builder: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return builder()


def _cli_files(family: str, out: Path) -> List[Path]:
    def write(stem: str, obj: Any, fmt: Format) -> None:
        path = out / (stem.replace("/", "_").replace(":", "_") + fmt[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fmt[1](obj, path)

    if family == "sklearn":
        for case in SK_CASES:
            try:
                est, _ = bs.fit_case(case) if case not in _SK_FITTED else _fitted(case)
            except (bs.FitSkip, pytest.skip.Exception):
                continue
            write(case.id, est, JOBLIB_FORMATS["joblib3"])
    elif family == "pandas":
        for name, build in bs.PD_SAMPLES.items():
            write(name, _build(build), PD_FORMATS["to_pickle_gzip"])
    elif family == "torch":
        for name, build in TORCH_SAMPLES.items():
            if name in ("training_args_bin", "checkpoint_with_training_args") and not bs._has("transformers"):
                continue
            if name not in TORCH_PICKLE_ONLY:
                write(name, _build(build), TORCH_FORMATS["zip"])
                write(name + "_legacy", _build(build), TORCH_FORMATS["legacy"])
    elif family == "numpy":
        for name, build in bs.NP_SAMPLES.items():
            write(name, _build(build), PICKLE_FORMATS["pickle5"])
        for name in bs.NP_ARRAY_SAMPLES:
            write(name, _build(bs.NP_SAMPLES[name]), NP_ARRAY_FORMATS["npz"])
    elif family == "scipy_sparse":
        for name, build in bs.SP_SAMPLES.items():
            write(name, _build(build), PICKLE_FORMATS["pickle2"])
    elif family == "stdlib":
        for name, build in bs.STDLIB_SAMPLES.items():
            write(name, _build(build), PICKLE_FORMATS["pickle0"])
    return sorted(out.iterdir())


def _cli() -> List[str]:
    exe = shutil.which("picklefence")
    return [exe] if exe else [sys.executable, "-m", "picklefence"]


@pytest.mark.parametrize("family", ["sklearn", "pandas", "torch", "numpy", "scipy_sparse", "stdlib"])
def test_cli_scans_family_clean(family: str, tmp_path: Path) -> None:
    files = _cli_files(family, tmp_path)
    assert files
    proc = subprocess.run(
        [*_cli(), "scan", str(tmp_path), "--format", "json"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode in (0, 1), f"exit {proc.returncode}: {proc.stderr.strip()}"
    report = json.loads(proc.stdout)
    unsafe = {
        Path(entry["path"]).name: "; ".join(
            dict.fromkeys(
                f"{f['kind']} {f.get('import') or ''}".strip()
                for f in entry.get("findings", [])
                if f.get("violation", True)
            )
        )
        for entry in report["files"]
        if entry.get("status") != "clean"
    }
    assert report["summary"]["scanned"] == len(files)
    assert not unsafe and proc.returncode == 0, (
        f"exit {proc.returncode}; {len(unsafe)} of {len(files)} files not clean:\n"
        + "\n".join(f"{name}: {why}" for name, why in sorted(unsafe.items()))
    )


def test_scipy_distribution_search_is_refused(tmp_path: Path) -> None:
    """A documented refusal, not a benign-sweep case: a RandomizedSearchCV that keeps scipy.stats
    distributions pickles ``numpy.vectorize`` over bound methods (``getattr`` of any attribute),
    which is call composition no policy can verify. The guard refuses it and names why."""
    est, X, y, _ = bs.randomized_search_scipy_distributions("multiclass")
    est.fit(X, y)
    path = tmp_path / "search.joblib"
    joblib.dump(est, path)
    with picklefence.safe_ml_environment():
        with pytest.raises(picklefence.UnsafeFileError) as refused:
            joblib.load(path)
    assert "numpy.vectorize" in str(refused.value)


def test_torch_memory_formats_are_refused() -> None:
    """A documented refusal: a memory format pickles as a dotted name through whatever module
    ``pickle.whichmodule`` finds first (``torch._utils:torch.channels_last``, or ``__main__``), a
    path through a module namespace, never a stable name to allow."""
    data = pickle.dumps([torch.channels_last], protocol=4)
    with picklefence.safe_ml_environment():
        with pytest.raises(picklefence.UnsafeFileError, match="channels_last"):
            pickle.loads(data)

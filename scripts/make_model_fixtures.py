#!/usr/bin/env python3
"""Build real model files with the real libraries, benign and with injected payloads.

Usage: make_model_fixtures.py OUTDIR

Writes OUTDIR/benign/*, OUTDIR/malicious/* and OUTDIR/manifest.json. Each manifest entry gives
the file's path (relative to OUTDIR), the verdict a scan must return under the default policy
("clean" or "unsafe"), optionally the format it must be identified as, the imports that must be
flagged (violations naming them) and finding kinds that must be reported.

Payloads are harmless markers (`touch OUTDIR/MARKER-<name>`) behind an import of os.system,
posix.system or builtins.exec; nothing here ever loads a malicious file. Output is deterministic:
fixed seeds, fixed zip timestamps.

Exits non-zero with a clear message when a library is missing: the tests that use this script
must fail, not skip.
"""

import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import sys
import tarfile
import warnings
import zipfile
import zlib

try:
    import joblib
    import lz4.frame
    import numpy as np
    import pandas as pd
    import sklearn.cluster
    import sklearn.ensemble
    import sklearn.linear_model
    import sklearn.preprocessing
    import torch
    import zstandard
except ImportError as exc:  # pragma: no cover - the message is the point
    sys.exit(
        f"make_model_fixtures.py: missing library: {exc}. Install numpy, torch, scikit-learn, "
        "joblib, pandas, lz4 and zstandard (scripts/install_deps.sh)."
    )

warnings.filterwarnings("ignore")

OUT = ""
MANIFEST = []
DATE = (2020, 1, 1, 0, 0, 0)


def path(kind, name):
    return os.path.join(OUT, kind, name)


def record(kind, name, expect, fmt=None, imports=(), kinds=()):
    MANIFEST.append(
        {
            "path": f"{kind}/{name}",
            "expect": expect,
            "format": fmt,
            "imports": list(imports),
            "kinds": list(kinds),
        }
    )


def benign(name, fmt=None, kinds=()):
    record("benign", name, "clean", fmt, (), kinds)
    return path("benign", name)


def malicious(name, fmt=None, imports=(), kinds=()):
    record("malicious", name, "unsafe", fmt, imports, kinds)
    return path("malicious", name)


def marker(name):
    return f"touch {os.path.join(OUT, 'MARKER-' + name)}"


# --- payload pickles (hand-assembled; never loaded) -------------------------------------------


def payload0(name, module="posix", func="system"):
    """Protocol 0: no magic bytes at all."""
    return f"c{module}\n{func}\n(V{marker(name)}\ntR.".encode()


def payload2(name, module="os", func="system"):
    arg = marker(name).encode()
    return (
        b"\x80\x02c"
        + module.encode()
        + b"\n"
        + func.encode()
        + b"\nX"
        + struct.pack("<I", len(arg))
        + arg
        + b"\x85R."
    )


def payload4(name, module="builtins", func="exec"):
    code = f"import os; os.system({marker(name)!r})".encode()

    def short(b):
        return b"\x8c" + bytes([len(b)]) + b

    return (
        b"\x80\x04"
        + short(module.encode())
        + short(func.encode())
        + b"\x93X"
        + struct.pack("<I", len(code))
        + code
        + b"\x85R."
    )


def ops0(name, module="posix", func="system"):
    """Protocol-0 ops that call and then POP: spliced into a stream, it stays valid."""
    return f"c{module}\n{func}\n(V{marker(name)}\ntR0".encode()


# --- zip writing ------------------------------------------------------------------------------


def read_zip(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def write_zip(members, compress=()):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in members:
            info = zipfile.ZipInfo(name, DATE)
            info.compress_type = zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED
            z.writestr(info, content)
    return buf.getvalue()


def raw_zip(entries, hidden=None):
    """A zip written by hand: entries are dicts (name, data, and optional local_name,
    local_flags, flags, crc); `hidden` bytes sit before the central directory."""
    out = bytearray()
    offsets = []
    for e in entries:
        data = e["data"]
        crc = e.get("crc", zlib.crc32(data))
        local_name = e.get("local_name", e["name"]).encode()
        offsets.append(len(out))
        out += struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            e.get("local_flags", 0),
            0,
            0,
            0x21,
            crc,
            len(data),
            len(data),
            len(local_name),
            0,
        )
        out += local_name + data
    if hidden:
        out += hidden
    central = bytearray()
    for i, e in enumerate(entries):
        data = e["data"]
        crc = e.get("crc", zlib.crc32(data))
        name = e["name"].encode()
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            e.get("flags", 0),
            0,
            0,
            0x21,
            crc,
            len(data),
            len(data),
            len(name),
            0,
            0,
            0,
            0,
            0,
            offsets[i],
        )
        central += name
    cd_offset = len(out)
    out += central
    count = len(entries)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), cd_offset, 0)
    return bytes(out)


def bomb_zip(data, copies):
    """Fifield-style: many central entries sharing one local header and its data."""
    local_name = b"bomb.pkl"
    out = bytearray(
        struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            0,
            0,
            0,
            0x21,
            zlib.crc32(data),
            len(data),
            len(data),
            len(local_name),
            0,
        )
    )
    out += local_name + data
    central = bytearray()
    for i in range(copies):
        name = f"bomb{i}.pkl".encode()
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            0,
            0,
            0x21,
            zlib.crc32(data),
            len(data),
            len(data),
            len(name),
            0,
            0,
            0,
            0,
            0,
            0,
        )
        central += name
    cd = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, copies, copies, len(central), cd, 0)
    return bytes(out)


def write(p, data):
    with open(p, "wb") as f:
        f.write(data)


# --- PyTorch ----------------------------------------------------------------------------------


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


def torch_bytes(obj, **kw):
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


def make_torch():
    model = small_model()
    state = model.state_dict()
    zip_bytes = torch_bytes(state)
    write(benign("torch_state_dict.pt", "pytorch-zip"), zip_bytes)
    write(benign("torch_module.pt", "pytorch-zip"), torch_bytes(model))
    write(
        benign("torch_tensors_dtypes.pt", "pytorch-zip"),
        torch_bytes(
            {
                "f16": torch.ones(3, dtype=torch.float16),
                "i64": torch.arange(5),
                "b": torch.tensor([True, False]),
                "view": torch.arange(10.0)[2:5],
            }
        ),
    )
    legacy = torch_bytes(state, _use_new_zipfile_serialization=False)
    write(benign("torch_legacy.pt", "pytorch-legacy"), legacy)
    write(
        benign("torch_legacy_module.pt", "pytorch-legacy"),
        torch_bytes(model, _use_new_zipfile_serialization=False),
    )
    write(benign("torch_state_dict.pt.gz", "gzip"), gzip.compress(zip_bytes, mtime=0))
    scripted = torch.jit.script(model)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    ts_bytes = buf.getvalue()
    write(benign("torchscript.pt", "torchscript", kinds=["embedded-code"]), ts_bytes)
    write(benign("torch_tar.pt", "pytorch-tar"), torch_tar())

    members = read_zip(zip_bytes)
    prefix = members[0][0].split("/")[0]
    data_pkl = f"{prefix}/data.pkl"

    def replaced(target, content, extra=()):
        out = [(n, content if n == target else c) for n, c in members]
        return out + list(extra)

    write(
        malicious("torch_zip_data_pkl.pt", "pytorch-zip", ["os.system"]),
        write_zip(replaced(data_pkl, payload2("torch_zip_data_pkl"))),
    )
    write(
        malicious("torch_zip_extra_pkl.pt", "pytorch-zip", ["builtins.exec"]),
        write_zip([*members, (f"{prefix}/extra/hook.pkl", payload4("torch_zip_extra_pkl"))]),
    )
    write(
        malicious("torch_zip_txt_member.pt", "pytorch-zip", ["posix.system"]),
        write_zip([*members, (f"{prefix}/data.txt", payload0("torch_zip_txt_member"))]),
    )
    write(
        malicious("torch_zip_constants_pkl.pt", "torchscript", ["os.system"]),
        write_zip([*members, (f"{prefix}/constants.pkl", payload2("torch_zip_constants_pkl"))]),
    )
    # Duplicate names: zipfile takes the last, miniz may take the first.
    write(
        malicious("torch_zip_duplicate.pt", "pytorch-zip", ["os.system"], ["container"]),
        write_zip([*members, (data_pkl, payload2("torch_zip_duplicate"))]),
    )
    write(
        malicious("torch_zip_deflated_pkl.pt", "pytorch-zip", ["os.system"], ["container"]),
        write_zip(replaced(data_pkl, payload2("torch_zip_deflated_pkl")), compress={data_pkl}),
    )
    # Data prepended: torch.load's zip check fails (no PK at 0) and it unpickles the start.
    write(
        malicious("torch_zip_prepended.pt", "pickle", ["os.system"], ["container"]),
        payload2("torch_zip_prepended") + zip_bytes,
    )
    # An archive nested in the archive.
    write(
        malicious("torch_zip_nested.pt", "pytorch-zip", ["posix.system"]),
        write_zip(
            [
                *members,
                (f"{prefix}/extra/inner.zip", write_zip([("inner/evil.pkl", payload0("torch_zip_nested"))])),
            ]
        ),
    )
    entries = [{"name": n, "data": c} for n, c in members]
    tricks = {
        "torch_zip_local_name.pt": dict(name=f"{prefix}/notes.bin", local_name=data_pkl),
        "torch_zip_local_encrypted.pt": dict(name=data_pkl, local_flags=1),
        "torch_zip_central_encrypted.pt": dict(name=data_pkl, flags=1),
        "torch_zip_bad_crc.pt": dict(name=data_pkl, crc=0x12345678),
    }
    for fname, change in tricks.items():
        es = [dict(e) for e in entries if e["name"] != data_pkl]
        evil = {"data": payload2(fname.split(".")[0])}
        evil.update(change)
        es.insert(0, evil)
        write(malicious(fname, None, ["os.system"], ["container"]), raw_zip(es))
    es = [dict(e) for e in entries]
    hidden_payload = payload2("torch_zip_hidden")
    hidden = (
        struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            0,
            0,
            0,
            0x21,
            zlib.crc32(hidden_payload),
            len(hidden_payload),
            len(hidden_payload),
            len(data_pkl),
            0,
        )
        + data_pkl.encode()
        + hidden_payload
    )
    write(malicious("torch_zip_hidden_member.pt", "pytorch-zip", [], ["container"]), raw_zip(es, hidden))
    bomb_payload = pickle.dumps(b"\0" * 4096, protocol=2)
    write(malicious("zip_bomb_overlap.zip", None, [], ["container"]), bomb_zip(bomb_payload, 200))
    inner = write_zip([("evil.pkl", payload0("zip_deep"))])
    for i in range(12):
        inner = write_zip([(f"level{i}.zip", inner)])
    write(malicious("zip_nested_too_deep.zip", "zip", [], ["limit-exceeded"]), inner)

    ts_members = read_zip(ts_bytes)
    ts_prefix = ts_members[0][0].split("/")[0]
    write(
        malicious("torchscript_constants.pt", "torchscript", ["os.system"], ["embedded-code"]),
        write_zip(
            [
                (n, payload2("torchscript_constants") if n == f"{ts_prefix}/constants.pkl" else c)
                for n, c in ts_members
            ]
        ),
    )
    write(
        malicious("torchscript_data.pt", "torchscript", ["posix.system"]),
        write_zip(
            [(n, payload0("torchscript_data") if n == f"{ts_prefix}/data.pkl" else c) for n, c in ts_members]
        ),
    )

    # Legacy: replace one pickle of the sequence.
    pickles = split_pickles(legacy)
    sys_info_at = pickles[2]
    write(
        malicious("torch_legacy_sys_info.pt", "pytorch-legacy", ["os.system"]),
        legacy[: sys_info_at[0]] + payload2("torch_legacy_sys_info") + legacy[sys_info_at[1] :],
    )
    data_at = pickles[3]
    spliced = legacy[: data_at[0] + 2] + ops0("torch_legacy_data") + legacy[data_at[0] + 2 :]
    write(malicious("torch_legacy_data.pt", "pytorch-legacy", ["posix.system"]), spliced)
    write(
        malicious("torch_legacy_gzip.pt.gz", "gzip", ["posix.system"]),
        gzip.compress(spliced, mtime=0),
    )
    write(
        malicious("torch_tar_pickle.pt", "pytorch-tar", ["os.system"]),
        torch_tar(pickle_member=payload2("torch_tar_pickle")),
    )
    write(
        malicious("torch_tar_storages.pt", "pytorch-tar", ["posix.system"]),
        torch_tar(storage_prefix=ops0("torch_tar_storages")),
    )


def split_pickles(data):
    """(start, end) of each of the first five pickles of a legacy torch file."""
    import pickletools

    out = []
    pos = 0
    for _ in range(5):
        end = None
        for op, _arg, at in pickletools.genops(io.BytesIO(data[pos:])):
            if op.name == "STOP":
                end = pos + at + 1
                break
        out.append((pos, end))
        pos = end
    return out


def torch_tar(pickle_member=None, storage_prefix=b""):
    """The oldest torch.save format (torch < 0.4), written the way it was."""
    t = torch.arange(6, dtype=torch.float32)
    storages = io.BytesIO()
    pickle.dump(1, storages, protocol=2)
    args = pickle.dumps((0, "cpu", torch.FloatStorage), protocol=2)
    if storage_prefix:
        args = args[:2] + storage_prefix + args[2:]
    storages.write(args)
    storages.write(struct.pack("<q", 6))
    storages.write(t.numpy().tobytes())
    pickle.dump([], storages, protocol=2)
    tensors = io.BytesIO()
    pickle.dump(1, tensors, protocol=2)
    pickle.dump((1, 0, torch.FloatTensor), tensors, protocol=2)
    tensors.write(struct.pack("<i", 1) + b"\0" * 4)
    tensors.write(struct.pack("<q", 6) + struct.pack("<q", 1) + struct.pack("<q", 0))

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return "1" if obj is t else None

    if pickle_member is None:
        buf = io.BytesIO()
        P(buf, protocol=2).dump({"weight": t})
        pickle_member = buf.getvalue()
    sys_info = pickle.dumps(
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}, protocol=2
    )
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in [
            ("sys_info", sys_info),
            ("pickle", pickle_member),
            ("storages", storages.getvalue()),
            ("tensors", tensors.getvalue()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


# --- NumPy ------------------------------------------------------------------------------------


def npy_bytes(array, allow_pickle=True):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def make_numpy():
    rng = np.random.default_rng(0)
    plain = rng.standard_normal((8, 4))
    objects = np.array([1, "two", None, (3, 4)], dtype=object)
    structured = np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8", (2,))])
    write(benign("array.npy", "npy"), npy_bytes(plain))
    write(benign("array_structured.npy", "npy"), npy_bytes(structured))
    write(benign("array_object.npy", "npy"), npy_bytes(objects))
    for version in (2, 3):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, plain, version=(version, 0))
        write(benign(f"array_v{version}.npy", "npy"), buf.getvalue())
    for name, saver in [("arrays.npz", np.savez), ("arrays_compressed.npz", np.savez_compressed)]:
        buf = io.BytesIO()
        saver(buf, a=plain, b=np.arange(10), s=structured)
        write(benign(name, "npz"), buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, o=objects, a=plain)
    write(benign("arrays_object.npz", "npz"), buf.getvalue())

    header = npy_bytes(objects)
    npy_header = header[: header.index(b"\n") + 1]
    evil_npy = npy_header + payload2("npy_object")
    write(malicious("npy_object_payload.npy", "npy", ["os.system"]), evil_npy)
    write(
        malicious("npz_object_payload.npz", "npz", ["os.system"]),
        write_zip([("a.npy", npy_bytes(plain)), ("o.npy", evil_npy)]),
    )
    write(
        malicious("npz_object_payload_deflated.npz", "npz", ["os.system"]),
        write_zip([("a.npy", npy_bytes(plain)), ("o.npy", evil_npy)], compress={"a.npy", "o.npy"}),
    )
    write(
        malicious("npz_member_without_suffix.npz", None, ["os.system"]),
        write_zip([("a.npy", npy_bytes(plain)), ("o", evil_npy)]),
    )


# --- joblib, scikit-learn, pandas -------------------------------------------------------------

JOBLIB_COMPRESSORS = ["zlib", "gzip", "bz2", "xz", "lzma", "lz4"]


def joblib_bytes(obj, compress=0):
    buf = io.BytesIO()
    if compress:
        # A file object gets no alignment padding; a real path does: use one.
        tmp = os.path.join(OUT, ".tmp.joblib")
        joblib.dump(obj, tmp, compress=compress)
        with open(tmp, "rb") as f:
            data = f.read()
        os.remove(tmp)
        return data
    tmp = os.path.join(OUT, ".tmp.joblib")
    joblib.dump(obj, tmp)
    with open(tmp, "rb") as f:
        data = f.read()
    os.remove(tmp)
    buf.write(data)
    return buf.getvalue()


def compress_as(method, data):
    if method == "zlib":
        return zlib.compress(data, 3)
    if method == "gzip":
        return gzip.compress(data, mtime=0)
    if method == "bz2":
        return bz2.compress(data)
    if method == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    if method == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_ALONE)
    if method == "lz4":
        return lz4.frame.compress(data)
    if method == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(method)


def make_joblib():
    np.random.seed(0)
    marker_array = np.arange(64, dtype="<f8") + 0.5
    obj = {
        "weights": np.random.standard_normal((16, 8)),
        "marker": marker_array,
        "fortran": np.asfortranarray(np.ones((3, 5), dtype="<i4")),
        "objects": np.array(["a", 1, None], dtype=object),
        "scalar": np.float32(1.5),
        "empty": np.zeros((0, 3)),
    }
    plain = joblib_bytes(obj)
    write(benign("dict.joblib", "joblib"), plain)
    for method in JOBLIB_COMPRESSORS:
        write(benign(f"dict.joblib.{method}", None), joblib_bytes(obj, compress=(method, 3)))

    X = np.random.standard_normal((60, 4))
    y = (X[:, 0] > 0).astype(int)
    forest = sklearn.ensemble.RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, y)
    write(benign("random_forest.joblib", "joblib"), joblib_bytes(forest))
    write(benign("random_forest.joblib.z", "zlib"), joblib_bytes(forest, compress=3))
    logistic = sklearn.linear_model.LogisticRegression().fit(X, y)
    write(benign("logistic.pkl", "pickle"), pickle.dumps(logistic, protocol=5))
    # dtypes made before the wrapper class is first imported, referenced from the memo later
    # (KMeans), and object arrays as nested pickles (OneHotEncoder's categories).
    kmeans = sklearn.cluster.KMeans(n_clusters=2, n_init=1, random_state=0).fit(X)
    encoder = sklearn.preprocessing.OneHotEncoder().fit([["a"], ["b"], ["c"]])
    for name, estimator in (("kmeans", kmeans), ("onehot", encoder)):
        write(benign(f"{name}.joblib", "joblib"), joblib_bytes(estimator))
        write(benign(f"{name}.joblib.gzip", None), joblib_bytes(estimator, compress=("gzip", 3)))

    # A payload right after the raw bytes of an array: only a reader that skips them sees it.
    at = plain.index(marker_array.tobytes()) + len(marker_array.tobytes())
    spliced = plain[:at] + ops0("joblib_after_array") + plain[at:]
    write(malicious("joblib_after_array.joblib", "joblib", ["posix.system"]), spliced)
    for method in JOBLIB_COMPRESSORS:
        write(
            malicious(f"joblib_after_array.joblib.{method}", None, ["posix.system"]),
            compress_as(method, spliced),
        )
    # The nested pickle of an object array replaced by a payload.
    obj_only = joblib_bytes({"objects": np.array(["x", 2], dtype=object)})
    start = obj_only.index(b"\x80\x05", 2)
    import pickletools

    end = None
    for op, _arg, pos in pickletools.genops(io.BytesIO(obj_only[start:])):
        if op.name == "STOP":
            end = start + pos + 1
            break
    write(
        malicious("joblib_object_array.joblib", "joblib", ["builtins.exec"]),
        obj_only[:start] + payload4("joblib_object_array") + obj_only[end:],
    )
    est = pickle.dumps(logistic, protocol=2)
    write(
        malicious("sklearn_logistic_spliced.pkl", "pickle", ["posix.system"]),
        est[:2] + ops0("sklearn_logistic_spliced") + est[2:],
    )
    forest_bytes = joblib_bytes(forest)
    write(
        malicious("random_forest_prefixed.joblib", "joblib", ["posix.system"]),
        forest_bytes[:2] + ops0("random_forest_prefixed") + forest_bytes[2:],
    )

    frame = pd.DataFrame(
        {"x": np.arange(5), "y": np.linspace(0, 1, 5), "name": list("abcde")},
        index=pd.RangeIndex(5),
    )
    for compression in [None, "gzip", "bz2", "xz", "zstd", "zip", "tar"]:
        suffix = compression or "none"
        buf = io.BytesIO()
        frame.to_pickle(buf, compression=compression)
        fmt = {"none": "pickle", "bz2": "bzip2", "zip": "zip", "tar": "tar"}.get(suffix, suffix)
        write(benign(f"pandas.pkl.{suffix}", fmt), buf.getvalue())
    for method in ["gzip", "bz2", "xz", "zstd", "lzma"]:
        write(
            malicious(f"pickle_payload.{method}", None, ["os.system"]),
            compress_as(method, payload2(f"pickle_payload_{method}")),
        )
    tar_out = io.BytesIO()
    with tarfile.open(fileobj=tar_out, mode="w:gz") as tar:
        content = payload0("model_tar_gz")
        info = tarfile.TarInfo("model/model.joblib")
        info.size = len(content)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(content))
    write(malicious("model.tar.gz", "gzip", ["posix.system"]), tar_out.getvalue())
    # A decompression bomb: 100 MB of zeros in a pickle, bzip2'd to a few hundred bytes.
    bomb = b"\x80\x04\x8e" + struct.pack("<Q", 100 << 20) + b"\0" * (100 << 20) + b"."
    write(malicious("pickle_bomb.bz2", "bzip2", [], ["limit-exceeded"]), bz2.compress(bomb, 9))


# --- formats that are not pickles -------------------------------------------------------------


def make_other():
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "__metadata__": {"format": "pt"}},
        separators=(",", ":"),
    ).encode()
    write(
        benign("model.safetensors", "safetensors", ["non-pickle-format"]),
        struct.pack("<Q", len(header)) + header + b"\0" * 16,
    )
    bad = header.replace(b"[0,16]", b"[0,64]")
    write(
        benign("bad_header.safetensors", "safetensors", ["non-pickle-format"]),
        struct.pack("<Q", len(bad)) + bad + b"\0" * 16,
    )
    write(
        benign("model.gguf", "gguf", ["non-pickle-format"]),
        b"GGUF" + struct.pack("<IQQ", 3, 0, 0),
    )
    write(
        benign("model.onnx", "onnx", ["non-pickle-format"]),
        b"\x08\x08\x12\x07pytorch\x1a\x052.0.0",
    )
    write(
        benign("model.h5", "hdf5", ["non-pickle-format"]),
        b"\x89HDF\r\n\x1a\n" + b"\0" * 56,
    )
    write(
        benign("model.keras", "keras"),
        write_zip(
            [
                ("metadata.json", b'{"keras_version": "3.0.0"}'),
                ("config.json", b'{"class_name": "Sequential"}'),
                ("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 56),
            ]
        ),
    )
    write(
        malicious("archive.7z", "7z", [], ["unsupported"]),
        b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\0" * 24,
    )
    write(
        malicious("archive.rar", "rar", [], ["unsupported"]),
        b"Rar!\x1a\x07\x01\x00" + b"\0" * 24,
    )


def main():
    global OUT
    if len(sys.argv) != 2:
        sys.exit("usage: make_model_fixtures.py OUTDIR")
    OUT = os.path.abspath(sys.argv[1])
    for kind in ("benign", "malicious"):
        os.makedirs(os.path.join(OUT, kind), exist_ok=True)
    make_torch()
    make_numpy()
    make_joblib()
    make_other()
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(
            {
                "versions": {
                    "python": sys.version.split()[0],
                    "torch": torch.__version__,
                    "numpy": np.__version__,
                    "joblib": joblib.__version__,
                    "sklearn": sklearn.__version__,
                    "pandas": pd.__version__,
                },
                "files": MANIFEST,
            },
            f,
            indent=1,
        )
    print(f"{len(MANIFEST)} fixtures in {OUT}")


if __name__ == "__main__":
    main()

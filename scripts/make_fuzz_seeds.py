#!/usr/bin/env python3
"""Generate the seed corpora of the cargo-fuzz targets in fuzz/ from real pickles and model files.

    python3 scripts/make_fuzz_seeds.py [OUT_DIR]      # default: fuzz/corpus

Writes OUT_DIR/<target>/<sha1> files (the layout `cargo fuzz run <target>` reads). Nothing here is
committed: the corpora are regenerated from the libraries installed (numpy, torch, scikit-learn,
joblib; each is optional and skipped with a note when missing). Seeds are capped in size so that
libFuzzer's input length stays small; most are byte-for-byte reproducible (a few library outputs,
e.g. fitted models, can vary between runs and versions, which only adds seeds).
"""

from __future__ import annotations

import bz2
import collections
import copyreg
import datetime
import decimal
import gzip
import hashlib
import io
import lzma
import os
import pickle
import pickletools
import struct
import sys
import tarfile
import tempfile
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Iterable

MAX_SEED = 64 << 10

PICKLE_TARGETS = (
    "decode_slice",
    "decode_stream",
    "analyze",
    "analyze_stream",
    "scan_bytes",
    "scan_stream",
    "identify",
    "joblib",
    "torch_legacy",
)
CONTAINER_TARGETS = (
    "scan_bytes",
    "scan_stream",
    "identify",
    "zip_parse",
    "tar_members",
    "npy_header",
    "torch_legacy",
)
TOML_TARGETS = ("policy_toml",)
CHECKPOINT_TARGETS = ("convert",)


class Corpus:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.counts: collections.Counter[str] = collections.Counter()
        self.skipped: list[str] = []

    def add(self, targets: Iterable[str], data: bytes) -> None:
        if not data or len(data) > MAX_SEED:
            return
        name = hashlib.sha1(data).hexdigest()
        for target in targets:
            path = self.root / target / name
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                self.counts[target] += 1

    def pickle(self, data: bytes) -> None:
        self.add(PICKLE_TARGETS, data)

    def container(self, data: bytes) -> None:
        self.add(CONTAINER_TARGETS, data)

    def checkpoint(self, data: bytes) -> None:
        self.add(CONTAINER_TARGETS + CHECKPOINT_TARGETS, data)

    def section(self, name: str, build: Callable[[], None]) -> None:
        try:
            build()
        except Exception as error:  # an optional library missing or changed: note and go on
            self.skipped.append(f"{name}: {type(error).__name__}: {error}")


# --- plain Python objects, every protocol ------------------------------------------------


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a, self.b = 1, "two"


class Evil:
    """Pickles as a call of os.system: what the scanner must catch (never unpickled here)."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/picklefence-fuzz-seed-never-run",))


class EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def plain_objects() -> list[object]:
    recursive: list[object] = []
    recursive.append(recursive)
    shared = [1, 2, 3]
    nested: object = []
    for _ in range(40):
        nested = [nested, (nested,), {"k": nested}]
        if len(pickle.dumps(nested)) > 4000:
            break
    return [
        None,
        True,
        False,
        0,
        1,
        -1,
        255,
        256,
        65535,
        2**31 - 1,
        -(2**31),
        2**63,
        -(2**100),
        10**300,
        1.5,
        float("inf"),
        float("nan"),
        complex(1, -2),
        "",
        "ascii",
        "unicode é ☃ 𝄞",
        "\ud800 lone surrogate",
        "line\nbreak\r\n and \\ backslash and 'quotes\"",
        "x" * 300,
        b"",
        b"\x00\xff" * 10,
        b"y" * 300,
        bytearray(b"bytearray"),
        (),
        (1,),
        (1, 2),
        (1, 2, 3),
        (1, 2, 3, 4),
        [],
        [1, "a", None],
        list(range(1200)),
        {},
        {"a": 1, "b": [1, 2], 3: (4, 5)},
        {i: str(i) for i in range(1100)},
        set(),
        {1, 2, 3},
        frozenset({"a", "b"}),
        [shared, shared, shared],
        recursive,
        nested,
        collections.OrderedDict(a=1, b=2),
        collections.Counter("hello"),
        collections.deque([1, 2, 3]),
        datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
        datetime.date(2020, 2, 29),
        datetime.timedelta(days=1, seconds=2),
        decimal.Decimal("3.14159"),
        uuid.UUID(int=0x1234),
        slice(1, 10, 2),
        range(5),
        Point(1, 2),
        Slotted(),
        Evil(),
        EvalEvil(),
        [Evil(), Point(3, 4)],
        {"model": Point(0, 0), "payload": Evil()},
    ]


def add_plain(corpus: Corpus) -> None:
    for obj in plain_objects():
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            try:
                data = pickle.dumps(obj, protocol=protocol)
            except Exception:
                continue
            corpus.pickle(data)
            corpus.pickle(pickletools.optimize(data))
            # The pure-Python pickler frames and memoizes differently from _pickle.c.
            try:
                corpus.pickle(pickle._dumps(obj, protocol=protocol))  # type: ignore[attr-defined]
            except Exception:
                pass
    # Protocol 5 out-of-band buffers (NEXT_BUFFER, READONLY_BUFFER) and in-band BYTEARRAY8.
    buffers: list[pickle.PickleBuffer] = []
    corpus.pickle(
        pickle.dumps(
            [pickle.PickleBuffer(b"readonly"), pickle.PickleBuffer(bytearray(b"writable"))],
            protocol=5,
            buffer_callback=buffers.append,
        )
    )
    corpus.pickle(pickle.dumps(pickle.PickleBuffer(bytearray(b"inband")), protocol=5))
    # Several pickles in one stream, and trailing bytes.
    one, two = pickle.dumps([1, 2], protocol=2), pickle.dumps({"a": Evil()}, protocol=4)
    corpus.pickle(one + two)
    corpus.pickle(one + b"trailing garbage")
    corpus.pickle(one + two + one)


def add_extension_codes(corpus: Corpus) -> None:
    copyreg.add_extension(__name__, "Point", 0xF0)
    copyreg.add_extension(__name__, "Slotted", 0x1F0)
    copyreg.add_extension(__name__, "Evil", 0x1_0000_F0)
    try:
        for protocol in (2, 3, 4, 5):
            corpus.pickle(pickle.dumps([Point(1, 2), Slotted()], protocol=protocol))
            corpus.pickle(pickle.dumps(Evil(), protocol=protocol))
    finally:
        copyreg.remove_extension(__name__, "Point", 0xF0)
        copyreg.remove_extension(__name__, "Slotted", 0x1F0)
        copyreg.remove_extension(__name__, "Evil", 0x1_0000_F0)


# --- hand-written opcode streams ------------------------------------------------------------


def frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


def add_handwritten(corpus: Corpus) -> None:
    seeds = [
        # GLOBAL / INST / OBJ / REDUCE, protocol 0 and 1
        b"cos\nsystem\n(S'id'\ntR.",
        b"(S'id'\nios\nsystem\n.",
        b"(cos\nsystem\nS'id'\no.",
        b"cbuiltins\neval\n(Vprint(1)\ntR.",
        b"c__builtin__\nfile\n(S'/etc/passwd'\ntR.",
        b"ccopy_reg\n_reconstructor\n(c__main__\nPoint\nc__builtin__\nobject\nNtR.",
        # STACK_GLOBAL from constants, from memo, from a call result
        b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x85R.",
        b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93.",
        b"\x80\x04\x8c\x08builtins\x8c\x07getattr\x93\x8c\x08builtins\x8c\x04eval\x93\x8c\x01x\x86R\x93.",
        # BUILD / SETITEM on imports (state injection)
        b"\x80\x02cnumpy\ncore\n}(U\x01aK\x01ub.",
        b"\x80\x02ccollections\nOrderedDict\n)R}b.",
        # persistent ids
        b"P0\n.",
        b"\x80\x02X\x07storageq\x00Q.",
        b"\x80\x02(X\x07storageq\x00ctorch\nFloatStorage\nX\x010K\x04tQ.",
        # memo edge cases
        b"\x80\x02N\x94\x94\x94h\x00h\x01h\x02\x87.",
        b"\x80\x02Nr\xff\xff\xff\xffj\xff\xff\xff\xff.",
        b"Np99999999999999999999\ng99999999999999999999\n.",
        b"Np-1\n.",
        # marks, pops
        b"((((((((((((((((((((0000000000000000000000N.",
        b"(N1N.",
        b"\x80\x02(K\x01K\x02e]K\x03a.",
        # text-line quirks: \r\n, NUL, non-ASCII, bad escapes
        b"cos\r\nsystem\r\n(S'id'\r\ntR.",
        b"cos\x00\nsystem\n.",
        b"c\xc3\xa9\n\xff\xfe\n.",
        b"S'unterminated\n.",
        b"S'bad \\x4'\n.",
        b"Vsurrogate \\ud800\n.",
        b"V\\U00110000\n.",
        b"I00\nI01\nI0x10\nI1_000\nI-0\nL123L\nF1.5e10\n(lp0\n.",
        b"I99999999999999999999999999\n.",
        # lengths claiming far more than there is
        b"\x80\x04\x8d" + struct.pack("<Q", 2**63 - 1) + b"abc",
        b"\x80\x04\x8e" + struct.pack("<Q", 2**64 - 1) + b"abc",
        b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b"abc",
        b"\x80\x02\x8b" + struct.pack("<I", 2**31 - 1) + b"\x01",
        b"\x80\x02\x8b" + struct.pack("<I", 2**31) + b"\x01",
        b"\x80\x02T" + struct.pack("<I", 2**31) + b"x",
        b"\x80\x04\x95" + struct.pack("<Q", 2**64 - 1) + b"N.",
        # frames: exact, overlapping, STOP inside, opcode across the end
        b"\x80\x04" + frame(b"\x8c\x02os\x8c\x06system\x93."),
        b"\x80\x04" + frame(b"N" + frame(b"N.")),
        b"\x80\x04" + frame(b"N.N"),
        b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00\x8c\x05hello.",
        # protocol oddities
        b"\x80\x06N.",
        b"\x80\xffN.",
        b"\x80\x05\x97\x98.",
        b"\x80\x02\x82\x01\x83\x01\x00\x84\x01\x00\x00\x00.",
        b"\x80\x02\x82\x00.",
        # empty, lone STOP, unknown opcode
        b".",
        b"\xff",
        b"\x80",
    ]
    for seed in seeds:
        corpus.pickle(seed)


# --- ML libraries ------------------------------------------------------------------------------


def add_numpy(corpus: Corpus) -> None:
    import numpy as np

    arrays = [
        np.arange(12, dtype=np.int32).reshape(3, 4),
        np.linspace(0, 1, 5),
        np.array(["a", "bc"]),
        np.array([1, "mixed", None], dtype=object),
        np.zeros((2, 2), dtype=[("x", "<f4"), ("y", "<i8")]),
        np.float32(1.5),
        np.int64(7),
        np.dtype("complex128"),
        np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),
    ]
    for array in arrays:
        for protocol in (2, 4, 5):
            corpus.pickle(pickle.dumps(array, protocol=protocol))
    for array in arrays[:5]:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=True)
        corpus.checkpoint(buffer.getvalue())
    for save in (np.savez, np.savez_compressed):
        buffer = io.BytesIO()
        save(buffer, a=arrays[0], b=arrays[3], c=np.asfortranarray(arrays[0]))
        corpus.checkpoint(buffer.getvalue())


def add_torch(corpus: Corpus) -> None:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    base = torch.arange(12, dtype=torch.float32)
    objects = [
        torch.arange(6, dtype=torch.float32).reshape(2, 3),
        {"weight": torch.ones(2, 2), "step": 3},
        model.state_dict(),
        model,
        # Views, shared storages, dtypes and plain leaves: what convert evaluates.
        {"t": base.reshape(3, 4).t(), "s": base[2:9:3], "e": base[:1].expand(4), "b": base},
        {"h": torch.ones(3, dtype=torch.float16), "f8": torch.ones(2).to(torch.float8_e4m3fn), "lr": 0.1},
        {"nested": {"a": [torch.zeros(1), {"k": (1, "x", None)}]}, "ids": {1, 2}},
    ]
    for obj in objects:
        for protocol in (2, 4):
            try:
                corpus.pickle(pickle.dumps(obj, protocol=protocol))
            except Exception:
                pass
        for new_format in (True, False):
            buffer = io.BytesIO()
            torch.save(obj, buffer, _use_new_zipfile_serialization=new_format)
            data = buffer.getvalue()
            corpus.checkpoint(data)
            if not new_format:
                corpus.pickle(data)  # legacy format: a sequence of pickles
    # TorchScript archive.
    try:
        scripted = torch.jit.script(torch.nn.Linear(2, 2))
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        corpus.container(buffer.getvalue())
    except Exception as error:
        corpus.skipped.append(f"torchscript: {error}")
    # The legacy tar format (torch < 0.4): sys_info, pickle, storages and tensors members.
    corpus.checkpoint(legacy_torch_tar())


def legacy_torch_tar() -> bytes:
    members = {
        "sys_info": pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
        "pickle": b"\x80\x02ctorch._utils\n_rebuild_tensor\n(X\x010K\x00(K\x02tq\x00(K\x01tq\x01tR.",
        "storages": pickle.dumps(1, protocol=2) + b"\x80\x02(X\x010ctorch\nFloatStorage\nX\x03cput.",
        "tensors": pickle.dumps(0, protocol=2),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def add_sklearn_joblib(corpus: Corpus) -> None:
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    x = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    y = np.array([0, 1, 1, 0])
    models = [
        LogisticRegression().fit(x, y),
        make_pipeline(StandardScaler(), DecisionTreeClassifier(random_state=0)).fit(x, y),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for i, model in enumerate(models):
            for protocol in (2, 4, 5):
                corpus.pickle(pickle.dumps(model, protocol=protocol))
            for compress in (0, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)):
                path = Path(tmp) / f"model{i}.joblib"
                joblib.dump(model, path, compress=compress)
                data = path.read_bytes()
                corpus.container(data)
                if compress == 0:
                    corpus.pickle(data)  # joblib's own pickle with array bytes between opcodes
        path = Path(tmp) / "evil.joblib"
        joblib.dump({"estimator": models[0], "hook": Evil()}, path)
        corpus.add(PICKLE_TARGETS, path.read_bytes())
        # States the scanner checks inside the file: a categorical, sparse matrices, block
        # managers (a frame of interleaved dtypes has array placements), an interval array.
        import pandas as pd
        import scipy.sparse as sp

        checked = [
            pd.Series(pd.Categorical(["a", "b", "a"])),
            pd.DataFrame({"a": [1.0, 2.0], "b": [1, 2], "c": [3.0, 4.0]}),
            pd.arrays.IntervalArray.from_breaks([0.0, 1.0, 2.0]),
            pd.Series(pd.Categorical([1, 2], categories=pd.RangeIndex(0, 3))),
            sp.csr_matrix(np.eye(3)),
            sp.bsr_matrix(np.eye(4), blocksize=(2, 2)),
            sp.coo_array(np.eye(3)),
        ]
        for value in checked:
            for protocol in (2, 4):
                corpus.pickle(pickle.dumps(value, protocol=protocol))
            path = Path(tmp) / "state.joblib"
            joblib.dump(value, path)
            corpus.pickle(path.read_bytes())
        # A frame as pandas < 2 pickled it: the manager given its "0.14.1" state.
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from gadgets import Call, G, older_frame

        corpus.pickle(older_frame(Call(G("builtins", "slice"), 0, 2, 1)))


def add_wrappers(corpus: Corpus) -> None:
    inner = [
        pickle.dumps({"a": [1, 2, 3]}, protocol=4),
        pickle.dumps(Evil(), protocol=2),
    ]
    for data in inner:
        corpus.container(gzip.compress(data, mtime=0))
        corpus.container(bz2.compress(data))
        corpus.container(lzma.compress(data))
        try:
            import zstandard

            corpus.container(zstandard.ZstdCompressor().compress(data))
        except ImportError:
            pass
        # zip with a pickle member, and an archive nested in an archive
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("archive/data.pkl", data)
            archive.writestr("archive/version", "3\n")
        corpus.container(buffer.getvalue())
        outer = io.BytesIO()
        with zipfile.ZipFile(outer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("inner.zip", buffer.getvalue())
            archive.writestr("model.pkl.gz", gzip.compress(data, mtime=0))
        corpus.container(outer.getvalue())
        tar_buffer = io.BytesIO()
        with tarfile.open(fileobj=tar_buffer, mode="w") as tar:
            info = tarfile.TarInfo("model.pkl")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        corpus.container(tar_buffer.getvalue())


# --- policies ------------------------------------------------------------------------------------

TOML_SEEDS = [
    "",
    'base = "default"\n',
    'base = "empty"\nallow = ["collections.OrderedDict", "numpy.core.multiarray:_reconstruct"]\n',
    'base = "xgboost"\nallow = []\nallow_ext_codes = [1, 240, 65535]\n',
    'allow = ["torch._utils:_rebuild_tensor_v2", "mymod:Outer.Inner"]\n',
    'base = "nope"\n',
    'allow = ["no_dot"]\n',
    'allow = [" spaced.name"]\n',
    'allow = ["a..b"]\n',
    "allow_ext_codes = [-1]\n",
    "allow_ext_codes = [4294967296]\n",
    "unknown = 1\n",
    "[table]\nkey = 'v'\n",
    'allow = """multi\nline"""\n',
    "base = 1\n",
    'allow = ["module:name:extra"]\n',
    "a.b.c = 1\n",
    "allow = [\n  'x.y',\n  'z.w', # comment\n]\n",
]


NPY_HEADERS = [
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
    "{'descr': '|O', 'fortran_order': True, 'shape': (), }",
    "{'descr': [('x', '<f4'), ('y', '<i8', (2,))], 'fortran_order': False, 'shape': (2,), }",
    "{'descr': '<U3', 'fortran_order': False, 'shape': (1_000, 0x10), }",
    "{'descr': 'b\\x00\\n\\u00e9', 'fortran_order': None, 'shape': [1, [2, [3]]]}",
    "((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((",
]


def add_npy_headers(corpus: Corpus) -> None:
    for text in NPY_HEADERS:
        body = text.encode()
        corpus.add(("npy_header",), body)
        corpus.add(("npy_header",), b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body)
        corpus.add(("npy_header",), b"\x93NUMPY\x02\x00" + struct.pack("<I", len(body)) + body)


def add_toml(corpus: Corpus) -> None:
    for text in TOML_SEEDS:
        corpus.add(TOML_TARGETS, text.encode() or b"\n")


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "fuzz" / "corpus"
    warnings.simplefilter("ignore")  # torch.jit's deprecation notes
    corpus = Corpus(root)
    corpus.section("plain", lambda: add_plain(corpus))
    corpus.section("extension codes", lambda: add_extension_codes(corpus))
    corpus.section("handwritten", lambda: add_handwritten(corpus))
    corpus.section("numpy", lambda: add_numpy(corpus))
    corpus.section("torch", lambda: add_torch(corpus))
    corpus.section("sklearn/joblib", lambda: add_sklearn_joblib(corpus))
    corpus.section("wrappers", lambda: add_wrappers(corpus))
    corpus.section("toml", lambda: add_toml(corpus))
    corpus.section("npy headers", lambda: add_npy_headers(corpus))
    for target, count in sorted(corpus.counts.items()):
        print(f"{target}: {count} new seeds in {root / target}")
    for note in corpus.skipped:
        print(f"skipped {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

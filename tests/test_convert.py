"""`picklefence convert` / `picklefence.convert`: torch checkpoints to safetensors, without torch
and without running the file. torch is used only here, to write the inputs and to read back what
`torch.load` gives, which the output must equal bit for bit, key for key."""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import struct
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pytest

import picklefence
from measured import RSS_LIMIT_MIB, command, measure
from pfhelpers import SystemPayload

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
from safetensors import safe_open  # noqa: E402


def flatten(value: Any, prefix: str = "") -> Dict[str, Any]:
    """The tensors of a loaded checkpoint by dotted path (what the converter names them)."""
    out: Dict[str, Any] = {}
    if isinstance(value, torch.Tensor):
        out[prefix] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{i}" if prefix else str(i)))
    return out


def raw_bytes(tensor: Any) -> bytes:
    """A tensor's elements as bytes, row-major (bit for bit, NaN payloads included)."""
    flat = tensor.detach().contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    return bytes(flat.view(torch.uint8).tolist())


def assert_same(expected: Dict[str, Any], path: Path) -> None:
    got = safetensors_torch.load_file(str(path))
    assert sorted(got) == sorted(expected)
    for key, tensor in expected.items():
        assert got[key].dtype == tensor.dtype, key
        assert tuple(got[key].shape) == tuple(tensor.shape), key
        assert raw_bytes(got[key]) == raw_bytes(tensor), key


def reference(path: Path, save: str = "zip") -> Dict[str, Any]:
    """What torch.load gives, flattened. weights_only cannot read protocol 4 (FRAME): those files,
    written by this test, are loaded in full."""
    return flatten(torch.load(path, weights_only="protocol" not in save))


def convert(tmp_path: Path, obj: Any, **save: Any) -> picklefence.Converted:
    source = tmp_path / "in.pt"
    torch.save(obj, source, **save)
    return picklefence.convert(source, tmp_path / "out.safetensors")


def small_model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 5, bias=False),
        torch.nn.LayerNorm(5),
    )


SAVE_FORMATS = {
    "zip": {},
    "legacy": {"_use_new_zipfile_serialization": False},
    "zip-protocol-4": {"pickle_protocol": 4},
    "legacy-protocol-4": {"_use_new_zipfile_serialization": False, "pickle_protocol": 4},
}

ALL_DTYPES = [
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "float8_e4m3fn",
    "float8_e5m2",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
    "complex64",
]


def dtype_tensors() -> Dict[str, Any]:
    torch.manual_seed(1)
    base = torch.randn(4, 3) * 20
    out = {}
    for name in ALL_DTYPES:
        dtype = getattr(torch, name)
        if name == "complex64":
            out[name] = torch.complex(base, -base)
        elif name.startswith("uint") and name != "uint8":
            out[name] = base.abs().to(torch.int64).to(dtype)
        else:
            out[name] = base.to(dtype)
    out["nan_payloads"] = torch.tensor([float("nan"), float("inf"), -0.0, 1e-45])
    return out


@pytest.mark.parametrize("save", list(SAVE_FORMATS))
def test_a_state_dict_converts_bit_for_bit(tmp_path: Path, save: str) -> None:
    state = small_model().state_dict()
    done = convert(tmp_path, state, **SAVE_FORMATS[save])
    assert_same(reference(tmp_path / "in.pt", save), tmp_path / "out.safetensors")
    assert list(done.tensors) == list(state)
    assert done.format == ("pytorch-legacy" if "legacy" in save else "pytorch-zip")


@pytest.mark.parametrize("save", list(SAVE_FORMATS))
def test_every_dtype_torch_and_safetensors_share(tmp_path: Path, save: str) -> None:
    tensors = dtype_tensors()
    convert(tmp_path, tensors, **SAVE_FORMATS[save])
    assert_same(tensors, tmp_path / "out.safetensors")


@pytest.mark.parametrize("save", list(SAVE_FORMATS))
def test_a_whole_module_pickle_gives_its_state_dict(tmp_path: Path, save: str) -> None:
    model = small_model()
    model.register_buffer("scratch", torch.ones(2), persistent=False)
    model.register_buffer("kept", torch.arange(3))
    done = convert(tmp_path, model, **SAVE_FORMATS[save])
    loaded = torch.load(tmp_path / "in.pt", weights_only=False)
    assert_same(dict(loaded.state_dict()), tmp_path / "out.safetensors")
    assert list(done.tensors) == list(loaded.state_dict())
    assert "scratch" not in done.tensors
    assert any("torch.nn.modules.container.Sequential" in what for _, what in done.dropped)


def test_a_transformer_module_and_tied_weights(tmp_path: Path) -> None:
    torch.manual_seed(2)

    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(10, 8)
            self.encoder = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
            self.head = torch.nn.Linear(8, 10, bias=False)
            self.head.weight = self.embed.weight

    state = Tied().state_dict()
    done = convert(tmp_path, state)
    assert_same(dict(state), tmp_path / "out.safetensors")
    assert ("head.weight", "embed.weight") in done.shared


def test_nested_checkpoint_leaves_go_to_metadata(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": 7,
        "step": 1234,
        "best": float("inf"),
        "name": "run-1",
        "flags": [True, None, 0.5],
        "config": {"layers": [1, 2], "dropout": 0.1},
        "history": [torch.ones(2), torch.zeros(1)],
    }
    done = convert(tmp_path, checkpoint)
    assert_same(reference(tmp_path / "in.pt"), tmp_path / "out.safetensors")
    with safe_open(str(tmp_path / "out.safetensors"), "pt") as f:
        metadata = f.metadata()
    assert metadata == done.metadata
    assert metadata["format"] == "pt"
    assert json.loads(metadata["epoch"]) == 7
    assert json.loads(metadata["best"]) == float("inf")
    assert json.loads(metadata["flags"]) == [True, None, 0.5]
    assert json.loads(metadata["config"]) == {"layers": [1, 2], "dropout": 0.1}
    groups = json.loads(metadata["optimizer.param_groups"])
    assert groups[0]["lr"] == 1e-3 and groups[0]["params"] == [0, 1]
    assert "optimizer.state.0.exp_avg" in done.tensors
    assert "history.1" in done.tensors


def test_values_neither_tensor_nor_plain_are_listed_as_dropped(tmp_path: Path) -> None:
    done = convert(tmp_path, {"w": torch.ones(2), "raw": b"\x00\x01", "ids": {1, 2}})
    dropped = dict(done.dropped)
    assert dropped["raw"] == "a bytes value"
    assert dropped["ids"] == "a set"
    assert list(done.tensors) == ["w"]


VIEWS: Dict[str, Callable[[], Any]] = {
    "transposed": lambda: torch.arange(12.0).reshape(3, 4).t(),
    "sliced with an offset": lambda: torch.arange(20, dtype=torch.int32)[5:15:2],
    "a column": lambda: torch.arange(12.0).reshape(3, 4)[:, 1],
    "expanded": lambda: torch.arange(3.0).reshape(3, 1).expand(3, 5),
    "permuted 4-d": lambda: torch.randn(2, 3, 4, 5).permute(3, 1, 0, 2),
    "narrowed rows": lambda: torch.randn(6, 4).narrow(0, 2, 3),
    "a scalar": lambda: torch.tensor(3.5),
    "a scalar view": lambda: torch.arange(5.0)[3],
    "empty": lambda: torch.zeros(0, 4),
    "empty view": lambda: torch.arange(10.0)[10:],
    "a parameter": lambda: torch.nn.Parameter(torch.randn(3, 2)),
}


@pytest.mark.parametrize("save", ["zip", "legacy"])
@pytest.mark.parametrize("view", list(VIEWS))
def test_views_are_evaluated_and_materialised(tmp_path: Path, view: str, save: str) -> None:
    tensor = VIEWS[view]()
    base = torch.arange(8.0)
    convert(tmp_path, {"t": tensor, "other": base[2:5], "whole": base}, **SAVE_FORMATS[save])
    assert_same(reference(tmp_path / "in.pt", save), tmp_path / "out.safetensors")


def big_endian_copy(source: Path, target: Path, item_size: int) -> None:
    """A torch zip rewritten as a big-endian machine writes it: each record's elements byte-swapped
    and the `byteorder` record saying so (torch.load swaps them back)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                data = b"".join(data[i : i + item_size][::-1] for i in range(0, len(data), item_size))
            zout.writestr(info.filename, data)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "bfloat16", "complex64"])
def test_a_big_endian_archive_is_swapped(tmp_path: Path, dtype: str) -> None:
    torch.manual_seed(3)
    tensor = (torch.randn(3, 5) * 100).to(getattr(torch, dtype))
    little = tmp_path / "little.pt"
    torch.save({"t": tensor, "v": tensor.t()}, little)
    item = tensor.element_size() // (2 if dtype == "complex64" else 1)
    big = tmp_path / "big.pt"
    big_endian_copy(little, big, item)
    expected = torch.load(big, weights_only=True)
    assert torch.equal(expected["t"], tensor)
    picklefence.convert(big, tmp_path / "out.safetensors")
    assert_same(flatten(expected), tmp_path / "out.safetensors")


class TensorRef:
    """A tensor of the tar format's data pickle: a persistent id naming it by key."""

    def __init__(self, key: int) -> None:
        self.key = key


class TarPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return str(obj.key) if isinstance(obj, TensorRef) else None


def tar_format_checkpoint(extra: Optional[Dict[str, Any]] = None) -> bytes:
    """The tar format of torch < 0.4, as its `_save` wrote it and `torch.load` still reads it:
    two storages and a view of one, four tensors (one transposed, one strided with an offset,
    one over the view), a plain leaf and the `extra` values."""
    a = torch.arange(12, dtype=torch.float32)
    b = torch.arange(6, dtype=torch.int64)
    storages = io.BytesIO()
    pickle.dump(2, storages, protocol=2)
    for key, tensor, cls in ((101, a, torch.FloatStorage), (102, b, torch.LongStorage)):
        pickle.dump((key, "cpu", cls), storages, protocol=2)
        storages.write(struct.pack("<q", tensor.numel()) + tensor.numpy().tobytes())
    pickle.dump([(103, 101, 4, 6)], storages, protocol=2)  # storage 103 is a[4:10]
    specs = [
        (1, 101, (3, 4), (4, 1), 0),
        (2, 101, (4, 3), (1, 4), 0),
        (3, 102, (3,), (2,), 1),
        (4, 103, (2, 3), (3, 1), 0),
    ]
    tensors = io.BytesIO()
    pickle.dump(len(specs), tensors, protocol=2)
    for key, storage, size, stride, offset in specs:
        pickle.dump((key, storage, torch.FloatTensor), tensors, protocol=2)
        n = len(size)
        tensors.write(struct.pack("<i", n) + b"\0" * 4 + struct.pack(f"<{n}q{n}qq", *size, *stride, offset))
    main = io.BytesIO()
    TarPickler(main, protocol=2).dump(
        {
            "a": TensorRef(1),
            "t": TensorRef(2),
            "b": TensorRef(3),
            "view": TensorRef(4),
            "epoch": 5,
            **(extra or {}),
        }
    )
    members = {
        "sys_info": pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
        "pickle": main.getvalue(),
        "storages": storages.getvalue(),
        "tensors": tensors.getvalue(),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_the_tar_format_of_old_torch_converts(tmp_path: Path) -> None:
    source = tmp_path / "old.pt"
    source.write_bytes(tar_format_checkpoint())
    loaded = torch.load(source, weights_only=False)  # our own file: torch's tar reader needs it
    assert loaded["t"].tolist() == torch.arange(12.0).reshape(3, 4).t().tolist()
    done = picklefence.convert(source, tmp_path / "out.safetensors")
    assert done.format == "pytorch-tar"
    assert_same(flatten(loaded), tmp_path / "out.safetensors")
    assert done.metadata["epoch"] == "5"
    assert ("view", "a") in done.shared


@pytest.mark.parametrize("save", ["zip", "legacy", "tar"])
def test_numpy_arrays_in_torch_checkpoints_convert(tmp_path: Path, save: str) -> None:
    """NumPy arrays saved with the tensors (data, an RNG state) are tensors of the output, read
    from the data pickle's bytes, equal to what torch.load returns."""
    from safetensors.numpy import load_file

    arrays = {
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "big_endian": np.arange(5, dtype=">f8") / 3,
        "rng": np.random.RandomState(0).get_state(),
    }
    source = tmp_path / "in.pt"
    if save == "tar":
        source.write_bytes(tar_format_checkpoint(extra=arrays))
    else:
        torch.save({"w": torch.ones(3), **arrays}, source, _use_new_zipfile_serialization=save == "zip")
    loaded = torch.load(source, weights_only=False)  # our own file, holding NumPy arrays
    done = picklefence.convert(source, tmp_path / "out.safetensors")
    assert done.dropped == ()
    got = load_file(str(tmp_path / "out.safetensors"))
    expected = {"fortran": loaded["fortran"], "big_endian": loaded["big_endian"], "rng.1": loaded["rng"][1]}
    for key, array in expected.items():
        assert got[key].shape == array.shape and got[key].dtype == array.dtype.newbyteorder("<"), key
        assert np.array_equal(got[key], array), key
    assert done.metadata["rng.0"] == '"MT19937"' and done.metadata["rng.2"] == "624"
    torch_tensors = flatten(loaded)
    assert set(torch_tensors) < set(got)
    for key, tensor in torch_tensors.items():
        assert np.array_equal(got[key], tensor.numpy()), key


def assert_nothing_written(directory: Path, before: List[str]) -> None:
    assert sorted(os.listdir(directory)) == sorted(before)


def test_a_malicious_checkpoint_is_refused_and_nothing_is_written(tmp_path: Path, marker: Path) -> None:
    source = tmp_path / "in.pt"
    torch.save({"w": torch.ones(2), "x": SystemPayload(marker)}, source)
    before = os.listdir(tmp_path)
    with pytest.raises(picklefence.UnsafeFileError) as refused:
        picklefence.convert(source, tmp_path / "out.safetensors")
    assert "system" in str(refused.value)
    assert_nothing_written(tmp_path, before)
    assert not marker.exists()


def test_an_existing_output_is_left_untouched_when_a_conversion_is_refused(
    tmp_path: Path, marker: Path
) -> None:
    source = tmp_path / "in.pt"
    torch.save({"w": torch.ones(2), "x": SystemPayload(marker)}, source)
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous")
    with pytest.raises(picklefence.UnsafeFileError):
        picklefence.convert(source, out)
    assert out.read_bytes() == b"previous"


class Unlisted:
    """A class no policy lists: pickled by reference, loadable here, refused by the scan."""

    def __init__(self) -> None:
        self.value = 1


def test_a_class_outside_the_policy_is_refused_and_allowed_with_also_allow(tmp_path: Path) -> None:
    source = tmp_path / "in.pt"
    torch.save({"w": torch.ones(2), "meta": Unlisted()}, source)
    with pytest.raises(picklefence.UnsafeFileError):
        picklefence.convert(source, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    policy = picklefence.Policy.default().with_allowed([f"{__name__}.Unlisted"])
    done = picklefence.convert(source, tmp_path / "out.safetensors", policy=policy)
    assert list(done.tensors) == ["w"]
    assert dict(done.dropped)["meta"] == f"an object made by {__name__}.Unlisted"


def test_names_that_clash_once_joined_are_an_error(tmp_path: Path) -> None:
    source = tmp_path / "in.pt"
    torch.save({"a.b": torch.ones(1), "a": {"b": torch.zeros(1)}}, source)
    before = os.listdir(tmp_path)
    with pytest.raises(picklefence.ConvertError, match=r"a\.b"):
        picklefence.convert(source, tmp_path / "out.safetensors")
    assert_nothing_written(tmp_path, before)


def test_an_expanded_view_too_large_to_write_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.pt"
    torch.save({"huge": torch.zeros(1).expand(1 << 30)}, source)
    before = os.listdir(tmp_path)
    with pytest.raises(picklefence.ConvertError, match="limit"):
        picklefence.convert(source, tmp_path / "out.safetensors")
    assert_nothing_written(tmp_path, before)


def test_tensors_safetensors_cannot_hold_are_an_error(tmp_path: Path) -> None:
    source = tmp_path / "in.pt"
    torch.save({"c": torch.zeros(2, dtype=torch.complex128)}, source)
    with pytest.raises(picklefence.ConvertError, match="ComplexDoubleStorage"):
        picklefence.convert(source, tmp_path / "out.safetensors")
    torch.save({"s": torch.eye(3).to_sparse()}, source)
    with pytest.raises((picklefence.ConvertError, picklefence.UnsafeFileError)):
        picklefence.convert(source, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def rewrite_member(source: Path, target: Path, name_end: str, edit: Callable[[bytes], bytes]) -> None:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(name_end):
                data = edit(data)
            zout.writestr(info.filename, data)


def test_a_storage_record_shorter_than_declared_is_an_error(tmp_path: Path) -> None:
    source = tmp_path / "in.pt"
    torch.save({"w": torch.arange(16.0)}, source)
    cut = tmp_path / "cut.pt"
    rewrite_member(source, cut, "/data/0", lambda data: data[:8])
    before = os.listdir(tmp_path)
    with pytest.raises((picklefence.ConvertError, picklefence.UnsafeFileError)):
        picklefence.convert(cut, tmp_path / "out.safetensors")
    assert_nothing_written(tmp_path, before)


def test_files_that_are_not_checkpoints_are_an_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"just some text\n")
    with pytest.raises(picklefence.ConvertError, match="not a checkpoint the converter reads"):
        picklefence.convert(plain, tmp_path / "out.safetensors")
    with pytest.raises(FileNotFoundError):
        picklefence.convert(tmp_path / "missing.pt", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


NUMPY_ARRAYS: Dict[str, Callable[[], Any]] = {
    "float32 3-d": lambda: np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    "fortran int16": lambda: np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4)),
    "big-endian float64": lambda: np.arange(5, dtype=">f8") / 3,
    "big-endian complex64": lambda: (np.arange(4) + 1j).astype(">c8"),
    "bool": lambda: np.array([True, False, True]),
    "uint64 scalar": lambda: np.array(2**63 + 5, dtype=np.uint64),
    "empty": lambda: np.zeros((0, 3), dtype=np.uint16),
    "float16 fortran": lambda: np.asfortranarray(np.linspace(0, 1, 12, dtype=np.float16).reshape(2, 6)),
}


@pytest.mark.parametrize("array", list(NUMPY_ARRAYS))
def test_numpy_arrays_convert_equal_to_numpy_load(tmp_path: Path, array: str) -> None:
    from safetensors.numpy import load_file

    value = NUMPY_ARRAYS[array]()
    np.save(tmp_path / "a.npy", value)
    done = picklefence.convert(tmp_path / "a.npy", tmp_path / "a.safetensors")
    assert done.format == "npy" and list(done.tensors) == ["array"]
    got = load_file(str(tmp_path / "a.safetensors"))["array"]
    assert got.shape == value.shape and got.dtype.kind == value.dtype.kind
    assert got.dtype.itemsize == value.dtype.itemsize
    assert np.array_equal(got, value)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_members_convert_by_name(tmp_path: Path, compressed: bool) -> None:
    from safetensors.numpy import load_file

    arrays = {name: make() for name, make in NUMPY_ARRAYS.items()}
    keyed = {f"k{i}": value for i, value in enumerate(arrays.values())}
    (np.savez_compressed if compressed else np.savez)(tmp_path / "a.npz", **keyed)
    done = picklefence.convert(tmp_path / "a.npz", tmp_path / "a.safetensors")
    assert done.format == "npz" and sorted(done.tensors) == sorted(keyed)
    got = load_file(str(tmp_path / "a.safetensors"))
    for key, value in keyed.items():
        assert np.array_equal(got[key], value) and got[key].shape == value.shape, key


def test_numpy_arrays_safetensors_cannot_hold_are_an_error(tmp_path: Path) -> None:
    for name, value in (("objects", np.array([{"a": 1}], dtype=object)), ("text", np.array(["ab"]))):
        np.save(tmp_path / f"{name}.npy", value, allow_pickle=True)
        with pytest.raises(picklefence.ConvertError, match="array: "):
            picklefence.convert(tmp_path / f"{name}.npy", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def _pickle_writer(protocol: int) -> Callable[[Any, Path], None]:
    return lambda value, path: path.write_bytes(pickle.dumps(value, protocol=protocol))


def _joblib_writer(compress: Any) -> Callable[[Any, Path], None]:
    import joblib

    return lambda value, path: joblib.dump(value, path, compress=compress) and None


# How NumPy arrays reach a pickle: numpy's own reduce (protocols 0-4 in band, 5 by
# _frombuffer), joblib's wrapper with its bytes after each BUILD, and joblib's compressed dumps.
ARRAY_WRITERS: Dict[str, Callable[[Any, Path], None]] = {
    **{f"pickle protocol {p}": _pickle_writer(p) for p in range(6)},
    "joblib": _joblib_writer(0),
    **{f"joblib {c}": _joblib_writer((c, 3)) for c in ("zlib", "gzip", "bz2", "xz", "lzma", "lz4")},
}


@pytest.mark.parametrize("writer", list(ARRAY_WRITERS))
def test_numpy_arrays_in_pickles_and_joblib_files_convert(tmp_path: Path, writer: str) -> None:
    """Arrays by their dotted path as the file's loader returns them, bit for bit; plain leaves as
    metadata."""
    import joblib
    from safetensors.numpy import load_file

    arrays = {name: make() for name, make in NUMPY_ARRAYS.items()}
    value = {"arrays": arrays, "list": [arrays["bool"], {"inner": arrays["float32 3-d"]}], "epoch": 7}
    source = tmp_path / "in.bin"
    ARRAY_WRITERS[writer](value, source)
    done = picklefence.convert(source, tmp_path / "out.safetensors")
    assert done.format.startswith("joblib" if writer.startswith("joblib") else "pickle"), done.format
    loaded = joblib.load(source) if writer.startswith("joblib") else pickle.loads(source.read_bytes())
    expected = {
        **{f"arrays.{name}": array for name, array in loaded["arrays"].items()},
        "list.0": loaded["list"][0],
        "list.1.inner": loaded["list"][1]["inner"],
    }
    assert list(done.tensors) == list(expected)
    got = load_file(str(tmp_path / "out.safetensors"))
    for key, array in expected.items():
        assert got[key].shape == array.shape and got[key].dtype == array.dtype.newbyteorder("<"), key
        assert np.array_equal(got[key], array), key
    assert done.metadata["epoch"] == "7"


def test_arrays_in_pickles_safetensors_cannot_hold_and_pickles_of_no_array_are_errors(tmp_path: Path) -> None:
    import joblib

    out = tmp_path / "out.safetensors"
    for name, value in (("objects", np.array([{"a": 1}], dtype=object)), ("text", np.array(["ab"]))):
        for writer in ("pickle", "joblib"):
            source = tmp_path / f"{name}.{writer}"
            if writer == "joblib":
                joblib.dump({"w": np.ones(2), name: value}, source)
            else:
                source.write_bytes(pickle.dumps({"w": np.ones(2), name: value}, protocol=4))
            with pytest.raises(picklefence.ConvertError, match=f"{name}: "):
                picklefence.convert(source, out)
    source = tmp_path / "plain.pkl"
    source.write_bytes(pickle.dumps({"a": 1, "b": [2.5]}))
    with pytest.raises(picklefence.ConvertError, match="a pickle of no NumPy array"):
        picklefence.convert(source, out)
    assert not out.exists()


def test_a_malicious_joblib_file_is_refused_and_nothing_is_written(tmp_path: Path, marker: Path) -> None:
    import joblib

    for compress in (0, 3):
        source = tmp_path / f"in{compress}.joblib"
        joblib.dump({"w": np.ones(3), "x": SystemPayload(marker)}, source, compress=compress)
        before = os.listdir(tmp_path)
        with pytest.raises(picklefence.UnsafeFileError, match="system"):
            picklefence.convert(source, tmp_path / "out.safetensors")
        assert_nothing_written(tmp_path, before)
    assert not marker.exists()


def test_a_deflated_archive_converts(tmp_path: Path) -> None:
    source = tmp_path / "in.pt"
    tensors = {"w": torch.randn(64, 8), "b": torch.arange(5)}
    torch.save(tensors, source)
    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    assert torch.equal(torch.load(deflated, weights_only=True)["w"], tensors["w"])
    picklefence.convert(deflated, tmp_path / "out.safetensors")
    assert_same(tensors, tmp_path / "out.safetensors")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*command(), "convert", *args], capture_output=True, text=True, timeout=120)


def test_the_command_converts_refuses_and_fails_with_its_exit_codes(tmp_path: Path, marker: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3), "epoch": 2, "raw": b"x"}, good)
    ok = run_cli(str(good), str(tmp_path / "good.safetensors"))
    assert ok.returncode == 0, ok.stderr
    assert "1 tensor " in ok.stdout and "dropped  raw: a bytes value" in ok.stdout
    assert_same({"w": torch.ones(3)}, tmp_path / "good.safetensors")

    bad = tmp_path / "bad.pt"
    torch.save({"w": torch.ones(3), "x": SystemPayload(marker)}, bad)
    refused = run_cli(str(bad), str(tmp_path / "bad.safetensors"))
    assert refused.returncode == 1
    assert "UNSAFE" in refused.stdout and "system" in refused.stdout
    assert not (tmp_path / "bad.safetensors").exists()
    assert not marker.exists()

    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps([1, 2]))
    failed = run_cli(str(plain), str(tmp_path / "plain.safetensors"))
    assert failed.returncode == 2
    assert "not converted" in failed.stderr
    assert not (tmp_path / "plain.safetensors").exists()


def test_memory_is_bounded_by_the_largest_tensor_not_the_checkpoint(tmp_path: Path) -> None:
    """256 MiB of 4 MiB tensors: the input is mapped and each tensor's pages are given back once
    written, so the command stays far below the checkpoint's size."""
    source = tmp_path / "large.pt"
    torch.save({f"w{i}": torch.full((1 << 20,), float(i)) for i in range(64)}, source)
    out = tmp_path / "large.safetensors"
    result = measure([*command(), "convert", str(source), str(out)])
    assert result["code"] == 0, result["err"]
    assert result["peak_mib"] < RSS_LIMIT_MIB, result
    with safe_open(str(out), "pt") as f:
        assert len(list(f.keys())) == 64
        assert torch.equal(f.get_tensor("w63"), torch.full((1 << 20,), 63.0))


def test_a_huggingface_style_checkpoint_loads_in_transformers_layout(tmp_path: Path) -> None:
    """`pytorch_model.bin`: a flat state dict, written as safetensors with `format: pt`."""
    state = collections.OrderedDict(
        (f"layer.{i}.{part}", torch.randn(4, 4)) for i in range(3) for part in ("weight", "bias")
    )
    source = tmp_path / "pytorch_model.bin"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    source.write_bytes(buffer.getvalue())
    done = picklefence.convert(source, tmp_path / "model.safetensors")
    assert done.metadata == {"format": "pt"}
    assert_same(dict(state), tmp_path / "model.safetensors")

"""The safe ML environment on pickle's own entry points: payloads are refused before anything
runs, benign pickles load as before, activation is reference-counted, thread-safe and undone
exactly."""

from __future__ import annotations

import _pickle
import collections
import copyreg
import io
import pickle
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

import pfhelpers
import picklefence
from pfhelpers import (
    PAYLOADS,
    MarkerWriter,
    NonSeekable,
    PlainReader,
    Point,
    SystemPayload,
    WriteMarkerPayload,
    global_call,
    load_all,
)
from picklefence import PicklefenceError, ScanError, UnsafeFileError, _native, _prescan, _unpicklers

# --------------------------------------------------------------------------------------------
# Every entry point


def _from_file(load: Callable[[Any], Any]) -> Callable[[bytes, Path], Any]:
    def run(data: bytes, path: Path) -> Any:
        path.write_bytes(data)
        with open(path, "rb") as f:
            return load(f)

    return run


ENTRY_POINTS: Dict[str, Callable[[bytes, Path], Any]] = {
    "pickle.loads": lambda data, path: pickle.loads(data),
    "pickle._loads": lambda data, path: pickle._loads(data),  # type: ignore[attr-defined]
    "_pickle.loads": lambda data, path: _pickle.loads(data),
    "pickle.loads(bytearray)": lambda data, path: pickle.loads(bytearray(data)),
    "pickle.loads(memoryview)": lambda data, path: pickle.loads(memoryview(data)),
    "pickle.load": _from_file(lambda f: pickle.load(f)),
    "pickle._load": _from_file(lambda f: pickle._load(f)),  # type: ignore[attr-defined]
    "_pickle.load": _from_file(lambda f: _pickle.load(f)),
    "pickle.Unpickler": _from_file(lambda f: pickle.Unpickler(f).load()),
    "pickle._Unpickler": _from_file(lambda f: pickle._Unpickler(f).load()),  # type: ignore[attr-defined]
    "_pickle.Unpickler": _from_file(lambda f: _pickle.Unpickler(f).load()),
    "pickle.load(BytesIO)": lambda data, path: pickle.load(io.BytesIO(data)),
    "pickle.load(non-seekable)": lambda data, path: pickle.load(io.BufferedReader(NonSeekable(data))),
    "pickle.load(read/readline only)": lambda data, path: pickle.load(PlainReader(data)),
    "pickle._load(non-seekable)": lambda data, path: pickle._load(NonSeekable(data)),  # type: ignore[attr-defined]
    "pickle.Unpickler(non-seekable)": lambda data, path: pickle.Unpickler(PlainReader(data)).load(),
}
NAMED_FILE = {
    "pickle.load",
    "pickle._load",
    "_pickle.load",
    "pickle.Unpickler",
    "pickle._Unpickler",
    "_pickle.Unpickler",
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("proto", [0, 2, 4, 5])
def test_payload_refused_at_every_entry_point(
    guard: None, entry: str, payload: str, proto: int, marker: Path, tmp_path: Path
) -> None:
    cls, (module, name) = PAYLOADS[payload]
    data = pickle.dumps([1, "two", cls(marker)], protocol=proto)
    path = tmp_path / "payload.pkl"
    with pytest.raises(UnsafeFileError) as info:
        ENTRY_POINTS[entry](data, path)
    assert not marker.exists()
    error = info.value
    assert (error.module, error.name) == (module, name)
    assert isinstance(error, pickle.UnpicklingError) and isinstance(error, PicklefenceError)
    assert error.violations and error.violations[0].module == module
    assert error.violations[0].offset is not None, "the pre-scan, not a later layer, refused it"
    message = str(error)
    assert f"{module}.{name}" in message and f'also_allow=["{module}.{name}"]' in message
    assert "unsafe" in message or "take over" in message
    if entry in NAMED_FILE:
        assert error.filepath == str(path)
    elif "BytesIO" in entry or "loads" in entry:
        assert error.filepath is None


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_benign_plain_data_loads_identically(guard: None, entry: str, proto: int, tmp_path: Path) -> None:
    import datetime
    import decimal
    import uuid

    value = {
        "ints": [0, 1, -1, 2**31, 2**70, -(2**100)],
        "floats": [0.5, float("inf")],
        "text": ["", "é", "x" * 300],
        "bytes": [b"", b"\x00" * 300],
        "tuple": (1, (2, (3,))),
        "set": {1, 2},
        "frozenset": frozenset({3}),
        "bytearray": bytearray(b"ab"),
        "complex": 1 + 2j,
        "none": None,
        "bools": [True, False],
        "ordered": collections.OrderedDict(a=1),
        "default": collections.defaultdict(list, a=[1]),
        "counter": collections.Counter("aab"),
        "deque": collections.deque([1, 2]),
        "date": datetime.datetime(2020, 1, 2, 3, 4, 5),
        "delta": datetime.timedelta(days=2),
        "decimal": decimal.Decimal("1.25"),
        "uuid": uuid.UUID(int=5),
        "slice": slice(1, 2),
        "shared": [[1]] * 3,
    }
    data = pickle.dumps(value, protocol=proto)
    assert ENTRY_POINTS[entry](data, tmp_path / "data.pkl") == value


def test_prescan_runs_before_anything(marker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An allowed constructor with a side effect placed before the bad import does not run."""
    first = tmp_path / "FIRST"
    data = pickle.dumps([MarkerWriter.unconstructed(str(first)), SystemPayload(marker)], protocol=2)
    allowed = ["pfhelpers.MarkerWriter"]
    for load in (
        lambda d: pickle.loads(d),
        lambda d: pickle.load(io.BytesIO(d)),
        lambda d: pickle._loads(d),  # type: ignore[attr-defined]
    ):
        with picklefence.safe_ml_environment(also_allow=allowed):
            with pytest.raises(UnsafeFileError) as info:
                load(data)
        assert (info.value.module, info.value.name) == ("posix", "system")
        assert not first.exists() and not marker.exists()
    # Control: without the pre-scan the constructor would have run (the find_class layer still
    # stops os.system).
    monkeypatch.setattr(_unpicklers, "prescan_bytes", lambda *a, **k: None)
    with picklefence.safe_ml_environment(also_allow=allowed):
        with pytest.raises(UnsafeFileError):
            pickle.loads(data)
    assert first.exists() and not marker.exists()


def test_all_violations_are_listed(guard: None, marker: Path) -> None:
    data = pickle.dumps([pfhelpers.ExecPayload(marker), SystemPayload(marker), Point(1, 2)], protocol=4)
    with pytest.raises(UnsafeFileError) as info:
        pickle.loads(data)
    names = {(v.module, v.name) for v in info.value.violations if v.module}
    assert {("builtins", "exec"), ("posix", "system"), ("pfhelpers", "Point")} <= names
    assert (info.value.module, info.value.name) == ("builtins", "exec")
    assert all(v.offset is not None and v.kind for v in info.value.violations)


def test_custom_class_needs_also_allow() -> None:
    data = pickle.dumps({"p": Point(1, 2)})
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            pickle.loads(data)
    assert (info.value.module, info.value.name) == ("pfhelpers", "Point")
    assert 'also_allow=["pfhelpers.Point"]' in str(info.value)
    assert 'In a TOML policy file: allow = ["pfhelpers.Point"]' in str(info.value)
    assert "picklefence policy suggest FILE" in str(info.value)
    with picklefence.safe_ml_environment(also_allow=["pfhelpers.Point"]):
        assert pickle.loads(data) == {"p": Point(1, 2)}
    # Allowing changed neither the default policy nor a later activation.
    assert not picklefence.Policy.ml_default().is_allowed("pfhelpers", "Point")
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError):
            pickle.loads(data)


def test_nested_activations_apply_the_latest_policy() -> None:
    data = pickle.dumps(Point(1, 2))
    with picklefence.safe_ml_environment():
        with picklefence.safe_ml_environment(also_allow=["pfhelpers.Point"]) as policy:
            assert policy.is_allowed("pfhelpers", "Point")
            assert pickle.loads(data) == Point(1, 2)
        with pytest.raises(UnsafeFileError):
            pickle.loads(data)


def test_policy_argument() -> None:
    policy = picklefence.Policy.default().with_allowed(["pfhelpers.Point"])
    with picklefence.safe_ml_environment(policy=policy):
        assert pickle.loads(pickle.dumps(Point(3, 4))) == Point(3, 4)
    with picklefence.safe_ml_environment(policy=picklefence.Policy.empty()):
        assert pickle.loads(pickle.dumps([1, (2, "x"), {"a": b"b"}])) == [1, (2, "x"), {"a": b"b"}]
        with pytest.raises(UnsafeFileError):
            pickle.loads(pickle.dumps(collections.OrderedDict()))


@pytest.mark.parametrize("entry", ["nodot", "", ".name", "module.", "a b.c"])
def test_malformed_also_allow_raises_value_error_naming_it(entry: str) -> None:
    with pytest.raises(ValueError) as info:
        picklefence.activate_safe_ml_environment(also_allow=[entry])
    assert isinstance(info.value, picklefence.PolicyError)
    assert repr(entry) in str(info.value) or entry in str(info.value)
    assert not picklefence.is_active()


def test_also_allow_must_be_an_iterable_of_strings() -> None:
    with pytest.raises(TypeError):
        picklefence.activate_safe_ml_environment(also_allow="pfhelpers.Point")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        picklefence.activate_safe_ml_environment(also_allow=[1])  # type: ignore[list-item]
    assert not picklefence.is_active()


def test_pickle_cannot_reach_picklefence(guard: None) -> None:
    for module, name in [
        ("picklefence", "deactivate_safe_ml_environment"),
        ("picklefence._hook", "deactivate_safe_ml_environment"),
        ("picklefence._hook", "_unpatch"),
    ]:
        data = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."
        for load in (lambda d: pickle.loads(d), lambda d: pickle._Unpickler(io.BytesIO(d)).load()):
            with pytest.raises(UnsafeFileError) as info:
                load(data)
            assert (info.value.module, info.value.name) == (module, name)
        assert picklefence.is_active()
    assert pickle.loads is _unpicklers._loads


# --------------------------------------------------------------------------------------------
# References bound before activation; subclasses made before activation


class EarlyPyUnpickler(pickle._Unpickler):  # type: ignore[name-defined, misc]
    """Like joblib's and pandas' unpicklers: subclasses pickle._Unpickler at import time."""


class EarlyCUnpickler(pickle.Unpickler):
    pass


def test_references_bound_before_activation(marker: Path) -> None:
    from pickle import Unpickler, load, loads

    data = pickle.dumps(SystemPayload(marker), protocol=2)
    with picklefence.safe_ml_environment():
        for run in (
            lambda: loads(data),
            lambda: load(io.BytesIO(data)),
            lambda: Unpickler(io.BytesIO(data)).load(),
            lambda: EarlyCUnpickler(io.BytesIO(data)).load(),
        ):
            with pytest.raises(UnsafeFileError) as info:
                run()
            assert (info.value.module, info.value.name) == ("posix", "system")
        assert not marker.exists()
        # The audit hook applies the same policy to benign data.
        assert loads(pickle.dumps(collections.OrderedDict(a=1))) == collections.OrderedDict(a=1)


def test_early_subclass_of_python_unpickler_is_prescanned(marker: Path, tmp_path: Path) -> None:
    first = tmp_path / "FIRST"
    data = pickle.dumps([MarkerWriter.unconstructed(str(first)), SystemPayload(marker)], protocol=2)
    with picklefence.safe_ml_environment(also_allow=["pfhelpers.MarkerWriter"]):
        with pytest.raises(UnsafeFileError) as info:
            EarlyPyUnpickler(io.BytesIO(data)).load()
    assert info.value.violations[0].offset is not None
    assert not first.exists() and not marker.exists()


def test_guard_leaves_python_unpickler_instances_unchanged() -> None:
    # An attribute added to the instance during load would make its dict an ordinary one and
    # slow every opcode of the pure-Python loop (joblib, pandas); the guard keeps its state aside.
    data = pickle.dumps({"a": [1, 2, (3, 4)]}, protocol=4)

    def attributes_after_load() -> List[str]:
        unpickler = pickle._Unpickler(io.BytesIO(data))
        assert unpickler.load() == {"a": [1, 2, (3, 4)]}
        return sorted(vars(unpickler))

    plain = attributes_after_load()
    with picklefence.safe_ml_environment():
        guarded = attributes_after_load()
        assert _unpicklers._py_load_policies == {}
    assert guarded == plain


def test_audit_hook_is_inert_when_inactive() -> None:
    from pickle import loads

    with picklefence.safe_ml_environment():
        pass
    assert loads(pickle.dumps(Point(1, 2))) == Point(1, 2)
    assert EarlyCUnpickler(io.BytesIO(pickle.dumps(Point(5, 6)))).load() == Point(5, 6)


# --------------------------------------------------------------------------------------------
# Activation bookkeeping


def _patched_objects() -> Dict[str, Any]:
    return {
        "pickle.load": pickle.load,
        "pickle.loads": pickle.loads,
        "pickle.Unpickler": pickle.Unpickler,
        "pickle._load": pickle._load,  # type: ignore[attr-defined]
        "pickle._loads": pickle._loads,  # type: ignore[attr-defined]
        "pickle._Unpickler": pickle._Unpickler,  # type: ignore[attr-defined]
        "pickle._Unpickler.load": pickle._Unpickler.__dict__["load"],  # type: ignore[attr-defined]
        "pickle._Unpickler.find_class": pickle._Unpickler.__dict__["find_class"],  # type: ignore[attr-defined]
        "pickle._Unpickler.get_extension": pickle._Unpickler.__dict__["get_extension"],  # type: ignore[attr-defined]
        "_pickle.load": _pickle.load,
        "_pickle.loads": _pickle.loads,
        "_pickle.Unpickler": _pickle.Unpickler,
    }


def test_deactivate_restores_identity() -> None:
    before = _patched_objects()
    assert pickle.loads is _pickle.loads
    picklefence.activate_safe_ml_environment()
    during = _patched_objects()
    for name in (
        "pickle.load",
        "pickle.loads",
        "pickle.Unpickler",
        "_pickle.loads",
        "pickle._Unpickler.load",
    ):
        assert during[name] is not before[name], name
    assert during["pickle._Unpickler"] is before["pickle._Unpickler"]  # patched in place
    assert issubclass(pickle.Unpickler, before["pickle.Unpickler"])
    picklefence.deactivate_safe_ml_environment()
    after = _patched_objects()
    for name, obj in before.items():
        assert after[name] is obj, name


def test_reference_counting() -> None:
    data = pickle.dumps(Point(1, 2))
    picklefence.activate_safe_ml_environment()
    picklefence.activate_safe_ml_environment()
    picklefence.deactivate_safe_ml_environment()
    assert picklefence.is_active()
    with pytest.raises(UnsafeFileError):
        pickle.loads(data)
    picklefence.deactivate_safe_ml_environment()
    assert not picklefence.is_active()
    assert pickle.loads(data) == Point(1, 2)
    with pytest.raises(RuntimeError):
        picklefence.deactivate_safe_ml_environment()


def test_context_manager_unwinds_on_error() -> None:
    with pytest.raises(KeyError):
        with picklefence.safe_ml_environment():
            raise KeyError("x")
    assert not picklefence.is_active()
    assert pickle.loads is _pickle.loads


def test_warns_when_something_else_replaced_a_patched_object() -> None:
    def other_loads(data: bytes, **kwargs: Any) -> Any:
        return "theirs"

    original = _pickle.loads
    picklefence.activate_safe_ml_environment()
    pickle.loads = other_loads
    try:
        with pytest.warns(picklefence.PicklefenceWarning, match="pickle.loads"):
            picklefence.deactivate_safe_ml_environment()
        assert pickle.loads is other_loads  # theirs is left alone
        assert _pickle.loads is original and pickle.load is _pickle.load  # the rest is restored
    finally:
        pickle.loads = original


# --------------------------------------------------------------------------------------------
# Streams, EOF and broken pickles


@pytest.mark.parametrize(
    "wrap",
    [
        io.BytesIO,
        lambda d: io.BufferedReader(NonSeekable(d)),
        lambda d: NonSeekable(d),
        PlainReader,
    ],
    ids=["seekable", "non-seekable-buffered", "non-seekable-raw", "read-readline-only"],
)
@pytest.mark.parametrize("loader", ["pickle.load", "pickle._load", "Unpickler", "_Unpickler"])
def test_several_pickles_from_one_stream(wrap: Callable[[bytes], Any], loader: str) -> None:
    values: List[Any] = [[1, 2], "x" * 100_000, {"a": (1, 2)}, None, b"y" * 70_000, list(range(3000))]
    data = b"".join(pickle.dumps(v, protocol=p) for v, p in zip(values, [0, 1, 2, 3, 4, 5])) + b"TAIL"
    load = {
        "pickle.load": pickle.load,
        "pickle._load": pickle._load,  # type: ignore[attr-defined]
        "Unpickler": lambda f: pickle.Unpickler(f).load(),
        "_Unpickler": lambda f: pickle._Unpickler(f).load(),  # type: ignore[attr-defined]
    }[loader]
    plain = wrap(data)
    expected = [load(plain) for _ in values]
    expected_rest = plain.read()
    with picklefence.safe_ml_environment():
        guarded = wrap(data)
        got = [load(guarded) for _ in values]
        rest = guarded.read()
    assert got == expected == values
    assert rest == expected_rest == b"TAIL"


def test_one_unpickler_loads_several_pickles() -> None:
    data = b"".join(pickle.dumps(v, protocol=2) for v in [1, [2], (3,)])
    for wrap in (io.BytesIO, PlainReader):
        with picklefence.safe_ml_environment():
            unpickler = pickle.Unpickler(wrap(data))
            assert [unpickler.load(), unpickler.load(), unpickler.load()] == [1, [2], (3,)]
            with pytest.raises(EOFError):
                unpickler.load()


@pytest.mark.parametrize("wrap", [io.BytesIO, PlainReader, lambda d: io.BufferedReader(NonSeekable(d))])
def test_eof_loop_keeps_working(guard: None, wrap: Callable[[bytes], Any]) -> None:
    data = b"".join(pickle.dumps(i) for i in range(5))
    assert load_all(pickle.load, wrap(data)) == list(range(5))
    assert load_all(pickle._load, wrap(data)) == list(range(5))  # type: ignore[attr-defined]
    with pytest.raises(EOFError):
        pickle.loads(b"")


def _outcome(run: Callable[[], Any]) -> Any:
    try:
        return ("ok", run())
    except Exception as error:
        return (type(error), str(error))


BROKEN = {
    "truncated": pickle.dumps([1, 2, 3], protocol=2)[:-3],
    "truncated-frame": pickle.dumps(list(range(100)), protocol=4)[:-20],
    "unknown-opcode": b"\x80\x02K\x01\xff.",
    "no-stop": b"\x80\x02K\x01",
    "stack-underflow": b"\x80\x02.",
    "bad-memo": b"\x80\x02h\x05.",
    "empty": b"",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_pickles_get_cpythons_own_error(case: str) -> None:
    data = BROKEN[case]
    runs: Dict[str, Callable[[], Any]] = {
        "loads": lambda: pickle.loads(data),
        "load": lambda: pickle.load(io.BytesIO(data)),
        "_load": lambda: pickle._load(io.BytesIO(data)),  # type: ignore[attr-defined]
    }
    for name, run in runs.items():
        expected = _outcome(run)
        with picklefence.safe_ml_environment():
            got = _outcome(run)
        assert got == expected, name
        assert expected[0] != "ok"


def test_broken_pickle_with_a_bad_import_is_refused(guard: None) -> None:
    data = global_call("posix", "system", "touch /nonexistent/x")[:-3]
    with pytest.raises(UnsafeFileError) as info:
        pickle.loads(data)
    assert (info.value.module, info.value.name) == ("posix", "system")


# --------------------------------------------------------------------------------------------
# EXT codes


@pytest.fixture
def extension_registry() -> Any:
    added: List[Any] = []

    def add(module: str, name: str, code: int) -> None:
        copyreg.add_extension(module, name, code)
        added.append((module, name, code))

    yield add
    for module, name, code in added:
        copyreg.remove_extension(module, name, code)


def test_extension_codes_are_checked_like_imports(
    extension_registry: Any, marker: Path, tmp_path: Path
) -> None:
    extension_registry("pfhelpers", "write_marker", 0x3F1)
    extension_registry("collections", "OrderedDict", 0x3F2)
    data = pickle.dumps(WriteMarkerPayload(marker), protocol=2)
    assert b"\x83" in data or b"\x82" in data  # EXT2 / EXT1
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            pickle.loads(data)
        assert (info.value.module, info.value.name) == ("pfhelpers", "write_marker")
        assert info.value.violations[0].kind == "extension-code"
        ordered = pickle.dumps(collections.OrderedDict(a=1), protocol=2)
        assert pickle.loads(ordered) == collections.OrderedDict(a=1)
    assert not marker.exists()
    # CPython caches resolved codes and skips find_class on later loads: the pre-scan still
    # refuses them.
    cached = tmp_path / "CACHED"
    assert pickle.loads(pickle.dumps(WriteMarkerPayload(cached), protocol=2)) == str(cached)
    cached.unlink()
    with picklefence.safe_ml_environment():
        for load in (lambda d: pickle.loads(d), lambda d: pickle._Unpickler(io.BytesIO(d)).load()):
            with pytest.raises(UnsafeFileError):
                load(pickle.dumps(WriteMarkerPayload(cached), protocol=2))
    assert not cached.exists()


def test_extension_cache_in_unpicklers_without_prescan(
    extension_registry: Any, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unpicklers that skip the pre-scan (joblib's) still check cached EXT codes."""
    extension_registry("pfhelpers", "write_marker", 0x3F3)
    warm = marker.with_name("WARM")
    pickle.loads(pickle.dumps(WriteMarkerPayload(warm), protocol=2))  # fills copyreg's cache
    monkeypatch.setattr(_unpicklers, "_is_joblib_unpickler", lambda unpickler: True)
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            pickle._Unpickler(io.BytesIO(pickle.dumps(WriteMarkerPayload(marker), protocol=2))).load()  # type: ignore[attr-defined]
    assert (info.value.module, info.value.name) == ("pfhelpers", "write_marker")
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Fail closed


def test_rust_panic_becomes_panic_exception() -> None:
    with pytest.raises(_native.PanicException):
        _native._panic_for_tests("boom")


def test_scanner_panic_fails_closed(marker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def panicking(*args: Any) -> Any:
        raise _native.PanicException("simulated panic")

    monkeypatch.setattr(_native, "prescan", panicking)
    data = pickle.dumps(WriteMarkerPayload(marker), protocol=2)
    with picklefence.safe_ml_environment(also_allow=["pfhelpers.write_marker"]):
        for load in (
            lambda d: pickle.loads(d),
            lambda d: pickle.load(io.BytesIO(d)),
            lambda d: pickle.load(PlainReader(d)),
            lambda d: pickle._loads(d),  # type: ignore[attr-defined]
        ):
            with pytest.raises(ScanError) as info:
                load(data)
            assert isinstance(info.value, PicklefenceError)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Threads


def test_loads_in_threads_while_others_activate_and_deactivate(marker: Path) -> None:
    """One activation is held throughout while another thread keeps adding and removing
    activations: every load is checked, no payload ever runs, benign loads always work."""
    bad = pickle.dumps(SystemPayload(marker), protocol=2)
    good = pickle.dumps({"a": [1, 2, collections.OrderedDict(b=3)]}, protocol=4)
    expected = pickle.loads(good)
    stop = threading.Event()
    errors: List[BaseException] = []

    def toggler() -> None:
        while not stop.is_set():
            picklefence.activate_safe_ml_environment()
            picklefence.deactivate_safe_ml_environment()

    def loader(index: int) -> None:
        try:
            loads = [
                lambda d: pickle.loads(d),
                lambda d: pickle.load(io.BytesIO(d)),
                lambda d: pickle._Unpickler(io.BytesIO(d)).load(),  # type: ignore[attr-defined]
                lambda d: pickle.Unpickler(io.BytesIO(d)).load(),
            ][index % 4]
            for _ in range(300):
                assert loads(good) == expected
                try:
                    loads(bad)
                except UnsafeFileError:
                    pass
                else:
                    raise AssertionError("a payload loaded while the environment was active")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    with picklefence.safe_ml_environment():
        threads = [threading.Thread(target=toggler) for _ in range(2)]
        threads += [threading.Thread(target=loader, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads[2:]:
            thread.join()
        stop.set()
        for thread in threads[:2]:
            thread.join()
    assert not errors, errors
    assert not marker.exists()
    assert pickle.loads is _pickle.loads and pickle.Unpickler is _pickle.Unpickler


def test_concurrent_full_activation_cycles_restore_everything() -> None:
    before = _patched_objects()
    barrier = threading.Barrier(4)

    def cycle() -> None:
        barrier.wait()
        for _ in range(200):
            with picklefence.safe_ml_environment():
                assert pickle.loads(pickle.dumps([1, 2])) == [1, 2]

    threads = [threading.Thread(target=cycle) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not picklefence.is_active()
    after = _patched_objects()
    assert all(after[name] is obj for name, obj in before.items())


# --------------------------------------------------------------------------------------------
# Large payloads: chunked reading with payloads skipped by seeking (files over 1 MiB)


def _large_stream_wrappers(tmp_path: Path) -> Dict[str, Callable[[bytes], Any]]:
    def real_file(data: bytes) -> Any:
        path = tmp_path / "large.bin"
        path.write_bytes(data)
        return open(path, "rb")

    return {
        "BytesIO": io.BytesIO,
        "file": real_file,
        "seekable-object": lambda d: pfhelpers.SeekableReader(d),
        "buffered-seekable-object": lambda d: io.BufferedReader(pfhelpers.SeekableReader(d)),
        "non-seekable": lambda d: io.BufferedReader(NonSeekable(d)),
    }


@pytest.mark.parametrize("proto", [2, 4, 5])
@pytest.mark.parametrize(
    "wrap", ["BytesIO", "file", "seekable-object", "buffered-seekable-object", "non-seekable"]
)
def test_large_payloads_in_one_stream(wrap: str, proto: int, tmp_path: Path) -> None:
    values: List[Any] = [
        b"x" * 3_000_000,
        [1, 2],
        "y" * 2_000_000,
        bytearray(b"z" * 1_500_000),
        {"k": b"v" * 100},
    ]
    data = b"".join(pickle.dumps(v, protocol=proto) for v in values) + b"TAIL"
    make = _large_stream_wrappers(tmp_path)[wrap]
    plain = make(data)
    expected = [pickle.load(plain) for _ in values] + [plain.read()]
    with picklefence.safe_ml_environment():
        guarded = make(data)
        got = [pickle.load(guarded) for _ in values] + [guarded.read()]
        again = make(data)
        got_py = [pickle._load(again) for _ in values] + [again.read()]  # type: ignore[attr-defined]
    assert got == expected == got_py and expected[-1] == b"TAIL"


@pytest.mark.parametrize(
    "wrap", ["BytesIO", "file", "seekable-object", "buffered-seekable-object", "non-seekable"]
)
def test_payload_after_a_large_blob_is_refused(wrap: str, tmp_path: Path, marker: Path) -> None:
    data = pickle.dumps([b"x" * 3_000_000, "y" * 1_200_000, SystemPayload(marker)], protocol=4)
    make = _large_stream_wrappers(tmp_path)[wrap]
    with picklefence.safe_ml_environment():
        for load in (pickle.load, pickle._load, lambda f: pickle.Unpickler(f).load()):  # type: ignore[attr-defined]
            with pytest.raises(UnsafeFileError) as info:
                load(make(data))
            assert (info.value.module, info.value.name) == ("posix", "system")
            assert info.value.violations[0].offset is not None
    assert not marker.exists()


@pytest.mark.parametrize("wrap", ["BytesIO", "file", "seekable-object", "non-seekable"])
def test_truncated_large_payload_gets_cpythons_error(wrap: str, tmp_path: Path) -> None:
    data = pickle.dumps([1, b"x" * 3_000_000], protocol=4)[:2_000_000]
    make = _large_stream_wrappers(tmp_path)[wrap]
    expected = _outcome(lambda: pickle.load(make(data)))
    with picklefence.safe_ml_environment():
        got = _outcome(lambda: pickle.load(make(data)))
    assert got == expected and expected[0] != "ok"


@pytest.mark.parametrize("wrap", ["BytesIO", "file", "seekable-object", "non-seekable"])
def test_dense_and_small_pickles_before_large_data(wrap: str, tmp_path: Path, marker: Path) -> None:
    """Files over 1 MiB: an opcode-dense pickle (scanned as one buffer), a small pickle followed
    by a lot of other data (only its first bytes are scanned), and a payload at the end of a
    dense pickle (refused)."""
    dense = list(range(300_000))
    small = {"a": 1}
    data = pickle.dumps(dense, protocol=4) + pickle.dumps(small, protocol=2) + b"\0" * 3_000_000
    make = _large_stream_wrappers(tmp_path)[wrap]
    with picklefence.safe_ml_environment():
        f = make(data)
        assert pickle.load(f) == dense
        assert pickle.load(f) == small
        assert f.read() == b"\0" * 3_000_000
        evil = pickle.dumps([*range(300_000), SystemPayload(marker)], protocol=4)
        with pytest.raises(UnsafeFileError) as info:
            pickle.load(make(evil))
        assert info.value.violations[0].offset is not None
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Roles at the Python layer: the hard floor, roles in also_allow, verified-call names


def test_also_allow_of_a_dangerous_name_needs_the_opt_in() -> None:
    for entry in ("builtins.getattr", "os.system", "subprocess.run=call(str) -> value"):
        with pytest.raises(picklefence.PolicyError, match="allow_dangerous"):
            picklefence.activate_safe_ml_environment(also_allow=[entry])
        assert not picklefence.is_active()
    with picklefence.safe_ml_environment(also_allow=["os.system"], allow_dangerous=True) as policy:
        assert policy.is_allowed("os", "system")
    assert not picklefence.Policy.ml_default().is_allowed("os", "system")


def test_also_allow_takes_roles() -> None:
    with picklefence.safe_ml_environment(
        also_allow=["mymod.Thing=reconstruct", "mymod:make=call(str<=10) -> fresh", "mymod.any_use"]
    ) as policy:
        assert policy.roles("mymod", "Thing") == ["reconstruct"]
        assert policy.roles("mymod", "make") == ["call(str<=10) -> fresh"]
        assert policy.roles("mymod", "any_use") == ["trusted"]
    with pytest.raises(picklefence.PolicyError, match="role"):
        picklefence.activate_safe_ml_environment(also_allow=["mymod.Thing=sometimes"])
    assert not picklefence.is_active()


def test_verified_call_names_are_allowed_only_during_a_prescanned_load() -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    zone = zoneinfo.ZoneInfo("Europe/London")
    data = pickle.dumps(zone)  # getattr(ZoneInfo, "_unpickle")("Europe/London", 1)
    raw_loads = _pickle.loads  # bound before activation: the audit hook sees names only
    with picklefence.safe_ml_environment():
        assert pickle.loads(data) is zone  # pre-scanned: the getattr call was verified
        with pytest.raises(UnsafeFileError, match=r"builtins\.getattr"):
            raw_loads(data)
    assert raw_loads(data) is zone


def test_role_violation_message_names_the_rule(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    # REDUCE of a class whose real pickles only reconstruct it (NEWOBJ + BUILD).
    data = b"\x80\x04\x8c\x06pandas\x8c\x0fDatetimeTZDtype\x93\x8c\x02ns\x8c\x03UTC\x86R."
    assert pd.DatetimeTZDtype  # the class exists in this pandas
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as refused:
            pickle.loads(data)
    error = refused.value
    assert error.violations[0].kind == "role-violation"
    assert "allows only as a reconstructed class" in str(error)
    assert "pandas.DatetimeTZDtype=trusted" in str(error)


# --------------------------------------------------------------------------------------------
# What the pure-Python unpickler reads


def _same_length(benign: bytes, malicious: bytes) -> Tuple[bytes, bytes]:
    """Both pickles padded after STOP (where no unpickler reads) to one length."""
    size = max(len(benign), len(malicious))
    return benign.ljust(size, b"\0"), malicious.ljust(size, b"\0")


@pytest.mark.parametrize("loader", ["pickle._Unpickler", "joblib.load", "pickle.load"])
def test_python_unpickler_loads_the_bytes_it_prescanned(
    loader: str, marker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file rewritten between the pre-scan and the load (a writer racing the loader) must not
    # get its new content unpickled: a file the pre-scan read whole is loaded from that copy.
    benign, malicious = _same_length(
        pickle.dumps({"weights": [1.0, 2.0]}, protocol=4),
        pickle.dumps(WriteMarkerPayload(marker), protocol=4),
    )
    path = tmp_path / "model.pkl"
    path.write_bytes(benign)
    scan = _prescan._call_native

    def scan_then_swap(function: Any, *args: Any) -> Any:
        result = scan(function, *args)
        path.write_bytes(malicious)  # same inode: an open handle reads the new bytes
        return result

    monkeypatch.setattr(_prescan, "_call_native", scan_then_swap)
    with picklefence.safe_ml_environment():
        if loader == "joblib.load":
            import joblib

            loaded = joblib.load(path)
        elif loader == "pickle.load":  # CPython's unpickler, a framed pickle (protocol 4)
            with open(path, "rb") as f:
                loaded = pickle.load(f)
        else:
            with open(path, "rb") as f:
                loaded = pickle._Unpickler(f).load()  # type: ignore[attr-defined]
    assert loaded == {"weights": [1.0, 2.0]}
    assert not marker.exists()


@pytest.mark.parametrize("load", [pickle.load, lambda f: pickle._Unpickler(f).load()], ids=["C", "Python"])  # type: ignore[attr-defined]
def test_unpicklers_leave_a_real_file_where_cpython_does(load: Callable[[Any], Any], tmp_path: Path) -> None:
    values: List[Any] = [list(range(1000)), "x" * 70_000, {"a": (1, 2)}]
    path = tmp_path / "several.pkl"
    path.write_bytes(b"".join(pickle.dumps(v, protocol=p) for v, p in zip(values, [2, 4, 5])) + b"TAIL")

    def positions() -> List[int]:
        with open(path, "rb") as f:
            seen = []
            for value in values:
                assert load(f) == value
                seen.append(f.tell())
            assert f.read() == b"TAIL"
        return seen

    plain = positions()
    with picklefence.safe_ml_environment():
        assert positions() == plain


def test_unpickling_builtins_bound_before_activation_still_pickle() -> None:
    # joblib pickles the small arrays of parallel tasks as (loads, (bytes,)) with the `loads` it
    # imported before activation: pickle checks that `_pickle.loads` is that very object, which
    # activation replaced. They pickle as their module's attribute; other builtins as before.
    originals = {"_pickle.loads": _pickle.loads, "_pickle.load": _pickle.load, "pickle.loads": pickle.loads}
    with picklefence.safe_ml_environment():
        dumped = {
            name: [dumps(function) for dumps in (pickle.dumps, pickle._dumps)]  # type: ignore[attr-defined]
            for name, function in originals.items()
        }
        plain_builtin = pickle.dumps(len)
    assert pickle.loads(plain_builtin) is len
    assert copyreg.dispatch_table.get(type(len)) is None
    for name, blobs in dumped.items():
        for blob in blobs:
            assert pickle.loads(blob) is originals[name], name  # the module's attribute, unguarded

"""Parallel code under the guard: joblib (loky and multiprocessing backends), multiprocessing
pools (fork and spawn), ProcessPoolExecutor, torch's DataLoader workers and GridSearchCV work
while the guard is active, because the pickles of the program's own inter-process channels are
not judged (``picklefence._channels``); a malicious file loaded by user code is still refused,
in the parent and in every worker where the guard is active.

Worker functions are module-level (spawn and loky workers import this module by name) and the
module imports nothing heavy at the top (each spawn worker imports it).
"""

from __future__ import annotations

import _pickle
import concurrent.futures
import contextlib
import importlib
import importlib.util
import io
import json
import multiprocessing
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

import picklefence
from pfhelpers import Point, SystemPayload, WriteMarkerPayload
from picklefence import UnsafeFileError

# CPython's own loads, bound before any activation: what multiprocessing's ForkingPickler.loads
# is when multiprocessing was imported first (only the audit-hook layer sees its loads).
_ORIGINAL_LOADS: Callable[..., Any] = _pickle.loads

# --------------------------------------------------------------------------------------------
# Worker functions


def square(x: int) -> int:
    return x * x


def square_and_guard(x: int) -> Tuple[int, bool]:
    """The square, and whether the guard is active in the worker."""
    return x * x, picklefence.is_active()


def make_point(x: int) -> Point:
    """A result of a class the policy does not allow: only the channel trust lets it through."""
    return Point(x, -x)


def slow_square(x: int) -> int:
    time.sleep(0.3)
    return x * x


def _load_with(how: str, path: str) -> Any:
    if how == "pickle.load":
        with open(path, "rb") as f:
            return pickle.load(f)
    if how == "pickle.loads":
        with open(path, "rb") as f:
            return pickle.loads(f.read())
    if how == "ForkingPickler.loads":  # a pre-bound alias: names-only layer
        from multiprocessing.reduction import ForkingPickler

        with open(path, "rb") as f:
            return ForkingPickler.loads(f.read())
    if how == "original loads":
        with open(path, "rb") as f:
            return _ORIGINAL_LOADS(f.read())
    if how == "joblib.load":
        import joblib

        return joblib.load(path)
    if how == "torch.load":
        import torch

        return torch.load(path, weights_only=False)
    raise ValueError(how)


def load_in_worker(path: str, how: str = "pickle.load", activate: bool = False) -> str:
    """Loads ``path`` in the worker (activating the guard there first if ``activate``) and
    reports what happened: "UnsafeFileError", "loaded", or "unguarded" (guard not active)."""
    with picklefence.safe_ml_environment() if activate else contextlib.nullcontext():
        if not picklefence.is_active():
            return "unguarded"
        try:
            _load_with(how, path)
        except UnsafeFileError:
            return "UnsafeFileError"
        return "loaded"


def load_in_worker_args(args: Tuple[str, str, bool]) -> str:
    return load_in_worker(*args)


def load_and_raise(path: str) -> None:
    """Activates the guard in the worker and lets the refusal propagate to the parent."""
    with picklefence.safe_ml_environment():
        _load_with("pickle.load", path)


def nested_loads(data: bytes, how: str) -> Any:
    """Run while a channel message is unpickled: a load of its own, judged by the policy."""
    if how == "pickle.loads":
        return pickle.loads(data)
    return _ORIGINAL_LOADS(data)


class NestedLoad:
    """Pickles as nested_loads(data, how): a channel message whose unpickling loads ``data``."""

    def __init__(self, data: bytes, how: str) -> None:
        self.data, self.how = data, how

    def __reduce__(self) -> Any:
        return (nested_loads, (self.data, self.how))


class TensorDataset:
    """A map-style dataset of small tensors (module-level: picklable for spawn workers)."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> Any:
        import torch

        return torch.full((3,), float(i))


class MaliciousFileDataset:
    """A dataset whose samples are loaded from a malicious file by the worker."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> Any:
        import torch

        return torch.load(self.path, weights_only=False)


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def bad_file(tmp_path: Path, marker: Path) -> Path:
    """A pickle that writes the marker when loaded unguarded."""
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(WriteMarkerPayload(marker), protocol=2))
    return path


@pytest.fixture
def payload(marker: Path) -> bytes:
    return pickle.dumps(SystemPayload(marker), protocol=4)


# --------------------------------------------------------------------------------------------
# Real workloads under the guard


def test_grid_search_cv_n_jobs_2(guard: None) -> None:
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    grid = {"max_depth": [1, 2, 3]}
    parallel = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3, n_jobs=2).fit(X, y)
    serial = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3, n_jobs=1).fit(X, y)
    assert parallel.best_params_ == serial.best_params_
    assert list(parallel.cv_results_["mean_test_score"]) == list(serial.cv_results_["mean_test_score"])
    assert parallel.score(X, y) > 0.9


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_joblib_parallel(guard: None, backend: str) -> None:
    import numpy as np
    from joblib import Parallel, delayed

    assert Parallel(n_jobs=2, backend=backend)(delayed(square)(i) for i in range(10)) == [
        i * i for i in range(10)
    ]
    points = Parallel(n_jobs=2, backend=backend)(delayed(make_point)(i) for i in range(4))
    assert points == [Point(i, -i) for i in range(4)]
    # An array over max_nbytes goes to the workers memory-mapped (joblib's reducers).
    big = np.arange(200_000, dtype=np.float64)
    sums = Parallel(n_jobs=2, backend=backend, max_nbytes="100K")(delayed(np.sum)(big * k) for k in range(3))
    assert [float(s) for s in sums] == [float(np.sum(big * k)) for k in range(3)]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_pool(guard: None, method: str) -> None:
    with multiprocessing.get_context(method).Pool(2) as pool:
        assert pool.map(square, range(10)) == [i * i for i in range(10)]
        assert pool.apply_async(make_point, (3,)).get(timeout=60) == Point(3, -3)
        results = pool.map(square_and_guard, range(2))
    # fork: the worker is a copy of the parent, guard included; spawn: a fresh interpreter.
    assert results == [(0, method == "fork"), (1, method == "fork")]


def test_process_pool_executor(guard: None) -> None:
    with concurrent.futures.ProcessPoolExecutor(2) as executor:
        assert list(executor.map(square, range(10))) == [i * i for i in range(10)]
        assert executor.submit(make_point, 5).result(timeout=60) == Point(5, -5)
        with pytest.raises(ZeroDivisionError):  # an exception comes back through the channel
            executor.submit(divmod, 1, 0).result(timeout=60)


def test_torch_dataloader_two_workers(guard: None) -> None:
    import torch
    from torch.utils.data import DataLoader

    batches = list(DataLoader(TensorDataset(), batch_size=2, num_workers=2))  # type: ignore[arg-type]
    assert len(batches) == 3
    for k, batch in enumerate(batches):
        assert isinstance(batch, torch.Tensor)
        assert torch.equal(batch, torch.tensor([[2.0 * k] * 3, [2.0 * k + 1] * 3]))


def test_torch_queues(guard: None) -> None:
    """torch's queues wrap their connections (ConnectionWrapper); tensors cross in shared memory."""
    import torch
    import torch.multiprocessing
    from torch.multiprocessing.queue import ConnectionWrapper, SimpleQueue

    queue = SimpleQueue(ctx=torch.multiprocessing.get_context("fork"))
    queue.put(torch.ones(2))
    assert torch.equal(queue.get(), torch.ones(2))
    reader, writer = (ConnectionWrapper(c) for c in multiprocessing.Pipe(duplex=False))
    writer.send(torch.zeros(3))
    assert torch.equal(reader.recv(), torch.zeros(3))
    reader.close()
    writer.close()


def test_in_process_channel_is_trusted(guard: None) -> None:
    """A genuine Pipe and Queue of this process carry objects the policy does not allow."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    with reader, writer:
        writer.send(Point(1, 2))
        assert reader.recv() == Point(1, 2)
    a, b = multiprocessing.Pipe()  # a Unix socket pair
    with a, b:
        a.send({"p": Point(3, 4)})
        assert b.recv() == {"p": Point(3, 4)}


# --------------------------------------------------------------------------------------------
# A malicious file loaded inside a worker where the guard is active is refused


@pytest.mark.parametrize(
    "how", ["pickle.load", "pickle.loads", "ForkingPickler.loads", "original loads", "torch.load"]
)
def test_malicious_file_in_fork_pool_worker(guard: None, bad_file: Path, marker: Path, how: str) -> None:
    """fork: the worker inherits the guard (nothing activates it there)."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(load_in_worker, (str(bad_file), how)) == "UnsafeFileError"
    assert not marker.exists()


def test_malicious_file_in_spawn_pool_worker(guard: None, bad_file: Path, marker: Path) -> None:
    """spawn: a fresh interpreter; the guard activated by an initializer refuses the file."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, initializer=picklefence.activate_safe_ml_environment) as pool:
        hows = ["pickle.load", "ForkingPickler.loads", "original loads"]
        results = pool.map(load_in_worker_args, [(str(bad_file), how, False) for how in hows])
        assert results == ["UnsafeFileError"] * len(hows)
        assert pool.apply(square_and_guard, (4,)) == (16, True)  # tasks still arrive
    assert not marker.exists()


def test_malicious_file_in_loky_worker(guard: None, bad_file: Path, marker: Path) -> None:
    """loky: a fresh interpreter; the guard activated in the function refuses the file, and the
    refusal reaches the parent as UnsafeFileError."""
    from joblib import Parallel, delayed

    hows = ["pickle.load", "joblib.load", "ForkingPickler.loads"]
    results = Parallel(n_jobs=2)(delayed(load_in_worker)(str(bad_file), how, True) for how in hows)
    assert results == ["UnsafeFileError"] * len(hows)
    with pytest.raises(UnsafeFileError):
        Parallel(n_jobs=2)(delayed(load_and_raise)(str(bad_file)) for _ in range(2))
    assert not marker.exists()


def test_malicious_file_in_process_pool_executor_worker(guard: None, bad_file: Path, marker: Path) -> None:
    with concurrent.futures.ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=picklefence.activate_safe_ml_environment,
    ) as executor:
        assert executor.submit(load_in_worker, str(bad_file), "pickle.load").result(60) == "UnsafeFileError"
    with concurrent.futures.ProcessPoolExecutor(1) as executor:  # fork: inherited
        assert (
            executor.submit(load_in_worker, str(bad_file), "original loads").result(60) == "UnsafeFileError"
        )
    assert not marker.exists()


def test_malicious_file_in_dataloader_worker(guard: None, bad_file: Path, marker: Path) -> None:
    from torch.utils.data import DataLoader

    loader: Any = DataLoader(MaliciousFileDataset(str(bad_file)), batch_size=1, num_workers=2)  # type: ignore[arg-type]
    batches = iter(loader)
    try:
        with pytest.raises(UnsafeFileError, match="DataLoader worker"):
            next(batches)
    finally:
        batches._shutdown_workers()  # now, not when the traceback's cycle is collected
    assert not marker.exists()


def test_parent_refuses_while_pools_run(guard: None, bad_file: Path, payload: bytes, marker: Path) -> None:
    from multiprocessing.reduction import ForkingPickler

    from joblib import Parallel, delayed

    outcome: Dict[str, Any] = {}

    def run_loky() -> None:
        outcome["loky"] = Parallel(n_jobs=2)(delayed(slow_square)(i) for i in range(4))

    with multiprocessing.get_context("fork").Pool(2) as pool:
        pending = pool.map_async(slow_square, range(4))
        thread = threading.Thread(target=run_loky)
        thread.start()
        try:
            for _ in range(3):
                for load in (pickle.loads, ForkingPickler.loads, _ORIGINAL_LOADS):
                    with pytest.raises(UnsafeFileError):
                        load(payload)
                for how in ("pickle.load", "joblib.load", "torch.load"):
                    with pytest.raises(UnsafeFileError):
                        _load_with(how, str(bad_file))
                time.sleep(0.05)
        finally:
            thread.join(timeout=120)
        assert pending.get(timeout=60) == [0, 1, 4, 9]
    assert outcome["loky"] == [0, 1, 4, 9]
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# The trust rule opens no hole


def _forged_receiver(name: str, module: str, filename: str, body: str) -> Callable[..., Any]:
    """A function named like a receive function, in a module of that name, compiled with the
    real module's file name: everything but the code object of the real one."""
    namespace: Dict[str, Any] = {"__name__": module, "pickle": pickle, "_ORIGINAL_LOADS": _ORIGINAL_LOADS}
    exec(compile(f"def {name}(self, data):\n    return {body}\n", filename, "exec"), namespace)
    function: Callable[..., Any] = namespace[name]
    return function


@pytest.mark.parametrize(
    "name,module", [("recv", "connection"), ("get", "queues"), ("_main", "spawn")], ids=str
)
@pytest.mark.parametrize("body", ["pickle.loads(data)", "_ORIGINAL_LOADS(data)"])
def test_forged_receive_function_refused(
    guard: None, payload: bytes, marker: Path, name: str, module: str, body: str
) -> None:
    filename = importlib.import_module(f"multiprocessing.{module}").__file__
    assert filename is not None
    forged = _forged_receiver(name, f"multiprocessing.{module}", filename, body)
    reader, writer = multiprocessing.Pipe(duplex=False)  # a genuine channel as `self`
    with reader, writer, pytest.raises(UnsafeFileError):
        forged(reader, payload)
    assert not marker.exists()


def test_forged_loky_bootstrap_refused(guard: None, bad_file: Path, marker: Path) -> None:
    """Module code compiled as loky's bootstrap, run as __main__, reading a regular file."""
    spec = importlib.util.find_spec("joblib.externals.loky.backend.popen_loky_posix")
    assert spec is not None and spec.origin is not None
    for body in ("pickle.load(from_parent)", "_ORIGINAL_LOADS(from_parent.read())"):
        with open(bad_file, "rb") as from_parent:
            namespace = {"__name__": "__main__", "__spec__": spec, "pickle": pickle}
            namespace.update(from_parent=from_parent, _ORIGINAL_LOADS=_ORIGINAL_LOADS)
            with pytest.raises(UnsafeFileError):
                exec(compile(body, spec.origin, "exec"), namespace)
    assert not marker.exists()


def _framed(data: bytes) -> bytes:
    return struct.pack("!i", len(data)) + data  # multiprocessing.connection's framing


def test_connection_over_a_model_file_refused(
    guard: None, tmp_path: Path, payload: bytes, marker: Path
) -> None:
    """Connection.recv is a receive function, but a regular file is not a channel."""
    path = tmp_path / "framed.bin"
    path.write_bytes(_framed(payload))
    conn = Connection(os.open(path, os.O_RDONLY), writable=False)
    with conn, pytest.raises(UnsafeFileError):
        conn.recv()
    assert not marker.exists()


def test_tcp_connection_refused(guard: None, payload: bytes, marker: Path) -> None:
    """A TCP connection may come from another machine: not the program's own channel."""
    with Listener(("127.0.0.1", 0)) as listener:

        def send() -> None:
            with Client(listener.address) as client:
                client.send_bytes(payload)

        sender = threading.Thread(target=send)
        sender.start()
        with listener.accept() as conn, pytest.raises(UnsafeFileError):
            conn.recv()
        sender.join()
    assert not marker.exists()


def test_overridden_reads_refused(guard: None, tmp_path: Path, payload: bytes, marker: Path) -> None:
    """A genuine pipe whose read is replaced, or a queue reading from a file, is not trusted."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    with reader, writer:
        writer.send_bytes(b"x")
        reader._recv_bytes = lambda maxsize=None: io.BytesIO(payload)  # type: ignore[attr-defined]
        with pytest.raises(UnsafeFileError):
            reader.recv()

    path = tmp_path / "framed.bin"
    path.write_bytes(_framed(payload))
    queue: Any = multiprocessing.SimpleQueue()
    queue._reader = Connection(os.open(path, os.O_RDONLY), writable=False)
    with pytest.raises(UnsafeFileError):
        queue.get()
    queue._reader.close()

    full: Any = multiprocessing.Queue()
    full.put(1)
    time.sleep(0.1)
    full._recv_bytes = lambda: payload
    with pytest.raises(UnsafeFileError):
        full.get(timeout=10)
    full.close()
    full.join_thread()
    assert not marker.exists()


@pytest.mark.parametrize("how", ["pickle.loads", "original loads"])
def test_load_run_by_a_channel_message_still_judged(
    guard: None, payload: bytes, marker: Path, how: str
) -> None:
    """The trust covers the channel's own load, not a load its message starts."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    with reader, writer:
        writer.send(NestedLoad(payload, how))
        with pytest.raises(UnsafeFileError):
            reader.recv()
        writer.send(NestedLoad(pickle.dumps([1, 2]), how))  # the channel itself is trusted
        assert reader.recv() == [1, 2]
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# The guard active in workers from their start (sitecustomize): the bootstrap reads


_BOOTSTRAP_SCRIPT = """
import json, multiprocessing, sys
import picklefence
from joblib import Parallel, delayed
import test_parallel as t

if __name__ == "__main__":
    assert picklefence.is_active()
    out = {}
    for method in ("spawn", "forkserver"):
        with multiprocessing.get_context(method).Pool(1) as pool:
            out[method] = [pool.apply(t.square_and_guard, (3,)), pool.apply(t.load_in_worker, (sys.argv[1],))]
    out["loky"] = Parallel(n_jobs=2)(
        delayed(f)(*a) for f, a in ((t.square_and_guard, (3,)), (t.load_in_worker, (sys.argv[1],)))
    )
    print(json.dumps(out))
"""


def test_guard_active_from_worker_start(tmp_path: Path, bad_file: Path, marker: Path) -> None:
    """With the guard activated by sitecustomize in every process, spawn, forkserver and loky
    workers read their bootstrap pickles (through the guard's own pickle.load), run tasks, and
    refuse a malicious file."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import picklefence\npicklefence.activate_safe_ml_environment()\n")
    script = tmp_path / "script.py"
    script.write_text(_BOOTSTRAP_SCRIPT)
    paths = [str(site), str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    done = subprocess.run(
        [sys.executable, str(script), str(bad_file)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out: Dict[str, List[Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    for method in ("spawn", "forkserver", "loky"):
        assert out[method] == [[9, True], "UnsafeFileError"], method
    assert not marker.exists()

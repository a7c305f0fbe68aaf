"""The program's own inter-process channels: the one kind of pickle the guard does not judge.

``multiprocessing`` (``Pool``, ``Queue``, ``Pipe``, managers, the spawn/forkserver bootstrap),
``concurrent.futures.ProcessPoolExecutor``, joblib (loky and its multiprocessing backend) and
torch's ``DataLoader`` workers move tasks and results between the processes of one program as
pickles. Those pickles name whatever the program sends (``multiprocessing.pool.mapstar``, loky's
``_ResultItem``, user functions, ``torch.multiprocessing.reductions.rebuild_storage_fd``), so
the ML policy refuses them, and pools break under the guard.

THE TRUST RULE. A pickle is trusted as the program's own message, and loaded without the policy,
only when both hold:

1. *who reads it*: the unpickling call (CPython's ``_pickle.loads``/``load``, or the guard's
   patched ``pickle.loads``/``pickle.load``) is made directly by one of a fixed set of receive
   functions, identified by their code objects (not by module or function names, which any code
   can take): ``multiprocessing.connection.Connection.recv``, ``multiprocessing.queues.Queue.get``
   and ``SimpleQueue.get`` (and so loky's, joblib's and torch's queues, which inherit or call
   them), torch's ``ConnectionWrapper.recv``, and the two bootstrap reads of a new process
   (``multiprocessing.spawn._main``, loky's ``popen_loky_posix`` run as ``__main__``);
2. *where the bytes come from*: the object they read from is a genuine ``Connection`` (exact
   type, no read method overridden on the instance), or for the bootstrap reads the file opened
   on the inherited descriptor, and that descriptor is a pipe or a Unix-domain socket: the
   channels multiprocessing creates between the processes of the program. A regular file (a
   model file, even wrapped in a ``Connection``) or a TCP connection (possibly another machine)
   is not a channel: what is read from it is judged like any other pickle.

Ray's channels are its object store and its control store (GCS), read by Ray's own code: three
readers are trusted, by code object and by the exact type of their ``self``:
``SerializationContext._deserialize_pickle5_data`` called by Ray's ``_deserialize_msgpack_data``
(``ray.get``, task arguments), ``FunctionActorManager``'s reads of the exported functions and
actor classes, and Ray Data's ``DataOpTask.produce_block`` (block metadata a task returned).
Every other load in Ray's code is judged: several read files or data (checkpoints, WebDataset
samples, Arrow columns of pickled objects).

The decision is made at the frame that called the unpickler, so it covers that one load only: a
load started by code that the channel message runs (a ``__setstate__`` that calls ``torch.load``
or ``pickle.loads``) is called from another frame and is judged by the policy as always.

Why a model file cannot pass for a channel message: user code loads models through
``pickle.load(s)``, ``torch.load``, ``joblib.load``, ``numpy.load``, ``pandas.read_pickle``...,
none of which is one of those receive functions, so a model file is judged by the policy in the
parent and in every worker where the guard is active. To get a file's bytes trusted, the program
itself would have to forward them into one of its channels (``conn.send_bytes(f.read())`` then
``conn.recv()``, or a ``Connection`` over a pipe fed from the file), which no model-loading
library does.

What the rule does not cover: a worker where the guard is not active loads model files
unguarded, and what it sends back then comes through a trusted channel. With ``fork`` the
worker inherits the guard; ``spawn``, ``forkserver`` and loky workers are fresh interpreters that
have it only if they activate it (at import of the main module or of the worker function's
module, in an initializer, or in the function).
"""

from __future__ import annotations

import io
import os
import stat
import sys
from types import CodeType, FrameType
from typing import Any, Callable, Dict, FrozenSet, Optional, Tuple

__all__ = ["is_channel_read"]

# co_name of every receive function: a cheap first test for the frames of ordinary code.
_RECEIVER_NAMES: FrozenSet[str] = frozenset(
    {
        "recv",
        "get",
        "_main",
        "<module>",
        "_deserialize_pickle5_data",
        "fetch_registered_method",
        "fetch_and_register_remote_function",
        "_load_actor_class_from_gcs",
        "produce_block",
    }
)
_LOKY_BOOTSTRAP = frozenset(
    {"joblib.externals.loky.backend.popen_loky_posix", "loky.backend.popen_loky_posix"}
)
# Instance attributes that would replace the read of a Connection, of torch's wrapper of one.
_CONNECTION_READS = frozenset({"recv", "recv_bytes", "_recv_bytes", "_recv"})
_WRAPPER_READS = frozenset({"recv", "recv_bytes"})

_Check = Callable[[FrameType], bool]


def is_channel_read(frame: Optional[FrameType]) -> bool:
    """Whether ``frame``, the Python frame that called an unpickling function, is a receive
    function of the program's own inter-process channels reading from such a channel (see the
    module docstring). The guard's patched ``pickle.loads``/``pickle.load`` frames are looked
    through (they hand a channel read straight to CPython)."""
    if frame is None:
        return False
    code = frame.f_code
    if code in _pass_through():
        frame = frame.f_back
        if frame is None:
            return False
        code = frame.f_code
    if code.co_name not in _RECEIVER_NAMES:
        return False
    check = _is_loky_bootstrap if code.co_name == "<module>" else _receivers().get(code)
    if check is None:
        return False
    try:
        return check(frame)
    except Exception:
        return False


# --------------------------------------------------------------------------------------------
# The receive functions, by code object


_pass_through_codes: FrozenSet[CodeType] = frozenset()


def _pass_through() -> FrozenSet[CodeType]:
    """The code of the guard's ``pickle.loads`` and ``pickle.load`` (``_unpicklers._loads``,
    ``_unpicklers._c_load``), which call CPython's unpickler themselves for a channel read."""
    global _pass_through_codes
    if not _pass_through_codes:
        hook = sys.modules.get("picklefence._unpicklers")
        codes = [getattr(getattr(hook, name, None), "__code__", None) for name in ("_loads", "_c_load")]
        if all(isinstance(code, CodeType) for code in codes):
            _pass_through_codes = frozenset(c for c in codes if isinstance(c, CodeType))
    return _pass_through_codes


def _function_code(module_name: str, *path: str) -> Optional[CodeType]:
    """The code of ``module.path``, if that module is imported and the function is its own (a
    replacement installed by other code is not trusted: its file is another one)."""
    module = sys.modules.get(module_name)
    if module is None:
        return None
    target: Any = module
    for attr in path:
        target = getattr(target, attr, None)
    code = getattr(target, "__code__", None)
    if not isinstance(code, CodeType) or code.co_filename != getattr(module, "__file__", None):
        return None
    return code


_RECEIVER_MODULES = (
    "multiprocessing.connection",
    "multiprocessing.queues",
    "multiprocessing.spawn",
    "torch.multiprocessing.queue",
    "ray._private.serialization",
    "ray._private.function_manager",
    "ray.data._internal.execution.interfaces.physical_operator",
)
_RAY_SERIALIZATION = ("ray._private.serialization", "SerializationContext")
_RAY_FUNCTIONS = ("ray._private.function_manager", "FunctionActorManager")
_RAY_DATA_TASK = ("ray.data._internal.execution.interfaces.physical_operator", "DataOpTask")
_receivers_key: Tuple[Any, ...] = ()
_receivers_map: Dict[CodeType, _Check] = {}


def _receivers() -> Dict[CodeType, _Check]:
    """Code object -> check of where that receive function reads from (rebuilt when one of the
    modules that define them is imported or reloaded)."""
    global _receivers_key, _receivers_map
    modules = sys.modules
    key = tuple(modules.get(name) for name in _RECEIVER_MODULES)
    if len(key) == len(_receivers_key) and all(a is b for a, b in zip(key, _receivers_key)):
        return _receivers_map
    table: Dict[CodeType, _Check] = {}
    for code, check in (
        (_function_code("multiprocessing.connection", "_ConnectionBase", "recv"), _reads_self),
        (_function_code("multiprocessing.queues", "Queue", "get"), _reads_queue),
        (_function_code("multiprocessing.queues", "SimpleQueue", "get"), _reads_simple_queue),
        (_function_code("multiprocessing.spawn", "_main"), _reads_from_parent),
        (_function_code("torch.multiprocessing.queue", "ConnectionWrapper", "recv"), _reads_wrapper),
        (_function_code(*_RAY_SERIALIZATION, "_deserialize_pickle5_data"), _reads_ray_object),
        (_function_code(*_RAY_FUNCTIONS, "fetch_registered_method"), _reads_ray_function_table),
        (_function_code(*_RAY_FUNCTIONS, "fetch_and_register_remote_function"), _reads_ray_function_table),
        (_function_code(*_RAY_FUNCTIONS, "_load_actor_class_from_gcs"), _reads_ray_function_table),
        (_function_code(*_RAY_DATA_TASK, "produce_block"), _reads_ray_block_metadata),
    ):
        if code is not None:
            table[code] = check
    _receivers_map, _receivers_key = table, key
    return table


def _is_loky_bootstrap(frame: FrameType) -> bool:
    """loky's worker bootstrap: ``python -m ...loky.backend.popen_loky_posix --pipe FD``, whose
    module code reads the preparation data and the process object from ``from_parent``."""
    f_globals = frame.f_globals
    spec = f_globals.get("__spec__")
    if f_globals.get("__name__") != "__main__" or getattr(spec, "name", None) not in _LOKY_BOOTSTRAP:
        return False
    if frame.f_code.co_filename != getattr(spec, "origin", None):
        return False
    return _is_pipe_file(f_globals.get("from_parent"))


# --------------------------------------------------------------------------------------------
# Where each receive function reads from


def _reads_self(frame: FrameType) -> bool:
    """``Connection.recv``: ``self._recv_bytes()``."""
    return _is_channel_connection(frame.f_locals.get("self"))


def _reads_queue(frame: FrameType) -> bool:
    """``Queue.get``: ``self._recv_bytes()``, the ``recv_bytes`` bound to its reader."""
    recv_bytes = vars(frame.f_locals.get("self")).get("_recv_bytes")
    base = getattr(sys.modules.get("multiprocessing.connection"), "_ConnectionBase", None)
    if base is None or getattr(recv_bytes, "__func__", None) is not base.recv_bytes:
        return False
    return _is_channel_connection(getattr(recv_bytes, "__self__", None))


def _reads_simple_queue(frame: FrameType) -> bool:
    """``SimpleQueue.get``: ``self._reader.recv_bytes()`` (torch's queues wrap the reader)."""
    reader = vars(frame.f_locals.get("self")).get("_reader")
    if _is_torch_wrapper(reader):
        reader = vars(reader).get("conn")
    return _is_channel_connection(reader)


def _reads_wrapper(frame: FrameType) -> bool:
    """torch's ``ConnectionWrapper.recv``: ``self.recv_bytes()``, its connection's."""
    wrapper = frame.f_locals.get("self")
    return _is_torch_wrapper(wrapper) and _is_channel_connection(vars(wrapper).get("conn"))


def _reads_from_parent(frame: FrameType) -> bool:
    """``multiprocessing.spawn._main``: ``from_parent``, opened on the inherited pipe."""
    return _is_pipe_file(frame.f_locals.get("from_parent"))


def _reads_ray_object(frame: FrameType) -> bool:
    """Ray's ``SerializationContext._deserialize_pickle5_data``, called by Ray's own
    ``_deserialize_msgpack_data`` on an object the worker fetched from the cluster's object store
    (as ``ray.get`` and task arguments do): a program's direct call of it is not a channel."""
    context = _ray_class(*_RAY_SERIALIZATION)
    caller = frame.f_back
    return (
        context is not None
        and type(frame.f_locals.get("self")) is context
        and caller is not None
        and caller.f_code is _function_code(*_RAY_SERIALIZATION, "_deserialize_msgpack_data")
    )


def _reads_ray_function_table(frame: FrameType) -> bool:
    """Ray's ``FunctionActorManager``, reading the functions and actor classes the job's driver
    exported to the cluster's own key-value store (GCS)."""
    manager = _ray_class(*_RAY_FUNCTIONS)
    return manager is not None and type(frame.f_locals.get("self")) is manager


def _reads_ray_block_metadata(frame: FrameType) -> bool:
    """Ray Data's ``DataOpTask.produce_block``: the metadata a Ray Data task returned for the
    block it made (fetched from the object store by the executor)."""
    task = _ray_class(*_RAY_DATA_TASK)
    return task is not None and type(frame.f_locals.get("self")) is task


def _ray_class(module_name: str, name: str) -> Optional[type]:
    found = getattr(sys.modules.get(module_name), name, None)
    return found if isinstance(found, type) else None


def _is_torch_wrapper(obj: Any) -> bool:
    queue = sys.modules.get("torch.multiprocessing.queue")
    wrapper = getattr(queue, "ConnectionWrapper", None)
    return wrapper is not None and type(obj) is wrapper and not _WRAPPER_READS & vars(obj).keys()


def _is_channel_connection(conn: Any) -> bool:
    """A genuine ``multiprocessing.connection.Connection`` over a pipe or Unix-domain socket."""
    connection = sys.modules.get("multiprocessing.connection")
    if connection is None or type(conn) is not getattr(connection, "Connection", None):
        return False
    if _CONNECTION_READS & vars(conn).keys():
        return False
    try:
        fd = conn.fileno()
    except (OSError, ValueError):
        return False
    return isinstance(fd, int) and _is_channel_fd(fd)


def _is_pipe_file(file: Any) -> bool:
    """A binary file opened on a pipe descriptor (``open(fd, "rb")``)."""
    if type(file) is not io.BufferedReader or type(file.raw) is not io.FileIO:
        return False
    try:
        return stat.S_ISFIFO(os.fstat(file.raw.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _is_channel_fd(fd: int) -> bool:
    """A pipe, or a Unix-domain socket; never a regular file or a network socket."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    if stat.S_ISFIFO(mode):
        return True
    if not stat.S_ISSOCK(mode):
        return False
    import socket

    family_unix = getattr(socket, "AF_UNIX", None)
    try:
        sock = socket.socket(fileno=fd)  # reads the family of the descriptor
    except OSError:
        return False
    try:
        return family_unix is not None and sock.family == family_unix
    finally:
        sock.detach()  # the descriptor stays open: it is the connection's

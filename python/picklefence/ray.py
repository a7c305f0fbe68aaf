"""Scanning files at hub scale on Ray Data, with the verdicts of ``picklefence scan``.

``pip install "picklefence[ray]"``, then::

    import ray, picklefence.ray

    ray.init()
    results = picklefence.ray.scan_paths(["/models"], output="/results/scan.parquet")
    unsafe = results.filter(lambda row: row["verdict"] == "unsafe")

Each file becomes one row with a fixed schema (:data:`SCHEMA`): ``path``, ``size``, ``format``,
``verdict`` (``clean``, ``unsafe`` or ``error``; ``skipped`` for a path the listing does not
scan, as the command reports it), ``error``, ``violations`` and the ``findings`` and ``imports``
of ``picklefence scan --format json --show-imports``. The record of a file is made by the
command's own code (its listing and its file scan), so a row and the command's object for the
same file agree.

Two ways in:

- :func:`scan_dataset` maps any dataset with a ``path`` column (files each worker can open:
  only the pickles and headers are read, never tensor data) or with a ``bytes`` column, as
  ``ray.data.read_binary_files(..., include_paths=True)`` gives (files on object stores; Ray
  reads them whole).
- :func:`scan_paths` lists local paths the way the command does (directories walked, links
  judged) and scans them, optionally writing the rows as Parquet.

The Rust scan releases the GIL and runs single-threaded per batch: Ray's parallelism is the
tasks. Policies cross to the workers by name or as TOML text (``policy=``, ``policy_toml=``),
since a compiled :class:`picklefence.Policy` is not sent between processes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import pyarrow as pa

from . import _native
from ._native import Policy

if TYPE_CHECKING:
    import ray.data

__all__ = ["SCHEMA", "scan_dataset", "scan_paths"]

_FINDING = pa.struct(
    [
        ("kind", pa.string()),
        ("severity", pa.string()),
        ("violation", pa.bool_()),
        ("offset", pa.int64()),
        ("member", pa.string()),
        ("import", pa.string()),
        ("module", pa.string()),
        ("name", pa.string()),
        ("message", pa.string()),
    ]
)

_IMPORT = pa.struct(
    [
        ("member", pa.string()),
        ("offset", pa.int64()),
        ("opcode", pa.string()),
        ("import", pa.string()),
        ("module", pa.string()),
        ("name", pa.string()),
        ("allowed", pa.bool_()),
        ("reason", pa.string()),
    ]
)

SCHEMA: pa.Schema = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("format", pa.string()),
        ("verdict", pa.string()),
        ("error", pa.string()),
        ("violations", pa.int64()),
        ("findings", pa.list_(_FINDING)),
        ("imports", pa.list_(_IMPORT)),
    ]
)
"""The rows' schema: the same for every batch, so that datasets union and Parquet files append."""

PathLike = Union[str, "os.PathLike[str]"]


def _table(columns: Dict[str, Any]) -> pa.Table:
    """The native layer's columns (see ``_native.scan_file_rows``) as a table in :data:`SCHEMA`."""
    arrays = []
    for field in SCHEMA:
        values = columns[field.name]
        if pa.types.is_list(field.type):
            offsets, items = values
            item_type = field.type.value_type
            children = [pa.array(items[child.name], type=child.type) for child in item_type]
            flat = pa.StructArray.from_arrays(children, fields=list(item_type))
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), flat, type=field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _fields() -> Tuple[List[str], List[str]]:
    return list(_FINDING.names), list(_IMPORT.names)


_policies: Dict[Tuple[Optional[str], Optional[str]], Policy] = {}


def _policy(name: Optional[str], toml: Optional[str]) -> Policy:
    """The policy a worker scans with, built once per process."""
    if name is not None and toml is not None:
        raise ValueError("give policy= (a name) or policy_toml= (TOML text), not both")
    key = (name, toml)
    if key not in _policies:
        if toml is not None:
            _policies[key] = Policy.from_toml(toml)
        elif name is not None:
            _policies[key] = Policy.named(name)
        else:
            _policies[key] = Policy.default()
    return _policies[key]


def _check_policy_args(policy: Any, policy_toml: Any) -> None:
    """Fails on the driver, before any task starts, for a policy the workers could not build."""
    if isinstance(policy, Policy):
        raise TypeError(
            "pass the policy by name (policy='xgboost') or as TOML text (policy_toml=...): "
            "a compiled Policy is not sent to Ray workers"
        )
    for label, value in (("policy", policy), ("policy_toml", policy_toml)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{label} must be a string, not {type(value).__name__}")
    _policy(policy, policy_toml)


class _ScanBatch:
    """The batch function: a batch of paths (or of paths and contents) to a batch of rows."""

    def __init__(
        self, policy: Optional[str], policy_toml: Optional[str], path_column: str, bytes_column: str
    ):
        self.policy = policy
        self.policy_toml = policy_toml
        self.path_column = path_column
        self.bytes_column = bytes_column

    def __call__(self, batch: pa.Table) -> pa.Table:
        policy = _policy(self.policy, self.policy_toml)
        names = batch.column_names
        if self.path_column not in names and self.bytes_column not in names:
            raise KeyError(
                f"picklefence.ray: the dataset has neither a {self.path_column!r} nor a "
                f"{self.bytes_column!r} column (columns: {', '.join(names)})"
            )
        paths = _strings(batch, self.path_column) if self.path_column in names else None
        if self.bytes_column in names:
            contents = batch.column(self.bytes_column).to_pylist()
            named = paths or [f"<row {index}>" for index in range(len(contents))]
            columns = _native.scan_bytes_rows(named, contents, policy, *_fields())
        else:
            columns = _native.scan_file_rows(paths or [], policy, *_fields())
        return _table(columns)


def _strings(batch: pa.Table, column: str) -> List[str]:
    values: List[str] = batch.column(column).to_pylist()
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"picklefence.ray: the {column!r} column holds {type(value).__name__}, not paths")
    return values


def scan_dataset(
    ds: ray.data.Dataset,
    *,
    policy: Optional[str] = None,
    policy_toml: Optional[str] = None,
    batch_size: int = 1024,
    path_column: str = "path",
    bytes_column: str = "bytes",
    **map_batches_args: Any,
) -> ray.data.Dataset:
    """One row per file of ``ds`` (:data:`SCHEMA`), scanned in ``map_batches``.

    Rows with a ``bytes_column`` are scanned from those bytes (named by ``path_column`` when
    present); otherwise ``path_column`` names files the workers open. ``policy`` is a named
    policy (``picklefence policy --list``), ``policy_toml`` a policy file's text; neither means
    the default ML allowlist. ``batch_size`` files go to one call; further keyword arguments go
    to ``Dataset.map_batches`` (``concurrency``, ``num_cpus``, ...).
    """
    _check_policy_args(policy, policy_toml)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    return ds.map_batches(
        _ScanBatch(policy, policy_toml, path_column, bytes_column),
        batch_size=batch_size,
        batch_format="pyarrow",
        **map_batches_args,
    )


def scan_paths(
    paths: Sequence[PathLike],
    output: Optional[PathLike] = None,
    *,
    policy: Optional[str] = None,
    policy_toml: Optional[str] = None,
    follow_symlinks: bool = False,
    batch_size: int = 1024,
    **map_batches_args: Any,
) -> ray.data.Dataset:
    """Lists ``paths`` as ``picklefence scan PATHS`` does and scans every file on Ray.

    Paths the listing does not scan (unreadable directories, links not followed) get their
    rows too, as the command reports them. With ``output``, the rows are written there as
    Parquet and the dataset returned reads them back (no second scan); without it, the dataset
    is lazy.
    """
    import ray.data

    _check_policy_args(policy, policy_toml)
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError("scan_paths takes a list of paths, not a single path")
    files, unscanned = _native.list_files([os.fspath(path) for path in paths], follow_symlinks, *_fields())
    parts = []
    if files:
        parts.append(
            scan_dataset(
                ray.data.from_arrow(pa.table({"path": pa.array(files, type=pa.string())})),
                policy=policy,
                policy_toml=policy_toml,
                batch_size=batch_size,
                **map_batches_args,
            )
        )
    if unscanned["path"] or not parts:
        parts.append(ray.data.from_arrow(_table(unscanned)))
    result = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    if output is None:
        return result
    result.write_parquet(os.fspath(output))
    return ray.data.read_parquet(os.fspath(output))

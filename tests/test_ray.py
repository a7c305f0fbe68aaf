"""`picklefence.ray` on Ray in local mode: the rows it gives for a corpus of 2,000 files of several
container kinds, benign and malicious, equal `picklefence scan --format json` of the same files,
file for file, whether Ray is handed paths or the files' bytes."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import mixed_corpus
import picklefence
from measured import command

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
picklefence_ray = pytest.importorskip("picklefence.ray")

FILES = 2_000


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    assert not picklefence.is_active(), "Ray's own channels are not for the guard to judge here"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Dict[str, Tuple[str, bool]]]:
    root = tmp_path_factory.mktemp("corpus")
    marker = tmp_path_factory.mktemp("marker") / "pwned"
    written = mixed_corpus.build(root / "files", FILES, marker)
    os.symlink("/etc/hostname", root / "files" / "outside-link")
    return root, written


def cli_files(*args: str) -> Dict[str, Dict[str, Any]]:
    result = subprocess.run(
        [*command(), "scan", "--format", "json", "--show-imports", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 1, 2), result.stderr
    return {item["path"]: item for item in json.loads(result.stdout)["files"]}


def comparable(row: Dict[str, Any]) -> Dict[str, Any]:
    """A row in the terms both sides share."""
    return {
        "path": row["path"],
        "verdict": row["verdict"],
        "format": row["format"],
        "error": row["error"],
        "findings": [
            (f["kind"], f["severity"], f["violation"], f["offset"], f["member"], f["import"], f["message"])
            for f in row["findings"]
        ],
        "imports": [
            (i["member"], i["offset"], i["opcode"], i["import"], i["allowed"]) for i in row["imports"]
        ],
    }


def cli_row(item: Dict[str, Any]) -> Dict[str, Any]:
    error = item.get("reason") if item["status"] == "skipped" else item.get("error")
    return comparable(
        {
            "path": item["path"],
            "verdict": item["status"],
            "format": item.get("format"),
            "error": error,
            "findings": item.get("findings", []),
            "imports": item.get("imports", []),
        }
    )


def by_path(rows: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    out = {row["path"]: comparable(row) for row in rows}
    assert len(out) == len(rows), "a path came back twice"
    return out


def test_scan_paths_equals_the_command_file_for_file(
    ray_session: None, corpus: Tuple[Path, Dict[str, Tuple[str, bool]]], tmp_path: Path
) -> None:
    root, written = corpus
    missing = str(root / "no-such-file.pt")
    output = tmp_path / "scan.parquet"
    dataset = picklefence_ray.scan_paths([root / "files", missing], output=output, batch_size=128)
    rows = by_path(dataset.take_all())
    expected = {path: cli_row(item) for path, item in cli_files(str(root / "files"), missing).items()}

    assert len(rows) == FILES + 2
    assert rows == expected
    # The Parquet files hold the same rows, in the fixed schema.
    table = pq.read_table(output)
    assert table.schema.equals(picklefence_ray.SCHEMA)
    assert by_path(table.to_pylist()) == rows

    assert rows[missing]["verdict"] == "error" and "No such file" in rows[missing]["error"]
    assert rows[str(root / "files" / "outside-link")]["verdict"] == "skipped"
    # Every kind is there benign and malicious, and the verdicts are the ones intended.
    for path, (kind, bad) in written.items():
        assert rows[path]["verdict"] == ("unsafe" if bad else "clean"), (kind, path, rows[path])
    assert {kind for kind, bad in written.values() if bad} == set(mixed_corpus.KINDS)
    # The README's query.
    from ray.data.expressions import col

    unsafe = dataset.filter(expr=col("verdict") == "unsafe").select_columns(["path", "violations"])
    assert sorted(row["path"] for row in unsafe.take_all()) == sorted(
        p for p, (_, bad) in written.items() if bad
    )


def test_scan_dataset_of_the_files_bytes_equals_the_command(
    ray_session: None, corpus: Tuple[Path, Dict[str, Tuple[str, bool]]]
) -> None:
    _root, written = corpus
    files = sorted(written)[:: len(written) // 300]
    dataset = ray.data.read_binary_files(files, include_paths=True)
    rows = picklefence_ray.scan_dataset(dataset, batch_size=64).take_all()
    assert all(row["size"] == os.path.getsize(row["path"]) for row in rows)
    expected = {path: cli_row(item) for path, item in cli_files(*files).items()}
    assert by_path(rows) == expected


def test_scan_dataset_of_a_path_column_keeps_missing_files_as_errors(
    ray_session: None, corpus: Tuple[Path, Dict[str, Tuple[str, bool]]], tmp_path: Path
) -> None:
    root, written = corpus
    paths = [*sorted(written)[:50], str(tmp_path / "gone.pkl"), str(root / "files")]
    rows = by_path(picklefence_ray.scan_dataset(ray.data.from_items([{"path": p} for p in paths])).take_all())
    assert rows[str(tmp_path / "gone.pkl")]["verdict"] == "error"
    assert rows[str(root / "files")]["verdict"] == "error"
    assert "directory" in rows[str(root / "files")]["error"]
    expected = {path: cli_row(item) for path, item in cli_files(*paths[:50]).items()}
    assert {path: rows[path] for path in paths[:50]} == expected


def custom_class_pickle() -> bytes:
    # NEWOBJ of a class outside the default policy, given its state by BUILD.
    return b"\x80\x02cmypkg.models\nThing\n)\x81}X\x01\x00\x00\x00aK\x01sb."


def test_policies_cross_to_the_workers_by_name_and_as_toml(ray_session: None, tmp_path: Path) -> None:
    model = tmp_path / "thing.pkl"
    model.write_bytes(custom_class_pickle())
    toml = 'base = "default"\nallow = ["mypkg.models.Thing=reconstruct"]\n'
    (tmp_path / "policy.toml").write_text(toml)
    default = picklefence_ray.scan_paths([model]).take_all()
    allowed = picklefence_ray.scan_paths([model], policy_toml=toml).take_all()
    named = picklefence_ray.scan_paths([model], policy="empty").take_all()
    assert [row["verdict"] for row in default] == ["unsafe"]
    assert [row["verdict"] for row in allowed] == ["clean"]
    assert [row["verdict"] for row in named] == ["unsafe"]
    by_file = cli_files("--policy", str(tmp_path / "policy.toml"), str(model))
    assert by_path(allowed) == {path: cli_row(item) for path, item in by_file.items()}


def test_bad_policies_fail_on_the_driver_before_any_task(tmp_path: Path) -> None:
    dataset_free = [tmp_path / "x.pkl"]
    with pytest.raises(TypeError, match="by name"):
        picklefence_ray.scan_paths(dataset_free, policy=picklefence.Policy.default())  # type: ignore[arg-type]
    with pytest.raises(picklefence.PolicyError):
        picklefence_ray.scan_paths(dataset_free, policy="no-such-policy")
    with pytest.raises(picklefence.PolicyError):
        picklefence_ray.scan_paths(dataset_free, policy_toml="allow = [3]\n")
    with pytest.raises(ValueError, match="not both"):
        picklefence_ray.scan_paths(dataset_free, policy="default", policy_toml="")
    with pytest.raises(TypeError, match="list of paths"):
        picklefence_ray.scan_paths(str(tmp_path))  # type: ignore[arg-type]


def test_a_dataset_without_paths_or_bytes_is_an_error(ray_session: None) -> None:
    dataset = ray.data.from_items([{"name": "model.pt"}])
    with pytest.raises(Exception, match="neither a 'path' nor a 'bytes' column"):
        picklefence_ray.scan_dataset(dataset).take_all()


def test_scan_results_are_plain_picklable_values(tmp_path: Path) -> None:
    model = tmp_path / "bad.pkl"
    model.write_bytes(custom_class_pickle())
    report = picklefence.scan_file(model)
    assert pickle.loads(pickle.dumps(report)) == report
    scan_batch = picklefence_ray._ScanBatch(None, None, "path", "bytes")
    rows = scan_batch(pa.table({"path": [str(model)]}))
    assert rows.schema.equals(picklefence_ray.SCHEMA)
    row = rows.to_pylist()[0]
    assert pickle.loads(pickle.dumps(row)) == row
    assert row["verdict"] == "unsafe" and row["violations"] == len(
        [f for f in row["findings"] if f["violation"]]
    )


def test_the_guard_lets_rays_own_channels_through_and_judges_files(
    ray_session: None, corpus: Tuple[Path, Dict[str, Tuple[str, bool]]], tmp_path: Path
) -> None:
    """With the guard active in the driver, Ray's object store, function table and Ray Data's
    block metadata are the cluster's own channels; a pickle the program loads itself, even one a
    task handed back as bytes, is judged by the policy, in the driver and in a guarded worker."""
    _root, written = corpus
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_MarkerWriter(str(marker)))

    @ray.remote
    def load_in_guarded_worker(data: bytes) -> str:
        import pickle as worker_pickle

        import picklefence as worker_picklefence

        with worker_picklefence.safe_ml_environment():
            try:
                worker_pickle.loads(data)
            except worker_picklefence.UnsafeFileError as refused:
                return f"refused: {refused.violations[0].module}"
        return "loaded"

    @ray.remote
    def hand_back(data: bytes) -> bytes:
        return data

    files = sorted(written)[:300]
    with picklefence.safe_ml_environment():
        rows = by_path(
            picklefence_ray.scan_dataset(ray.data.from_items([{"path": p} for p in files])).take_all()
        )
        assert {path: row["verdict"] for path, row in rows.items()} == {
            path: ("unsafe" if written[path][1] else "clean") for path in files
        }
        assert ray.get(load_in_guarded_worker.remote(payload)) in ("refused: posix", "refused: os")
        with pytest.raises(picklefence.UnsafeFileError):
            pickle.loads(ray.get(hand_back.remote(payload)))
    assert not marker.exists()


class _MarkerWriter:
    """Loading it would create `path` (a file in a temp directory)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (os.system, (f"touch '{self.path}'",))

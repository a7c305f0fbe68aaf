"""`picklefence scan` of a directory of 100,000 files holds the reports of one batch at a time,
not of every file (issue: memory grew with the number of files: 134 MB of text output and
469 MB of JSON for 100,000 small pickles). JSON is still one document in the order found."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from measured import RSS_LIMIT_MIB, command, measure

FILES = 100_000
PER_DIR = 1_000


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    data = pickle.dumps({"weights": [1.0, 2.0], "name": "layer"}, protocol=4)
    for d in range(FILES // PER_DIR):
        folder = root / f"d{d:03}"
        folder.mkdir()
        for i in range(PER_DIR):
            (folder / f"f{i:04}.pkl").write_bytes(data)
    # One unsafe file in the middle of a batch, so that its place in the output is checked.
    (root / "d050" / "f0500.pkl").write_bytes(b"\x80\x04\x8c\x02os\x8c\x06system\x93.")
    return root


@pytest.mark.parametrize("output", ["text", "json"])
def test_a_hundred_thousand_files_are_scanned_in_bounded_memory(many_files: Path, output: str) -> None:
    result = measure([*command(), "scan", "--format", output, str(many_files)])
    assert result["code"] == 1, result["err"]
    assert result["peak_mib"] < RSS_LIMIT_MIB, result["peak_mib"]
    if output == "text":
        assert "100000 files scanned: 99999 clean, 1 unsafe" in result["out"]
        return
    document = json.loads(result["out"])
    assert document["summary"] == {
        "scanned": FILES,
        "clean": FILES - 1,
        "unsafe": 1,
        "errors": 0,
        "skipped": 0,
    }
    assert document["exit_code"] == 1
    paths = [f["path"] for f in document["files"]]
    assert paths == sorted(paths)
    unsafe = [f["path"] for f in document["files"] if f["status"] == "unsafe"]
    assert unsafe == [str(many_files / "d050" / "f0500.pkl")]


@pytest.mark.parametrize("output", ["json", "sarif"])
def test_the_document_is_written_as_files_finish(many_files: Path, output: str) -> None:
    """The document's files (SARIF: their results) are written as each is scanned (the summary,
    exit code and SARIF's invocation follow them), so a document holds what text holds: a batch
    of reports, not one per file (before, for these 100,000 files against text's 42 MiB: JSON
    85 MiB, SARIF 167 MiB)."""
    text = measure([*command(), "scan", "--format", "text", "-q", str(many_files)])
    document = measure([*command(), "scan", "--format", output, str(many_files)])
    assert document["code"] == text["code"] == 1
    assert document["peak_mib"] < text["peak_mib"] + 16, (document["peak_mib"], text["peak_mib"])
    parsed = json.loads(document["out"])
    if output == "json":
        assert parsed["summary"]["scanned"] == FILES
        return
    (run,) = parsed["runs"]
    assert [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]] == [
        (many_files / "d050" / "f0500.pkl").as_uri()
    ]
    assert run["invocations"] == [
        {"executionSuccessful": True, "exitCode": 1, "toolExecutionNotifications": []}
    ]

"""Decompression bombs of every codec the scanner opens, claiming 1 GiB and 16 GiB, scanned by
the command in bounded memory (issue: a 1 MB torch zip whose data.pkl inflates to 1 GiB made
`picklefence scan` peak at 1.07 GB). Each run is measured in a child of its own; the figures
side by side with the previous release are `bench/hostile_rss.py`'s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostile_inputs import BOMBS, GIB, write_bomb
from measured import RSS_LIMIT_MIB, command, measure

pytest.importorskip("zstandard")
pytest.importorskip("lz4.frame")

# Streams whose zeros expand past the scan's ratio limit (2,000:1) stop 64 MiB in; deflate
# and lz4 cannot expand that far and are read to the end of what they claim.
RATIO_STOPS = {"bzip2", "xz", "zstd"}


@pytest.fixture(scope="module")
def bomb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bombs")


@pytest.mark.parametrize("claimed_gib", [1, 16])
@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_a_bomb_ends_in_a_finding_in_bounded_memory(kind: str, claimed_gib: int, bomb_dir: Path) -> None:
    path = write_bomb(kind, bomb_dir, claimed_gib * GIB)
    try:
        result = measure([*command(), "scan", "--format", "json", str(path)])
    finally:
        path.unlink()
    assert result["code"] == 1, result
    (report,) = json.loads(result["out"])["files"]
    kinds = {f["kind"] for f in report["findings"]}
    messages = " ".join(f["message"] for f in report["findings"])
    if kind in RATIO_STOPS:
        assert "limit-exceeded" in kinds and "decompression bomb" in messages, report["findings"]
    elif claimed_gib == 16:
        # The scan's whole budget (16 GiB) is spent before the claimed end.
        assert "limit-exceeded" in kinds and "total budget" in messages, report["findings"]
    else:
        # 1 GiB is within every limit: the import after the payload is found.
        assert "dangerous-import" in kinds and "limit-exceeded" not in kinds, report["findings"]
    assert result["peak_mib"] < RSS_LIMIT_MIB, result


def test_an_endless_pickle_on_standard_input_ends_at_the_byte_budget() -> None:
    """A payload that claims 2^63 bytes and never ends, piped in: the scan stops at its byte
    budget (16 GiB) with a limit finding, in bounded memory."""
    result = measure([*command(), "scan", "--format", "json", "-"], stdin_mib=-1, timeout=300)
    assert result["code"] == 1, result
    (report,) = json.loads(result["out"])["files"]
    assert any(f["kind"] == "limit-exceeded" and "byte budget" in f["message"] for f in report["findings"]), (
        report
    )
    assert result["peak_mib"] < RSS_LIMIT_MIB, result

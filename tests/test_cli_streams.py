"""`picklefence scan` on inputs that are streams: standard input and character devices are read
in bounded memory (issue: `scan -` read its input whole, `scan /dev/zero` grew until the
machine ran out of memory). Each run is measured in a child of its own (peak RSS of that
child only)."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from measured import RSS_LIMIT_MIB
from measured import command as _command
from measured import measure as _measure


def test_a_large_standard_input_is_scanned_in_bounded_memory() -> None:
    result = _measure([*_command(), "scan", "--format", "json", "-"], stdin_mib=300)
    assert result["code"] == 1, result
    assert "os.system" in result["out"], result["out"][:2000]
    assert result["peak_mib"] < RSS_LIMIT_MIB, result["peak_mib"]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this system")
def test_an_endless_device_named_explicitly_ends_quickly_in_bounded_memory() -> None:
    """Nothing recognises its start, so it is read on to its end: it never ends, and the scan
    stops at its byte budget with a limit finding (an input that cannot be read whole is not
    called clean)."""
    result = _measure([*_command(), "scan", "-v", "/dev/zero"], stdin_mib=0)  # -v: the info note
    assert result["code"] == 1, result
    assert "not a recognised model format" in result["out"], result["out"]
    assert "longer than the scan's byte budget" in result["out"], result["out"]
    assert result["peak_mib"] < RSS_LIMIT_MIB, result["peak_mib"]


def test_a_small_standard_input_is_scanned_as_its_bytes(tmp_path: Path) -> None:
    """Under 16 MiB the input is read whole and scanned exactly as a file with its bytes."""
    data = b"\x80\x04\x8e" + struct.pack("<Q", 1000) + b"x" * 1000 + b"0\x8c\x02os\x8c\x06system\x93."
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    piped = subprocess.run([*_command(), "scan", "--format", "json", "-"], input=data, capture_output=True)
    named = subprocess.run([*_command(), "scan", "--format", "json", str(path)], capture_output=True)
    assert piped.returncode == named.returncode == 1
    import json

    (piped_file,) = json.loads(piped.stdout)["files"]
    (named_file,) = json.loads(named.stdout)["files"]
    for key in ("findings", "entries"):
        for item in piped_file[key] + named_file[key]:
            item.pop("location", None)
    assert piped_file["findings"] == named_file["findings"]
    assert piped_file["entries"] == named_file["entries"]

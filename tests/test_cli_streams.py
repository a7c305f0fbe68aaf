"""`picklefence scan` on inputs that are streams: standard input and character devices are read
in bounded memory (issue: `scan -` read its input whole, `scan /dev/zero` grew until the
machine ran out of memory). Each run is measured in a child of its own (peak RSS of that
child only)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

import pytest

MIB = 1 << 20
# What the command may hold, interpreter included: the input is 300 MiB.
RSS_LIMIT_MIB = 128


def _command() -> List[str]:
    exe = shutil.which("picklefence")
    return [exe] if exe else [sys.executable, "-m", "picklefence"]


def _measure(argv: List[str], stdin_mib: int) -> dict:
    """Runs `argv` in a measuring child, feeding `stdin_mib` MiB of a pickle (one BINBYTES8
    payload, then an os.system import) through a pipe when asked; returns the exit code, the
    output and the command's peak RSS in MiB."""
    script = textwrap.dedent(
        f"""
        import json, os, resource, struct, subprocess, sys, threading
        argv = {argv!r}
        size = {stdin_mib} * (1 << 20)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if size else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        def feed():
            try:
                proc.stdin.write(b"\\x80\\x04\\x8e" + struct.pack("<Q", size))
                chunk = b"x" * (1 << 20)
                for _ in range(size >> 20):
                    proc.stdin.write(chunk)
                proc.stdin.write(b"0\\x8c\\x02os\\x8c\\x06system\\x93.")
                proc.stdin.close()
            except BrokenPipeError:
                pass
        if size:
            threading.Thread(target=feed, daemon=True).start()
        # Not communicate(): it would close the pipe the feeding thread writes to.
        out = proc.stdout.read()
        err = proc.stderr.read()
        code = proc.wait(timeout=120)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        result = {{"code": code, "out": out.decode(), "err": err.decode(), "peak_mib": peak}}
        print(json.dumps(result))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    import json

    result: dict = json.loads(done.stdout)
    return result


def test_a_large_standard_input_is_scanned_in_bounded_memory() -> None:
    result = _measure([*_command(), "scan", "--format", "json", "-"], stdin_mib=300)
    assert result["code"] == 1, result
    assert "os.system" in result["out"], result["out"][:2000]
    assert result["peak_mib"] < RSS_LIMIT_MIB, result["peak_mib"]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this system")
def test_an_endless_device_named_explicitly_ends_quickly_in_bounded_memory() -> None:
    result = _measure([*_command(), "scan", "/dev/zero"], stdin_mib=0)
    assert result["code"] == 0, result
    assert "not a recognised model format" in result["out"], result["out"]
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

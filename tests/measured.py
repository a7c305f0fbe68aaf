"""Runs the `picklefence` command in a child of its own and reports that child's peak RSS (the
figure the reliability tests bound), optionally feeding it a large pickle through a pipe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

# What the command may hold, interpreter included, whatever its input.
RSS_LIMIT_MIB = 128


def command() -> List[str]:
    exe = shutil.which("picklefence")
    return [exe] if exe else [sys.executable, "-m", "picklefence"]


def measure(argv: List[str], stdin_mib: int = 0, timeout: float = 180) -> dict:
    """Runs `argv` in a measuring child, feeding `stdin_mib` MiB of a pickle (one BINBYTES8
    payload, then an os.system import) through a pipe when asked, or (`stdin_mib` -1) a payload
    that claims 2^63 bytes and never ends; returns the exit code, the output, the wall time and
    the command's peak RSS in MiB."""
    script = textwrap.dedent(
        f"""
        import json, os, resource, subprocess, sys, threading, time
        sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
        from hostile_inputs import feed_pickle
        argv = {argv!r}
        size = {stdin_mib} * (1 << 20)
        endless = size < 0
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if size or endless else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        def feed():
            feed_pickle(proc.stdin, size)
        if size or endless:
            threading.Thread(target=feed, daemon=True).start()
        # Not communicate(): it would close the pipe the feeding thread writes to.
        out = proc.stdout.read()
        err = proc.stderr.read()
        code = proc.wait(timeout={timeout})
        seconds = time.monotonic() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        result = {{"code": code, "out": out.decode(), "err": err.decode(), "peak_mib": peak,
                   "seconds": seconds}}
        print(json.dumps(result))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout + 60
    )
    assert done.returncode == 0, done.stderr
    result: dict = json.loads(done.stdout)
    return result

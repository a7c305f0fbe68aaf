"""The ``picklefence`` command as ``python -m picklefence`` (and as the console script of a wheel
built by maturin alone; ``scripts/build_wheel.sh`` installs the native binary instead).

It runs the same command-line interface as the Rust ``picklefence`` binary:

* when the native module was built with the ``cli`` feature, in-process through
  ``picklefence._native.cli_main`` (the CLI crate's library entry point);
* otherwise by running a ``picklefence`` binary built alongside: ``$PICKLEFENCE_BIN``, a binary
  shipped in the package (``picklefence/bin/``), one on ``PATH`` (never this script itself), or
  ``target/release`` / ``target/debug`` of a source checkout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import List, Optional, Sequence

from . import _native

__all__ = ["main", "find_binary"]

_GUARD = "PICKLEFENCE_CLI_DEPTH"


def _is_python_script(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return True
    return (
        head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0].lower()
    ) or b"picklefence.__main__" in head


def find_binary() -> Optional[str]:
    """The path of a native ``picklefence`` binary, or None."""
    name = "picklefence.exe" if os.name == "nt" else "picklefence"
    candidates: List[Path] = []
    env = os.environ.get("PICKLEFENCE_BIN")
    if env:
        candidates.append(Path(env))
    here = Path(__file__).resolve().parent
    candidates.append(here / "bin" / name)
    found = shutil.which(name)
    path_entries = os.environ.get("PATH", "").split(os.pathsep)
    for entry in path_entries:
        if entry:
            candidates.append(Path(entry) / name)
    if found:
        candidates.append(Path(found))
    for root in (here.parent.parent, Path.cwd()):
        for profile in ("release", "debug"):
            candidates.append(root / "target" / profile / name)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK) and not _is_python_script(candidate):
            return str(candidate)
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``picklefence`` command with ``argv`` (default: ``sys.argv[1:]``); its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    cli_main = getattr(_native, "cli_main", None)
    if cli_main is not None:
        # The Rust CLI writes to the process's own stdout/stderr: flush Python's first. As a
        # command, Ctrl-C should stop it at once, as it stops the Rust binary (the scan runs
        # without the GIL, where Python's own handler would wait for it to finish).
        sys.stdout.flush()
        sys.stderr.flush()
        if argv is None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        return int(cli_main(args))
    depth = int(os.environ.get(_GUARD, "0") or 0)
    binary = find_binary() if depth == 0 else None
    if binary is None:
        print(
            "picklefence: this installation has no command-line backend (the native module lacks "
            "cli_main and no picklefence binary was found; set PICKLEFENCE_BIN). The Python API "
            "(picklefence.scan_file, ...) works.",
            file=sys.stderr,
        )
        return 2
    env = dict(os.environ)
    env[_GUARD] = str(depth + 1)
    try:
        return subprocess.call([binary, *args], env=env)
    except KeyboardInterrupt:  # pragma: no cover
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory and wall time of `picklefence scan` on hostile inputs, two builds side by side
in one run (the README's reliability table): every decompression bomb of
`tests/hostile_inputs.py` at 1 GiB and 16 GiB claimed, a 1 GiB deflate member inside a zip
inside gzip, a pickle piped in for 1.5 GiB, and /dev/zero.

    python bench/hostile_rss.py --before OLD/picklefence --after target/release/picklefence

Each command runs under GNU time (`/usr/bin/time`, Debian's `time` package), which reports its
peak RSS."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hostile_inputs import BOMBS, GIB, feed_pickle, write_bomb

# A child forked from this interpreter inherits its resident size as a floor for ru_maxrss
# (Linux keeps the high-water mark across exec), so GNU time, a small process, runs the
# command and reports the command's own peak.
GNU_TIME = "/usr/bin/time"


def run(argv: List[str], stdin_bytes: int = 0) -> Tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB, and a short outcome of one run."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [GNU_TIME, "-f", "%M", *argv],
        stdin=subprocess.PIPE if stdin_bytes else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def feed() -> None:
        assert proc.stdin is not None
        feed_pickle(proc.stdin, stdin_bytes)

    if stdin_bytes:
        threading.Thread(target=feed, daemon=True).start()
    out, err = proc.communicate() if not stdin_bytes else (proc.stdout.read(), proc.stderr.read())  # type: ignore[union-attr]
    code = proc.wait()
    seconds = time.monotonic() - start
    peak_kib = int(err.decode().strip().splitlines()[-1])
    return seconds, peak_kib / 1024, outcome(code, out)


def outcome(code: int, out: bytes) -> str:
    try:
        (report,) = json.loads(out)["files"]
    except (ValueError, KeyError):
        return f"exit {code}"
    kinds = {f["kind"] for f in report["findings"]}
    if "dangerous-import" in kinds:
        found = "os.system found"
    elif "limit-exceeded" in kinds:
        found = "limit finding"
    else:
        found = f"{report['status']}: " + ", ".join(sorted(kinds))
    return f"exit {code}, {found}"


def large_zip_in_gzip(directory: Path) -> Path:
    """A 400 MiB torch-like zip (stored, data.pkl importing os.system), gzip-compressed: a zip
    stream too long to hold."""
    import gzip
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.")
        archive.writestr("archive/data/0", bytes(400 << 20))
    path = directory / "large-zip-in-gzip.bomb"
    path.write_bytes(gzip.compress(buffer.getvalue(), compresslevel=1))
    return path


def zip_in_gzip(directory: Path) -> Path:
    """The 1 GiB zip bomb, gzip-compressed: a zip that is itself a stream."""
    import gzip

    inner = write_bomb("zip-deflate", directory, GIB)
    path = directory / "zip-in-gzip-1GiB.bomb"
    path.write_bytes(gzip.compress(inner.read_bytes(), compresslevel=1))
    inner.unlink()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", required=True, help="the previous build's picklefence command")
    parser.add_argument("--after", required=True, help="this build's picklefence command")
    args = parser.parse_args()
    builds = {"before": args.before, "after": args.after}
    rows: List[Tuple[str, Dict[str, Tuple[float, float, str]]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        cases: List[Tuple[str, Optional[Path], int]] = []
        for kind in sorted(BOMBS):
            for gib in (1, 16):
                cases.append((f"{kind} bomb, {gib} GiB claimed", None, 0))
        cases.append(("zip in gzip, 1 GiB member", None, 0))
        cases.append(("400 MiB zip in gzip", None, 0))
        cases.append(("pickle on stdin, 1.5 GiB", None, 3 << 29))
        cases.append(("/dev/zero", Path("/dev/zero"), 0))
        for label, path, stdin_bytes in cases:
            if label.endswith("claimed"):
                kind = label.split(" bomb")[0]
                path = write_bomb(kind, directory, int(label.split(", ")[1].split()[0]) * GIB)
            elif label.startswith("zip in gzip"):
                path = zip_in_gzip(directory)
            elif label == "400 MiB zip in gzip":
                path = large_zip_in_gzip(directory)
            target = "-" if stdin_bytes else str(path)
            results = {}
            for name, exe in builds.items():
                results[name] = run([exe, "scan", "--format", "json", target], stdin_bytes)
            if path is not None and path.parent == directory:
                path.unlink()
            rows.append((label, results))
            print(label, results, file=sys.stderr)
    columns = [f"{name}: {what}" for name in builds for what in ("peak RSS", "time", "result")]
    print("| input | " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|")
    for label, results in rows:
        cells = []
        for name in builds:
            seconds, rss, result = results[name]
            cells += [f"{rss:.0f} MiB", f"{seconds:.2f} s", result]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

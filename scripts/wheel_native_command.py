#!/usr/bin/env python3
"""Put the native `picklefence` binary into a wheel maturin built, as its `picklefence` command.

    python scripts/wheel_native_command.py WHEEL BINARY

maturin builds the package's extension module; its console script would be a Python launcher
that imports the package before the Rust CLI starts (tens of milliseconds per call). This step
adds the CLI binary built from the same sources as `<name>-<version>.data/scripts/picklefence`
(installed to the environment's `bin/` as is, executable), removes the console-script entry
of the same name, and rewrites `RECORD` with the new hashes. The wheel is replaced in place.
`python -m picklefence` keeps working through the extension module either way.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

COMMAND = "picklefence"


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def without_command(entry_points: str) -> str:
    """entry_points.txt without the console script named COMMAND (and without a section left
    empty by that)."""
    sections: Dict[str, List[str]] = {}
    order: List[str] = []
    current = ""
    for line in entry_points.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
            order.append(current)
            sections[current] = []
        elif stripped and not (current == "console_scripts" and stripped.split("=")[0].strip() == COMMAND):
            sections.setdefault(current, []).append(line)
    out = []
    for name in order:
        if sections[name]:
            out.append(f"[{name}]")
            out.extend(sections[name])
            out.append("")
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    wheel, binary = Path(sys.argv[1]), Path(sys.argv[2])
    native = binary.read_bytes()
    if (
        not native.startswith(b"\x7fELF")
        and not native.startswith(b"MZ")
        and native[:4]
        not in (
            b"\xcf\xfa\xed\xfe",
            b"\xca\xfe\xba\xbe",
        )
    ):
        raise SystemExit(f"{binary} is not an executable binary")
    with zipfile.ZipFile(wheel) as source:
        infos = source.infolist()
        contents = {info.filename: source.read(info) for info in infos}
    dist_info = next(name.split("/")[0] for name in contents if name.endswith(".dist-info/RECORD"))
    record_name = f"{dist_info}/RECORD"
    data_dir = dist_info[: -len(".dist-info")] + ".data"
    script_name = f"{data_dir}/scripts/{COMMAND}"
    if script_name in contents:
        raise SystemExit(f"{wheel} already has {script_name}")

    entry_points_name = f"{dist_info}/entry_points.txt"
    if entry_points_name in contents:
        rewritten = without_command(contents[entry_points_name].decode())
        if rewritten.strip():
            contents[entry_points_name] = rewritten.encode()
        else:
            del contents[entry_points_name]
    contents[script_name] = native

    rows = []
    for name, data in contents.items():
        if name != record_name:
            rows.append([name, record_hash(data), str(len(data))])
    rows.append([record_name, "", ""])
    record = io.StringIO()
    csv.writer(record, lineterminator="\n").writerows(rows)
    contents[record_name] = record.getvalue().encode()

    modes = {info.filename: info.external_attr for info in infos}
    temporary = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as target:
        # RECORD last, as wheels write it.
        for name in [n for n in contents if n != record_name] + [record_name]:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = name == script_name
            info.external_attr = (0o100755 << 16) if executable else modes.get(name, 0o100644 << 16)
            target.writestr(info, contents[name])
    os.replace(temporary, wheel)
    print(f"{wheel.name}: {COMMAND} is the native binary ({len(native) >> 20} MiB)")


if __name__ == "__main__":
    main()

"""The installed `picklefence` command is the native binary, not a Python launcher (issue 17):
`scripts/build_wheel.sh` puts the CLI binary into the wheel as its script and drops the console
script of the same name. Startup is measured by `bench/bench_startup.py`, not here."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import picklefence

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_command_is_the_native_binary_of_this_version() -> None:
    command = Path(sysconfig.get_path("scripts")) / "picklefence"
    assert command.is_file(), f"no picklefence command in {command.parent}"
    assert command.read_bytes()[:4] == b"\x7fELF", "the command is a launcher script, not the binary"
    version = subprocess.run([str(command), "--version"], capture_output=True, text=True, timeout=30)
    assert version.stdout.strip() == f"picklefence {picklefence.__version__}"
    # The module entry point stays, through the extension module.
    module = subprocess.run(
        [sys.executable, "-m", "picklefence", "--version"], capture_output=True, text=True, timeout=60
    )
    assert module.stdout.strip() == version.stdout.strip()


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_the_wheel_step_adds_the_binary_drops_the_console_script_and_keeps_record_true(
    tmp_path: Path,
) -> None:
    wheel = tmp_path / "picklefence-9.9-cp39-abi3-linux_x86_64.whl"
    entry_points = "[console_scripts]\npicklefence=picklefence.__main__:main\nother=x:y\n\n[x.plugins]\na=b\n"
    with zipfile.ZipFile(wheel, "w") as out:
        out.writestr("picklefence/__init__.py", "")
        out.writestr("picklefence-9.9.dist-info/entry_points.txt", entry_points)
        out.writestr("picklefence-9.9.dist-info/RECORD", "stale\n")
    binary = tmp_path / "picklefence"
    binary.write_bytes(b"\x7fELF" + b"\0" * 100)
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "wheel_native_command.py"), str(wheel), str(binary)],
        check=True,
        capture_output=True,
    )
    with zipfile.ZipFile(wheel) as built:
        script = built.getinfo("picklefence-9.9.data/scripts/picklefence")
        assert script.external_attr >> 16 == 0o100755
        assert built.read(script) == binary.read_bytes()
        points = built.read("picklefence-9.9.dist-info/entry_points.txt").decode()
        assert "picklefence=" not in points and "other=x:y" in points and "[x.plugins]" in points
        rows = list(csv.reader(io.StringIO(built.read("picklefence-9.9.dist-info/RECORD").decode())))
        listed = {row[0]: row[1:] for row in rows}
        assert set(listed) == set(built.namelist())
        for name, (digest, size) in listed.items():
            if name.endswith("RECORD"):
                assert digest == size == ""
                continue
            data = built.read(name)
            assert digest == _hash(data) and int(size) == len(data)
    # A launcher script is not a binary, and the step is not applied twice.
    script_file = tmp_path / "launcher"
    script_file.write_text("#!/usr/bin/env python\n")
    for argv in ([str(wheel), str(script_file)], [str(wheel), str(binary)]):
        again = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "wheel_native_command.py"), *argv], capture_output=True
        )
        assert again.returncode != 0

"""The package's public API: Policy, scan_bytes / scan_file, errors, the command, the stubs."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import picklefence
from pfhelpers import Point, SystemPayload
from picklefence import Policy, PolicyError, ScanError, UnsafeFileError, _native
from picklefence.errors import PicklefenceError

ROOT = Path(__file__).resolve().parent.parent


def test_exception_hierarchy() -> None:
    assert issubclass(UnsafeFileError, PicklefenceError) and issubclass(
        UnsafeFileError, pickle.UnpicklingError
    )
    assert issubclass(ScanError, PicklefenceError)
    assert issubclass(PolicyError, PicklefenceError) and issubclass(PolicyError, ValueError)


def test_unsafe_file_error_survives_pickling(marker: Path) -> None:
    with picklefence.safe_ml_environment():
        with pytest.raises(UnsafeFileError) as info:
            pickle.loads(pickle.dumps(SystemPayload(marker)))
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.module, copy.name, copy.violations, str(copy)) == (
        info.value.module,
        info.value.name,
        info.value.violations,
        str(info.value),
    )


def test_policy_api(tmp_path: Path) -> None:
    default = Policy()
    assert default.is_allowed("collections", "OrderedDict")
    assert not default.is_allowed("posix", "system") and not default.is_allowed("builtins", "eval")
    assert "collections.OrderedDict" in default and "os.system" not in default
    assert len(default) == len(default.entries()) > 100
    extended = default.with_allowed(["pfhelpers.Point", "pkg.mod:Outer.Inner"])
    assert extended.is_allowed("pfhelpers", "Point") and extended.is_allowed("pkg.mod", "Outer.Inner")
    assert not default.is_allowed("pfhelpers", "Point")
    assert not Policy.ml_default().is_allowed("pfhelpers", "Point")
    assert Policy.empty().entries() == []
    assert set(Policy.named_policies()) >= {"default"}
    for name in Policy.named_policies():
        assert isinstance(Policy.named(name), Policy)
    with pytest.raises(PolicyError):
        Policy.named("no-such-policy")
    with pytest.raises(ValueError, match="nodot"):
        default.with_allowed(["nodot"])
    assert "Policy" in repr(default)


def test_policy_from_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('allow = ["pfhelpers.Point"]\n')
    try:
        policy = Policy.from_toml_file(path)
    except PolicyError as error:  # the TOML schema belongs to the core: show what it says
        pytest.fail(f"policy TOML rejected: {error}")
    assert policy.is_allowed("pfhelpers", "Point")
    assert Policy.from_toml(path.read_text()).is_allowed("pfhelpers", "Point")
    with picklefence.safe_ml_environment(policy=policy):
        assert pickle.loads(pickle.dumps(Point(1, 2))) == Point(1, 2)
    with pytest.raises(PolicyError):
        Policy.from_toml("allow = [")
    with pytest.raises(OSError):
        Policy.from_toml_file(tmp_path / "missing.toml")


def test_scan_bytes(marker: Path) -> None:
    clean = picklefence.scan_bytes(pickle.dumps({"a": [1, 2]}))
    assert clean.verdict == "clean" and clean.is_safe and not clean.violations
    evil = picklefence.scan_bytes(pickle.dumps([SystemPayload(marker), Point(1, 2)]))
    assert evil.verdict == "unsafe" and not evil.is_safe
    names = {f.qualified_name for f in evil.violations}
    assert {"posix.system", "pfhelpers.Point"} <= names
    assert "posix.system" in evil.imports
    assert json.loads(evil.to_json())["verdict"] == "unsafe"
    with pytest.raises(UnsafeFileError) as info:
        evil.raise_if_unsafe()
    assert info.value.module == "posix"
    allowed = picklefence.scan_bytes(
        pickle.dumps(Point(1, 2)), policy=Policy().with_allowed(["pfhelpers.Point"])
    )
    assert allowed.is_safe
    assert picklefence.scan_bytes(bytearray(pickle.dumps(1))).is_safe
    assert not marker.exists()


def test_scan_file(tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(SystemPayload(marker)))
    report = picklefence.scan_file(path)
    assert report.path == str(path) and not report.is_safe and report.format
    assert str(path) in str(report)
    with pytest.raises(FileNotFoundError):
        picklefence.scan_file(tmp_path / "missing.pkl")
    assert not marker.exists()


def test_scan_file_of_a_file_truncated_meanwhile_raises(tmp_path: Path) -> None:
    """A large file is scanned through a memory map; truncated by another writer during the
    scan, it used to kill this process with SIGBUS. The scan of that file now raises OSError
    (EIO) and the process goes on."""
    import threading
    import time

    path = tmp_path / "rewritten.pkl"
    data = b"\x80\x02" + b"N0" * 16_000_000 + b"N."
    cut_short = 0
    for delay in (0.001, 0.002, 0.004, 0.008, 0.016, 0.032):
        path.write_bytes(data)

        def truncate(delay: float = delay) -> None:
            time.sleep(delay)
            os.truncate(path, 4096)

        thread = threading.Thread(target=truncate)
        thread.start()
        try:
            picklefence.scan_file(path)
        except OSError as error:
            assert error.errno == 5 and "truncated while it was scanned" in str(error), error
            cut_short += 1
        finally:
            thread.join()
    assert cut_short, "no scan was under way when its file was truncated"


def test_danger_reason() -> None:
    assert picklefence.danger_reason("posix", "system")
    assert picklefence.danger_reason("collections", "OrderedDict") is None


def _cli_commands() -> list:
    commands = [[sys.executable, "-m", "picklefence"]]
    script = shutil.which("picklefence")
    if script:
        commands.append([script])
    return commands


@pytest.mark.parametrize("command", _cli_commands(), ids=lambda c: Path(c[-1]).name)
def test_command_line(command: list, tmp_path: Path, marker: Path) -> None:
    clean, evil = tmp_path / "clean.pkl", tmp_path / "evil.pkl"
    clean.write_bytes(pickle.dumps([1, 2]))
    evil.write_bytes(pickle.dumps(SystemPayload(marker)))
    env = {k: v for k, v in os.environ.items() if k != "PICKLEFENCE_CLI_DEPTH"}
    ok = subprocess.run([*command, "scan", str(clean)], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "clean" in ok.stdout
    bad = subprocess.run(
        [*command, "scan", "--format", "json", str(evil)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 1, bad.stderr
    assert "posix" in bad.stdout and "system" in bad.stdout
    json.loads(bad.stdout)
    assert not marker.exists()


def test_command_line_is_in_process() -> None:
    assert hasattr(_native, "cli_main"), "the wheel should carry the CLI (feature `cli`)"


def test_stubs_match_runtime() -> None:
    """mypy.stubtest: the .pyi stubs and inline annotations agree with the runtime."""
    import mypy.stubtest  # noqa: F401  (a test dependency: fail, don't skip, when it is missing)

    args = [
        sys.executable,
        "-m",
        "mypy.stubtest",
        "picklefence",
        "--mypy-config-file",
        str(ROOT / "pyproject.toml"),
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_is_typed() -> None:
    package = Path(picklefence.__file__).parent
    assert (package / "py.typed").exists() and (package / "_native.pyi").exists()

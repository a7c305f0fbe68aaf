"""Random and mutated bytes across the FFI boundary: through ``picklefence.scan_bytes`` and through
``pickle.loads`` with the safe ML environment active. Every outcome must be a Python result or a
Python exception, never a crash of the interpreter: each campaign runs in a subprocess whose
return code is checked (a Rust panic that escaped, a segfault or an abort would show there).

Deterministic: each campaign is seeded. Bounded: a fixed number of iterations, a timeout, and an
address-space limit in the child so that an input which makes CPython's own unpickler allocate
without bound (a huge memo index) raises ``MemoryError`` instead of summoning the OOM killer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("picklefence._native", reason="the picklefence extension module is not built")

CHILD = textwrap.dedent(
    r'''
    import collections, io, os, pickle, random, resource, sys

    seed, iterations, marker_dir, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    # CPython's unpickler sizes its memo from the largest index it is given: a mutated LONG_BINPUT
    # asks for gigabytes. Make that a MemoryError rather than an OOM kill.
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    import picklefence

    rng = random.Random(seed)

    class Marker:
        """Pickles as a call that creates a file in marker_dir: it must never run."""
        def __init__(self, how, name):
            self.how, self.name = how, name
        def __reduce__(self):
            path = os.path.join(marker_dir, self.name)
            if self.how == "open":
                return (open, (path, "w"))
            if self.how == "mkdir":
                return (os.mkdir, (path,))
            return (os.system, ("touch " + path,))

    benign = [
        None, True, 1, -(2**70), 2.5, "text é", b"bytes", bytearray(b"ba"), (1, 2), [1, [2, [3]]],
        {"a": 1, "b": (None, 2.0)}, {1, 2}, frozenset({"x"}), collections.OrderedDict(a=1),
        collections.Counter("abc"), list(range(300)), "y" * 300,
    ]
    malicious = [Marker(how, f"{how}-{i}") for i, how in enumerate(["open", "mkdir", "system"] * 2)]
    seeds = []
    for obj in benign + malicious + [[obj, malicious[0]] for obj in benign[:4]]:
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            seeds.append(pickle.dumps(obj, protocol=protocol))
    # Containers for scan_bytes (pickle.loads sees them as garbage): compressed wrappers and a
    # PyTorch-style zip, each around a benign and a malicious pickle.
    import bz2, gzip, lzma, zipfile
    containers = []
    for inner in (pickle.dumps(benign[10], protocol=2), pickle.dumps(malicious[0], protocol=4)):
        containers += [gzip.compress(inner, mtime=0), bz2.compress(inner), lzma.compress(inner)]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("archive/data.pkl", inner)
            archive.writestr("archive/version", "3\n")
        containers.append(buffer.getvalue())
    if mode == "scan":
        seeds += containers

    def mutate(data):
        data = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            choice = rng.random()
            if choice < 0.35 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif choice < 0.55:
                data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
            elif choice < 0.7 and data:
                del data[rng.randrange(len(data))]
            elif choice < 0.8 and data:
                cut = rng.randrange(len(data))
                data = data[:cut]
            elif choice < 0.9:
                other = rng.choice(seeds)
                start = rng.randrange(len(other))
                at = rng.randrange(len(data) + 1)
                data[at:at] = other[start:start + rng.randint(1, 16)]
            else:
                # an interesting length or index
                value = rng.choice([0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1])
                width = rng.choice([1, 2, 4, 8])
                blob = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
                at = rng.randrange(len(data) + 1)
                data[at:at + width] = blob
        return bytes(data)

    def inputs():
        for i in range(iterations):
            kind = rng.random()
            if kind < 0.15:
                yield bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
            elif kind < 0.25:
                yield rng.choice(seeds)
            else:
                yield mutate(rng.choice(seeds))

    outcomes = collections.Counter()
    if mode == "scan":
        for data in inputs():
            try:
                report = picklefence.scan_bytes(data)
            except picklefence.PicklefenceError as error:
                outcomes["error:" + type(error).__name__] += 1
                continue
            assert report.verdict in ("clean", "unsafe"), report.verdict
            assert report.is_safe == (report.verdict == "clean")
            outcomes[report.verdict] += 1
            # A seed that calls a marker maker is always refused.
            if data in seeds[len(benign) * 6:len(benign) * 6 + len(malicious) * 6]:
                assert not report.is_safe, data
        # memoryview and bytearray go through the same path.
        picklefence.scan_bytes(bytearray(b"\x80\x04N."))
        picklefence.scan_bytes(memoryview(b"\x80\x04N."))
    else:
        picklefence.activate_safe_ml_environment()
        try:
            for data in inputs():
                loader = rng.choice(["loads", "Unpickler", "py_loads"])
                try:
                    if loader == "loads":
                        pickle.loads(data)
                    elif loader == "Unpickler":
                        pickle.Unpickler(io.BytesIO(data)).load()
                    else:
                        pickle._loads(data)
                    outcomes["loaded"] += 1
                except picklefence.UnsafeFileError:
                    outcomes["refused"] += 1
                except RecursionError:
                    outcomes["RecursionError"] += 1
                except Exception as error:
                    outcomes[type(error).__name__] += 1
        finally:
            picklefence.deactivate_safe_ml_environment()
    ran = sorted(os.listdir(marker_dir))
    assert not ran, f"malicious payloads ran: {ran}"
    print("OUTCOMES", dict(outcomes))
    print("DONE", sum(outcomes.values()))
    '''
)


def run_campaign(tmp_path: Path, mode: str, seed: int, iterations: int) -> str:
    markers = tmp_path / f"markers-{mode}-{seed}"
    markers.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(seed), str(iterations), str(markers), mode],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONFAULTHANDLER": "1", "RUST_BACKTRACE": "1"},
    )
    detail = f"rc={result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    # A negative code is a signal (SIGSEGV, SIGABRT from a Rust abort); anything else non-zero is
    # an assertion or an exception that escaped.
    assert result.returncode == 0, detail
    assert f"DONE {iterations}" in result.stdout, detail
    assert not list(markers.iterdir()), detail
    return result.stdout


@pytest.mark.parametrize("seed", [1, 2])
def test_scan_bytes_on_random_and_mutated_bytes_never_crashes(tmp_path: Path, seed: int) -> None:
    out = run_campaign(tmp_path, "scan", seed, 4000)
    # Both verdicts occurred: the campaign exercised the analyzer, not only an early error path.
    assert "'clean'" in out and "'unsafe'" in out, out


@pytest.mark.parametrize("seed", [3, 4])
def test_guarded_pickle_loads_on_random_and_mutated_bytes_never_crashes(tmp_path: Path, seed: int) -> None:
    out = run_campaign(tmp_path, "load", seed, 3000)
    assert "'refused'" in out and "'loaded'" in out, out

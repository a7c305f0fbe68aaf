"""picklefence side by side: load overhead of the guard, and scan speed against peer scanners.

Builds every workload itself (real torch, numpy, scikit-learn, joblib files; a directory of mixed
model files), then measures in one run, alternating:

* plain loading vs loading with ``activate_safe_ml_environment()`` active (overhead ratios);
* ``picklefence scan`` vs picklescan, modelscan and fickling's static check on the same files
  (whole-process wall time and peak memory; speed-up ratios);
* ``torch.load(weights_only=True)`` vs ``torch.load(weights_only=False)`` under picklefence.

Peer tools are installed into their own virtual environments under ``bench/.venvs`` from the
package registry at pinned versions; a peer that cannot be installed is reported, never faked.

    python bench/compare.py            # full run (several minutes; installs peers once)
    python bench/compare.py --quick    # small workloads, < 2 minutes; CI runs this (no timing gates)

Writes ``bench/results/compare.md`` and ``bench/results/compare.png``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_hook import MIN_SECONDS, Timing, measure

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
VENVS = ROOT / "bench" / ".venvs"

# Pinned peer versions: changing one is a deliberate act.
PEERS = {
    "picklescan": "picklescan==1.0.5",
    "modelscan": "modelscan==0.8.8",
    "fickling": "fickling==0.1.12 typing_extensions",
}

# Overhead targets from the issues (guarded / plain).
TARGETS = {
    "1M small ints (pickle.loads)": 1.10,
    "1M 2-tuples (pickle.loads)": 1.10,
    "50 MB ndarray (pickle.loads)": 1.01,
    "torch state_dict (torch.load)": 1.05,
    "RandomForest (joblib.load)": 1.05,
}


@dataclass
class Row:
    name: str
    baseline_s: float
    measured_s: float
    target: float | None = None
    # For the guard's overhead: the timing behind the row (baseline_s and measured_s are its
    # medians; the ratio is the median of the rounds' ratios, see bench_hook).
    timing: Timing | None = None

    @property
    def ratio(self) -> float:
        if self.timing is not None:
            return self.timing.ratio
        return self.measured_s / self.baseline_s if self.baseline_s else float("nan")


@dataclass
class ScanRow:
    directory: str
    tool: str
    version: str
    wall_s: float | None
    peak_mib: float | None
    flagged: str
    error: str = ""
    timed_out: bool = False


@dataclass
class Results:
    overhead: list[Row] = field(default_factory=list)
    scans: list[ScanRow] = field(default_factory=list)
    weights_only: list[Row] = field(default_factory=list)


# ---------------------------------------------------------------- workloads


def build_workloads(work: Path, quick: bool) -> dict[str, Path]:
    import joblib
    import numpy as np
    import torch
    from sklearn.ensemble import RandomForestClassifier

    n = 100_000 if quick else 1_000_000
    files = {}
    files["ints"] = work / "ints.pkl"
    files["ints"].write_bytes(pickle.dumps(list(range(n)), protocol=4))
    files["tuples"] = work / "tuples.pkl"
    files["tuples"].write_bytes(pickle.dumps([(i, i + 1) for i in range(n)], protocol=4))
    files["ndarray"] = work / "ndarray.pkl"
    mb = 5 if quick else 50
    files["ndarray"].write_bytes(pickle.dumps(np.random.default_rng(0).random(mb * 131072), protocol=4))

    torch.manual_seed(0)
    layers = 10 if quick else 100
    state = {f"layer{i}.weight": torch.randn(256, 256) for i in range(layers)}
    state.update({f"layer{i}.bias": torch.randn(256) for i in range(layers)})
    files["state_dict"] = work / "state_dict.pt"
    torch.save(state, files["state_dict"])

    rng = np.random.default_rng(0)
    x = rng.random((500, 10))
    y = (x[:, 0] > 0.5).astype(int)
    forest = RandomForestClassifier(n_estimators=10 if quick else 100, random_state=0).fit(x, y)
    files["forest"] = work / "forest.joblib"
    joblib.dump(forest, files["forest"])
    return files


def build_model_directory(directory: Path, count: int) -> None:
    """`count` mixed model files: pickles, torch zips, npy, joblib — and a few malicious ones."""
    import joblib
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    model = LogisticRegression().fit(rng.random((40, 3)), np.arange(40) % 2)
    evil = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
    for i in range(count):
        kind = i % 5
        if i % 100 == 99:
            (directory / f"evil_{i}.pkl").write_bytes(evil)
        elif kind == 0:
            (directory / f"data_{i}.pkl").write_bytes(pickle.dumps({"i": i, "v": list(range(50))}))
        elif kind == 1:
            torch.save({"w": torch.randn(16, 16), "step": i}, directory / f"ckpt_{i}.pt")
        elif kind == 2:
            np.save(directory / f"array_{i}.npy", rng.random(64))
        elif kind == 3:
            joblib.dump(model, directory / f"model_{i}.joblib")
        else:
            (directory / f"model_{i}.pkl").write_bytes(pickle.dumps(model))


def build_large_directory(directory: Path, quick: bool) -> None:
    """A few large files of the kinds people download: a dataset cache, a pickled forest, a
    DataFrame, a legacy and a zip torch checkpoint, and one malicious pickle."""
    import numpy as np
    import pandas as pd
    import torch
    from sklearn.ensemble import RandomForestClassifier

    directory.mkdir(parents=True, exist_ok=True)
    scale = 20 if quick else 1
    rng = np.random.default_rng(2)
    cache = [(i, float(i) / 3, f"item-{i}") for i in range(1_000_000 // scale)]
    (directory / "dataset_cache.pkl").write_bytes(pickle.dumps(cache, protocol=4))
    x = rng.random((2000, 20))
    forest = RandomForestClassifier(n_estimators=300 // scale, random_state=0).fit(
        x, (x[:, 0] > 0.5).astype(int)
    )
    (directory / "forest.pkl").write_bytes(pickle.dumps(forest, protocol=5))
    rows = 500_000 // scale
    frame = pd.DataFrame(
        {"id": np.arange(rows), "name": [f"user{i}" for i in range(rows)], "score": rng.random(rows)}
    )
    frame.to_pickle(directory / "frame.pkl")
    torch.manual_seed(0)
    state = {f"layer{i}.weight": torch.randn(256, 256) for i in range(200 // scale)}
    torch.save(state, directory / "model.pt")
    torch.save(state, directory / "legacy.pt", _use_new_zipfile_serialization=False)
    (directory / "evil.pkl").write_bytes(
        b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
    )


# ---------------------------------------------------------------- load overhead


def overhead_row(name: str, timing: Timing, target: float | None) -> Row:
    return Row(name, timing.plain_median, timing.guarded_median, target, timing=timing)


def measure_overhead(files: dict[str, Path], runs: int, results: Results, quick: bool) -> None:
    import joblib
    import torch

    label = "100k" if quick else "1M"
    min_seconds = 0.0 if quick else MIN_SECONDS
    cases = [
        (f"{label} small ints (pickle.loads)", "ints"),
        (f"{label} 2-tuples (pickle.loads)", "tuples"),
        (f"{'5' if quick else '50'} MB ndarray (pickle.loads)", "ndarray"),
    ]
    for name, key in cases:
        data = files[key].read_bytes()
        timing = measure(lambda data=data: pickle.loads(data), runs, min_seconds)
        target = TARGETS.get(name.replace("100k", "1M").replace("5 MB", "50 MB"))
        results.overhead.append(overhead_row(name, timing, target))

    path = files["state_dict"]
    name = "torch state_dict (torch.load)"
    timing = measure(lambda: torch.load(path, weights_only=False), runs, min_seconds)
    results.overhead.append(overhead_row(name, timing, TARGETS[name]))
    path = files["forest"]
    name = "RandomForest (joblib.load)"
    timing = measure(lambda: joblib.load(path), runs, min_seconds)
    results.overhead.append(overhead_row(name, timing, TARGETS[name]))

    # weights_only=True is torch's own restricted unpickler; compare it with the guarded default path.
    import picklefence

    unrestricted, restricted = [], []
    for _ in range(runs):
        picklefence.activate_safe_ml_environment()
        try:
            start = time.perf_counter()
            torch.load(files["state_dict"], weights_only=False)
            unrestricted.append(time.perf_counter() - start)
        finally:
            picklefence.deactivate_safe_ml_environment()
        start = time.perf_counter()
        torch.load(files["state_dict"], weights_only=True)
        restricted.append(time.perf_counter() - start)
    results.weights_only.append(
        Row(
            "torch.load state_dict: weights_only=True (baseline) vs weights_only=False under picklefence",
            statistics.median(restricted),
            statistics.median(unrestricted),
        )
    )


# ---------------------------------------------------------------- scanners


GNU_TIME = shutil.which("time", path="/usr/bin:/bin")


def run_measured(
    cmd: list[str], cwd: Path | None = None, timeout: float | None = None
) -> tuple[float, float | None, int, str]:
    """Wall seconds, peak RSS MiB, exit code and output of one whole process.

    The peak comes from GNU time, which forks the tool from its own small process: a child of
    this process would carry this process's peak (torch is loaded here) across exec. Without
    GNU time the peak is reported as unknown.
    """
    full = [GNU_TIME, "-f", "PFMAXRSS %M", *cmd] if GNU_TIME else cmd
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, None, -1, "timed out"
    wall = time.perf_counter() - start
    output = proc.stdout.decode("utf-8", "replace")
    peak = None
    if GNU_TIME:
        lines = [line for line in output.rstrip().splitlines() if not line.startswith("Command exited with")]
        if lines and lines[-1].startswith("PFMAXRSS "):
            peak = int(lines[-1].split()[1]) / 1024
            output = "\n".join(lines[:-1])
    return wall, peak, proc.returncode, output


def peer_python(name: str, spec: str) -> tuple[Path | None, str]:
    """The peer's venv python (created on first use), or None with the reason."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not (marker.exists() and marker.read_text() == spec):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *spec.split()],
            capture_output=True,
            text=True,
        )
        if install.returncode != 0:
            return None, f"pip install {spec} failed: {install.stderr.strip().splitlines()[-1:]}"
        marker.write_text(spec)
    return python, spec.split()[0].split("==")[1]


FICKLING_SCRIPT = """
import sys, pathlib
from fickling.fickle import Pickled
from fickling.analysis import check_safety
unsafe = 0
for path in sorted(pathlib.Path(sys.argv[1]).rglob('*')):
    if not path.is_file():
        continue
    try:
        with open(path, 'rb') as f:
            result = check_safety(Pickled.load(f))
        if result.severity.value > 1:
            unsafe += 1
    except Exception:
        unsafe += 1  # fickling cannot read it (zip, npy, joblib arrays): counted as flagged
print('flagged (unsafe or unreadable)', unsafe)
"""


def picklefence_binary() -> Path:
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "picklefence-cli"], cwd=ROOT, check=True)
    return ROOT / "target" / "release" / "picklefence"


def measure_scanners(label: str, directory: Path, results: Results, with_peers: bool, timeout: float) -> None:
    binary = picklefence_binary()
    # A run takes milliseconds to a fraction of a second: the median of several, after one
    # untimed run (page cache), is what a user sees; the peers take seconds and run once.
    command = [str(binary), "scan", "--format", "json", str(directory)]
    run_measured(command)
    runs = [run_measured(command) for _ in range(5)]
    wall = statistics.median(run[0] for run in runs)
    peaks = [run[1] for run in runs if run[1] is not None]
    peak = max(peaks) if peaks else None
    _, _, code, out = runs[-1]
    try:
        flagged = str(json.loads(out)["summary"]["unsafe"])
    except (ValueError, KeyError, TypeError):
        flagged = "?"
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
    results.scans.append(
        ScanRow(label, "picklefence", version, wall, peak, f"{flagged} unsafe (exit {code})")
    )
    if not with_peers:
        for name, spec in PEERS.items():
            results.scans.append(ScanRow(label, name, spec, None, None, "", "not run in --quick mode"))
        return
    for name, spec in PEERS.items():
        python, version = peer_python(name, spec)
        if python is None:
            results.scans.append(ScanRow(label, name, spec, None, None, "", version))
            continue
        if name == "picklescan":
            cmd = [str(python), "-m", "picklescan", "--path", str(directory)]
        elif name == "modelscan":
            cmd = [str(python.parent / "modelscan"), "-p", str(directory)]
        else:
            script = VENVS / "fickling_check.py"
            script.write_text(FICKLING_SCRIPT)
            cmd = [str(python), str(script), str(directory)]
        wall, peak, code, out = run_measured(cmd, timeout=timeout)
        if code == -1 and out == "timed out":
            row = ScanRow(label, name, version, wall, None, f"stopped after {timeout:.0f} s", timed_out=True)
            results.scans.append(row)
            continue
        tail = out.strip().splitlines()[-1:] if out.strip() else [""]
        results.scans.append(ScanRow(label, name, version, wall, peak, f"exit {code}: {tail[0][:60]}"))


# ---------------------------------------------------------------- report


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for module in ("numpy", "torch", "sklearn", "joblib", "picklefence"):
        try:
            out[module] = getattr(__import__(module), "__version__", "?")
        except ImportError:
            out[module] = "missing"
    return out


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}"


def write_report(results: Results, quick: bool) -> str:
    lines = [
        "# picklefence benchmark" + (" (quick mode: small workloads, no peers)" if quick else ""),
        "",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}  ",
        f"Machine: {machine()}  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "",
        "## Load overhead of the guard (alternating runs)",
        "",
        "`plain` and `guarded` are the medians of the alternating runs of each side. `ratio`, the",
        "figure checked against the target, is the median of each round's guarded/plain ratio: each",
        "round times both back to back, and the speed of this shared machine varies by up to 2x in",
        "spells, which hit both halves of a round alike. `medians` is guarded median / plain median;",
        "`best` the ratio of the fastest runs (either can be thrown off by a spell that favoured one",
        "side's runs).",
        "",
        "| workload | plain | guarded | ratio | medians | best | target | met |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in results.overhead:
        met = "" if row.target is None else ("yes" if row.ratio <= row.target else "no")
        target = "" if row.target is None else f"≤ {row.target:.2f}x"
        plain_ms, guarded_ms = row.baseline_s * 1e3, row.measured_s * 1e3
        spread = (
            "| | |"
            if row.timing is None
            else f"| {row.timing.median_ratio:.3f}x | {row.timing.best_ratio:.3f}x |"
        )
        times = f"{plain_ms:.1f} ms | {guarded_ms:.1f} ms"
        lines.append(f"| {row.name} | {times} | {row.ratio:.3f}x {spread} {target} | {met} |")
    lines += [
        "",
        "## torch weights_only",
        "",
        "| comparison | weights_only=True | guarded weights_only=False | ratio |",
        "|---|---:|---:|---:|",
    ]
    for row in results.weights_only:
        times = f"{row.baseline_s * 1e3:.1f} ms | {row.measured_s * 1e3:.1f} ms"
        lines.append(f"| {row.name} | {times} | {row.ratio:.3f}x |")
    for label in dict.fromkeys(scan.directory for scan in results.scans):
        lines += [
            "",
            f"## Scanning {label} (whole process)",
            "",
            "| tool | version | wall | peak memory | speed-up of picklefence | result |",
            "|---|---|---:|---:|---:|---|",
        ]
        rows = [scan for scan in results.scans if scan.directory == label]
        ours = next((s for s in rows if s.tool == "picklefence"), None)
        for scan in rows:
            if scan.wall_s is None:
                lines.append(f"| {scan.tool} | {scan.version} | - | - | - | {scan.error} |")
                continue
            speedup = scan.wall_s / ours.wall_s if ours and ours.wall_s else None
            # A peer stopped at the time limit gives a lower bound on the speed-up.
            at_least = "≥ " if scan.timed_out else ""
            wall = f"> {scan.wall_s:.0f} s" if scan.timed_out else f"{scan.wall_s:.2f} s"
            speed = f"{at_least}{speedup:.1f}x" if speedup else ""
            peak = "?" if scan.peak_mib is None else f"{scan.peak_mib:.0f} MiB"
            lines.append(f"| {scan.tool} | {scan.version} | {wall} | {peak} | {speed} | {scan.flagged} |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("compare-quick.md" if quick else "compare.md")).write_text(text)
    return text


def write_chart(results: Results, quick: bool) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no chart written", file=sys.stderr)
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [row.name.split(" (")[0] for row in results.overhead]
    left.barh(names, [row.ratio for row in results.overhead], color="#4a7")
    left.axvline(1.0, color="black", linewidth=0.8)
    left.set_xlabel("guarded / plain load time")
    left.set_title("Guard overhead")
    scans = [s for s in results.scans if s.wall_s is not None]
    right.barh(
        [f"{s.tool} ({s.directory.split()[0]})" for s in scans], [s.wall_s for s in scans], color="#47a"
    )
    right.set_xscale("log")
    right.set_xlabel("seconds (log); a stopped peer shows its time limit")
    right.set_title("Directory scans, whole process")
    fig.tight_layout()
    fig.savefig(RESULTS / ("compare-quick.png" if quick else "compare.png"), dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small workloads, no peer tools")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=600, help="seconds a peer may take per directory")
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 31)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="picklefence-bench-") as tmp:
        work = Path(tmp)
        files = build_workloads(work, args.quick)
        measure_overhead(files, runs, results, args.quick)
        count = 100 if args.quick else 1000
        directory = work / "models"
        build_model_directory(directory, count)
        measure_scanners(f"{count} small mixed model files", directory, results, not args.quick, args.timeout)
        large = work / "large"
        build_large_directory(large, args.quick)
        size = sum(f.stat().st_size for f in large.iterdir()) / 2**20
        label = f"large models ({len(list(large.iterdir()))} files, {size:.0f} MB)"
        measure_scanners(label, large, results, not args.quick, args.timeout)
    print(write_report(results, args.quick))
    write_chart(results, args.quick)


if __name__ == "__main__":
    main()

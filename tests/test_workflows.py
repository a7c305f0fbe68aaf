"""Where users already work: the pre-commit hook (run by the real `pre-commit` in a temporary git
repository) and the GitHub Action's script (`scripts/ci_action.sh`, which `action.yml` runs)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from pfhelpers import SystemPayload

ROOT = Path(__file__).resolve().parent.parent
VALIDATE_SARIF = ROOT / "crates" / "picklefence-cli" / "tests" / "validate_sarif.py"


def the_hook() -> Dict[str, Any]:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert [h["id"] for h in hooks] == ["picklefence"]
    hook: Dict[str, Any] = hooks[0]
    return hook


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"),
    }
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=check, timeout=300
    )


def test_the_hook_scans_every_staged_file_by_content() -> None:
    hook = the_hook()
    assert hook["entry"].split()[:2] == ["picklefence", "scan"]
    assert hook["types"] == ["file"]  # every file: the scanner, not the name, decides
    assert "files" not in hook and "types_or" not in hook


@pytest.mark.skipif(shutil.which("picklefence") is None, reason="needs the installed picklefence command")
def test_pre_commit_lets_a_clean_model_through_and_stops_a_malicious_one(
    tmp_path: Path, marker: Path
) -> None:
    """The hook as `.pre-commit-hooks.yaml` defines it, run by pre-commit on real commits. It is
    declared `repo: local` with `language: system` so that pre-commit runs the installed command
    instead of building this repository into a virtualenv of its own (minutes of Rust)."""
    pytest.importorskip("pre_commit")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    local = {**the_hook(), "language": "system"}
    config = {"repos": [{"repo": "local", "hooks": [local]}]}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    subprocess.run(
        [sys.executable, "-m", "pre_commit", "install"],
        cwd=repo,
        check=True,
        capture_output=True,
        env={**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")},
    )
    # Source files that begin like protocol 0 opcodes, and a clean model.
    (repo / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.10)\nproject(demo)\n")
    (repo / "model.pkl").write_bytes(pickle.dumps({"weights": [0.5, 1.5], "epoch": 3}, protocol=4))
    git(repo, "add", ".")
    clean = git(repo, "commit", "-q", "-m", "clean model", check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # A malicious pickle under a name that says nothing about pickles.
    (repo / "notes.txt").write_bytes(pickle.dumps(SystemPayload(marker), protocol=2))
    git(repo, "add", "notes.txt")
    stopped = git(repo, "commit", "-q", "-m", "malicious", check=False)
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0, output
    assert "notes.txt" in output and "system" in output and "Failed" in output
    assert "model.pkl" not in git(repo, "status", "--porcelain").stdout  # committed before
    assert not marker.exists()


def run_action(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    settings = {"PF_INSTALL": "", "PF_SARIF": str(tmp_path / "out.sarif"), **env}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "ci_action.sh")],
        cwd=tmp_path,
        env={**os.environ, **settings},
        capture_output=True,
        text=True,
        timeout=300,
    )


def sarif_results(path: Path) -> List[Dict[str, Any]]:
    document = json.loads(path.read_text())
    results: List[Dict[str, Any]] = document["runs"][0]["results"]
    return results


@pytest.mark.skipif(shutil.which("picklefence") is None, reason="needs the installed picklefence command")
def test_the_action_script_writes_valid_sarif_and_sets_the_exit_status(tmp_path: Path, marker: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "clean.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    clean = run_action(tmp_path, PF_PATHS="models")
    assert clean.returncode == 0, clean.stderr
    assert sarif_results(tmp_path / "out.sarif") == []

    (models / "evil.bin").write_bytes(pickle.dumps(SystemPayload(marker), protocol=2))
    unsafe = run_action(tmp_path, PF_PATHS="models")
    assert unsafe.returncode == 1
    assert "evil.bin" in unsafe.stdout  # the text summary in the job log
    results = sarif_results(tmp_path / "out.sarif")
    assert any("evil.bin" in json.dumps(r["locations"]) for r in results)
    if VALIDATE_SARIF.exists():
        validated = subprocess.run([sys.executable, str(VALIDATE_SARIF), str(tmp_path / "out.sarif")])
        assert validated.returncode in (0, 3)  # 3: the schema package is missing here

    report_only = run_action(tmp_path, PF_PATHS="models", PF_FAIL="false")
    assert report_only.returncode == 0
    assert sarif_results(tmp_path / "out.sarif")

    strict = run_action(tmp_path, PF_PATHS="models", PF_POLICY="no-such-policy-file.toml")
    assert strict.returncode == 2
    assert not marker.exists()


def test_action_yml_runs_the_script_with_every_input() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    (step,) = action["runs"]["steps"]
    assert step["run"] == 'bash "${{ github.action_path }}/scripts/ci_action.sh"'
    names = {"paths": "PF_PATHS", "sarif": "PF_SARIF", "policy": "PF_POLICY", "fail-on-unsafe": "PF_FAIL"}
    names["install"] = "PF_INSTALL"
    assert set(action["inputs"]) == set(names)
    for name, variable in names.items():
        assert step["env"][variable] == "${{ inputs." + name + " }}"
        assert variable in (ROOT / "scripts" / "ci_action.sh").read_text()


def hub_cache(root: Path, marker: Path) -> Path:
    """A Hugging Face hub cache laid out as huggingface_hub lays it out: content in
    `blobs/<hash>`, each revision a `snapshots/<commit>/` tree of relative links into it, `refs/`
    naming commits. Two revisions of a model share their weights blob; the newer one adds a
    malicious pickle; a dataset repository sits beside it."""
    import hashlib

    cache = root / "hub"

    def repo(kind: str, repo_id: str, revisions: Dict[str, Dict[str, bytes]], refs: Dict[str, str]) -> None:
        base = cache / f"{kind}--{repo_id.replace('/', '--')}"
        for commit, files in revisions.items():
            for name, data in files.items():
                blob = base / "blobs" / hashlib.sha256(data).hexdigest()
                blob.parent.mkdir(parents=True, exist_ok=True)
                blob.write_bytes(data)
                link = base / "snapshots" / commit / name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(os.path.relpath(blob, link.parent))
        for ref, commit in refs.items():
            path = base / "refs" / ref
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(commit)

    weights = pickle.dumps({"w": [0.25] * 8}, protocol=4)
    old, new = "a" * 40, "b" * 40
    repo(
        "models",
        "org/model",
        {
            old: {"pytorch_model.bin": weights, "config.json": b'{"a": 1}'},
            new: {
                "pytorch_model.bin": weights,
                "extra/evil.pkl": pickle.dumps(SystemPayload(marker), protocol=2),
            },
        },
        {"main": new, "v1": old},
    )
    repo("datasets", "org/data", {"c" * 40: {"data/train.pkl": pickle.dumps([1, 2, 3])}}, {"main": "c" * 40})
    return cache


@pytest.mark.skipif(shutil.which("picklefence") is None, reason="needs the installed picklefence command")
def test_the_hugging_face_cache_is_scanned_by_repository_revision_and_path(
    tmp_path: Path, marker: Path
) -> None:
    cache = hub_cache(tmp_path, marker)
    done = subprocess.run(
        ["picklefence", "scan", "--hf-cache", str(cache), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    files = {f["path"]: f for f in json.loads(done.stdout)["files"]}
    a, b, c = "a" * 40, "b" * 40, "c" * 40
    assert sorted(files) == sorted(
        [
            f"org/model@{a}:pytorch_model.bin",
            f"org/model@{a}:config.json",
            f"org/model@{b}:pytorch_model.bin",
            f"org/model@{b}:extra/evil.pkl",
            f"org/data@{c}:data/train.pkl",
        ]
    )
    evil = files[f"org/model@{b}:extra/evil.pkl"]
    assert evil["status"] == "unsafe"
    assert (
        evil["hf"]["repo_id"] == "org/model"
        and evil["hf"]["revision"] == b
        and evil["hf"]["refs"] == ["main"]
    )
    assert evil["hf"]["repo_type"] == "model" and evil["hf"]["path"] == "extra/evil.pkl"
    assert files[f"org/data@{c}:data/train.pkl"]["hf"]["repo_type"] == "dataset"
    assert files[f"org/model@{a}:pytorch_model.bin"]["hf"]["refs"] == ["v1"]
    assert sum(f["status"] == "unsafe" for f in files.values()) == 1

    # SARIF: each result carries the repository and revision.
    sarif = subprocess.run(
        ["picklefence", "scan", "--hf-cache", str(cache), "--format", "sarif"], capture_output=True, text=True
    )
    results = json.loads(sarif.stdout)["runs"][0]["results"]
    assert results and all(r["properties"]["hf"]["repo_id"] in ("org/model", "org/data") for r in results)
    flagged = [r for r in results if r["properties"]["hf"]["path"] == "extra/evil.pkl"]
    assert flagged and all(r["properties"]["hf"]["revision"] == b for r in flagged)
    assert any(r["level"] == "error" for r in flagged)

    # The default cache is the one huggingface_hub uses (HF_HOME/hub here).
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    default = subprocess.run(
        ["picklefence", "scan", "--hf-cache", "--format", "json"],
        capture_output=True,
        text=True,
        env={**env, "HF_HOME": str(tmp_path)},
    )
    assert sorted(f["path"] for f in json.loads(default.stdout)["files"]) == sorted(files)
    assert not marker.exists()

    # huggingface_hub's own reading of the cache names the same repositories, revisions and files.
    hub = pytest.importorskip("huggingface_hub")
    info = hub.scan_cache_dir(cache)
    theirs = sorted(
        f"{r.repo_id}@{rev.commit_hash}:{f.file_path.relative_to(rev.snapshot_path).as_posix()}"
        for r in info.repos
        for rev in r.revisions
        for f in rev.files
    )
    assert theirs == sorted(files)


def test_the_readme_pre_commit_snippet_is_the_hook() -> None:
    """The README's first screen shows the hook as a local one: the same command, file types and
    id as `.pre-commit-hooks.yaml`, run by the installed command."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```yaml\n# .pre-commit-config.yaml", 1)[1].split("\n", 1)[1].split("```", 1)[0]
    hooks = yaml.safe_load(block)["repos"][0]["hooks"]
    hook = the_hook()
    assert [(h["id"], h["entry"], h["types"], h["language"]) for h in hooks] == [
        (hook["id"], hook["entry"], hook["types"], "system")
    ]

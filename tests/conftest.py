from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import picklefence
from picklefence import _hook


@pytest.fixture(autouse=True)
def _clean_environment() -> Iterator[None]:
    """Every test starts and ends with the environment inactive and pickle untouched."""
    assert not picklefence.is_active(), "a previous test left the safe environment active"
    yield
    leaked = picklefence.is_active()
    while picklefence.is_active():
        picklefence.deactivate_safe_ml_environment()
    assert not leaked, "the test left the safe environment active"


@pytest.fixture
def guard() -> Iterator[None]:
    """The safe ML environment with the default policy, for the test's duration."""
    with picklefence.safe_ml_environment():
        yield


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "MARKER"


def pytest_report_header() -> str:
    where = Path(picklefence.__file__).parent
    return f"picklefence {picklefence.__version__} from {where}; hook module {_hook.__name__}"

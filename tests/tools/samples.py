"""A small pytest file with every outcome (passed, failed, error, skipped, xfailed, deselected), for the
pytest-output parser tests."""

from __future__ import annotations

import sys
from pathlib import Path

SAMPLE_TESTS = """
import pytest

def test_a(): pass
def test_b(): pass
def test_c(): assert 1 == 2
@pytest.mark.skip(reason="not here")
def test_d(): pass
@pytest.mark.xfail(reason="known")
def test_e(): assert False
@pytest.fixture
def broken(): raise RuntimeError("fixture")
def test_f(broken): pass
@pytest.mark.other
def test_g(): pass
"""


def pytest_cmd(folder: Path, *extra: str) -> list[str]:
    """A pytest command line running SAMPLE_TESTS (written into `folder`) on its own, no project config."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test_sample.py").write_text(SAMPLE_TESTS)
    return [
        sys.executable,
        "-m",
        "pytest",
        str(folder),
        "--rootdir",
        str(folder),
        "-p",
        "no:cacheprovider",
        *extra,
    ]

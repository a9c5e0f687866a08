"""Fixtures of the tools tests: the shared folder (skipped visibly when absent), a scratch git repo."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared (or $EMOSTREAM_SHARED_DIR) with the model mirror and the media."""
    path = Path(os.environ.get("EMOSTREAM_SHARED_DIR") or REPO.parent / "shared")
    if not (path / "models").is_dir() or not (path / "media").is_dir():
        pytest.skip(f"shared folder not found at {path} (set EMOSTREAM_SHARED_DIR)")
    return path


@pytest.fixture
def scratch_repo(tmp_path: Path) -> Path:
    """An empty git repository with one tracked-to-be file: what `prepare` measures and ignores in."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README.md").write_text("scratch\n")
    return repo

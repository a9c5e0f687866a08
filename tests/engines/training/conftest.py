"""Real-data fixtures: the labelled face datasets in ../shared or $EMOSTREAM_SHARED_DIR; skip when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _datasets() -> Path:
    """$EMOSTREAM_SHARED_DIR/datasets, else ../shared/datasets next to the repository."""
    shared = os.environ.get("EMOSTREAM_SHARED_DIR")
    return Path(shared) / "datasets" if shared else REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The datasets folder holding ferplus/ and utkface/; skips the test when it is not there."""
    root = _datasets()
    if not (root / "ferplus" / "FER2013Train" / "label.csv").is_file() or not (root / "utkface").is_dir():
        pytest.skip(f"labelled datasets not found at {root} (set EMOSTREAM_SHARED_DIR to the shared folder)")
    return root


@pytest.fixture(scope="session")
def small_data(datasets):
    """A few hundred real faces of each set (uncached reads), with the fixed-seed UTK split."""
    from engines.training.data import load_data

    return load_data(datasets, limit=160)

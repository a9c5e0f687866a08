"""Real-data fixtures: the labelled face datasets in ../shared or $EMOSTREAM_SHARED_DIR; skip when absent."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_data(datasets):
    """A few hundred real faces of each set (uncached reads), with the fixed-seed UTK split."""
    from engines.training.data import load_data

    return load_data(datasets, limit=160)

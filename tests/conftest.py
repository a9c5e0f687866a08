"""Shared fixtures: the real media and model mirror in ../shared, a per-session model cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOSTREAM_SHARED_DIR", REPO.parent / "shared"))
MEDIA = SHARED / "media"
MODELS = SHARED / "models"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("EMOSTREAM_MODELS_DIR", str(MODELS))
    os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="gpu: no CUDA device on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session gets its own cache, so nothing leaks from ~/.cache into the results."""
    cache = Path(os.environ.get("EMOSTREAM_TEST_CACHE_DIR") or tmp_path_factory.mktemp("emostream-cache"))
    os.environ["EMOSTREAM_CACHE_DIR"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def media_dir() -> Path:
    if not MEDIA.is_dir():
        pytest.fail(f"test media not found at {MEDIA} (set EMOSTREAM_SHARED_DIR)")
    return MEDIA


@pytest.fixture(scope="session")
def models_dir() -> Path:
    if not MODELS.is_dir():
        pytest.fail(f"model mirror not found at {MODELS} (set EMOSTREAM_SHARED_DIR)")
    return MODELS


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The datasets folder holding ferplus/ and utkface/; skips the test when it is not there."""
    root = SHARED / "datasets"
    if not (root / "ferplus" / "FER2013Train" / "label.csv").is_file() or not (root / "utkface").is_dir():
        pytest.skip(f"labelled datasets not found at {root} (set EMOSTREAM_SHARED_DIR to the shared folder)")
    return root


@pytest.fixture(scope="session")
def small_data(datasets):
    """A few hundred real faces of each set (uncached reads), with the fixed-seed UTK split."""
    from engines.training.data import load_data

    return load_data(datasets, limit=160)

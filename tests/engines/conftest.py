"""Engine fixtures: real aligned face crops of the labelled photos, cut the way the product cuts them.

Crops come from YuNet detections and `pipeline.stages.align.crop_faces` (5-point similarity alignment), so
the engine tests measure the heads on what `emostream run` feeds them.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from engines.store.store import ModelStore
from tests.media_labels import LABELLED_PHOTOS


@pytest.fixture(scope="session")
def crops_of(media_dir) -> Callable[[int], dict[str, np.ndarray]]:
    """crops_of(size) -> {photo: (faces, size, size, 3) uint8 aligned crops}, cached per size."""
    from pipeline.frames import Frame
    from pipeline.stages.align import crop_faces
    from pipeline.stages.detect import create_detector

    detector = create_detector("yunet", ModelStore())
    images = {p: cv2.imread(str(media_dir / p)) for p in LABELLED_PHOTOS}
    batches = {p: detector.detect(Frame(0, 0.0, img)) for p, img in images.items()}
    cache: dict[int, dict[str, np.ndarray]] = {}

    def crops(size: int) -> dict[str, np.ndarray]:
        if size not in cache:
            cache[size] = {p: crop_faces(images[p], batches[p], size, 2.0) for p in LABELLED_PHOTOS}
        return cache[size]

    return crops


@pytest.fixture(scope="session")
def labelled(crops_of) -> tuple[np.ndarray, list[str]]:
    """(all labelled faces as one (12,128,128,3) batch, their posed emotion)."""
    crops = crops_of(128)
    labels = [LABELLED_PHOTOS[p] for p, faces in crops.items() for _ in faces]
    return np.concatenate(list(crops.values())), labels


@pytest.fixture(scope="session")
def batch32(labelled) -> np.ndarray:
    """32 distinct real-face crops: the labelled faces, mirrored and shifted."""
    base = list(labelled[0])
    variants = base + [c[:, ::-1] for c in base] + [np.roll(c, s, axis=1) for s in (3, -5) for c in base]
    return np.ascontiguousarray(np.stack(variants[:32]))


@pytest.fixture(scope="module")
def patches(media_dir) -> np.ndarray:
    """200 distinct 16x16 patches of a real photo."""
    image = cv2.imread(str(media_dir / "pyfeat_multi_face_5.jpg"))
    return np.stack([image[y : y + 16, x : x + 16] for y in range(0, 400, 40) for x in range(0, 800, 40)])

"""Labelled face sets for `emostream evaluate`, turned into the aligned crops the per-face net reads.

Sets: FER+ split folders (majority protocol, 8 classes), FER2013 image folders (`<class>/*.jpg`, one
split), UTKFace (the project's fixed-seed validation split, or every face). Crops come either through the
full pipeline (YuNet + 5-point alignment on each image; FER's 48 px faces upscaled 4x with a replicated
border first so the detector sees a whole face) or from the set's own framing (`--crops`: the image is
taken as the face crop, placed where the pipeline's face square measurably lies in that set's images).
An image where the detector finds no face falls back to the set's framing, and is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engines.errors import EmostreamError
from engines.training import ferplus, utkface
from engines.training.augment import FaceFrame
from engines.training.data import FER_BASE, UTK_BASE

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_UPSCALE = 4
DATASETS = ("ferplus", "fer2013", "utkface")


@dataclass
class FaceSet:
    """Images (list of BGR uint8), their labels, and the framing of the set's own crops."""

    name: str
    images: list[np.ndarray]
    frame: FaceFrame
    emotion: np.ndarray | None = None  # FER+ class index (ferplus.EMOTIONS order)
    age: np.ndarray | None = None
    man: np.ndarray | None = None  # 1 man, 0 woman


def read_set(dataset: str, path: Path, split: str | None, limit: int | None) -> FaceSet:
    """The labelled faces of `dataset` at `path`; a wrong layout is a one-line EmostreamError."""
    if dataset == "ferplus":
        s = ferplus.read_split(path, split or "valid", limit=limit)
        keep, labels = s.majority()
        return FaceSet(f"FER+ {split or 'valid'}", _bgr(s.images[keep]), FER_BASE, emotion=labels)
    if dataset == "fer2013":
        return _read_fer2013(Path(path), limit)
    if dataset == "utkface":
        return _read_utk(Path(path), split or "val", limit)
    raise EmostreamError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")


def _bgr(gray: np.ndarray) -> list[np.ndarray]:
    return [cv2.cvtColor(g, cv2.COLOR_GRAY2BGR) for g in gray]


def _read_fer2013(folder: Path, limit: int | None) -> FaceSet:
    """FER2013 as image folders: `folder/<class>/*` with the seven FER2013 class names."""
    classes = [c for c in FER2013_CLASSES if (folder / c).is_dir()]
    if not classes:
        raise EmostreamError(f"{folder}: no FER2013 class folders ({', '.join(FER2013_CLASSES)})")
    to_ferplus = {"angry": 4, "disgust": 5, "fear": 6, "happy": 1, "sad": 3, "surprise": 2, "neutral": 0}
    files = [(p, to_ferplus[c]) for c in classes for p in sorted((folder / c).iterdir()) if p.is_file()]
    files = files[:limit] if limit else files
    images, labels = [], []
    for p, label in files:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise EmostreamError(f"{p}: not an image")
        images.append(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
        labels.append(label)
    return FaceSet(f"FER2013 {folder.name}", images, FER_BASE, emotion=np.asarray(labels))


def _read_utk(folder: Path, split: str, limit: int | None) -> FaceSet:
    """UTKFace colour images of the fixed-seed validation split (as trained), or "all" of them."""
    root = utkface.utk_dir(folder)
    names, labels, _ = utkface.list_faces(root) if root.is_dir() else ([], [], [])
    if not names:
        raise EmostreamError(f"{folder}: no UTKFace AGE_GENDER_RACE_DATE.jpg.chip.jpg files")
    names, lab = np.asarray(names), np.asarray(labels)
    index = utkface.split_indices(names)[1] if split == "val" else np.arange(len(names))
    if limit and limit < len(index):  # evenly spaced: the sorted names run through ages in blocks
        index = index[np.linspace(0, len(index) - 1, limit).astype(np.int64)]
    images = [cv2.imread(str(root / n), cv2.IMREAD_COLOR) for n in names[index]]
    return FaceSet(f"UTKFace {split}", images, UTK_BASE, age=lab[index, 0], man=1 - lab[index, 1])


def framed_crop(image: np.ndarray, frame: FaceFrame, size: int = 128, scale: float = 2.0) -> np.ndarray:
    """The aligned crop of an image whose face square is at `frame` (fractions of the image side)."""
    h, w = image.shape[:2]
    k = size / scale / (frame.side * w)
    m = np.array([[k, 0, size / 2 - k * frame.cx * w], [0, k, size / 2 - k * frame.cy * h]], np.float32)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class PipelineCropper:
    """Aligned crops through the product's own detector and aligner (the largest face of each image)."""

    def __init__(self, store, size: int = 128, scale: float = 2.0):
        from pipeline.stages.detect import create_detector

        self.detector = create_detector("yunet", store)
        self.size, self.scale = size, scale

    def crop(self, image: np.ndarray, upscale: int = 1) -> np.ndarray | None:
        """The crop of the image's largest face, or None when no face is found."""
        from pipeline.frames import Frame
        from pipeline.stages.align import crop_faces

        if upscale > 1:
            big = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
            pad = big.shape[0] // 2
            image = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        batch = self.detector.detect(Frame(index=0, time_s=0.0, image_bgr=image))
        if not len(batch):
            return None
        largest = int(np.argmax(np.prod(batch.box_wh, axis=1)))
        return crop_faces(image, batch.select(np.array([largest])), self.size, self.scale)[0]

    def close(self) -> None:
        self.detector.close()


def face_crops(faces: FaceSet, cropper: PipelineCropper | None) -> tuple[np.ndarray, int]:
    """(N,128,128,3) crops in image order and how many came from a detected face (the rest: set framing)."""
    upscale = FER_UPSCALE if faces.emotion is not None else 1
    crops, found = [], 0
    for image in faces.images:
        crop = cropper.crop(image, upscale) if cropper is not None else None
        found += crop is not None
        crops.append(crop if crop is not None else framed_crop(image, faces.frame))
    return np.stack(crops) if crops else np.zeros((0, 128, 128, 3), np.uint8), found

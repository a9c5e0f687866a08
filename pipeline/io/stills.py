"""A photo's annotated output: a picture at the input's full resolution, not a one-frame video.

PNG input gives annotated.png (lossless stays lossless); every other image gives annotated.jpg.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engines.files import write_atomic
from pipeline.errors import OutputError

JPEG_QUALITY = 92
STILL_OUTPUTS = ("annotated.jpg", "annotated.png", "emotions.png")


def still_output_name(input_path: str) -> str:
    """annotated.png for a .png input, annotated.jpg for any other photo."""
    return "annotated.png" if Path(input_path).suffix.lower() == ".png" else "annotated.jpg"


def write_still(path: Path, image_bgr: np.ndarray) -> None:
    """`image_bgr` encoded by the extension of `path` (JPEG or PNG), written atomically."""
    ext = Path(path).suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(ext, image_bgr, params)
    if not ok:
        raise OutputError(f"{path}: the annotated picture could not be encoded")
    write_atomic(path, data.tobytes())

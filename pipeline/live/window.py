"""The OpenCV (Qt) window of a live run, where a display exists; q or Esc asks the run to stop.

PyAV's wheels bundle their own libxcb: once `av` is loaded, OpenCV's Qt can no longer connect to the X
server (it hangs inside xcb_shm_query_version). `prepare_gui()` makes Qt's X connection first; call it
before anything imports av (the CLI does, before importing the live pipeline). Windows opened later
reuse that connection and work normally.
"""

from __future__ import annotations

import os
import sys

from engines.errors import EmostreamError

QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q, Q, Esc
_prepared = False


class WindowError(EmostreamError):
    """The OpenCV window cannot be opened in this process."""


def has_display() -> bool:
    """True where an X display is set (the OpenCV window needs one)."""
    return bool(os.environ.get("DISPLAY"))


def prepare_gui() -> None:
    """Open and close a window so Qt connects to the X server before PyAV is loaded (safe to repeat)."""
    global _prepared
    if _prepared:
        return
    if "av" in sys.modules:
        raise WindowError("OpenCV window: call prepare_gui() before PyAV (av) is imported")
    import cv2

    cv2.namedWindow("emostream", cv2.WINDOW_NORMAL)
    cv2.destroyWindow("emostream")
    cv2.waitKey(1)
    _prepared = True


class WindowDisplay:
    """An OpenCV window showing each annotated frame; `show` returns False once a quit key was pressed."""

    def __init__(self, title: str) -> None:
        if not _prepared and "av" in sys.modules:
            raise WindowError(
                "OpenCV window: PyAV was loaded first and its libxcb blocks Qt; "
                "call pipeline.live.window.prepare_gui() before importing av, or use --serve"
            )
        import cv2

        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, image_bgr) -> bool:
        import cv2

        cv2.imshow(self.title, image_bgr)
        return (cv2.waitKey(1) & 0xFF) not in QUIT_KEYS

    def close(self) -> None:
        import cv2

        cv2.destroyWindow(self.title)
        cv2.waitKey(1)

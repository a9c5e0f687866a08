"""emostream runtime: what happens to a frame (capture, detect, track, align, infer, aggregate, render)."""

from importlib.metadata import PackageNotFoundError, version

from pipeline.frames import EMOTIONS, FaceBatch, Frame, SourceInfo

try:
    __version__ = version("emostream")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["EMOTIONS", "FaceBatch", "Frame", "SourceInfo", "__version__"]

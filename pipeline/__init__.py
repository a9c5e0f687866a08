"""emostream runtime: what happens to a frame (capture, detect, track, align, infer, aggregate, render)."""

from pipeline.frames import EMOTIONS, FaceBatch, Frame, SourceInfo

__all__ = ["EMOTIONS", "FaceBatch", "Frame", "SourceInfo"]

"""Models: the store, converters, the fused multi-task net and inference backends.

`engines` never imports `pipeline`.
"""

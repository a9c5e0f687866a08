"""Training the project's own multi-task face net (`engines.nets.mtl`): readers, loop, metrics, export.

Nothing here imports `pipeline`; datasets are read in place and decoded arrays are cached under
``~/.cache/emostream-train/`` (never inside the repository).
"""

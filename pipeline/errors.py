"""Runtime errors; all are `EmostreamError`s so the CLI reports them as one line with exit code 2."""

from engines.errors import EmostreamError


class InputError(EmostreamError):
    """An input (file, stream, camera, dataset) cannot be used. The message names it and the problem."""


class OutputError(EmostreamError):
    """An output folder or file cannot be written (or would mix with an earlier run)."""

"""Exceptions with one-line messages; the CLI turns any `EmostreamError` into exit code 2."""


class EmostreamError(Exception):
    """Base of every error the user should see as one line (no traceback)."""


class ModelStoreError(EmostreamError):
    """A model file is missing, corrupt, or could not be fetched."""


class BackendUnavailable(EmostreamError):
    """An inference backend was asked for by name but cannot run here."""


class EmostreamWarning(UserWarning):
    """Something the user should know that does not stop the run; the CLI shows it as one line."""

"""Saved joblib bundles (score's classifiers, train-head's heads): written atomically, read with checks.

A bundle is a dict with `kind` and `version`; a file of another kind, an older version or missing keys
is a one-line InputError naming the command that makes it again. joblib runs pickle: load only files you
trust.
"""

from __future__ import annotations

from pathlib import Path

from engines.files import atomic_path
from pipeline.errors import InputError, OutputError


def save_bundle(bundle: dict, path: Path, what: str) -> None:
    """Write `bundle` to `path` atomically; a folder that cannot take it is a one-line OutputError."""
    import joblib

    try:
        with atomic_path(path) as tmp:
            joblib.dump(bundle, tmp)
    except OSError as e:
        raise OutputError(f"--out {path}: cannot write the {what} ({e.strerror or e})") from None


def load_bundle(
    path: Path, kind: str, what: str, made_by: str, version: int = 1, keys: tuple[str, ...] = ()
) -> dict:
    """A joblib bundle of `kind` and `version` holding `keys` (joblib runs pickle: load only files you
    trust); one-line errors."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    try:
        bundle = joblib.load(path)
    except Exception as e:
        raise InputError(f"{path}: not a {what} saved by {made_by} ({type(e).__name__})") from None
    if not isinstance(bundle, dict) or bundle.get("kind") != kind:
        raise InputError(f"{path}: not a {what} saved by {made_by}")
    if bundle.get("version") != version:
        raise InputError(
            f"{path}: {what} file version {bundle.get('version')!r}, this emostream reads version "
            f"{version}; make it again with {made_by}"
        )
    missing = [k for k in keys if k not in bundle]
    if missing:
        raise InputError(f"{path}: {what} file lacks {', '.join(missing)}; make it again with {made_by}")
    return bundle

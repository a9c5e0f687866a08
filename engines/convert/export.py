"""torch -> ONNX export, cached under `store.derived_dir / "onnx"` by what determines the graph.

The cache key is the sha256 of: the source models' sha256s, the head set and each head's spec (margin,
builder), the quality, the crop parameters and `EXPORT_VERSION` (bump it whenever the export code or the
modules change the graph).
Files are written to a temporary name in the same folder and moved into place with `os.replace`, so
a crash never leaves half a file under the final name; a cache hit exports nothing (and needs no torch).
Each export's sha256 is recorded beside it (`<name>.onnx.sha256`, written last); a cached graph whose bytes
no longer hash to it (one flipped byte still parses, and silently changes every output), or that has no
record, is exported again, never handed to a backend.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engines.errors import ModelStoreError
from engines.files import atomic_path, write_atomic
from engines.store.hashes import sha256_file

EXPORT_VERSION = "fused-v7"
OPSET = 17
INPUT_NAME = "crops_bgr"
BATCH_AXIS = "n"


def cache_key(fields: dict[str, Any]) -> str:
    """sha256 (hex) of the JSON of `fields` plus the export version and opset."""
    payload = json.dumps({**fields, "export_version": EXPORT_VERSION, "opset": OPSET}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def cached_onnx_path(derived_dir: Path, fields: dict[str, Any], prefix: str = "fused") -> Path:
    """Where the ONNX graph for `fields` lives in the cache (it may not exist yet)."""
    return Path(derived_dir) / "onnx" / f"{prefix}-{cache_key(fields)[:24]}.onnx"


def digest_path(path: Path) -> Path:
    """Where the sha256 of the cached graph at `path` is recorded."""
    return Path(path).with_name(Path(path).name + ".sha256")


def ensure_onnx(
    path: Path,
    build: Callable[[], Any],
    example: Callable[[], Any],
    output_names: Sequence[str] | None = None,
    finish: Callable[[Path], None] | None = None,
    sha256: Callable[[Path], str] | None = None,
) -> Path:
    """`path` if it exists and is the graph that was exported there (cache hit), else export `build()` on
    `example()` to it atomically and record its sha256.

    output_names default to the module's own `output_names`; `finish` (see `export_module`) may
    rewrite the exported file before it is moved into place; `sha256(path)` hashes a file (default: read
    it; the model store's remembers hashes by path, size and times).
    """
    sha256 = sha256 or sha256_file
    if path.is_file():
        if _recorded_digest(path) == _hash(path, sha256) and _whole_model(path):
            return path
        _discard(path)  # a damaged, altered or unreadable entry is exported again, never used
    module = build()
    names = output_names if output_names is not None else module.output_names
    export_module(module, example(), path, (INPUT_NAME,), names, finish)
    write_atomic(digest_path(path), _hash(path, sha256) + "\n")
    return Path(path)


def _recorded_digest(path: Path) -> str | None:
    try:
        return digest_path(path).read_text().strip() or None
    except OSError:
        return None


def _hash(path: Path, sha256: Callable[[Path], str]) -> str | None:
    try:
        return sha256(path)
    except OSError:
        return None


def _whole_model(path: Path) -> bool:
    """True if `path` parses as an ONNX model (a few ms; a truncated or foreign file does not)."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # DecodeError, OSError (unreadable), ...: anything but a whole model
        return False
    return len(graph.node) > 0 and len(graph.output) > 0  # an empty file parses as an empty model


def _discard(path: Path) -> None:
    try:
        digest_path(path).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    except OSError as e:
        raise ModelStoreError(
            f"{path}: the cached graph is unreadable and cannot be replaced ({e.strerror or e})"
        ) from None


def export_module(
    module: Any,
    example: Any,
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    finish: Callable[[Path], None] | None = None,
) -> Path:
    """Export `module` (eval mode) with a dynamic batch axis on every input and output; atomic write.

    `finish(tmp_path)` runs on the exported file before the move (e.g. grafting ONNX-only heads on).
    """
    import torch

    axes = {name: {0: BATCH_AXIS} for name in (*input_names, *output_names)}
    with atomic_path(path) as tmp_name:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and constant-folding notes
            torch.onnx.export(
                module.eval(),
                (example,),
                str(tmp_name),
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
        if finish is not None:
            finish(tmp_name)
    return Path(path)

"""Download one registered model file over HTTP(S), verified against its pinned sha256.

Stdlib only (urllib). The body streams into a `.part` file beside the destination while it is hashed; the
file is moved into place (atomic `os.replace`) only when its length and sha256 are right, so a crash or a bad
download never leaves a half-written model where the store looks. Env `EMOSTREAM_DOWNLOAD_BASE` (a base URL,
e.g. a company mirror or a test server) replaces every upstream URL with `BASE/<filename>`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from engines.errors import ModelStoreError
from engines.files import atomic_path
from engines.store.registry import ModelSpec

_CHUNK = 1 << 16
_USER_AGENT = "emostream-model-store"


class _DownloadFailed(Exception):
    """Internal: what went wrong, before the message gets the file, URL and offline hint around it."""


def download_url(spec: ModelSpec) -> str:
    """Where `spec` is fetched from: `$EMOSTREAM_DOWNLOAD_BASE/<filename>` if that is set, else upstream."""
    base = os.environ.get("EMOSTREAM_DOWNLOAD_BASE", "").strip()
    if not base:
        return spec.url
    return f"{base.rstrip('/')}/{urllib.parse.quote(spec.filename)}"


def offline_hint(spec: ModelSpec, cache_models_dir: Path, mirror_dir: Path | None = None) -> str:
    """How to provide a model without network: the mirror folder or the cache's models/ folder."""
    mirror = f"{mirror_dir} " if mirror_dir else ""
    return (
        f"to work offline, get {spec.filename} (sha256 {spec.sha256[:12]}…) from {spec.url} and put it "
        f"into the mirror folder {mirror}(EMOSTREAM_MODELS_DIR) or into {cache_models_dir}"
    )


def download_verified(
    spec: ModelSpec,
    dest: Path,
    *,
    url: str | None = None,
    timeout_s: float = 30,
    progress: bool | None = None,
) -> Path:
    """Fetch `spec` into `dest`; raise ModelStoreError (one line) on any network, length or hash problem."""
    url = url or download_url(spec)
    dest = Path(dest)
    try:
        with atomic_path(dest, suffix=".part") as tmp, open(tmp, "wb") as out:
            digest = _stream(url, out, spec.filename, timeout_s, _show_progress(progress))
            if digest != spec.sha256:
                raise _DownloadFailed(f"sha256 mismatch: got {digest[:12]}…, expected {spec.sha256[:12]}…")
    except _DownloadFailed as e:
        raise ModelStoreError(
            f"could not download {spec.filename} (model {spec.name}) from {url}: {e}; "
            f"{offline_hint(spec, dest.parent)}"
        ) from None
    except OSError as e:  # the folder cannot take the file (read-only, full, a file in the way)
        raise ModelStoreError(f"cannot write {spec.filename} into {dest.parent}: {e.strerror or e}") from None
    return dest


def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _stream(url: str, out, label: str, timeout_s: float, show: bool) -> str:
    """Copy the body at `url` into `out`; the sha256 hex digest of what arrived."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            expected = _content_length(resp)
            received, digest = _copy(resp, out, label, expected, show)
    except urllib.error.HTTPError as e:
        raise _DownloadFailed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _DownloadFailed(_network_problem(e.reason, timeout_s)) from None
    except http.client.IncompleteRead as e:
        raise _DownloadFailed(f"truncated body after {len(e.partial)} bytes") from None
    except (TimeoutError, OSError, http.client.HTTPException) as e:
        raise _DownloadFailed(_network_problem(e, timeout_s)) from None
    if expected is not None and received != expected:
        raise _DownloadFailed(f"truncated after {received} of {expected} bytes")
    return digest


def _copy(resp, out, label: str, expected: int | None, show: bool) -> tuple[int, str]:
    """Stream `resp` into `out` with a progress bar; (bytes received, sha256 hex)."""
    from tqdm import tqdm

    h = hashlib.sha256()
    received = 0
    with tqdm(total=expected, desc=label, unit="B", unit_scale=True, disable=not show, leave=False) as bar:
        while chunk := resp.read(_CHUNK):
            try:
                out.write(chunk)
            except OSError as e:
                raise _DownloadFailed(f"cannot write {out.name}: {e.strerror or e}") from None
            h.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return received, h.hexdigest()


def _content_length(resp) -> int | None:
    value = resp.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _network_problem(reason: object, timeout_s: float) -> str:
    """One phrase for a failure below HTTP: refused, timed out, name lookup, or whatever the OS said."""
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (no server there, or no network)"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout_s:g} s (no network?)"
    text = " ".join(str(reason).split()) or type(reason).__name__
    return f"network error ({text}; no network?)"

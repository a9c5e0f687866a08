"""sha256 of files, remembered by (path, size, mtime, ctime) so checking them on every start stays cheap.

Every model file and cached graph is checked against a known sha256 before it is used. Hashing is what
makes that trustworthy, and remembering the answer is what makes a warm start fast: a file whose size,
modification time and change time (which no one can set back) are those it had when it was hashed is not
read again. The memo lives in memory and, when `memo_file` is given, in a small JSON file in the user
cache so the next process starts warm too (only once that folder exists: the memo never creates it); a
memo that cannot be read or written is simply not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path

from engines.files import write_atomic

_CHUNK = 1 << 20
_MAX_ENTRIES = 512


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stamp(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class HashMemo:
    """`sha256(path)`: hashed once per (size, mtime, ctime, inode), remembered in memory and `memo_file`."""

    def __init__(self, memo_file: Path | None = None) -> None:
        self.memo_file = Path(memo_file) if memo_file is not None else None
        self._lock = threading.Lock()
        self._memo: dict[str, tuple[list[int], str]] | None = None
        self.hashed = 0  # files actually read (for tests and curiosity)

    def sha256(self, path: Path) -> str:
        key = str(Path(path).resolve())
        stamp = _stamp(path)
        with self._lock:
            known = self._entries().get(key)
        if known is not None and known[0] == stamp:
            return known[1]
        digest = sha256_file(path)
        self.hashed += 1
        if _stamp(path) == stamp:  # unchanged while it was read: worth remembering
            with self._lock:
                self._entries()[key] = (stamp, digest)
                self._save()
        return digest

    def forget(self, path: Path) -> None:
        with self._lock:
            if self._entries().pop(str(Path(path).resolve()), None) is not None:
                self._save()

    def _entries(self) -> dict[str, tuple[list[int], str]]:
        if self._memo is None:
            self._memo = {}
            if self.memo_file is not None:
                with contextlib.suppress(OSError, ValueError, TypeError):
                    raw = json.loads(self.memo_file.read_text())
                    self._memo = {k: (list(v[0]), str(v[1])) for k, v in raw.items()}
        return self._memo

    def _save(self) -> None:
        if self.memo_file is None or self._memo is None or not self.memo_file.parent.is_dir():
            return
        while len(self._memo) > _MAX_ENTRIES:
            self._memo.pop(next(iter(self._memo)))
        with contextlib.suppress(OSError):
            write_atomic(self.memo_file, json.dumps(self._memo))

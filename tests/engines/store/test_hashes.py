"""sha256 remembered by path, size and times (issue 15): a warm start reads nothing again, changes show."""

from __future__ import annotations

import hashlib
import os
import warnings

from engines.errors import EmostreamWarning
from engines.store.hashes import HashMemo
from engines.store.store import usable_dir


def test_a_file_is_hashed_once_and_again_only_when_it_changes(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"weights" * 1000)
    memo = HashMemo(tmp_path / "hashes.json")
    assert memo.sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest() == memo.sha256(f)
    assert memo.hashed == 1
    warm = HashMemo(tmp_path / "hashes.json")  # the next process
    assert warm.sha256(f) == memo.sha256(f) and warm.hashed == 0
    st = f.stat()
    data = bytearray(f.read_bytes())
    data[10] ^= 1
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: the change time still differs
    assert warm.sha256(f) == hashlib.sha256(bytes(data)).hexdigest() and warm.hashed == 1


def test_an_unreadable_memo_is_ignored_and_a_missing_folder_never_created(tmp_path):
    (tmp_path / "hashes.json").write_text("{not json")
    f = tmp_path / "x"
    f.write_bytes(b"x")
    assert HashMemo(tmp_path / "hashes.json").sha256(f) == hashlib.sha256(b"x").hexdigest()
    HashMemo(tmp_path / "nowhere" / "hashes.json").sha256(f)
    assert not (tmp_path / "nowhere").exists()


def test_an_unusable_folder_gives_way_to_a_temporary_one_with_one_warning(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = usable_dir(blocker)
    assert got != blocker and got.is_dir() and os.access(got, os.W_OK)
    (w,) = caught
    assert issubclass(w.category, EmostreamWarning) and str(blocker) in str(w.message)
    assert "\n" not in str(w.message) and "not a folder" in str(w.message)
    assert usable_dir(tmp_path / "fine") == tmp_path / "fine"

"""Runs every input of the bad-input corpus (tests/badinputs.py) through `run`, `live --source` and `score`
and prints the markdown table of docs/robustness.md: input, command, exit code, the line on stderr.

    python tools/robustness_table.py > /tmp/table.md
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("EMOSTREAM_SHARED_DIR", REPO.parent / "shared")) / "media"
sys.path.insert(0, str(REPO))

from tests import badinputs as B  # noqa: E402  (the corpus lives with the tests that use it)


def emostream(args: list[str], nobody: bool, cache: Path) -> tuple[int, str]:
    """Exit code and last stderr line of one command (as an unprivileged user for permission cases)."""
    cmd = [sys.executable, "-m", "pipeline.cli", *args]
    if nobody:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = {**os.environ, "HOME": "/tmp", "EMOSTREAM_CACHE_DIR": str(cache)}  # a fresh cache for each row
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    except subprocess.TimeoutExpired:  # a hang is a finding for the table, not the end of the table
        return -1, "no exit within 900 s (killed)"
    lines = [line for line in r.stderr.strip().splitlines() if line]
    return r.returncode, (lines[-1] if lines else "")


def commands(name: str, path: Path, work: Path) -> list[tuple[str, list[str]]]:
    rows = [
        ("run", ["run", str(path), "--out", str(work / f"run-{name}"), "--no-video"]),
        (
            "live --source",
            [
                "live",
                "--source",
                str(path),
                "--max-seconds",
                "8",
                "--no-window",
                "--out",
                str(work / f"live-{name}"),
                "--no-video",
            ],
        ),
    ]
    if path.is_file():  # score: the input as one clip of a dataset, beside a good clip
        ds = work / f"ds-{name}"
        (ds / "val" / "Happy").mkdir(parents=True)
        shutil.copy(MEDIA / "pyfeat_single_face.mp4", ds / "val" / "Happy" / "good.mp4")
        shutil.copy(path, ds / "val" / "Happy" / path.name)
        rows.append(("score (one clip of a dataset)", B.score_args(ds, work / f"score-{name}")))
    return rows


def dataset_rows(work: Path) -> list[tuple[str, str, list[str]]]:
    """Unusable datasets as a whole: missing, a file, a folder without the split."""
    (work / "dataset-file.mp4").write_bytes(b"x")
    (work / "dataset-empty").mkdir()
    return [
        (name, "score (the dataset)", B.score_args(work / name, work / f"score-{name}"))
        for name in ("dataset-missing", "dataset-file.mp4", "dataset-empty")
    ]


def _fresh(work: Path) -> Path:
    cache = Path(tempfile.mkdtemp(dir=work))
    cache.chmod(0o777)
    return cache


def row(name: str, kind: str, label: str, code: int, line: str, work: Path) -> None:
    line = line.replace(str(work) + "/", "").replace("|", "\\|")
    print(f"| `{name}` | {kind} | `{label}` | {code} | {line or '(none)'} |", flush=True)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="emostream-robustness-"))
    work.chmod(0o777)
    print("| input | kind | command | exit | stderr (last line) |")
    print("|---|---|---|---|---|")
    kinds = (("unusable", B.UNUSABLE), ("partly readable", B.PARTIAL), ("odd but valid", B.ODD))
    for kind_name, kind in kinds:
        for name in kind:
            path = B.build(kind, name, work, MEDIA)
            for label, args in commands(name, path, work):
                nobody = name == "unreadable.mp4" and os.geteuid() == 0  # root reads anything
                row(name, kind_name, label, *emostream(args, nobody, _fresh(work)), work)
    for name, label, args in dataset_rows(work):
        row(name, "unusable", label, *emostream(args, False, _fresh(work)), work)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

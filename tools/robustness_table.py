"""Runs every input of the bad-input corpus (tests/badinputs.py) through `run`, `live --source` and `score`
and prints the markdown table of docs/robustness.md: input, command, exit code, the line on stderr.
`--hostile` prints the table of issue 16's inputs instead, with each command's peak memory: huge images,
damaged and trailing-garbage files, a FIFO nobody writes to, servers that never answer, a URL with
credentials, a file name starting with a dash.

    python tools/robustness_table.py > /tmp/table.md
    python tools/robustness_table.py --hostile > /tmp/hostile.md
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("EMOSTREAM_SHARED_DIR", REPO.parent / "shared")) / "media"
sys.path.insert(0, str(REPO))

from tests import badinputs as B  # noqa: E402  (the corpus lives with the tests that use it)


def emostream(args: list[str], nobody: bool, cache: Path, cwd: Path | None = None) -> tuple[int, str, float]:
    """Exit code, last stderr line and peak memory (MB) of one command (as an unprivileged user for
    permission cases)."""
    cmd = [sys.executable, "-m", "pipeline.cli", *args]
    if nobody:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = {**os.environ, "HOME": "/tmp", "EMOSTREAM_CACHE_DIR": str(cache)}  # a fresh cache for each row
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    old = Path.cwd()
    os.chdir(cwd or old)
    try:
        code, stderr, peak_mb = B.run_measured(cmd, env=env, timeout_s=900)
    finally:
        os.chdir(old)
    if code == -9:  # a hang is a finding for the table, not the end of the table
        return -1, "no exit within 900 s (killed)", peak_mb
    lines = [line for line in stderr.strip().splitlines() if line]
    return code, (lines[-1] if lines else ""), peak_mb


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


def row(
    name: str, kind: str, label: str, code: int, line: str, work: Path, peak_mb: float | None = None
) -> None:
    line = line.replace(str(work) + "/", "").replace("|", "\\|")
    peak = "" if peak_mb is None else f" {peak_mb:.0f} |"
    print(f"| `{name}` | {kind} | `{label}` | {code} | {line or '(none)'} |{peak}", flush=True)


def hostile_rows(work: Path) -> list[tuple[str, str, str, list[str], Path | None]]:
    """(input, kind, command label, arguments, cwd) of what issue 16 added beyond the corpus."""
    fifo, huge = work / "camera.fifo", work / "huge-40000x40000.png"
    os.mkfifo(fifo)
    shutil.copy(MEDIA / "fer_justin_smile.jpg", work / "-dash.jpg")
    at = f"127.0.0.1:{_silent_listener()}"
    wait = ["--timeout", "2"]
    run = lambda tag, *a: ["run", *a, "--out", str(work / f"out-{tag}")]  # noqa: E731
    live = lambda src: ["live", "--source", src, "--no-window", *wait]  # noqa: E731
    silent_rtsp, silent_http = "rtsp listener that never answers", "http listener that never answers"
    secret, budget = f"rtsp://admin:s3cret@{at}/x", ["--max-pixels", "2000M"]
    return [
        ("huge-40000x40000.png", "unusable", "run --max-pixels 2000M", run("h", str(huge), *budget), None),
        ("camera.fifo (no writer)", "unusable", "run --timeout 2", run("f", str(fifo), *wait), None),
        ("camera.fifo (no writer)", "unusable", "live --source --timeout 2", live(str(fifo)), None),
        (silent_rtsp, "unusable", "run --timeout 2", run("r", f"rtsp://{at}/live", *wait), None),
        (silent_http, "unusable", "live --source --timeout 2", live(f"http://{at}/v.mp4"), None),
        ("rtsp URL with admin:s3cret@", "unusable", "live --source --timeout 2", live(secret), None),
        ("-dash.jpg", "odd but valid", "run -dash.jpg --out DIR", run("d1", "-dash.jpg"), work),
        ("-dash.jpg", "odd but valid", "run --out DIR -- -dash.jpg", [*run("d2"), "--", "-dash.jpg"], work),
        ("(no arguments)", "usage", "emostream", [], None),
    ]  # fmt: skip


_LISTENERS: list = []


def _silent_listener() -> int:
    """A TCP port on 127.0.0.1 that accepts connections (the kernel does) and never answers."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    _LISTENERS.append(sock)
    return sock.getsockname()[1]


def hostile() -> int:
    work = Path(tempfile.mkdtemp(prefix="emostream-hostile-"))
    work.chmod(0o777)
    print("| input | kind | command | exit | stderr (last line) | peak MB |")
    print("|---|---|---|---|---|---|")
    corpus = (("unusable", B.UNUSABLE, ["huge-40000x40000.png"]), ("damaged", B.DAMAGED, list(B.DAMAGED)),
              ("odd but valid", B.ODD, ["panorama-16400x1200.jpg"]))  # fmt: skip
    for kind_name, kind, names in corpus:
        for name in names:
            path = B.build(kind, name, work, MEDIA)
            for label, args in commands(name, path, work):
                code, line, peak_mb = emostream(args, False, _fresh(work))
                row(name, kind_name, label, code, line, work, peak_mb)
    for name, kind_name, label, args, cwd in hostile_rows(work):
        code, line, peak_mb = emostream(args, False, _fresh(work), cwd)
        row(name, kind_name, label, code, line, work, peak_mb)
    shutil.rmtree(work, ignore_errors=True)
    return 0


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
                row(name, kind_name, label, *emostream(args, nobody, _fresh(work))[:2], work)
    for name, label, args in dataset_rows(work):
        row(name, "unusable", label, *emostream(args, False, _fresh(work))[:2], work)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(hostile() if "--hostile" in sys.argv[1:] else main())

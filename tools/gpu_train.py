"""Train candidates of the multi-task net on a GPU machine that holds no dataset (docs/models.md).

    python tools/gpu_train.py prepare [--data D]     # here: packs into .gputrain/callN/, prints the calls
    python3 tools/gpu_train.py stash .gputrain/callN # there: keep a call's packs in /tmp for the next call
    python3 tools/gpu_train.py sweep [--budget-s S]  # there: the runs of SWEEP in parallel -> $OUT

The device tool takes at most 64 MiB a call, and the training data are ~120 MB even as lossless WebP
(engines/training/packs.py), so `prepare` splits the packs into call folders that each fit beside the
working tree; each call stashes its folder in /tmp (which lives while the machine stays warm) and the last
one also runs the sweep. The sweep runs `engines.training.train --device cuda` once per row of SWEEP, in
parallel processes (a row may wait for another's final.pt, as a student waits for its teacher), stops
what is still running at the budget (the checkpoint of the last whole epoch stays: `sweep` again, or
`train --resume` anywhere, continues it), and returns one tar per run (metrics.csv, log, final.pt or
last.pt) and sweep.json. Packs are arrays made from the datasets: they live in git-ignored folders,
never committed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engines.errors import EmostreamError  # noqa: E402
from tools.gpu_check import MIB, TRAVEL_LIMIT_MIB, Refused, ensure_ignored, tree_bytes  # noqa: E402

WORK = REPO / ".gputrain"
STASH = Path("/tmp/emostream-packs")
MARGIN_MIB = 1.0
"""Room left under the device tool's limit for files added to the tree after `prepare` measured it."""


@dataclass(frozen=True)
class Run:
    """One training process of the sweep: its name, train options, and the run it waits for."""

    name: str
    options: tuple[str, ...]
    after: str | None = None
    keep_weights: bool = True


TEACHER = ("--widths", "32", "64", "128", "256", "512", "--depths", "2", "2", "2", "2", "1")
SWEEP = (
    Run("r64", ("--epochs", "64")),
    Run("r96", ("--epochs", "96")),
    Run("teacher", (*TEACHER, "--epochs", "40", "--batch", "256", "--lr", "0.1")),
    Run("s64", ("--epochs", "64", "--teacher", "{teacher}/final.pt"), after="teacher"),
)
"""The candidates: the release recipe for longer, and a student distilled from a 4.8x wider teacher."""


def group_files(files: list[dict], capacity: int) -> list[list[dict]]:
    """Pack files into as few call groups as fit `capacity` bytes each (first fit, largest first); the
    manifest rides in every group. Refused when one file alone is over the capacity."""
    groups: list[list[dict]] = []
    sizes: list[int] = []
    for f in sorted(files, key=lambda f: -f["bytes"]):
        if f["bytes"] > capacity:
            raise Refused(
                f"{f['file']} ({f['bytes'] / MIB:.1f} MiB) alone is over a call's {capacity / MIB:.1f} MiB"
            )
        k = next((i for i, s in enumerate(sizes) if s + f["bytes"] <= capacity), None)
        if k is None:
            groups.append([])
            sizes.append(0)
            k = len(groups) - 1
        groups[k].append(f)
        sizes[k] += f["bytes"]
    return groups


def prepare(data_dir: Path | None, work: Path = WORK, chunk_mib: float = 4.0) -> list[Path]:
    """Write the packs and the call folders; returns the call folders in calling order."""
    from engines.training.data import load_data
    from engines.training.packs import write_packs
    from engines.training.paths import datasets_dir

    root = datasets_dir(data_dir)
    if root is None:
        raise Refused("no datasets folder: pass --data or set EMOSTREAM_SHARED_DIR")
    ensure_ignored(REPO, work)
    shutil.rmtree(work, ignore_errors=True)
    packs = work / "packs"
    manifest = write_packs(load_data(root), packs, int(chunk_mib * MIB))
    capacity = int((TRAVEL_LIMIT_MIB - MARGIN_MIB) * MIB) - tree_bytes(REPO, [work])
    calls = []
    for i, group in enumerate(group_files(manifest["files"], capacity), 1):
        folder = work / f"call{i}"
        folder.mkdir()
        for f in group:
            os.link(packs / f["file"], folder / f["file"])
        shutil.copy2(packs / "manifest.json", folder / "manifest.json")
        calls.append(folder)
    return calls


def stash(folder: Path, dest: Path = STASH) -> list[str]:
    """Copy a call folder's packs into `dest`; returns the manifest's files still missing there."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        shutil.copy2(f, dest / f.name)
    manifest = json.loads((dest / "manifest.json").read_text())
    return [f["file"] for f in manifest["files"] if not (dest / f["file"]).is_file()]


def command(run: Run, runs_dir: Path, packs: Path, device: str, extra: list[str]) -> list[str]:
    """The train command line of one run (`{name}` in an option is that run's folder); `--resume` when an
    earlier sweep left the run's last.pt (cut at its budget)."""
    opts = [o.format(**{r.name: str(runs_dir / r.name) for r in SWEEP}) for o in run.options]
    again = ["--resume"] if (runs_dir / run.name / "last.pt").is_file() else []
    out = ["--packs", str(packs), "--out", str(runs_dir / run.name), "--device", device, "--threads", "2"]
    return [sys.executable, "-m", "engines.training.train", *out, *opts, *extra, *again]


def _start(run: Run, runs_dir: Path, packs: Path, device: str, extra: list[str]) -> subprocess.Popen:
    """Launch one run, its output into its folder's train.log (the child keeps the file open)."""
    (runs_dir / run.name).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    cmd = command(run, runs_dir, packs, device, extra)
    with (runs_dir / run.name / "train.log").open("a") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def sweep(runs_dir: Path, packs: Path, budget_s: float, device: str, extra: list[str], runs=SWEEP) -> dict:
    """Run `runs` (each as soon as the run it waits for has a final.pt) until done or the budget is
    spent (then SIGINT: each keeps its last whole epoch); returns name -> {status, rc, seconds}. Calling
    it again on the same `runs_dir` continues: finished runs stay, cut ones resume."""
    t0 = time.time()
    procs: dict[str, tuple[subprocess.Popen, float]] = {}
    status = {r.name: {"status": "ok", "rc": 0, "seconds": 0.0, "earlier": True} for r in runs
              if (runs_dir / r.name / "final.pt").is_file()}  # fmt: skip
    while len(status) < len(runs):
        for r in runs:
            ready = r.after is None or (runs_dir / r.after / "final.pt").is_file()
            if r.name not in procs and r.name not in status:
                if r.after is not None and status.get(r.after, {}).get("status", "ok") != "ok":
                    status[r.name] = {"status": "not started", "rc": None, "seconds": 0.0}
                elif ready:
                    procs[r.name] = (_start(r, runs_dir, packs, device, extra), time.time())
        for name, (p, ts) in list(procs.items()):
            if p.poll() is not None and name not in status:
                status[name] = {"status": "ok" if p.returncode == 0 else "failed", "rc": p.returncode,
                                "seconds": round(time.time() - ts, 1)}  # fmt: skip
        if time.time() - t0 > budget_s:
            _stop(procs, status)
            for r in runs:
                status.setdefault(r.name, {"status": "not started", "rc": None, "seconds": 0.0})
        time.sleep(0.5)
    return status


def _stop(procs: dict, status: dict) -> None:
    """SIGINT what still runs (the trainer ends after saving nothing half-written), then wait or kill."""
    live = {n: p for n, (p, _) in procs.items() if n not in status}
    for p in live.values():
        p.send_signal(signal.SIGINT)
    for name, p in live.items():
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        status[name] = {"status": "cut at the budget", "rc": p.returncode, "seconds": None}


def collect(runs_dir: Path, out: Path, status: dict, runs=SWEEP) -> None:
    """One tar per run (metrics.csv, train.log, split.json, final.pt or else last.pt) and sweep.json."""
    out.mkdir(parents=True, exist_ok=True)
    for r in runs:
        folder = runs_dir / r.name
        weights = "final.pt" if (folder / "final.pt").is_file() else "last.pt"
        names = ["metrics.csv", "train.log", "split.json"] + ([weights] if r.keep_weights else [])
        with tarfile.open(out / f"{r.name}.tar", "w") as tar:
            for n in names:
                if (folder / n).is_file():
                    tar.add(folder / n, arcname=f"{r.name}/{n}")
        status[r.name]["epochs_done"] = _epochs_done(folder / "metrics.csv")
    (out / "sweep.json").write_text(json.dumps(status, indent=1))


def _epochs_done(metrics: Path) -> int:
    """Rows of a run's metrics.csv (0 when absent)."""
    return max(0, len(metrics.read_text().splitlines()) - 1) if metrics.is_file() else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 done, 2 refused with one line."""
    ap = argparse.ArgumentParser(prog="tools/gpu_train.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--data", type=Path, default=None)
    s = sub.add_parser("stash")
    s.add_argument("folder", type=Path)
    w = sub.add_parser("sweep")
    w.add_argument("--budget-s", type=float, default=390)
    w.add_argument("--packs", type=Path, default=STASH)
    w.add_argument("--device", default="cuda")
    w.add_argument("--runs-dir", type=Path, default=Path("/tmp/emostream-runs"))
    w.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_train_out")))
    w.add_argument("--only", nargs="+", help="run only these rows of SWEEP")
    w.add_argument("extra", nargs="*", help="after --: options added to every train command")
    args = ap.parse_args(argv)
    try:
        return _dispatch(args)
    except (Refused, EmostreamError) as e:
        print(f"gpu_train: {e}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd == "prepare":
        calls = prepare(args.data)
        total = sum(f.stat().st_size for c in calls for f in c.iterdir() if f.name != "manifest.json")
        print(f"gpu_train: packs {total / MIB:.1f} MiB in {len(calls)} call folders")
        for i, c in enumerate(calls):
            tail = " && python3 tools/gpu_train.py sweep" if i == len(calls) - 1 else ""
            rel = c.relative_to(REPO)
            print(f'run(command="python3 tools/gpu_train.py stash {rel}{tail}", carry=["{rel}"])')
        return 0
    if args.cmd == "stash":
        if not (args.folder / "manifest.json").is_file():
            raise Refused(f"{args.folder}: no manifest.json (run prepare here, carry the call folder)")
        missing = stash(args.folder)
        print(f"gpu_train: stashed {args.folder} in {STASH}; still missing: {', '.join(missing) or 'none'}")
        return 0
    unknown = sorted(set(args.only or ()) - {r.name for r in SWEEP})
    if unknown:
        raise Refused(
            f"--only {' '.join(unknown)}: no such row; the rows: {', '.join(r.name for r in SWEEP)}"
        )
    runs = [r for r in SWEEP if not args.only or r.name in args.only]
    manifest = args.packs / "manifest.json"
    if not manifest.is_file():
        raise Refused(f"no packs in {args.packs} (stash every call folder first)")
    missing = [
        f["file"] for f in json.loads(manifest.read_text())["files"] if not (args.packs / f["file"]).is_file()
    ]
    if missing:
        raise Refused(f"packs missing in {args.packs}: {', '.join(missing)} (stash the other call folders)")
    status = sweep(args.runs_dir, args.packs, args.budget_s, args.device, args.extra, runs)
    collect(args.runs_dir, args.out, status, runs)
    print(json.dumps(status, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

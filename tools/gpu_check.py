"""The GPU check (issue #18): prepare here what a GPU machine lacks, run the checks there, combine results.

    bash tools/gpu_check.sh prepare     # here: the PyAV wheel into .whl/, models and clips into .gpu/
    bash tools/gpu_check.sh device      # there: GPU tests, bench, four runs -> $OUT/gpu_check.{log,json,md}

The GPU machine has torch (CUDA), onnxruntime, OpenCV and the scientific stack, but no PyAV, no
mediapipe, no TensorRT, no network and no `../shared`: everything else it needs travels with the working
tree in two git-ignored folders (`carry: [".whl", ".gpu"]`). This module holds what is worth testing (the
file lists, the copy and size check, the step runner with its time limits, the parsers of pytest, bench
and summary.json output, the combined report); tools/gpu_check.sh only orders the steps. It imports the
standard library alone at load time: the device mode runs it before anything is installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXIT_REFUSED = 2
MIB = 1024 * 1024

AV_VERSION = "18.1.0"
"""PyAV for the GPU machine: the version the development venv runs the suite with (an abi3 wheel, cp311+)."""
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
CARRY = (".whl", ".gpu")
TRAVEL_LIMIT_MIB = 64
"""What the device tool sends at most: tracked and untracked-not-ignored files plus the carried folders."""
DEVICE_COMMAND = "bash tools/gpu_check.sh device"
DEVICE_TIMEOUT_S = 480

RUN_MODELS = (
    "face_detection_yunet_2023mar.onnx",
    "fer2013_mini_XCEPTION.102-0.66.hdf5",
    "gender_mini_XCEPTION.21-0.95.hdf5",
    "ssrnet_age_imdb.h5",
)
"""The detector, and the older nets (quality fast) that the runs compare with; the default net (quality mtl)
is bundled in the package and travels with the working tree."""
TEST_MODELS = (
    "fer2013_big_XCEPTION.54-0.66.hdf5",
    "face_detection_short_range.tflite",
    "face_detection_full_range_sparse.tflite",
    "ssrnet_age_wiki.h5",
    "ssrnet_age_morph2.h5",
    "ssrnet_gender_imdb.h5",
    "ssrnet_gender_wiki.h5",
    "facial_expression_recognition_mobilefacenet_2022july_int8.onnx",
)
"""The rest of the registry's mirrored models: tests/engines checks every one (test_store) and the
accurate quality (big XCEPTION) and the SSR-Net variants against their references."""
REFERENCE = tuple(
    f"reference/{Path(name).with_suffix('.nhwc.onnx').name}"
    for name in (*RUN_MODELS, *TEST_MODELS)
    if name.endswith((".h5", ".hdf5"))
)
"""tf2onnx conversions of every Keras model: the converter tests compare against them."""
CLIPS = {"crowd": "facenet_crowd_walking_1080p.mp4", "pexels": "pexels_woman_emotions.mp4"}
"""The two clips `run` measures, by the short name the step names use."""
STILLS = (
    "fer_justin_smile.jpg",
    "mtcnn_man_small_face.jpg",
    "pyfeat_angry_f13.jpg",
    "pyfeat_disgust_m7.jpg",
    "pyfeat_happy_f15.jpg",
    "pyfeat_multi_face_5.jpg",
    "pyfeat_neutral_man.jpg",
    "pyfeat_single_face_smile.jpg",
    "pyfeat_surprise_f1.jpg",
    "pyfeat_upside_down_face.png",
)
"""The photos tests/engines reads (the labelled faces, the small face, the upside-down face)."""


class Refused(Exception):
    """A precondition not met: the command says so in one line and exits 2."""


def say(line: str, log: Path | None = None, err: bool = False) -> None:
    """Print a `gpu_check:` line (flushed, so it shows even when the step after it hangs) and log it."""
    text = f"gpu_check: {line}"
    print(text, file=sys.stderr if err else sys.stdout, flush=True)
    if log is not None:
        with log.open("a", encoding="utf-8") as f:
            f.write(text + "\n")


def mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


# ---------------------------------------------------------------- prepare (here)


def shared_dir(given: str | None = None) -> Path:
    """The shared folder: the argument, else $EMOSTREAM_SHARED_DIR, else `shared` beside the repo."""
    return Path(given or os.environ.get("EMOSTREAM_SHARED_DIR") or REPO.parent / "shared").expanduser()


def needed_files(shared: Path) -> list[tuple[Path, str]]:
    """(source, path under the carried folder) of every file the device runs and tests read."""
    if not (shared / "models").is_dir() or not (shared / "media").is_dir():
        raise Refused(
            f"shared folder not found: {shared} has no models/ and media/ "
            "(set EMOSTREAM_SHARED_DIR or pass --shared); nothing prepared"
        )
    models = [*RUN_MODELS, *TEST_MODELS, *REFERENCE]
    files = [(shared / "models" / name, f"models/{name}") for name in models]
    files += [(shared / "media" / name, f"media/{name}") for name in (*CLIPS.values(), *STILLS)]
    missing = [rel for src, rel in files if not src.is_file()]
    if missing:
        raise Refused(
            f"{len(missing)} needed file(s) missing in {shared}: {', '.join(missing)}; nothing prepared"
        )
    return files


def _same_file(src: Path, dst: Path) -> bool:
    """Whether `dst` is an earlier copy of `src` (copy2 keeps size and modification time)."""
    if not dst.is_file():
        return False
    a, b = src.stat(), dst.stat()
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def _remove_unwanted(dest: Path, wanted: set[str]) -> list[str]:
    """Delete files under dest/models and dest/media that are not in `wanted` (then empty folders)."""
    removed = []
    for sub in ("models", "media"):
        for path in sorted((dest / sub).rglob("*"), reverse=True):
            rel = path.relative_to(dest).as_posix()
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
            elif rel not in wanted:
                path.unlink()
                removed.append(rel)
    return removed


def sync_tree(files: Sequence[tuple[Path, str]], dest: Path) -> list[tuple[str, int]]:
    """Make `dest` hold exactly `files` (copying only what changed); (path, bytes) of each."""
    for rel in _remove_unwanted(dest, {rel for _, rel in files}):
        say(f"removed {rel} (no longer needed)")
    rows = []
    for src, rel in files:
        target = dest / rel
        if not _same_file(src, target):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        rows.append((rel, target.stat().st_size))
    return rows


def _download_wheel(wheels: Path, version: str) -> None:
    """`pip download` the PyAV wheel for CPython 3.12 on manylinux x86-64 (the GPU machine's Python)."""
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version"]
    cmd += ["3.12", "--implementation", "cp", *platforms, "-d", str(wheels), f"av=={version}"]
    say(f"downloading: {shlex.join(cmd)}")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Refused(f"pip download of av=={version} did not finish ({e}); nothing prepared") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Refused(f"pip download of av=={version} failed (rc {done.returncode}): {last[0]}")


def ensure_wheel(wheels: Path, version: str = AV_VERSION, download: bool = True) -> Path:
    """The one PyAV wheel in `wheels`, downloaded when missing. Other PyAV versions there are deleted:
    two versions of one package stop the whole install on the device."""
    wheels.mkdir(parents=True, exist_ok=True)
    for stale in sorted(wheels.glob("av-*.whl")):
        if not stale.name.startswith(f"av-{version}-"):
            stale.unlink()
            say(f"removed {stale.name} (another PyAV version)")
    if download and not list(wheels.glob(f"av-{version}-*.whl")):
        _download_wheel(wheels, version)
    found = sorted(wheels.glob(f"av-{version}-*.whl"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise Refused(f"{what} PyAV {version} wheel(s) in {wheels} (need exactly one); nothing prepared")
    return found[0]


def dir_bytes(path: Path) -> int:
    """Bytes of the files under `path` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _inside(path: Path, folders: Iterable[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def tree_bytes(repo: Path, carried: Sequence[Path]) -> int:
    """Bytes of the working tree that travels besides the carried folders: tracked and untracked,
    not ignored files, as `git ls-files -co --exclude-standard` lists them."""
    try:
        listing = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-z", "-co", "--exclude-standard"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise Refused(f"cannot list the working tree of {repo} with git ({e})") from None
    resolved = [c.resolve() for c in carried]
    paths = (repo / os.fsdecode(name) for name in listing.split(b"\0") if name)
    return sum(p.stat().st_size for p in paths if p.is_file() and not _inside(p.resolve(), resolved))


def check_travel_size(parts: dict[str, int], limit_mib: float = TRAVEL_LIMIT_MIB) -> int:
    """The total that travels; Refused when it is over the device tool's limit."""
    total = sum(parts.values())
    if total > limit_mib * MIB:
        listed = ", ".join(f"{name} {mib(n)}" for name, n in parts.items())
        raise Refused(f"what travels would be {mib(total)}, over the {limit_mib:g} MiB limit ({listed})")
    return total


def ensure_ignored(repo: Path, folder: Path) -> None:
    """Keep a carried folder out of git: when nothing ignores it, add it to the clone's own
    .git/info/exclude (never to a tracked file) and say so."""
    folder = folder.resolve()
    if not _inside(folder, [repo.resolve()]):
        return
    rel = folder.relative_to(repo.resolve()).as_posix()
    git = ["git", "-C", str(repo)]
    if subprocess.run([*git, "check-ignore", "-q", rel], capture_output=True).returncode == 0:
        return
    exclude = subprocess.run(
        [*git, "rev-parse", "--git-path", "info/exclude"], capture_output=True, text=True
    )
    path = repo / exclude.stdout.strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(f"/{rel}/\n")
    say(f"{rel}/ was not git-ignored: added '/{rel}/' to {path} (add it to .gitignore for good)")


def _git_commit(repo: Path) -> dict[str, Any]:
    """The commit prepared from, and whether the tree had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "-uno"))}


def device_call(dest: Path, wheels: Path, repo: Path = REPO) -> str:
    """The device tool's `run` arguments for this preparation, as one line to paste."""
    carry = [
        p.resolve().relative_to(repo.resolve()).as_posix()
        if _inside(p.resolve(), [repo.resolve()])
        else str(p)
        for p in (wheels, dest)
    ]
    call = (
        f"run(command={json.dumps(DEVICE_COMMAND)}, carry={json.dumps(carry)}, timeout_s={DEVICE_TIMEOUT_S})"
    )
    if carry != list(CARRY):
        call += f"  [device mode reads {list(CARRY)}: this preparation is for inspection only]"
    return call


def _report_prepared(rows: list[tuple[str, int]], wheel: Path, parts: dict[str, int], total: int) -> None:
    """Print each carried file with its size, the totals, and the travel budget."""
    for rel, size in rows:
        say(f"  {rel:<58} {size / 1024:>9.1f} KiB")
    for sub in ("models", "media"):
        chosen = [size for rel, size in rows if rel.startswith(f"{sub}/")]
        say(f"{sub}: {len(chosen)} files, {mib(sum(chosen))}")
    say(f"wheel: {wheel.name}, {mib(wheel.stat().st_size)}")
    listed = ", ".join(f"{name} {mib(n)}" for name, n in parts.items())
    say(f"travels {mib(total)} of {TRAVEL_LIMIT_MIB} MiB ({listed})")


def prepare(
    shared: Path,
    dest: Path,
    wheels: Path,
    version: str = AV_VERSION,
    download: bool = True,
    repo: Path = REPO,
) -> dict[str, Any]:
    """Fill `wheels` (PyAV) and `dest` (models, media) for the device, check what travels, and
    write dest/prepared.json; returns what it wrote there."""
    files = needed_files(shared)
    wheel = ensure_wheel(wheels, version, download)
    rows = sync_tree(files, dest)
    for folder in (wheels, dest):
        ensure_ignored(repo, folder)
    parts = {
        "tree": tree_bytes(repo, [wheels, dest]),
        wheels.name: dir_bytes(wheels),
        dest.name: dir_bytes(dest),
    }
    total = check_travel_size(parts)
    _report_prepared(rows, wheel, parts, total)
    facts = {
        "prepared_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **_git_commit(repo),
        "shared": str(shared),
        "av_wheel": wheel.name,
        "files": [{"path": rel, "bytes": size} for rel, size in rows],
        "travel_bytes": {**parts, "total": total},
    }
    (dest / "prepared.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return facts


# ---------------------------------------------------------------- device (there)


def cuda_status() -> tuple[bool, str]:
    """Whether torch sees a CUDA device, and one line saying which one (or why none)."""
    try:
        import torch
    except Exception as e:  # not installed, or a broken install: either way nothing can be measured
        return False, f"no CUDA device (torch does not import: {type(e).__name__}: {e}); nothing measured"
    try:
        available = torch.cuda.is_available()
    except Exception as e:
        return False, f"no CUDA device (torch.cuda.is_available() raised {e!r}); nothing measured"
    if not available:
        return False, "no CUDA device (torch.cuda.is_available() is False); nothing measured"
    name = torch.cuda.get_device_name(0)
    return True, f"CUDA device 0: {name} (torch {torch.__version__}, CUDA {torch.version.cuda})"


def carried_problems(repo: Path = REPO) -> list[str]:
    """What the device run needs from the carried folders and does not find."""
    needed = [f".gpu/models/{name}" for name in RUN_MODELS] + [
        f".gpu/media/{name}" for name in CLIPS.values()
    ]
    missing = [rel for rel in needed if not (repo / rel).is_file()]
    if not list((repo / ".whl").glob("av-*.whl")):
        missing.append(".whl/av-*.whl")
    return missing


def preflight(log: Path | None, repo: Path = REPO) -> int:
    """The checks before anything is installed or measured: a CUDA device, then the carried files."""
    ok, line = cuda_status()
    say(line, log, err=not ok)
    if not ok:
        return EXIT_REFUSED
    missing = carried_problems(repo)
    if missing:
        say(
            f"carried files missing ({', '.join(missing)}): run `bash tools/gpu_check.sh prepare` on the "
            f"development machine and carry {json.dumps(list(CARRY))}; nothing measured",
            log,
            err=True,
        )
        return EXIT_REFUSED
    stale = [name for name in TEST_MODELS if not (repo / ".gpu" / "models" / name).is_file()]
    if stale:
        say(
            f"warning: .gpu lacks test models ({', '.join(stale)}), so the engine tests that read them will "
            "fail: it was prepared before they were listed; run prepare again before the next device call",
            log,
        )
    return 0


def _step_status(rc: int, seconds: float, limit: int) -> str:
    """ok / timeout (the limit ran out: `timeout` answers 124, or 137 once it had to kill) / failed."""
    if rc == 0:
        return "ok"
    if rc == 124 or (rc in (137, -9) and seconds >= limit):
        return "timeout"
    return "failed"


def _run_limited(cmd: Sequence[str], limit: int, out: Path) -> int:
    """Run `cmd` under `timeout` (SIGTERM at the limit, SIGKILL 10 s later), its output into `out`."""
    with out.open("wb") as f:
        try:
            done = subprocess.run(
                ["timeout", "-k", "10", str(limit), *cmd],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=limit + 30,
            )
        except subprocess.TimeoutExpired:
            return 124
        except OSError as e:
            f.write(f"gpu_check: cannot start {cmd[0]}: {e}\n".encode())
            return 127
    return done.returncode


def _skipped_step(name: str, work: Path, log: Path | None) -> dict[str, Any]:
    record = {"name": name, "status": "skipped", "rc": None, "seconds": 0.0, "limit_s": 0}
    record["note"] = "out of time budget"
    say(f"[{name}] SKIPPED: out of time budget", log)
    _append_record(work, record)
    return record


def _append_record(work: Path, record: dict[str, Any]) -> None:
    with (work / "steps.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _log_output(name: str, out: Path, log: Path | None) -> list[str]:
    """Append a step's whole output to the log; its lines."""
    lines = out.read_text(encoding="utf-8", errors="replace").splitlines()
    if log is not None:
        with log.open("a", encoding="utf-8") as f:
            f.write(f"----- [{name}] output ({len(lines)} lines) -----\n")
            f.writelines(line + "\n" for line in lines)
            f.write(f"----- [{name}] end -----\n")
    return lines


def run_step(
    name: str, limit_s: int, cmd: Sequence[str], work: Path, log: Path | None, deadline: float, tail: int = 2
) -> dict[str, Any]:
    """One step of the device run: its own time limit (cut to what the overall budget has left),
    output to work/NAME.out and the log, a line at start and end, a record in work/steps.jsonl.
    A step that fails or hangs is recorded; the steps after it still run."""
    left = deadline - time.time()
    if left < 15:
        return _skipped_step(name, work, log)
    limit = int(max(1, min(limit_s, left - 10)))
    say(f"[{name}] start, limit {limit} s: {shlex.join(cmd)}", log)
    t0 = time.monotonic()
    rc = _run_limited(cmd, limit, work / f"{name}.out")
    seconds = round(time.monotonic() - t0, 2)
    status = _step_status(rc, seconds, limit)
    lines = _log_output(name, work / f"{name}.out", log)
    record = {"name": name, "status": status, "rc": rc, "seconds": seconds, "limit_s": limit}
    _append_record(work, record)
    word = {"ok": "ok", "timeout": f"TIMED OUT (limit {limit} s)", "failed": f"FAILED (rc {rc})"}[status]
    say(f"[{name}] {word} in {seconds:.1f} s", log)
    shown = tail if status == "ok" else max(tail, 20)
    for line in lines[len(lines) - shown :] if shown > 0 else []:
        print(f"    {line}", flush=True)
    return record


def _module_version(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except Exception as e:
        return f"not importable: {type(e).__name__}: {e}"
    return getattr(module, "__version__", None)


def _torch_gpu() -> dict[str, Any]:
    """torch's view of the GPU: name, compute capability, memory, CUDA and cuDNN versions."""
    try:
        import torch

        facts: dict[str, Any] = {"torch_cuda": torch.version.cuda, "available": torch.cuda.is_available()}
        if facts["available"]:
            props = torch.cuda.get_device_properties(0)
            facts |= {
                "name": torch.cuda.get_device_name(0),
                "capability": list(torch.cuda.get_device_capability(0)),
            }
            facts |= {
                "memory_gib": round(props.total_memory / 1024**3, 1),
                "cudnn": torch.backends.cudnn.version(),
            }
        return facts
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def _nvidia_smi() -> str | None:
    """`nvidia-smi`'s name, driver and memory line, or None where it is missing or hangs."""
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def env_facts() -> dict[str, Any]:
    """The machine and the versions that matter for the figures."""
    names = ("torch", "onnxruntime", "onnx", "cv2", "numpy", "av", "h5py", "sklearn", "pytest")
    facts: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    facts |= {"cpus": os.cpu_count(), "versions": {name: _module_version(name) for name in names}}
    facts |= {"gpu": _torch_gpu(), "nvidia_smi": _nvidia_smi()}
    try:
        import onnxruntime

        facts["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except Exception as e:
        facts["onnxruntime_providers"] = f"{type(e).__name__}: {e}"
    return facts


def env_line(facts: dict[str, Any]) -> str:
    """The facts that matter most, in one line for the console."""
    gpu, versions = facts.get("gpu") or {}, facts.get("versions") or {}
    listed = ", ".join(
        f"{name} {versions.get(name)}" for name in ("torch", "onnxruntime", "av", "cv2", "numpy")
    )
    device = f"gpu: {gpu.get('name', 'none')} (CUDA {gpu.get('torch_cuda')})"
    return f"{device}; nvidia-smi: {facts.get('nvidia_smi')}; {listed}"


def _first_found(name: str, modules: Sequence[str]) -> Any:
    """`name` from the first of `modules` that has it: the module layout is being reorganised, and
    this step must not depend on which side of that it runs."""
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"{name} is in none of {', '.join(modules)}")


def bench_api(batches: Sequence[int], runs: int) -> str:
    """The torch rows `emostream bench` cannot ask for (it runs torch at its default precision without
    CUDA graphs): fp32, and fp16 with CUDA graphs; the default net, same workload, same markdown table."""
    markdown_table = _first_found("markdown_table", ["engines.bench"])
    run_bench = _first_found("run_bench", ["engines.bench"])
    net_class, config = (
        _first_found("MultiTaskNet", ["engines.multitask"]),
        _first_found("NetConfig", ["engines.multitask"])(),
    )
    store = _first_found("ModelStore", ["engines.store", "engines.store.store"])()
    rows = []
    for suffix, options in (
        ("", {"precision": "fp32"}),
        (" graphs", {"precision": "fp16", "cuda_graphs": True}),
    ):
        net = net_class(config, store, "torch", **options)
        rows += [dataclasses.replace(r, backend=r.backend + suffix) for r in run_bench([net], batches, runs)]
    return markdown_table(rows)


# ---------------------------------------------------------------- parsers and the combined report

_PYTEST_FINAL = re.compile(r"^=*\s*(?P<body>.*?)\s+in\s+(?P<secs>\d+(?:\.\d+)?)s\b.*$")
_PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|skipped|deselected|xfailed|xpassed|errors?|warnings?)\b")
_PYTEST_BODY = re.compile(rf"{_PYTEST_COUNT.pattern}(?:, {_PYTEST_COUNT.pattern})*")
"""A closing line is counts alone ("1 failed, 2 passed"), which no test's own output is mistaken for."""
_PYTEST_KEYS = ("passed", "failed", "skipped", "errors", "xfailed", "xpassed", "deselected", "warnings")
_PLURAL = {"error": "errors", "warning": "warnings"}
_SHORT_PREFIXES = ("FAILED ", "ERROR ", "SKIPPED ", "XFAIL ", "XPASS ")


def _pytest_final_line(lines: Sequence[str]) -> re.Match[str] | None:
    """pytest's closing line ("= 3 passed, 1 skipped in 2.10s =", or bare with -q), searched from the end."""
    for line in reversed(lines):
        found = _PYTEST_FINAL.match(line.strip())
        if found and (_PYTEST_BODY.fullmatch(found["body"]) or found["body"] == "no tests ran"):
            return found
    return None


_PROGRESS = re.compile(r"^(?:\S+\.py )?(?P<marks>[.FEsxX]+)\s*(?:\[\s*\d+%\])?$")
_MARKS = {".": "passed", "F": "failed", "E": "errors", "s": "skipped", "x": "xfailed", "X": "xpassed"}


def _progress_counts(lines: Sequence[str]) -> dict[str, int]:
    """Outcomes counted from pytest's progress marks ("..F.s  [ 40%]"): what a run that was cut off
    before its closing line had done by then."""
    counts = dict.fromkeys(_PYTEST_KEYS, 0)
    for line in lines:
        found = _PROGRESS.match(line.strip())
        for mark in found["marks"] if found else "":
            counts[_MARKS[mark]] += 1
    return counts


def parse_pytest(text: str) -> dict[str, Any]:
    """Counts from pytest's closing line and the -ra short-summary lines (FAILED/ERROR/SKIPPED ...).
    Without that line (the run was killed by its time limit, or crashed) `summary` is None,
    `complete` False, and the counts are those of the progress marks printed until then."""
    lines = text.splitlines()
    final = _pytest_final_line(lines)
    counts = dict.fromkeys(_PYTEST_KEYS, 0) if final else _progress_counts(lines)
    for number, word in _PYTEST_COUNT.findall(final["body"]) if final else []:
        counts[_PLURAL.get(word, word)] += int(number)
    short = [line.strip() for line in lines if line.startswith(_SHORT_PREFIXES)]
    return {
        **counts,
        "complete": final is not None,
        "seconds": float(final["secs"]) if final else None,
        "summary": final.group(0).strip("= ") if final else None,
        "short_summary": short[:60],
    }


_BENCH_HEADER = ["backend", "batch", "faces/s", "ms/batch", "pre %", "infer %", "post %"]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _number(cell: str) -> int | float | None:
    """A table figure as printed: "12,345" -> 12345, "2.59" -> 2.59, "inf" -> inf; None if not a number."""
    text = cell.replace(",", "")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def parse_bench_table(text: str) -> list[dict[str, Any]]:
    """The rows of the markdown table `emostream bench` prints (engines.bench.markdown_table); the
    backend cell is kept as printed ("onnxruntime", "torch fp16", "torch fp16 graphs")."""
    rows, in_table = [], False
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            in_table = False
            continue
        cells = _cells(line)
        if cells == _BENCH_HEADER:
            in_table = True
        elif in_table and len(cells) == 7 and cells[1].isdigit():
            faces, ms, pre, infer, post = (_number(c) for c in cells[2:])
            row = {"backend": cells[0], "batch": int(cells[1]), "faces_per_s": faces, "ms_per_batch": ms}
            rows.append(row | {"pre_pct": pre, "infer_pct": infer, "post_pct": post})
    return rows


def run_figures(summary: dict[str, Any]) -> dict[str, Any]:
    """What one `emostream run` summary.json says about speed: end-to-end fps and ms per frame per stage."""
    timings, facts = summary.get("timings", {}), summary.get("input", {})
    stages = {name: s.get("ms_per_frame") for name, s in timings.get("stages", {}).items()}
    return {
        "input": Path(facts.get("path", "")).name or None,
        "size": f"{facts.get('width')}x{facts.get('height')}",
        "backend_ran": summary.get("backend"),
        "detector": summary.get("detector"),
        "frames": summary.get("frames_processed"),
        "faces": summary.get("faces"),
        "tracks": summary.get("tracks"),
        "fps": timings.get("end_to_end_fps"),
        "wall_s": timings.get("wall_s"),
        "setup_s": timings.get("setup_s"),
        "stage_ms_per_frame": stages,
        "interrupted": summary.get("interrupted"),
        "decode_errors": facts.get("decode_errors"),
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_steps(work: Path) -> list[dict[str, Any]]:
    """The step records the runner appended to work/steps.jsonl, in order."""
    path = work / "steps.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _step_text(work: Path, name: str) -> str:
    path = work / f"{name}.out"
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def _run_entry(step: dict[str, Any], work: Path) -> dict[str, Any]:
    """One run step (named run_<backend>_<clip key>) with the figures of its summary.json."""
    _, backend, key = step["name"].split("_", 2)
    entry = {"step": step["name"], "status": step["status"], "backend": backend, "clip_key": key}
    entry["clip"] = CLIPS.get(key, key)
    summary = _read_json(work / step["name"] / "summary.json")
    if summary is None:
        return entry | {"error": f"no summary.json (step {step['status']})"}
    figures = run_figures(summary)
    return entry | {"clip": figures["input"] or entry["clip"], **figures, "summary": summary}


def fps_table(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per clip, the end-to-end fps of each backend side by side and torch's speed-up over onnxruntime;
    a run without figures (failed, timed out) shows as a missing figure in its clip's row."""
    table: dict[str, dict[str, Any]] = {}
    for run in runs:
        row = table.setdefault(run["clip_key"], {"clip": run["clip"], "frames": None, "fps": {}})
        if "fps" in run:  # a run with figures names the clip by its file and counts its frames
            row |= {"clip": run["clip"], "frames": row["frames"] or run["frames"]}
        row["fps"][run["backend"]] = run.get("fps")
    for row in table.values():
        gpu, cpu = row["fps"].get("torch"), row["fps"].get("onnxruntime")
        row["torch_over_onnxruntime"] = round(gpu / cpu, 2) if gpu and cpu else None
    return list(table.values())


def combine(work: Path, prepared: Path | None = None) -> dict[str, Any]:
    """Everything the device run measured, as one JSON-ready dict (see docs/gpu.md)."""
    steps = read_steps(work)
    by_kind = {
        kind: [s for s in steps if s["name"].startswith(kind)] for kind in ("pytest_", "bench_", "run_")
    }
    runs = [_run_entry(s, work) for s in by_kind["run_"]]
    bench = [
        row | {"step": s["name"]}
        for s in by_kind["bench_"]
        for row in parse_bench_table(_step_text(work, s["name"]))
    ]
    return {
        "schema": "emostream-gpu-check/1",
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "prepared": _read_json(prepared) if prepared else None,
        "env": _read_json(work / "env.json"),
        "steps": steps,
        "pytest": {
            s["name"]: {"status": s["status"], **parse_pytest(_step_text(work, s["name"]))}
            for s in by_kind["pytest_"]
        },
        "bench": bench,
        "runs": runs,
        "fps_table": fps_table(runs),
    }


def _cell(value: Any) -> str:
    """A table cell: "-" for a missing figure, floats to a precision that suits their size."""
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return (
            f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
        )
    return str(value)


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def _md_columns(columns: dict[str, str], rows: Iterable[dict[str, Any]]) -> list[str]:
    """A table of `rows` (dicts): one column per key of `columns`, headed by its value."""
    return _md_table(list(columns.values()), [[row.get(key) for key in columns] for row in rows])


def _md_env(report: dict[str, Any]) -> list[str]:
    env, prepared = report.get("env") or {}, report.get("prepared") or {}
    gpu, versions = env.get("gpu") or {}, env.get("versions") or {}
    listed = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    return [
        f"- GPU: {gpu.get('name', '?')} (capability {gpu.get('capability')}, {gpu.get('memory_gib')} GiB); "
        f"nvidia-smi: {env.get('nvidia_smi')}",
        f"- torch CUDA {gpu.get('torch_cuda')}, cuDNN {gpu.get('cudnn')}; "
        f"Python {env.get('python')}, {env.get('cpus')} CPUs",
        f"- versions: {listed or '?'}",
        f"- commit {prepared.get('commit')} (dirty: {prepared.get('dirty')}), "
        f"prepared {prepared.get('prepared_utc')}",
    ]


TARGET_FACES_PER_S = 5000
"""docs/gpu.md: the fused net at batch 32 on a GPU backend."""


def target_line(bench: Sequence[dict[str, Any]]) -> str:
    """Whether the best GPU row at batch 32 reaches the faces/s target."""
    rows = [r for r in bench if r["batch"] == 32 and not r["backend"].startswith("onnxruntime")]
    best = max(rows, key=lambda r: r["faces_per_s"] or 0.0, default=None)
    if best is None or best["faces_per_s"] is None:
        return f"Target >= {TARGET_FACES_PER_S:,} faces/s at batch 32: no GPU row measured."
    verdict = "met" if best["faces_per_s"] >= TARGET_FACES_PER_S else "NOT met"
    measured = f"{best['backend']}: {best['faces_per_s']:,.0f}"
    return f"Target >= {TARGET_FACES_PER_S:,} faces/s at batch 32: {verdict} ({measured})."


def _md_runs(report: dict[str, Any]) -> list[str]:
    """The fps table (torch and onnxruntime side by side) and the per-stage ms of every run."""
    fps = _md_table(
        ["clip", "frames", "torch fps", "onnxruntime fps", "torch / onnxruntime"],
        [
            [
                r["clip"],
                r["frames"],
                *(r["fps"].get(b) for b in ("torch", "onnxruntime")),
                r["torch_over_onnxruntime"],
            ]
            for r in report["fps_table"]
        ],
    )
    runs = [r for r in report["runs"] if "stage_ms_per_frame" in r]
    stages = list(dict.fromkeys(s for r in runs for s in r["stage_ms_per_frame"]))
    per_stage = _md_table(
        ["clip", "backend ran", "fps", "setup s", *[f"{s} ms" for s in stages]],
        [
            [
                r["clip"],
                r["backend_ran"],
                r["fps"],
                r["setup_s"],
                *(r["stage_ms_per_frame"].get(s) for s in stages),
            ]
            for r in runs
        ],
    )
    missing = [f"- {r['step']}: {r['error']}" for r in report["runs"] if "error" in r]
    return [*fps, "", "Per stage, ms per frame:", "", *per_stage, *(["", *missing] if missing else [])]


STEP_COLUMNS = {"name": "step", "status": "status", "seconds": "s", "limit_s": "limit s"}
TEST_COLUMNS = {k: k for k in ("step", "passed", "failed", "errors", "skipped", "deselected")} | {
    "summary": "closing line"
}
BENCH_COLUMNS = {"backend": "backend", "batch": "batch", "faces_per_s": "faces/s", "ms_per_batch": "ms/batch"}
BENCH_COLUMNS |= {"pre_pct": "pre %", "infer_pct": "infer %", "post_pct": "post %"}


def markdown_report(report: dict[str, Any]) -> str:
    """The short human summary written beside the combined JSON."""
    cut = "cut off: counts from the progress marks"
    tests = [{"step": name, **p, "summary": p["summary"] or cut} for name, p in report["pytest"].items()]
    problems = [f"- {line}" for t in tests for line in t["short_summary"] if not line.startswith("SKIPPED")]
    parts = [
        "# GPU check",
        "",
        *_md_env(report),
        "",
        "## Steps",
        "",
        *_md_columns(STEP_COLUMNS, report["steps"]),
    ]
    parts += ["", "## Tests", "", *_md_columns(TEST_COLUMNS, tests), *(["", *problems] if problems else [])]
    parts += [
        "",
        "## Bench (faces/s)",
        "",
        *_md_columns(BENCH_COLUMNS, report["bench"]),
        "",
        target_line(report["bench"]),
    ]
    return "\n".join([*parts, "", "## Runs (end-to-end)", "", *_md_runs(report), ""])


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """gpu_check.json (everything) and gpu_check.md (the summary) in `out`; the log is already there."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "gpu_check.json", out / "gpu_check.md"]
    paths[0].write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    paths[1].write_text(markdown_report(report), encoding="utf-8")
    return paths


# ---------------------------------------------------------------- command line


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="here: fill .whl and .gpu for the device run")
    prep.add_argument("--shared", help="shared folder (default: $EMOSTREAM_SHARED_DIR, else ../shared)")
    prep.add_argument(
        "--dest", type=Path, default=REPO / ".gpu", help="carried models and media (default .gpu)"
    )
    prep.add_argument("--wheels", type=Path, default=REPO / ".whl", help="carried wheels (default .whl)")
    prep.add_argument("--av-version", default=AV_VERSION, help=f"PyAV version (default {AV_VERSION})")
    prep.add_argument("--no-download", action="store_true", help="use the wheel already in --wheels")
    pre = sub.add_parser("preflight", help="there: a CUDA device and the carried files, or exit 2")
    pre.add_argument("--log", type=Path)
    step = sub.add_parser("step", help="there: one command under its time limit, recorded")
    step.add_argument("name")
    step.add_argument("limit_s", type=int)
    step.add_argument("--tail", type=int, default=2, help="output lines to echo when it succeeds")
    env = sub.add_parser("env", help="there: machine and versions as JSON")
    env.add_argument("--out", type=Path, required=True)
    bench = sub.add_parser("bench-api", help="there: torch fp32 and fp16+graphs bench rows")
    bench.add_argument("--batches", type=_int_list, default=[1, 8, 32, 128, 512])
    bench.add_argument("--runs", type=int, default=10)
    comb = sub.add_parser("combine", help="there: gpu_check.json and gpu_check.md from the steps")
    comb.add_argument("--work", type=Path, required=True)
    comb.add_argument("--out", type=Path, required=True)
    comb.add_argument("--prepared", type=Path, default=REPO / ".gpu" / "prepared.json")
    return parser


def _cmd_step(args: argparse.Namespace) -> int:
    """`step NAME LIMIT_S -- CMD...`, with the work folder, log and deadline from the environment."""
    cmd = args.cmd
    if not cmd:
        raise Refused(f"step {args.name}: no command given after --")
    work = Path(os.environ.get("GPU_CHECK_WORK", "."))
    log = Path(os.environ["GPU_CHECK_LOG"]) if os.environ.get("GPU_CHECK_LOG") else None
    deadline = float(os.environ.get("GPU_CHECK_DEADLINE", time.time() + 3600))
    run_step(args.name, args.limit_s, cmd, work, log, deadline, args.tail)
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "prepare":
        dest, wheels = args.dest.resolve(), args.wheels.resolve()
        prepare(shared_dir(args.shared), dest, wheels, args.av_version, not args.no_download)
        say(f"device tool call: {device_call(dest, wheels)}")
        return 0
    if args.command == "preflight":
        return preflight(args.log)
    if args.command == "step":
        return _cmd_step(args)
    if args.command == "env":
        facts = env_facts()
        args.out.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(facts))
        print(env_line(facts))
        return 0
    if args.command == "bench-api":
        print(bench_api(args.batches, args.runs))
        return 0
    paths = write_report(combine(args.work, args.prepared), args.out)
    say(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Everything after the first `--` is the command of `step` (kept out of argparse's reach)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:cut])
    args.cmd = argv[cut + 1 :]
    try:
        return _dispatch(args)
    except Refused as e:
        say(str(e), err=True)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())

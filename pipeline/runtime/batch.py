"""Many inputs in one command: `emostream run DIR | GLOB | LIST.txt --out DIR`.

Every video and image found gets its own output folder under --out, mirroring its path relative to the
folder, glob root or list file (`clips/a/b.mp4` -> `OUT/a/b.mp4/`), and `OUT/index.csv` lists each input
with its status. `process_one(input, out_dir, job)` is the unit of work, a pure function of its
arguments: it runs the input into its folder and writes `finished.json` last, so a re-run skips what
finished and redoes what did not. An engine (pipeline/distributed) maps `VideoWork` over the inputs that
are not finished yet: `LocalEngine` one after another in this process, `RayEngine` one video per worker
over a Ray cluster, the workers writing into the shared --out and this process keeping index.csv.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import glob
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engines.files import write_atomic
from pipeline.config import AnalyzerConfig
from pipeline.distributed.engine import Engine, LocalEngine, portable_config, resolved
from pipeline.errors import InputError
from pipeline.io.capture import IMAGE_EXTENSIONS
from pipeline.io.sinks import write_json
from pipeline.runtime.offline import OfflineJob, run_job

_VIDEO_EXTS = ".mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .ts .mts .m2ts .wmv .flv .3gp .ogv .gif"
VIDEO_EXTENSIONS = frozenset(_VIDEO_EXTS.split())
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
FINISHED = "finished.json"
INDEX = "index.csv"
INDEX_COLUMNS = ("input", "status", "frames", "faces", "tracks", "seconds", "error")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class BatchInput:
    """An input file and its output folder relative to --out."""

    path: str
    rel_out: Path


@dataclass(frozen=True)
class InputResult:
    """One row of index.csv. status: done, partial (part of the input was unreadable), skipped (finished
    by an earlier run), failed (nothing usable: `error` says why) or interrupted."""

    input: str
    status: str
    frames: int = 0
    faces: int = 0
    tracks: int = 0
    seconds: float = 0.0
    error: str = ""


def is_batch(specs: list[str]) -> bool:
    """True when `run` was given more than one input, a folder, a glob pattern or a .txt list."""
    if len(specs) != 1:
        return True
    spec = specs[0]
    return Path(spec).is_dir() or bool(_GLOB_CHARS & set(spec)) or spec.lower().endswith(".txt")


def expand_inputs(specs: list[str]) -> list[BatchInput]:
    """Every input named by `specs` (folders searched recursively for videos and images), in order."""
    found: list[BatchInput] = []
    for spec in specs:
        found += _expand(spec)
    seen, unique = set(), []
    for item in found:
        if item.rel_out not in seen:
            seen.add(item.rel_out)
            unique.append(item)
    return unique


def _expand(spec: str) -> list[BatchInput]:
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)
        return [BatchInput(str(p), p.relative_to(path)) for p in files if not _hidden(p.relative_to(path))]
    if _GLOB_CHARS & set(spec):
        root = Path(_glob_root(spec))
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        return [BatchInput(str(p), _relative(p, root)) for p in files]
    if spec.lower().endswith(".txt") and path.is_file():
        return _from_list(path)
    return [BatchInput(spec, Path(path.name))]  # a plain file (or a missing one: listed as failed)


def _from_list(list_file: Path) -> list[BatchInput]:
    """One input per line of a text file (blank lines and # comments skipped), relative to the file."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{list_file}: cannot be read as a list of inputs ({e})") from None
    root = list_file.parent
    items = []
    for line in (s.strip() for s in lines):
        if line and not line.startswith("#"):
            p = Path(line) if Path(line).is_absolute() else root / line
            items.append(BatchInput(str(p), _relative(p, root)))
    return items


def _glob_root(pattern: str) -> str:
    """The folder part of a glob pattern before its first wildcard."""
    head = pattern[: min(pattern.index(c) for c in _GLOB_CHARS if c in pattern)]
    return os.path.dirname(head) or "."


def _relative(p: Path, root: Path) -> Path:
    try:
        return p.resolve().relative_to(root.resolve())
    except ValueError:
        return Path(p.name)


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


@dataclass(frozen=True)
class VideoWork:
    """`run` over many inputs as an engine's work: one analyzer per worker (models load once), lent to
    each input in turn (reset: no track carries over). Built by the worker's first input, so a failure to
    load the models is that input's `failed` row, as with a fresh analyzer per input. `cwd`: the driver's
    folder, for workers elsewhere to resolve relative paths (None: this process's own)."""

    config: AnalyzerConfig
    cwd: str | None = None

    def setup(self) -> dict:
        return {}  # "analyzer", once the first input has built it

    def run(self, held: dict, input_path: str, out_dir, job: OfflineJob, on_frame=None, on_start=None):
        """One input; its `seconds` include loading the models when it is the worker's first."""
        where, t0 = resolved(input_path, self.cwd), time.perf_counter()
        if "analyzer" not in held:
            from pipeline.analyzer import FaceAnalyzer

            try:
                held["analyzer"] = FaceAnalyzer(self.config)
            except Exception as e:
                return InputResult(input_path, "failed", error=_line(e))
        load_s = time.perf_counter() - t0
        out = Path(resolved(str(out_dir), self.cwd))
        r = process_one(where, out, job, on_frame, on_start, analyzer=held["analyzer"])
        seconds = round(r.seconds + load_s, 2) if r.status != "skipped" else r.seconds
        return dataclasses.replace(
            r, input=input_path, error=r.error.replace(where, input_path), seconds=seconds
        )

    def lost(self, task: tuple, why: str) -> InputResult:
        return InputResult(task[0], "failed", error=why)

    def close(self, held: dict) -> None:
        if "analyzer" in held:
            held.pop("analyzer").close()


def finished_earlier(input_path: str, out_dir: Path, job: OfflineJob) -> InputResult | None:
    """The `skipped` row of an input whose folder holds the finished marker (None with --overwrite)."""
    marker = Path(out_dir) / FINISHED
    if job.overwrite or not marker.is_file():
        return None
    earlier = _read_marker(marker)
    return earlier and dataclasses.replace(earlier, input=input_path, status="skipped", seconds=0.0)


def process_one(
    input_path: str, out_dir: Path, job: OfflineJob, on_frame=None, on_start=None, analyzer=None
) -> InputResult:
    """Run one input into `out_dir` (the settings from `job`, its input and folder replaced) and write
    the finished marker last. A folder with the marker is skipped unless `job.overwrite`; one without it
    (an unfinished run) is redone. Any failure becomes a `failed` result, never an exception, except
    Ctrl-C, which the run turns into an `interrupted` result. `analyzer`: a worker's, lent to this run."""
    out_dir = Path(out_dir)
    marker = out_dir / FINISHED
    earlier = finished_earlier(input_path, out_dir, job)
    if earlier is not None:
        return earlier
    t0 = time.perf_counter()
    try:
        job = dataclasses.replace(job, input=input_path, out_dir=out_dir, overwrite=True)
        summary = run_job(job, on_frame=on_frame, on_start=on_start, analyzer=analyzer)
    except Exception as e:  # a bad file is listed, never stops the rest
        _remove_empty_parents(out_dir)
        return InputResult(input_path, "failed", seconds=round(time.perf_counter() - t0, 2), error=_line(e))
    result = _result(input_path, summary, time.perf_counter() - t0)
    if result.status != "interrupted":
        write_json(marker, dataclasses.asdict(result))  # last: the outputs above are complete
    return result


def _result(input_path: str, summary: dict, seconds: float) -> InputResult:
    facts = summary["input"]
    status = "interrupted" if summary["interrupted"] else "partial" if facts["decode_errors"] else "done"
    error = (facts.get("last_error") or "") if status == "partial" else ""
    return InputResult(
        input_path,
        status,
        summary["frames_processed"],
        summary["faces"],
        summary["tracks"],
        round(seconds, 2),
        error,
    )


def _read_marker(marker: Path) -> InputResult | None:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        return InputResult(**{k: data[k] for k in INDEX_COLUMNS})
    except (OSError, ValueError, KeyError, TypeError):  # a torn or foreign marker: run the input again
        return None


def _remove_empty_parents(out_dir: Path) -> None:
    """Remove `out_dir` and the folders above it that a failed input left empty (never --out itself,
    which holds index.csv)."""
    for folder in [out_dir, *out_dir.parents][:-1]:
        try:
            folder.rmdir()
        except OSError:
            return


def _line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, InputError | OSError) else f"{type(e).__name__}: {text}"


def write_index(path: Path, results: list[InputResult]) -> None:
    """index.csv: one row per input, rewritten whole (atomically) after each input."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(INDEX_COLUMNS)
    for r in results:
        w.writerow([getattr(r, c) for c in INDEX_COLUMNS])
    write_atomic(path, buf.getvalue())


def run_batch(
    items: list[BatchInput],
    out_root: Path,
    job: OfflineJob,
    engine: Engine | None = None,
    progress: Callable[[BatchInput], tuple] | None = None,
    on_result: Callable[[InputResult], None] | None = None,
) -> list[InputResult]:
    """Every input into `out_root/<rel_out>`: finished ones skipped here, the rest through
    `engine.map(VideoWork, ...)` (default: this process); index.csv kept current after each, in input
    order. `progress(item)` (optional, local engine only) gives (on_frame, on_start) for that input's
    progress bar. Stops after an interrupted input."""
    out_root = Path(out_root)
    made = not out_root.exists()
    out_root.mkdir(parents=True, exist_ok=True)
    try:
        return _run_batch(items, out_root, job, engine or LocalEngine(), progress, on_result)
    except BaseException:
        if made:  # nothing written (a cluster that cannot be joined): no folder left behind
            with contextlib.suppress(OSError):
                out_root.rmdir()
        raise


def _run_batch(items, out_root: Path, job: OfflineJob, engine: Engine, progress, on_result) -> list:
    order = {item.path: n for n, item in reversed(list(enumerate(items)))}
    results: list[InputResult] = []

    def record(result: InputResult) -> None:
        results.append(result)
        write_index(out_root / INDEX, sorted(results, key=lambda r: order.get(r.input, len(order))))
        if on_result:
            on_result(result)

    todo = []
    for item in items:
        earlier = finished_earlier(item.path, out_root / item.rel_out, job)
        if earlier is None:
            todo.append(item)
        else:
            record(earlier)
    local = isinstance(engine, LocalEngine)
    work = VideoWork(job.analyzer) if local else VideoWork(portable_config(job.analyzer), os.getcwd())
    bars = progress if local else None  # per-frame callbacks stay in this process
    tasks = ((i.path, out_root / i.rel_out, job, *(bars(i) if bars else ())) for i in todo)
    folders = {i.path: out_root / i.rel_out for i in todo}
    for result in engine.map(work, tasks):
        record(finished_this_run(result, folders))
        if result.status == "interrupted":
            break
    return results


def finished_this_run(result: InputResult, folders: dict[str, Path]) -> InputResult:
    """A `skipped` result for an input that was not finished when the run began: an engine retried the
    unit (a worker died after writing the finished marker), so the marker is this run's own: its row."""
    if result.status != "skipped" or result.input not in folders:
        return result
    marker = _read_marker(folders[result.input] / FINISHED)
    return result if marker is None else dataclasses.replace(marker, input=result.input)

"""`emostream run`: one video or image, or many (a folder, a glob, a list file), into annotated outputs
(see pipeline/cli/main.py for exit codes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    UsageError,
    add_analyzer_args,
    add_engine_args,
    add_input_args,
    offline_job,
)
from pipeline.io.urls import redact_urls


def add_run_parser(sub) -> None:
    run = sub.add_parser(
        "run",
        help="process videos or images into annotated outputs",
        description="Process a video or image, or many of them, into per-face and per-track results and "
        "an annotated copy. Many inputs (a folder, a glob pattern, a .txt list with one path per line, or "
        "several paths) get one output folder each under --out, plus --out/index.csv.",
        epilog="A file name that starts with '-' goes after '--': emostream run --out DIR -- -name.mp4",
    )
    run.add_argument(
        "input",
        nargs="+",
        help="video (anything FFmpeg reads), image or stream URL; or a folder, glob or .txt list of them",
    )
    run.add_argument("--out", required=True, type=Path, help="output folder")
    run.add_argument("--no-video", action="store_true", help="skip the annotated video or picture")
    run.add_argument("--no-audio", action="store_true", help="leave the input's sound out of annotated.mp4")
    run.add_argument("--start", type=float, metavar="S", help="process from S seconds into the input")
    run.add_argument("--end", type=float, metavar="S", help="stop at S seconds into the input")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs of an earlier run in --out (many inputs: redo finished ones too)",
    )
    run.add_argument("--head", metavar="FILE", help="few-shot head from train-head: an extra per-face output")
    add_input_args(run)
    add_analyzer_args(run)
    add_engine_args(
        run,
        "video",
        "with many inputs and --engine ray: videos processed at once, one per Ray worker (default: one per "
        "CPU of the cluster)",
    )
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.runtime.batch import is_batch

    if is_batch(args.input):
        from pipeline.cli.batch import cmd_batch

        return cmd_batch(args)
    if args.engine != "local" or args.workers is not None or args.ray_address is not None:
        raise UsageError(
            "--engine, --workers and --ray-address spread many inputs (a folder, a glob, a .txt list or "
            "several files); one input runs here"
        )
    return run_one(args, args.input[0])


def run_one(args: argparse.Namespace, input_path: str) -> int:
    from tqdm import tqdm

    from pipeline.runtime.offline import run_job

    job = offline_job(args, input_path, args.out)
    shown = redact_urls(input_path)
    with tqdm(unit="frame", disable=not sys.stderr.isatty(), desc=Path(shown).name) as bar:
        summary = run_job(job, on_frame=lambda f, b: bar.update(1), on_start=lambda n: bar.reset(total=n))
    t = summary["timings"]
    print(
        f"{summary['frames_processed']} frames, {summary['faces']} faces, {summary['tracks']} tracks "
        f"in {t['wall_s']:.1f} s ({t['end_to_end_fps']:.1f} fps) -> {args.out}"
    )
    return _exit_code(summary, shown)


def _exit_code(summary: dict, input_name: str) -> int:
    """130 when interrupted, 3 when the input was only partly readable (one line each), else 0."""
    if summary["interrupted"]:
        print(
            f"emostream: interrupted after {summary['frames_processed']} frames; outputs are complete "
            "up to that frame",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    facts = summary["input"]
    if facts["decode_errors"]:
        why = facts.get("last_error") or f"{facts['decode_errors']} decode errors"
        print(
            f"emostream: warning: {input_name}: only partly readable ({why}); "
            f"processed the {summary['frames_processed']} frames that decoded",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    return 0

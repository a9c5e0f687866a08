"""`emostream run`: one video or image into annotated outputs (see pipeline/cli/main.py for exit codes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.common import EXIT_INTERRUPTED, EXIT_PARTIAL, add_analyzer_args, analyzer_config


def add_run_parser(sub) -> None:
    run = sub.add_parser("run", help="process a video file or image into annotated outputs")
    run.add_argument("input", help="video file (anything FFmpeg reads) or still image")
    run.add_argument("--out", required=True, type=Path, help="output folder")
    run.add_argument("--no-video", action="store_true", help="skip annotated.mp4")
    run.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in --out")
    run.add_argument("--head", metavar="FILE", help="few-shot head from train-head: an extra per-face output")
    add_analyzer_args(run)
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.runtime.offline import OfflineJob, run_job

    job = OfflineJob(
        input=args.input,
        out_dir=args.out,
        analyzer=analyzer_config(args),
        write_video=not args.no_video,
        overwrite=args.overwrite,
    )
    with tqdm(unit="frame", disable=not sys.stderr.isatty(), desc=Path(args.input).name) as bar:
        summary = run_job(job, on_frame=lambda frame, batch: bar.update(1))
    t = summary["timings"]
    print(
        f"{summary['frames_processed']} frames, {summary['faces']} faces, {summary['tracks']} tracks "
        f"in {t['wall_s']:.1f} s ({t['end_to_end_fps']:.1f} fps) -> {args.out}"
    )
    return _exit_code(summary, args.input)


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

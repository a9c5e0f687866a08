"""`emostream` command line. Heavy modules are imported only by the subcommand that needs them.

Exit codes: 0 done; 2 unusable input or bad usage (one line on stderr, no traceback); 3 input only
partly readable (what decoded was processed); 130 interrupted (outputs written so far are valid).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from engines.errors import EmostreamError  # light: exceptions only

EXIT_USAGE = 2
EXIT_PARTIAL = 3
BACKEND_CHOICES = ("auto", "onnxruntime", "torch", "tensorrt")
"""= engines.backends.BACKEND_CHOICES, spelled out so that building the parser imports no engine code."""
EXIT_INTERRUPTED = 130


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", help="read-only model mirror folder (default: $EMOSTREAM_MODELS_DIR)")


def _add_analyzer_args(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    p.add_argument("--detector", default="yunet", choices=["yunet", "blazeface", "blazeface-full"])
    p.add_argument(
        "--detect-every",
        type=int,
        default=3,
        metavar="N",
        help="detect on every Nth frame, the tracker predicts boxes between (default 3; 1 = every frame)",
    )
    p.add_argument(
        "--heads",
        default="emotion,gender,age",
        help="comma-separated head set from emotion, gender, age, gender_ssr (default: emotion,gender,age)",
    )
    p.add_argument(
        "--quality",
        default="fast",
        choices=["fast", "accurate", "affectnet"],
        help="fast: mini XCEPTION; accurate: mini+big XCEPTION, flip TTA; affectnet: HSEmotion (downloaded)",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKEND_CHOICES,
        help="inference backend; auto picks tensorrt, then torch on CUDA, then onnxruntime (default: auto)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emostream", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="process a video file or image into annotated outputs")
    run.add_argument("input", help="video file (anything FFmpeg reads) or still image")
    run.add_argument("--out", required=True, type=Path, help="output folder")
    run.add_argument("--no-video", action="store_true", help="skip annotated.mp4")
    run.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in --out")
    run.add_argument("--head", metavar="FILE", help="few-shot head from train-head: an extra per-face output")
    _add_analyzer_args(run)
    run.set_defaults(func=cmd_run)

    from pipeline.cli_gpu import _add_gpu_parsers
    from pipeline.cli_live import _add_live_parser
    from pipeline.cli_score import _add_score_parsers

    _add_live_parser(sub)
    _add_gpu_parsers(sub)
    _add_score_parsers(sub)

    models = sub.add_parser("models", help="list, fetch or verify the pretrained models")
    models.add_argument("action", choices=["list", "fetch", "verify"])
    models.add_argument("names", nargs="*", help="model names (default: all)")
    _add_model_args(models)
    models.set_defaults(func=cmd_models)
    return parser


def _analyzer_config(args: argparse.Namespace):
    from pipeline.analyzer import AnalyzerConfig

    if args.detect_every < 1:
        raise _usage(f"--detect-every must be >= 1, got {args.detect_every}")
    heads = tuple(h.strip() for h in args.heads.split(",") if h.strip())
    return AnalyzerConfig(
        detector=args.detector,
        detect_every=args.detect_every,
        heads=heads,
        quality=args.quality,
        backend=args.backend,
        models_dir=args.models_dir,
        extra_head=getattr(args, "head", None),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.offline import EXIT_PARTIAL_INPUT, OfflineJob, run_job

    job = OfflineJob(
        input=args.input,
        out_dir=args.out,
        analyzer=_analyzer_config(args),
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
    facts = summary["input"]
    lost = facts["decode_errors"]
    if summary["interrupted"]:
        print(
            f"emostream: interrupted after {summary['frames_processed']} frames; outputs are complete "
            "up to that frame",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if lost:
        why = facts.get("last_error") or f"{lost} decode errors"
        print(
            f"emostream: warning: {args.input}: only partly readable ({why}); "
            f"processed the {summary['frames_processed']} frames that decoded",
            file=sys.stderr,
        )
        return EXIT_PARTIAL_INPUT
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from engines.store import ModelStore

    store = ModelStore(mirror_dir=args.models_dir)
    names = args.names or None
    if args.action == "list":
        for row in store.list_rows():
            print(
                f"{row['name']:<22} {row['task']:<9} {row['where']:<7} {row['licence']:<11} {row['filename']}"
            )
    elif args.action == "fetch":
        for path in store.fetch(names):
            print(path)
    else:
        rows = store.verify(names)
        for r in rows:
            print(f"{r.name:<22} {r.status:<8} {r.location or '-':<7} {r.path or ''}")
        if any(r.status == "corrupt" for r in rows):
            return EXIT_USAGE
    return 0


class _UsageError(EmostreamError):
    """A bad option value. An EmostreamError, so that `python -m pipeline.cli` (where this module is
    `__main__` and the subcommand modules import a second copy of it) still reports it in one line."""


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")
    args = build_parser().parse_args(argv)

    # Ctrl-C / SIGINT and SIGTERM end a run cleanly. Installed explicitly: a process started in the
    # background by a non-interactive shell inherits SIGINT *ignored*, and Python then sets no handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.func(args)
    except (EmostreamError, _UsageError) as e:
        print(f"emostream: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("emostream: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:  # disk full, permissions, a vanished folder: still one line, never a traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"emostream: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    finally:  # the outputs are final now: a late Ctrl-C must not turn the exit code into a signal death
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())

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

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", help="read-only model mirror folder (default: $EMOSTREAM_MODELS_DIR)")


def _add_analyzer_args(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    p.add_argument("--detector", default="yunet", choices=["yunet", "blazeface", "blazeface-full"])
    p.add_argument(
        "--detect-every", type=int, default=1, metavar="N", help="detect on every Nth frame, track between"
    )
    p.add_argument(
        "--heads", default="emotion,gender", help="comma-separated head set (default: emotion,gender)"
    )
    p.add_argument("--quality", default="fast", choices=["fast", "accurate"])
    p.add_argument("--backend", default="onnxruntime", help="inference backend (default: onnxruntime)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emostream", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="process a video file or image into annotated outputs")
    run.add_argument("input", help="video file (anything FFmpeg reads) or still image")
    run.add_argument("--out", required=True, type=Path, help="output folder")
    run.add_argument("--no-video", action="store_true", help="skip annotated.mp4")
    run.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in --out")
    _add_analyzer_args(run)
    run.set_defaults(func=cmd_run)

    _add_live_parser(sub)

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


def _add_live_parser(sub) -> None:
    live = sub.add_parser("live", help="analyse a camera, network stream or paced file as it plays")
    where = live.add_mutually_exclusive_group()
    where.add_argument("--camera", type=int, metavar="INDEX", help="camera (default 0 without --source)")
    where.add_argument("--source", metavar="URL_OR_FILE", help="network stream (rtsp/http/...) or video file")
    live.add_argument("--realtime", action="store_true", help="pace a file at its own frame rate")
    live.add_argument("--max-seconds", type=float, metavar="S", help="stop after S seconds")
    live.add_argument("--serve", metavar="HOST:PORT", help="serve the preview page, e.g. 127.0.0.1:8080")
    live.add_argument("--no-window", action="store_true", help="no OpenCV window even where a display exists")
    live.add_argument("--out", type=Path, help="output folder (default: show only, write nothing)")
    live.add_argument("--no-video", action="store_true", help="skip annotated.mp4")
    live.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in --out")
    _add_analyzer_args(live)
    live.set_defaults(func=cmd_live)


def _parse_serve(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise _usage(f"--serve expects HOST:PORT (e.g. 127.0.0.1:8080), got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def cmd_live(args: argparse.Namespace) -> int:
    from pipeline.live import LiveJob, has_display, run_live
    from pipeline.offline import EXIT_PARTIAL_INPUT

    if args.max_seconds is not None and args.max_seconds <= 0:
        raise _usage(f"--max-seconds must be > 0, got {args.max_seconds}")
    job = LiveJob(
        source=args.source,
        camera=args.camera,
        out_dir=args.out,
        analyzer=_analyzer_config(args),
        realtime=args.realtime,
        max_seconds=args.max_seconds,
        serve=_parse_serve(args.serve) if args.serve else None,
        window=has_display() and not args.no_window,
        write_video=not args.no_video,
        overwrite=args.overwrite,
    )

    def ready(url: str | None) -> None:
        if url:
            print(f"emostream: preview at {url}", file=sys.stderr, flush=True)

    s = run_live(job, on_ready=ready)
    lat = s["latency_ms"]
    print(
        f"{s['frames_processed']} of {s['frames_captured']} frames shown ({s['frames_dropped']} dropped, "
        f"{s['inference_skipped']} without fresh inference), {s['faces']} faces, {s['tracks']} tracks "
        f"in {s['timings']['wall_s']:.1f} s ({s['processed_fps']:.1f} fps); latency p50 {lat['p50']} ms "
        f"p95 {lat['p95']} ms max {lat['max']} ms" + (f" -> {args.out}" if args.out else "")
    )
    if s["interrupted"]:
        print("emostream: interrupted; outputs are complete up to the last shown frame", file=sys.stderr)
        return EXIT_INTERRUPTED
    if s["source_lost"] or s["input"]["decode_errors"]:
        print(
            f"emostream: warning: {job.shown_as}: source lost or only partly readable "
            f"({s['reconnects']} reconnects, {s['input']['decode_errors']} decode errors)",
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


class _UsageError(Exception):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")
    args = build_parser().parse_args(argv)
    from engines.errors import EmostreamError

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


if __name__ == "__main__":
    sys.exit(main())

"""`emostream live`: its arguments and command (see pipeline/cli/main.py for exit codes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    UsageError,
    add_analyzer_args,
    add_input_args,
    analyzer_config,
    check_timeout,
    split_list,
)


def add_live_parser(sub) -> None:
    live = sub.add_parser("live", help="analyse a camera, network stream or paced file as it plays")
    where = live.add_mutually_exclusive_group()
    where.add_argument("--camera", type=int, metavar="INDEX", help="camera (default 0 without --source)")
    where.add_argument("--source", metavar="URL_OR_FILE", help="network stream (rtsp/http/...) or video file")
    live.add_argument("--realtime", action="store_true", help="pace a file at its own frame rate")
    live.add_argument("--max-seconds", type=float, metavar="S", help="stop after S seconds")
    live.add_argument(
        "--serve",
        metavar="HOST:PORT",
        help="serve the preview page, e.g. 127.0.0.1:8080; on any other address than loopback it needs an "
        "access token, printed in its URL on stderr",
    )
    live.add_argument(
        "--serve-token",
        metavar="TOKEN",
        help="the preview's access token (default: a random one off loopback, none on loopback)",
    )
    live.add_argument(
        "--serve-hosts",
        default="",
        metavar="NAMES",
        help="comma-separated host names the preview answers to besides IP addresses, localhost and this "
        "machine's name (a name in a reverse proxy, say): any other Host header is refused",
    )
    live.add_argument("--no-window", action="store_true", help="no OpenCV window even where a display exists")
    live.add_argument("--out", type=Path, help="output folder (default: show only, write nothing)")
    live.add_argument("--no-video", action="store_true", help="skip annotated.mp4")
    live.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in --out")
    add_input_args(live)
    add_analyzer_args(live)
    live.set_defaults(func=cmd_live)


def _parse_serve(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--serve expects HOST:PORT (e.g. 127.0.0.1:8080), got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def cmd_live(args: argparse.Namespace) -> int:
    from pipeline.live.window import has_display, prepare_gui

    window = has_display() and not args.no_window
    if window:
        prepare_gui()  # before anything loads PyAV: see pipeline/live/window.py
    from pipeline.live.run import LiveJob, run_live
    from pipeline.live.summary import source_missing

    if args.max_seconds is not None and args.max_seconds <= 0:
        raise UsageError(f"--max-seconds must be > 0, got {args.max_seconds}")
    job = LiveJob(
        source=args.source,
        camera=args.camera,
        out_dir=args.out,
        analyzer=analyzer_config(args),
        realtime=args.realtime,
        max_seconds=args.max_seconds,
        serve=_parse_serve(args.serve) if args.serve else None,
        serve_token=args.serve_token,
        serve_hosts=tuple(split_list(args.serve_hosts)),
        timeout_s=check_timeout(args),
        max_pixels=args.max_pixels,
        window=window,
        write_video=not args.no_video,
        overwrite=args.overwrite,
    )

    def ready(url: str | None) -> None:
        if url:
            private = "this machine only"
            if "?token=" in url:
                private = "anyone with this URL can watch: keep it private"
            print(f"emostream: preview at {url} ({private})", file=sys.stderr, flush=True)
        elif not job.window and job.out_dir is None:
            print("emostream: no display, --serve or --out: only the summary will be shown", file=sys.stderr)

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
    if source_missing(s):
        print(
            f"emostream: warning: {job.shown_as}: no frames for {s['no_source_s']:.1f} of "
            f"{s['timings']['wall_s']:.1f} s ({s['reconnects']} reconnects"
            + (", source lost" if s["source_lost"] else "")
            + ")",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    if s["source_lost"] or s["input"]["decode_errors"]:
        errors = [e["detail"] for e in s["source_events"] if e["event"] == "error"]
        why = errors[-1] if errors else f"{s['input']['decode_errors']} decode errors"
        print(
            f"emostream: warning: {job.shown_as}: source lost or only partly readable "
            f"({why}; {s['reconnects']} reconnects)",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    return 0

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
    from pipeline.live_window import has_display, prepare_gui

    window = has_display() and not args.no_window
    if window:
        prepare_gui()  # before anything loads PyAV: see pipeline/live_window.py
    from pipeline.live import LiveJob, run_live
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
        window=window,
        write_video=not args.no_video,
        overwrite=args.overwrite,
    )

    def ready(url: str | None) -> None:
        if url:
            print(f"emostream: preview at {url}", file=sys.stderr, flush=True)
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
    if s["source_lost"] or s["input"]["decode_errors"]:
        errors = [e["detail"] for e in s["source_events"] if e["event"] == "error"]
        why = errors[-1] if errors else f"{s['input']['decode_errors']} decode errors"
        print(
            f"emostream: warning: {job.shown_as}: source lost or only partly readable "
            f"({why}; {s['reconnects']} reconnects)",
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


def _add_gpu_parsers(sub) -> None:
    """`build-engine` and `bench`: the per-face net on its backends (see docs/gpu.md)."""
    build = sub.add_parser("build-engine", help="build (or find cached) the TensorRT engine of the net")
    _add_net_args(build)
    build.add_argument("--precision", default="fp16", choices=["fp32", "fp16"], help="(default: fp16)")
    build.add_argument("--max-batch", type=int, default=128, metavar="N", help="largest batch (default: 128)")
    build.add_argument("--opt-batch", type=int, default=32, metavar="N", help="batch tuned for (default: 32)")
    build.add_argument("--workspace", type=int, default=1024, metavar="MB", help="builder workspace MiB")
    build.set_defaults(func=cmd_build_engine)

    bench = sub.add_parser("bench", help="faces/s of the net per backend and batch size (markdown table)")
    _add_net_args(bench)
    bench.add_argument("--backend", default="onnxruntime", help="comma-separated backends: onnxruntime,torch")
    bench.add_argument("--batches", default="1,8,32,128", help="comma-separated batch sizes")
    bench.add_argument("--runs", type=int, default=10, metavar="N", help="timed runs per figure (median)")
    bench.set_defaults(func=cmd_bench)


def _add_net_args(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    p.add_argument("--heads", default=None, help="comma-separated head set (default: as for run)")
    p.add_argument("--quality", default="fast", help="quality mode (default: fast)")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _net_config(args: argparse.Namespace):
    from engines.multitask import NetConfig
    from pipeline.analyzer import AnalyzerConfig

    heads = tuple(_split(args.heads)) if args.heads is not None else AnalyzerConfig().heads
    return NetConfig(heads=heads, quality=args.quality)


def cmd_build_engine(args: argparse.Namespace) -> int:
    import json

    from engines.multitask import MultiTaskNet
    from engines.store import ModelStore
    from engines.trt_engine import BuildOptions

    options = BuildOptions(args.precision, args.max_batch, args.opt_batch, args.workspace)
    net = MultiTaskNet(
        _net_config(args),
        ModelStore(mirror_dir=args.models_dir),
        "tensorrt",
        precision=options.precision,
        max_batch=options.max_batch,
        opt_batch=options.opt_batch,
        workspace_mb=options.workspace_mb,
    )
    engine = net.backend
    print(f"{'built' if engine.engine_built else 'cached'}: {engine.engine_path}")
    print(json.dumps(engine.engine_key.to_dict(), sort_keys=True))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from engines.bench import markdown_table, run_bench
    from engines.multitask import MultiTaskNet
    from engines.store import ModelStore

    names = _split(args.backend)
    unknown = [n for n in names if n not in BACKEND_CHOICES]
    if not names or unknown:
        wrong = ", ".join(unknown) or "empty list"
        raise _usage(f"--backend: unknown {wrong}; valid: {', '.join(BACKEND_CHOICES)}")
    try:
        batches = [int(b) for b in _split(args.batches)]
    except ValueError:
        raise _usage(f"--batches must be comma-separated whole numbers, got {args.batches!r}") from None
    if not batches or min(batches) < 1 or args.runs < 1:
        raise _usage(f"--batches and --runs must be >= 1, got {args.batches!r} and {args.runs}")
    config, store = _net_config(args), ModelStore(mirror_dir=args.models_dir)
    nets = [MultiTaskNet(config, store, name) for name in names]
    print(markdown_table(run_bench(nets, batches, args.runs)))
    return 0


def _add_score_parsers(sub) -> None:
    """`score` and `train-head`: EmotiW-style clip scoring and few-shot heads (see docs/emotiw.md)."""
    score = sub.add_parser(
        "score", help="score clips EmotiW-style (AFEW / VGAF): features, classifier, metrics"
    )
    score.add_argument("dataset", type=Path, help="dataset folder (layouts: docs/emotiw.md)")
    score.add_argument("--protocol", required=True, choices=["afew", "vgaf"])
    score.add_argument(
        "--train", metavar="SPLIT", help="split to train on (not needed with --model or zeroshot)"
    )
    score.add_argument(
        "--eval", required=True, metavar="SPLIT", help="split to predict (and score if labelled)"
    )
    score.add_argument("--features", default="fused", choices=["emotion", "fused"], help="(default: fused)")
    score.add_argument(
        "--classifier", default="linearsvc", choices=["linearsvc", "logreg", "svc-rbf", "mlp", "zeroshot"]
    )
    score.add_argument("--model", type=Path, metavar="FILE", help="classifier.joblib of an earlier score run")
    score.add_argument("--out", required=True, type=Path, help="output folder")
    score.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in --out")
    _add_extract_args(score)
    score.set_defaults(func=cmd_score)

    head = sub.add_parser(
        "train-head", help="fit a few-shot head on frozen face features (DATA/<class>/<file>)"
    )
    head.add_argument("data", type=Path, help="folder with one subfolder of clips or images per class")
    head.add_argument("--out", required=True, type=Path, metavar="FILE", help="head file to write")
    head.add_argument("--features", default="fused", choices=["emotion", "fused"], help="(default: fused)")
    head.add_argument(
        "--classifier", default="logreg", choices=["logreg", "linearsvc"], help="(default: logreg)"
    )
    head.add_argument("--overwrite", action="store_true", help="replace an existing head file")
    _add_extract_args(head)
    head.set_defaults(func=cmd_train_head)


def _add_extract_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=1, metavar="N", help="clips processed in parallel")
    p.add_argument("--cache-dir", type=Path, help="feature cache (default: $EMOSTREAM_CACHE_DIR/features)")
    _add_analyzer_args(p)


def _clip_bar(desc: str):
    """A tqdm bar over clips (stderr, only on a terminal) and the on_clip callback that advances it."""
    from tqdm import tqdm

    bar = tqdm(unit="clip", disable=not sys.stderr.isatty(), desc=desc)
    return bar, lambda path, status: bar.update(1)


def _warn_unreadable(names: list, what: str, also: str = "") -> int:
    """One warning line for what could not be read (and `also`, more partial losses); exit code 3 if any."""
    if not names and not also:
        return 0
    parts = []
    if names:
        first = names[0]["error"] if isinstance(names[0], dict) else names[0]
        parts.append(f"{len(names)} {what} could not be read (first: {first})")
    if also:
        parts.append(also.lstrip("; "))
    print(f"emostream: warning: {'; '.join(parts)}", file=sys.stderr)
    return EXIT_PARTIAL


def cmd_score(args: argparse.Namespace) -> int:
    from pipeline.score import ScoreJob, score

    if args.workers < 1:
        raise _usage(f"--workers must be >= 1, got {args.workers}")
    job = ScoreJob(
        dataset=args.dataset,
        protocol=args.protocol,
        eval_split=args.eval,
        out_dir=args.out,
        train_split=args.train,
        features=args.features,
        classifier=args.classifier,
        model=args.model,
        workers=args.workers,
        cache_dir=args.cache_dir,
        analyzer=_analyzer_config(args),
        overwrite=args.overwrite,
    )
    bar, on_clip = _clip_bar("clips")
    with bar:
        m = score(job, on_clip=on_clip)
    c, ex = m["counts"], m["extraction"]
    result = (
        "no labels to score"
        if m["accuracy"] is None
        else (f"accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}")
    )
    print(
        f"{m['protocol']} {m['eval_split']}: {result} over {c['eval_clips']} clips "
        f"({len(m['no_face_clips']['eval'])} without a face, {c['eval_clips'] - c['eval_with_faces']} "
        f"on the fallback); features {ex['cached']} cached, {ex['extracted']} extracted -> {args.out}"
    )
    partial = m["partly_decoded_clips"]
    also = f"; {len(partial)} clips only partly readable (first: {partial[0]})" if partial else ""
    return _warn_unreadable(m["unreadable_clips"]["eval"] + m["unreadable_clips"]["train"], "clips", also)


def cmd_train_head(args: argparse.Namespace) -> int:
    from pipeline.fewshot import train_head

    if args.workers < 1:
        raise _usage(f"--workers must be >= 1, got {args.workers}")
    bar, on_clip = _clip_bar("clips")
    with bar:
        r = train_head(
            args.data,
            args.out,
            feature_set=args.features,
            classifier=args.classifier,
            analyzer=_analyzer_config(args),
            workers=args.workers,
            cache_dir=args.cache_dir,
            on_clip=on_clip,
            overwrite=args.overwrite,
        )
    per_class = ", ".join(f"{k} {v}" for k, v in r["items_per_class"].items())
    print(
        f"head over {len(r['classes'])} classes ({per_class}) from {r['face_rows']} face rows: "
        f"{r['cv_folds']}-fold cross-validated accuracy {r['cv_face_accuracy']:.3f} per face, "
        f"{r['cv_clip_accuracy']:.3f} per clip -> {args.out}"
    )
    return _warn_unreadable(r["unreadable"], "files")


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
    finally:  # the outputs are final now: a late Ctrl-C must not turn the exit code into a signal death
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())

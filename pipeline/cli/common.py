"""What every subcommand shares: exit codes, the usage error, and the analyzer's options.

Choices are read from the registries that define them (detectors, qualities, heads, backends), all light
modules, so building the parser loads no engine. Nothing here prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engines.backends import BACKEND_CHOICES
from engines.errors import EmostreamError
from engines.nets.heads import DEFAULT_HEADS, DEFAULT_QUALITY, QUALITIES, QUALITY_HELP, head_names
from pipeline.config import DETECTOR_MODELS, MIN_FACE_PX, AnalyzerConfig
from pipeline.distributed.engine import ENGINES, LOCAL, RAY_INSTALL_HINT

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


class UsageError(EmostreamError):
    """A bad option value: one line on stderr and exit code 2, like any EmostreamError."""


DASH_HINT = "a file name that starts with '-' goes after '--', e.g. emostream run --out DIR -- -name.mp4"


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2 (argparse prints the
    whole usage, 3-8 lines). Subcommand parsers are of the same class, so the rule holds everywhere."""

    _args: list[str] = []  # noqa: RUF012  (per instance once parsed; the class default is "none seen")

    def parse_known_args(self, args=None, namespace=None):
        self._args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):  # type: ignore[override]
        line = f"emostream: error: {' '.join(message.split())}"
        if self._dash_file_name(message):
            line += f" ({DASH_HINT})"
        else:
            line += f" (see '{self.prog} --help')"
        print(line, file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    def _dash_file_name(self, message: str) -> bool:
        """An argument starting with '-' that is no option here but a file, or a positional is missing."""
        options = self._option_string_actions
        unknown = [a for a in self._args if a.startswith("-") and a != "-" and a.split("=")[0] not in options]
        if "unrecognized arguments" in message:
            return any(os.path.exists(a) for a in unknown)
        missing = "the following arguments are required" in message
        return missing and any(os.path.exists(a) or "." in a for a in unknown)


def pixel_count(text: str) -> int:
    """--max-pixels: a pixel count, plain (100000000) or in megapixels (100M, 100MP)."""
    t = text.strip().upper().removesuffix("P")
    try:
        n = float(t[:-1]) * 1e6 if t.endswith("M") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a pixel count such as 100M, got {text!r}") from None
    if not n >= 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 pixel, got {text!r}")
    return int(n)


def add_input_args(p: argparse.ArgumentParser) -> None:
    """--max-pixels and --timeout: the limits a hostile input meets before it costs memory or time."""
    p.add_argument(
        "--max-pixels",
        type=pixel_count,
        default=100_000_000,
        metavar="N",
        help="pixel budget of a still image, checked from its header before decoding: a larger JPEG is "
        "decoded at 1/2, 1/4 or 1/8 size, any other larger image refused (default 100M)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a network stream, FIFO or device may take to open or to deliver data (default 10)",
    )


def check_timeout(args: argparse.Namespace) -> float:
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be > 0, got {args.timeout}")
    return args.timeout


def add_engine_args(p: argparse.ArgumentParser, unit: str, workers_help: str) -> None:
    """--engine, --ray-address and --workers: where the `unit`s (videos, clips) run (docs/distributed.md)."""
    p.add_argument(
        "--engine",
        default=LOCAL,
        choices=ENGINES,
        help=f"local: this machine; ray: a Ray cluster, one {unit} per worker from start to end "
        f"({RAY_INSTALL_HINT}; docs/distributed.md) (default: local)",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --engine ray, the cluster to join: auto (the one started on this machine with "
        "'ray start'), HOST:PORT or ray://HOST:10001 (default: $RAY_ADDRESS, else a new Ray instance here)",
    )
    p.add_argument("--workers", type=int, metavar="N", help=workers_help)


def engine_args(args: argparse.Namespace):
    """The distributed engine the engine options name (None for local); Ray is imported only for ray."""
    from pipeline.distributed.engine import distributed_engine

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.ray_address is not None and args.engine != "ray":
        raise UsageError("--ray-address needs --engine ray")
    return distributed_engine(
        args.engine, address=args.ray_address, workers=args.workers, backend=args.backend
    )


def split_list(text: str) -> list[str]:
    """The non-empty items of a comma-separated option value."""
    return [part.strip() for part in text.split(",") if part.strip()]


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", help="read-only model mirror folder (default: $EMOSTREAM_MODELS_DIR)")


def add_analyzer_args(p: argparse.ArgumentParser) -> None:
    """--models-dir, --detector, --detect-every, --min-face, --heads, --quality, --backend."""
    add_model_args(p)
    p.add_argument("--detector", default="yunet", choices=list(DETECTOR_MODELS))
    p.add_argument(
        "--detect-every",
        type=int,
        default=3,
        metavar="N",
        help="detect on every Nth frame, the tracker predicts boxes between (default 3; 1 = every frame)",
    )
    p.add_argument(
        "--min-face",
        type=int,
        default=MIN_FACE_PX,
        metavar="PX",
        help=f"faces with a shorter box side are tracked and drawn but not inferred (default {MIN_FACE_PX})",
    )
    p.add_argument(
        "--heads",
        default=",".join(DEFAULT_HEADS),
        help=f"comma-separated head set from {', '.join(_head_choices())} "
        f"(default: {','.join(DEFAULT_HEADS)})",
    )
    p.add_argument("--quality", default=DEFAULT_QUALITY, choices=list(QUALITIES), help=QUALITY_HELP)
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKEND_CHOICES,
        help="inference backend; auto picks tensorrt, then torch on CUDA, then onnxruntime (default: auto)",
    )


def _head_choices() -> list[str]:
    """Every head name, the default set first in its order."""
    return [*DEFAULT_HEADS, *(h for h in head_names() if h not in DEFAULT_HEADS)]


def analyzer_config(args: argparse.Namespace) -> AnalyzerConfig:
    """The AnalyzerConfig that the analyzer options in `args` describe."""
    if args.detect_every < 1:
        raise UsageError(f"--detect-every must be >= 1, got {args.detect_every}")
    if getattr(args, "min_face", 0) < 0:
        raise UsageError(f"--min-face must be >= 0, got {args.min_face}")
    return AnalyzerConfig(
        detector=args.detector,
        detect_every=args.detect_every,
        heads=tuple(split_list(args.heads)),
        quality=args.quality,
        backend=args.backend,
        models_dir=args.models_dir,
        extra_head=getattr(args, "head", None),
        min_face_px=getattr(args, "min_face", MIN_FACE_PX),
    )


def offline_job(args: argparse.Namespace, input_path: str, out: Path):
    """The OfflineJob that `run`'s options describe, for one input into `out`."""
    from pipeline.runtime.offline import OfflineJob

    if args.start is not None and args.start < 0:
        raise UsageError(f"--start must be >= 0 seconds, got {args.start}")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise UsageError(f"--end ({args.end}) must be after --start ({args.start})")
    return OfflineJob(
        input=input_path,
        out_dir=out,
        analyzer=analyzer_config(args),
        write_video=not args.no_video,
        overwrite=args.overwrite,
        audio=not args.no_audio,
        start_s=args.start,
        end_s=args.end,
        max_pixels=args.max_pixels,
        timeout_s=check_timeout(args),
    )

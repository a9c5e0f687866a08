"""`emostream build-engine` and `emostream bench`: GPU engines and backend throughput."""

from __future__ import annotations

import argparse

from engines.backends import BACKEND_CHOICES, PRECISIONS
from engines.nets.heads import DEFAULT_QUALITY, QUALITIES, QUALITY_HELP
from pipeline.cli.common import (
    UsageError,
    add_model_args,
    split_list,
)


def add_gpu_parsers(sub) -> None:
    """`build-engine` and `bench`: the per-face net on its backends (see docs/gpu.md)."""
    build = sub.add_parser("build-engine", help="build (or find cached) the TensorRT engine of the net")
    _add_net_args(build)
    build.add_argument("--precision", default="fp16", choices=list(PRECISIONS), help="(default: fp16)")
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
    add_model_args(p)
    p.add_argument("--heads", default=None, help="comma-separated head set (default: as for run)")
    p.add_argument("--quality", default=DEFAULT_QUALITY, choices=list(QUALITIES), help=QUALITY_HELP)


def _net_config(args: argparse.Namespace):
    from engines.multitask import NetConfig
    from pipeline.config import AnalyzerConfig

    heads = tuple(split_list(args.heads)) if args.heads is not None else AnalyzerConfig().heads
    return NetConfig(heads=heads, quality=args.quality)


def cmd_build_engine(args: argparse.Namespace) -> int:
    import json

    from engines.backends.tensorrt.engine import BuildOptions
    from engines.multitask import MultiTaskNet
    from engines.store.store import ModelStore

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
    from engines.store.store import ModelStore

    names = split_list(args.backend)
    unknown = [n for n in names if n not in BACKEND_CHOICES]
    if not names or unknown:
        wrong = ", ".join(unknown) or "empty list"
        raise UsageError(f"--backend: unknown {wrong}; valid: {', '.join(BACKEND_CHOICES)}")
    try:
        batches = [int(b) for b in split_list(args.batches)]
    except ValueError:
        raise UsageError(f"--batches must be comma-separated whole numbers, got {args.batches!r}") from None
    if not batches or min(batches) < 1 or args.runs < 1:
        raise UsageError(f"--batches and --runs must be >= 1, got {args.batches!r} and {args.runs}")
    config, store = _net_config(args), ModelStore(mirror_dir=args.models_dir)
    nets = [MultiTaskNet(config, store, name) for name in names]
    print(markdown_table(run_bench(nets, batches, args.runs)))
    return 0

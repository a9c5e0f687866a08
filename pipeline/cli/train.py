"""`emostream train` and `emostream evaluate`: the project's own multi-task net, trained and measured."""

from __future__ import annotations

import argparse
from pathlib import Path

from engines.nets.heads import DEFAULT_QUALITY, QUALITIES
from pipeline.cli.common import UsageError, add_model_args, split_list


def add_train_parsers(sub) -> None:
    train = sub.add_parser("train", help="train the multi-task face net on FER+ and UTKFace (resumable)")
    train.add_argument("data", type=Path, help="folder holding ferplus/ and utkface/ (their release layouts)")
    train.add_argument("--out", required=True, type=Path, help="run folder: metrics.csv, last.pt, final.pt")
    train.add_argument("--epochs", type=int, default=96, help="(default: 96, the release run)")
    train.add_argument("--resume", action="store_true", help="continue from the run folder's last epoch")
    train.add_argument(
        "--device", default="cpu", help="torch device: cpu (default) or cuda[:N]; same random stream on each"
    )
    train.add_argument("--teacher", type=Path, metavar="PT", help="distil a trained net (a run's final.pt)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest on 2 cores)")
    train.add_argument(
        "--utk-per-epoch", type=float, default=0.6, help="UTKFace share per epoch (default 0.6)"
    )
    train.add_argument(
        "--jigsaw",
        type=float,
        default=0.0,
        metavar="W",
        help="also train a self-supervised jigsaw task with loss weight W (default 0: off, the release run)",
    )
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="accuracy of the per-face net on FER+, FER2013 or UTKFace")
    ev.add_argument(
        "path", type=Path, help="the dataset folder (FER+ split folders, FER2013 classes, UTKFace)"
    )
    ev.add_argument("--dataset", required=True, choices=["ferplus", "fer2013", "utkface"])
    ev.add_argument("--out", required=True, type=Path, help="output folder: metrics.json, confusion.png")
    ev.add_argument(
        "--quality",
        default=DEFAULT_QUALITY,
        help=f"comma-separated qualities from {', '.join(QUALITIES)}, compared in one run (default: mtl)",
    )
    ev.add_argument("--crops", action="store_true", help="each image is the face crop (no detector)")
    ev.add_argument("--split", help="FER+: valid (default), train, test; UTKFace: val (default) or all")
    ev.add_argument(
        "--limit", type=int, metavar="N", help="N faces only (FER: the first N; UTKFace: evenly spaced)"
    )
    ev.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in --out")
    add_model_args(ev)
    ev.set_defaults(func=cmd_evaluate)


def cmd_train(args: argparse.Namespace) -> int:
    """Runs the trainer in this process, so its errors are the CLI's one-line `emostream: error:` ones."""
    import sys

    from engines.training.train import parse_args, train

    argv = ["--data", str(args.data), "--out", str(args.out), "--epochs", str(args.epochs)]
    argv += ["--seed", str(args.seed), "--threads", str(args.threads)]
    argv += ["--utk-per-epoch", str(args.utk_per_epoch), "--jigsaw", str(args.jigsaw)]
    argv += ["--device", args.device]
    argv += ["--teacher", str(args.teacher)] if args.teacher else []
    try:
        train(parse_args([*argv, "--resume"] if args.resume else argv))
    except KeyboardInterrupt:
        resume = f"emostream: continue from the last finished epoch with --resume --out {args.out}"
        print(resume, file=sys.stderr)
        raise
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.scoring.evaluate import EvalJob, evaluate, summary_line

    qualities = tuple(split_list(args.quality))
    unknown = [q for q in qualities if q not in QUALITIES]
    if not qualities or unknown:
        raise UsageError(
            f"--quality: unknown {', '.join(unknown) or 'empty list'}; valid: {', '.join(QUALITIES)}"
        )
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    job = EvalJob(
        args.dataset, args.path, args.out, qualities, args.crops, args.split, args.limit,
        args.models_dir, overwrite=args.overwrite,
    )  # fmt: skip
    print(summary_line(evaluate(job)))
    return 0

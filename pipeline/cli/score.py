"""`emostream score` and `emostream train-head`: clip scoring and few-shot heads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.common import (
    EXIT_PARTIAL,
    add_analyzer_args,
    add_engine_args,
    analyzer_config,
    engine_args,
)
from pipeline.scoring.names import CLASSIFIERS, HEAD_CLASSIFIERS, PROTOCOLS
from pipeline.stages.head import FEATURE_SETS


def add_score_parsers(sub) -> None:
    """`score` and `train-head`: EmotiW-style clip scoring and few-shot heads (see docs/emotiw.md)."""
    score = sub.add_parser(
        "score", help="score clips EmotiW-style (AFEW / VGAF): features, classifier, metrics"
    )
    score.add_argument("dataset", type=Path, help="dataset folder (layouts: docs/emotiw.md)")
    score.add_argument("--protocol", required=True, choices=list(PROTOCOLS))
    score.add_argument(
        "--train", metavar="SPLIT", help="split to train on (not needed with --model or zeroshot)"
    )
    score.add_argument(
        "--eval", required=True, metavar="SPLIT", help="split to predict (and score if labelled)"
    )
    score.add_argument("--features", default="fused", choices=list(FEATURE_SETS), help="(default: fused)")
    score.add_argument("--classifier", default="linearsvc", choices=list(CLASSIFIERS))
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
    head.add_argument("--features", default="fused", choices=list(FEATURE_SETS), help="(default: fused)")
    head.add_argument(
        "--classifier", default="logreg", choices=list(HEAD_CLASSIFIERS), help="(default: logreg)"
    )
    head.add_argument("--overwrite", action="store_true", help="replace an existing head file")
    _add_extract_args(head)
    head.set_defaults(func=cmd_train_head)


def _add_extract_args(p: argparse.ArgumentParser) -> None:
    add_engine_args(
        p,
        "clip",
        "clips processed in parallel: worker processes here (default 1), or Ray workers with --engine ray "
        "(default: one per CPU of the cluster)",
    )
    p.add_argument("--cache-dir", type=Path, help="feature cache (default: $EMOSTREAM_CACHE_DIR/features)")
    add_analyzer_args(p)


def _workers(args: argparse.Namespace) -> int | None:
    """--workers as given; unset: 1 process here, or (None) one Ray worker per CPU of the cluster."""
    return args.workers if args.workers is not None or args.engine == "ray" else 1


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
    from pipeline.scoring.job import ScoreJob
    from pipeline.scoring.score import score

    engine_args(args)  # bad engine options (a missing Ray too) are one line before anything is read
    job = ScoreJob(
        dataset=args.dataset,
        protocol=args.protocol,
        eval_split=args.eval,
        out_dir=args.out,
        train_split=args.train,
        features=args.features,
        classifier=args.classifier,
        model=args.model,
        workers=_workers(args),
        cache_dir=args.cache_dir,
        analyzer=analyzer_config(args),
        overwrite=args.overwrite,
        engine=args.engine,
        ray_address=args.ray_address,
    )
    bar, on_clip = _clip_bar("clips")
    with bar:
        m = score(job, on_clip=on_clip)
    c, ex = m["counts"], m["extraction"]
    result = (
        "no labels to score"
        if m["accuracy"] is None
        else (f"accuracy {m['accuracy']:.3f}, UAR {m['uar']:.3f}, macro F1 {m['macro_f1']:.3f}")
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
    from pipeline.scoring.fewshot import train_head

    engine_args(args)  # bad engine options (a missing Ray too) are one line before anything is read
    bar, on_clip = _clip_bar("clips")
    with bar:
        r = train_head(
            args.data,
            args.out,
            feature_set=args.features,
            classifier=args.classifier,
            analyzer=analyzer_config(args),
            workers=_workers(args),
            cache_dir=args.cache_dir,
            on_clip=on_clip,
            overwrite=args.overwrite,
            engine=args.engine,
            ray_address=args.ray_address,
        )
    per_class = ", ".join(f"{k} {v}" for k, v in r["items_per_class"].items())
    print(
        f"head over {len(r['classes'])} classes ({per_class}) from {r['face_rows']} face rows: "
        f"{r['cv_folds']}-fold cross-validated accuracy {r['cv_face_accuracy']:.3f} per face, "
        f"{r['cv_clip_accuracy']:.3f} per clip -> {args.out}"
    )
    return _warn_unreadable(r["unreadable"], "files")

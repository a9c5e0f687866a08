"""Few-shot heads: a linear classifier on the frozen per-face features, trained from a folder per class.

`train_head(DATA, FILE)` reads DATA/<class>/<clip or image>, extracts features with the real pipeline
(the same cache as `score`), and trains on one row per face-frame: the main track of a clip (longest),
the largest face of an image. Cross-validation is stratified and grouped by content (the sha256 of the
file's bytes), so frames of one clip, or two copies of one file, never sit on both sides (k = min(5,
distinct clips in the smallest class)); one file's bytes under two classes is refused.
The saved head is applied at inference time by `pipeline.stages.head` (`run --head FILE`).
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from engines.errors import EmostreamError
from pipeline.config import AnalyzerConfig
from pipeline.distributed.engine import distributed_engine
from pipeline.errors import InputError
from pipeline.io.bundles import save_bundle
from pipeline.scoring.features import OnClip, extract_features
from pipeline.scoring.names import HEAD_CLASSIFIERS
from pipeline.stages.head import HEAD_KIND, NET_KEYS, face_features, probabilities


def train_head(
    data: str | Path,
    out_file: str | Path,
    *,
    feature_set: str = "fused",
    classifier: str = "logreg",
    analyzer: AnalyzerConfig | None = None,
    workers: int | None = 1,
    cache_dir: Path | None = None,
    on_clip: OnClip | None = None,
    overwrite: bool = False,
    engine: str = "local",
    ray_address: str | None = None,
) -> dict:
    """Fit, cross-validate and save a head; returns the report (also stored in the file). `engine`
    (pipeline/distributed: local or ray) extracts the features, `workers` of them (None on ray: one per
    CPU of the cluster)."""
    from pipeline.scoring.datasets import read_class_folders
    from pipeline.scoring.score import make_classifier

    if classifier not in HEAD_CLASSIFIERS:
        raise EmostreamError(f"unknown head classifier {classifier!r}; valid: {', '.join(HEAD_CLASSIFIERS)}")
    from pipeline.errors import OutputError

    if Path(out_file).exists() and not overwrite:
        raise OutputError(f"--out {out_file}: already exists; choose another name or pass --overwrite")
    analyzer = analyzer or AnalyzerConfig()
    spread = distributed_engine(engine, address=ray_address, workers=workers, backend=analyzer.backend)
    split = read_class_folders(data)
    ex = extract_features(
        [c.path for c in split.clips],
        analyzer,
        workers=workers or 1,
        cache_dir=cache_dir,
        on_clip=on_clip,
        engine=spread,
    )
    X, y, groups, skipped = _face_rows(split.clips, ex, feature_set)
    folds = _folds(Counter(y[np.unique(groups, return_index=True)[1]]), Path(data))
    pipeline = make_classifier(classifier)
    cv = _cross_validate(pipeline, X, y, groups, folds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(X, y)
    report = {
        "data": str(data),
        "classes": [str(c) for c in pipeline.classes_],
        "feature_set": feature_set,
        "classifier": classifier,
        "feature_dim": int(X.shape[1]),
        "face_rows": len(y),
        "items_per_class": dict(Counter(y[np.unique(groups, return_index=True)[1]])),
        **cv,
        **skipped,
    }
    bundle = {
        "kind": HEAD_KIND,
        "version": 1,
        "pipeline": pipeline,
        "report": report,
        "net": {k: ex.model_set[k] for k in NET_KEYS},
    }
    save_bundle(bundle, Path(out_file), "head")
    return report


def _face_rows(clips, ex, feature_set: str):
    """(X, y, group per row, skipped items) from the main track of each clip / largest face of each image;
    the group is the file's content, so copies of one file share it."""
    from pipeline.scoring.score import main_track_rows

    xs, ys, gs = [], [], []
    skipped: dict[str, list] = {"no_face": [], "unreadable": []}
    group_of: dict[str, tuple[int, object]] = {}  # sha256 -> (group, the first clip with those bytes)
    for clip in clips:
        cf = ex.features.get(clip.path)
        if cf is None or not len(cf):
            skipped["unreadable" if cf is None else "no_face"].append(clip.name)
            continue
        group, first = group_of.setdefault(ex.digests[clip.path], (len(group_of), clip))
        if first.label != clip.label:
            raise InputError(
                f"{clip.path}: the same file as {first.path} but in class {clip.label!r}, not "
                f"{first.label!r}; keep it in one class"
            )
        rows = main_track_rows(cf)
        xs.append(face_features({k: v[rows] for k, v in cf.outputs.items()}, feature_set))
        ys += [clip.label] * len(rows)
        gs += [group] * len(rows)
    if not xs:
        raise InputError("no face found in any clip or image of the data folder")
    return np.concatenate(xs), np.asarray(ys), np.asarray(gs), skipped


def _folds(items_per_class: Counter, data: Path) -> int:
    if len(items_per_class) < 2:
        raise InputError(f"{data}: needs at least 2 classes with faces, found {dict(items_per_class)}")
    k = min(5, min(items_per_class.values()))
    if k < 2:
        raise InputError(
            f"{data}: every class needs at least 2 clips or images with a face for cross-validation, "
            f"found {dict(items_per_class)}"
        )
    return k


def _cross_validate(pipeline, X, y, groups, k: int) -> dict:
    """Stratified, clip-grouped k-fold: accuracy per face row and per clip (mean probability vote)."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedGroupKFold

    from pipeline.scoring.score import SEED

    face_hits, clip_hits = [], []
    for train, test in StratifiedGroupKFold(k, shuffle=True, random_state=SEED).split(X, y, groups):
        model = clone(pipeline)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X[train], y[train])
        probs = probabilities(model, X[test])
        pred = model.classes_[probs.argmax(1)]
        face_hits += list(pred == y[test])
        for g in np.unique(groups[test]):
            rows = groups[test] == g
            clip_hits.append(model.classes_[probs[rows].mean(0).argmax()] == y[test][rows][0])
    return {
        "cv_folds": k,
        "cv_face_accuracy": float(np.mean(face_hits)),
        "cv_clip_accuracy": float(np.mean(clip_hits)),
    }

"""EmotiW-style clip scoring: per-face features -> one vector per clip -> a classifier -> metrics and files.

Protocols (Savchenko 2021 recipe): AFEW takes the clip's main track (the longest; ties go to the larger
face), its per-frame features -> mean, std, min, max -> L2 normalised. VGAF takes every face: per frame
mean and std over the faces, then mean and std of those over the frames. Classifiers are scikit-learn
pipelines (StandardScaler + model, seed 0); "zeroshot" trains nothing: the clip's mean emotion
probabilities (AFEW: main track; VGAF: per-frame face mean, then frame mean) summed into the protocol's
classes by `ZERO_SHOT_MAP`, highest wins.

Fallback: a clip with no face (or that cannot be read) still gets a prediction: the training set's
majority class among clips with faces (ties: protocol order); for zeroshot, "Neutral". It is counted in
the metrics as predicted, so accuracy is over every labelled eval clip.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from engines.errors import EmostreamError
from pipeline.distributed.engine import distributed_engine
from pipeline.errors import InputError
from pipeline.frames import EMOTIONS, UNTRACKED
from pipeline.io.outlock import prepare_out_dir
from pipeline.scoring.clip_features import ClipFeatures
from pipeline.scoring.datasets import Clip, read_split
from pipeline.scoring.features import ExtractResult, OnClip, extract_features
from pipeline.scoring.job import ClipRow, ScoreJob
from pipeline.scoring.names import AFEW_CLASSES, CLASSIFIERS, PROTOCOL_CLASSES
from pipeline.scoring.report import (
    CLASSIFIER_KIND,
    CLASSIFIER_VERSION,
    SCORE_OUTPUTS,
    build_metrics,
    check_model_set,
    load_classifier,
    write_outputs,
)
from pipeline.stages.aggregate import clip_statistics, group_clip_statistics, l2_normalize
from pipeline.stages.head import face_features

SEED = 0
ZERO_SHOT_FALLBACK = "Neutral"
ZERO_SHOT_MAP: dict[str, dict[str, tuple[str, ...]]] = {
    "afew": {c: (c.lower(),) for c in AFEW_CLASSES},
    "vgaf": {
        "Positive": ("happy", "surprise"),
        "Neutral": ("neutral",),
        "Negative": ("angry", "disgust", "fear", "sad"),
    },
}
"""Protocol class -> the FER2013 emotions whose probabilities it sums (surprise counts as positive)."""


def main_track_rows(cf: ClipFeatures) -> np.ndarray:
    """Row indices of the longest track in frame order (ties: larger mean box); untracked rows if no track."""
    tracked = cf.track_id != UNTRACKED
    if not tracked.any():
        return np.flatnonzero(~tracked)
    area = np.prod(cf.xyxy[:, 2:] - cf.xyxy[:, :2], axis=1)
    ids = np.unique(cf.track_id[tracked])
    best = max(ids, key=lambda t: (np.sum(cf.track_id == t), area[cf.track_id == t].mean(), -t))
    rows = np.flatnonzero(cf.track_id == best)
    return rows[np.argsort(cf.frame[rows], kind="stable")]


def faces_per_frame(cf: ClipFeatures, values: np.ndarray) -> list[np.ndarray]:
    """`values` rows grouped by frame, in frame order (frames without a face are absent)."""
    order = np.argsort(cf.frame, kind="stable")
    frames, starts = np.unique(cf.frame[order], return_index=True)
    return np.split(values[order], starts[1:]) if len(frames) else []


def clip_vector(cf: ClipFeatures, protocol: str, feature_set: str) -> tuple[np.ndarray | None, int]:
    """(the clip's feature vector, face rows used); (None, 0) when the clip has no face."""
    if not len(cf):
        return None, 0
    if protocol == "afew":
        rows = main_track_rows(cf)
        stats = clip_statistics(face_features(_rows(cf, rows), feature_set))
        return l2_normalize(stats), len(rows)
    per_frame = faces_per_frame(cf, face_features(cf.outputs, feature_set))
    return group_clip_statistics(per_frame), len(cf)


def zero_shot_probs(cf: ClipFeatures, protocol: str) -> np.ndarray | None:
    """(K,) protocol-class scores from the clip's mean emotion probabilities; None without a face."""
    if not len(cf):
        return None
    emotion = np.asarray(cf.outputs["emotion"], np.float64)
    if protocol == "afew":
        mean = emotion[main_track_rows(cf)].mean(0)
    else:
        mean = np.mean([f.mean(0) for f in faces_per_frame(cf, emotion)], axis=0)
    index = {e: i for i, e in enumerate(EMOTIONS)}
    mapping = ZERO_SHOT_MAP[protocol]
    return np.array([sum(mean[index[e]] for e in mapping[c]) for c in PROTOCOL_CLASSES[protocol]])


def make_classifier(name: str):
    """A StandardScaler + model pipeline with a fixed seed."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    models = {
        "linearsvc": lambda: LinearSVC(C=1.0, max_iter=20000, random_state=SEED),
        "logreg": lambda: LogisticRegression(C=1.0, max_iter=5000, random_state=SEED),
        "svc-rbf": lambda: SVC(kernel="rbf", C=1.0, gamma="scale", random_state=SEED),
        "mlp": lambda: MLPClassifier((128,), alpha=1e-3, max_iter=2000, random_state=SEED),
    }
    if name not in models:
        raise EmostreamError(f"unknown classifier {name!r}; valid: {', '.join(CLASSIFIERS)}")
    return make_pipeline(StandardScaler(), models[name]())


def score(job: ScoreJob, on_clip: OnClip | None = None) -> dict:
    """Extract (cached), train or load, predict, and write metrics.json, predictions.csv, confusion.png
    and classifier.joblib into `job.out_dir`; returns the metrics. Every input (the saved classifier, both
    splits) is checked before `out_dir` is touched, and earlier outputs there are only replaced, one by
    one, by the new ones: a bad input or a failed run leaves an earlier run's outputs as they were."""
    from pipeline.config import model_set

    bundle = load_classifier(job.model) if job.model is not None else None
    if bundle is not None:
        job = _job_from_bundle(job, bundle)
        check_model_set(job.model, bundle["model_set"], model_set(job.analyzer))
    _check_job(job)
    engine = distributed_engine(
        job.engine, address=job.ray_address, workers=job.workers, backend=job.analyzer.backend
    )
    train_split = None
    if bundle is None and job.classifier != "zeroshot":
        train_split = read_split(job.dataset, job.protocol, job.train_split)
        if not train_split.labelled:
            raise InputError(f"{train_split.root}: train split {job.train_split!r} has no labels")
    eval_split = read_split(job.dataset, job.protocol, job.eval_split)
    out = prepare_out_dir(job.out_dir, job.overwrite, SCORE_OUTPUTS, remove_earlier=False)
    clips = [*(train_split.clips if train_split else ()), *eval_split.clips]
    extracted = extract_features(
        [c.path for c in clips],
        job.analyzer,
        workers=job.workers or 1,
        cache_dir=job.cache_dir,
        on_clip=on_clip,
        engine=engine,
    )
    train = _rows_of(train_split.clips, extracted, job) if train_split else []
    evaluated = _rows_of(eval_split.clips, extracted, job)
    bundle = bundle or _fit(train, job, extracted.model_set)
    _predict(evaluated, bundle, job.protocol)
    metrics = build_metrics(job, bundle, train, evaluated, extracted)
    write_outputs(out, metrics, evaluated, bundle)
    return metrics


def _job_from_bundle(job: ScoreJob, bundle: dict) -> ScoreJob:
    if job.protocol != bundle["protocol"]:
        raise InputError(
            f"{job.model}: classifier was trained for protocol {bundle['protocol']!r}, not {job.protocol!r}"
        )
    ms = bundle["model_set"]
    analyzer = dataclasses.replace(
        job.analyzer,
        heads=tuple(ms["heads"]),
        quality=ms["quality"],
        detector=ms["detector"],
        detect_every=ms["detect_every"],
        coarse_detection=ms["coarse_detection"],
    )
    return dataclasses.replace(
        job, features=bundle["features"], classifier=bundle["classifier"], analyzer=analyzer
    )


def _check_job(job: ScoreJob) -> None:
    from pipeline.stages.head import FEATURE_SETS

    if job.protocol not in PROTOCOL_CLASSES:
        raise InputError(f"unknown protocol {job.protocol!r}; valid: {', '.join(PROTOCOL_CLASSES)}")
    if job.classifier not in CLASSIFIERS:
        raise EmostreamError(f"unknown classifier {job.classifier!r}; valid: {', '.join(CLASSIFIERS)}")
    if job.features not in FEATURE_SETS:
        raise EmostreamError(f"unknown feature set {job.features!r}; valid: {', '.join(FEATURE_SETS)}")
    if job.model is None and job.classifier != "zeroshot" and not job.train_split:
        raise EmostreamError(f"classifier {job.classifier!r} needs --train SPLIT (or --model FILE)")
    if job.workers is not None and job.workers < 1:
        raise EmostreamError(f"--workers must be >= 1, got {job.workers}")
    if job.train_split and _same_split(job.dataset, job.train_split, job.eval_split):
        raise InputError(
            f"--train and --eval name the same split {job.eval_split!r} of {job.dataset}: scores on the "
            "training clips say nothing; evaluate on another split"
        )


def _same_split(dataset: Path, a: str, b: str) -> bool:
    """Whether split names `a` and `b` are one folder (same name, or spelled differently: `Val/`, `./Val`)."""
    if a == b:
        return True
    first, second = Path(dataset) / a, Path(dataset) / b
    try:
        return first.exists() and second.exists() and first.samefile(second)
    except OSError:
        return False


def _rows_of(clips: tuple[Clip, ...], extracted: ExtractResult, job: ScoreJob) -> list[ClipRow]:
    rows = []
    for clip in clips:
        cf = extracted.features.get(clip.path)
        if cf is None:
            rows.append(ClipRow(clip, "unreadable", error=extracted.failed.get(clip.path, "not extracted")))
            continue
        features = "emotion" if job.classifier == "zeroshot" else job.features
        vector, used = clip_vector(cf, job.protocol, features)
        if job.classifier == "zeroshot":
            vector = zero_shot_probs(cf, job.protocol)
        rows.append(ClipRow(clip, "ok" if vector is not None else "no_face", vector, used, cf.frames))
    return rows


def _fit(train: list[ClipRow], job: ScoreJob, ms: dict) -> dict:
    """The classifier bundle: fitted pipeline (None for zeroshot), classes, fallback, feature config."""
    base = {
        "kind": CLASSIFIER_KIND,
        "version": CLASSIFIER_VERSION,
        "protocol": job.protocol,
        "features": job.features if job.classifier != "zeroshot" else "emotion",
        "classifier": job.classifier,
        "model_set": ms,
    }
    if job.classifier == "zeroshot":
        return {**base, "pipeline": None, "fallback": ZERO_SHOT_FALLBACK, "feature_dim": len(EMOTIONS)}
    used = [r for r in train if r.status == "ok" and r.clip.label is not None]
    counts = Counter(r.clip.label for r in used)
    if len(counts) < 2:
        raise InputError(
            f"train split {job.train_split!r}: needs labelled clips with faces from at least 2 classes, "
            f"found {dict(counts) or 'none'}"
        )
    order = PROTOCOL_CLASSES[job.protocol]
    fallback = max(counts, key=lambda c: (counts[c], -order.index(c)))
    pipeline = make_classifier(job.classifier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes on tiny sets; the seed makes runs repeatable
        pipeline.fit(np.stack([r.vector for r in used]), [r.clip.label for r in used])
    return {**base, "pipeline": pipeline, "fallback": fallback, "feature_dim": len(used[0].vector)}


def _predict(rows: list[ClipRow], bundle: dict, protocol: str) -> None:
    """Fill `predicted` (and `scores` where the model gives probabilities) for every row."""
    ok = [r for r in rows if r.status == "ok"]
    for r in rows:
        r.predicted = bundle["fallback"]
    if not ok:
        return
    X = np.stack([r.vector for r in ok])
    pipeline = bundle["pipeline"]
    if pipeline is None:
        classes = PROTOCOL_CLASSES[protocol]
        preds, probs = [classes[int(i)] for i in X.argmax(1)], X
    else:
        if X.shape[1] != bundle["feature_dim"]:
            raise EmostreamError(
                f"clip vectors have {X.shape[1]} features, the classifier {bundle['feature_dim']}"
            )
        preds = pipeline.predict(X)
        probs = pipeline.predict_proba(X) if hasattr(pipeline, "predict_proba") else None
    for i, r in enumerate(ok):
        r.predicted, r.scores = str(preds[i]), None if probs is None else probs[i]


def _rows(cf: ClipFeatures, index: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in cf.outputs.items()}

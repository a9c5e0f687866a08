"""What `emostream score` leaves behind: metrics.json, predictions.csv, confusion.png, classifier.joblib.

The classifier file is a joblib dict: the fitted scikit-learn pipeline (None for zeroshot), the protocol,
the feature set, the fallback class and the `model_set` its features came from; loading it with another
model set is refused, since its numbers would mean something else, and so is a file of another bundle
version or without the keys `score` reads (one line each, never a KeyError).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engines.files import atomic_path, write_atomic
from pipeline.errors import InputError
from pipeline.io.bundles import load_bundle, save_bundle
from pipeline.scoring.names import PROTOCOL_CLASSES

if TYPE_CHECKING:
    from pipeline.scoring.features import ExtractResult
    from pipeline.scoring.job import ClipRow, ScoreJob


def classification_metrics(y_true: list[str], y_pred: list[str], order: tuple[str, ...]) -> dict:
    """Accuracy; unweighted average recall (UAR: the mean of the per-class recalls, what imbalanced
    EmotiW-style sets are often reported with); macro F1 over every class that is true or predicted (a
    class predicted but absent from the split scores F1 0); recall per class present; confusion counts
    (rows true, columns predicted)."""
    import warnings

    from sklearn.metrics import confusion_matrix, f1_score, recall_score

    warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
    if not y_true:
        return {"accuracy": None, "uar": None, "macro_f1": None, "per_class_recall": {}, "confusion": None}
    present = [c for c in order if c in set(y_true)]
    shown = [c for c in order if c in set(y_true) | set(y_pred)]
    recall = recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    return {
        "accuracy": float(np.mean(np.asarray(y_true) == np.asarray(y_pred))),
        "uar": float(np.mean(recall)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=shown, average="macro", zero_division=0)),
        "per_class_recall": {c: float(r) for c, r in zip(present, recall, strict=True)},
        "confusion": {"labels": shown, "matrix": confusion_matrix(y_true, y_pred, labels=shown).tolist()},
    }


def build_metrics(
    job: ScoreJob, bundle: dict, train: list[ClipRow], evaluated: list[ClipRow], ex: ExtractResult
) -> dict:
    """Everything metrics.json holds: scores, counts, clips without faces or unreadable, the model set."""
    order = PROTOCOL_CLASSES[job.protocol]
    labelled = [r for r in evaluated if r.clip.label is not None]
    with_faces = [r for r in labelled if r.status == "ok"]
    rule = "zeroshot: Neutral" if bundle["pipeline"] is None else "training-set majority class"

    def by_status(rows, status):
        return [
            r.clip.name if status != "unreadable" else {"clip": r.clip.name, "error": r.error}
            for r in rows
            if r.status == status
        ]

    def per_class(labels):
        return {c: n for c in order if (n := sum(label == c for label in labels))}

    return {
        "protocol": job.protocol,
        "dataset": str(job.dataset),
        "train_split": None if job.model else job.train_split,
        "eval_split": job.eval_split,
        "classifier_from": str(job.model) if job.model else None,
        "features": bundle["features"],
        "classifier": bundle["classifier"],
        "feature_dim": bundle["feature_dim"],
        **classification_metrics([r.clip.label for r in labelled], [r.predicted for r in labelled], order),
        "accuracy_clips_with_faces": float(np.mean([r.clip.label == r.predicted for r in with_faces]))
        if with_faces
        else None,
        "counts": {
            "eval_clips": len(evaluated),
            "eval_labelled": len(labelled),
            "eval_with_faces": sum(r.status == "ok" for r in evaluated),
            "eval_per_class": per_class([r.clip.label for r in labelled]),
            "predicted_per_class": per_class([r.predicted for r in evaluated]),
            "train_clips": len(train),
            "train_used": sum(r.status == "ok" and r.clip.label is not None for r in train),
            "train_per_class": per_class([r.clip.label for r in train if r.status == "ok"]),
        },
        "no_face_clips": {"eval": by_status(evaluated, "no_face"), "train": by_status(train, "no_face")},
        "unreadable_clips": {
            "eval": by_status(evaluated, "unreadable"),
            "train": by_status(train, "unreadable"),
        },
        "partly_decoded_clips": [
            r.clip.name
            for r in (*train, *evaluated)
            if getattr(ex.features.get(r.clip.path), "decode_errors", 0)
        ],
        "fallback": {"class": bundle["fallback"], "rule": rule},
        "models": [{"name": n, "sha256": s} for n, s in bundle["model_set"]["models"]],
        "model_set": bundle["model_set"],
        "extraction": {
            "cached": ex.cached,
            "extracted": ex.extracted,
            "failed": len(ex.failed),
            "engine": job.engine,
            "workers": job.workers,  # null: one per CPU of the Ray cluster
            **ex.runtime,
        },
    }


SCORE_OUTPUTS = ("metrics.json", "predictions.csv", "confusion.png", "classifier.joblib")
CLASSIFIER_KIND = "emostream-clip-classifier"
CLASSIFIER_VERSION = 2
"""Bundle version: 2 since the model set holds `coarse_detection` (version 1 files cannot say theirs)."""
CLASSIFIER_KEYS = ("protocol", "features", "classifier", "model_set", "pipeline", "fallback", "feature_dim")
MODEL_SET_KEYS = ("models", "heads", "quality", "detector", "detect_every", "coarse_detection")
"""What `score --model` reads from a bundle and its model set (checked when it is loaded)."""


def write_outputs(out: Path, metrics: dict, rows: list[ClipRow], bundle: dict) -> None:
    from pipeline.io.sinks import write_json

    write_json(out / "metrics.json", metrics)
    _write_predictions(out / "predictions.csv", rows, PROTOCOL_CLASSES[bundle["protocol"]], bundle)
    if metrics["confusion"]:
        title = (
            f"{metrics['protocol']} {metrics['eval_split']}: {metrics['classifier']} on {metrics['features']}"
        )
        plot_confusion(out / "confusion.png", metrics["confusion"], title)
    else:  # unlabelled eval split: an earlier run's matrix would not belong to these predictions
        (out / "confusion.png").unlink(missing_ok=True)
    save_bundle(bundle, out / "classifier.joblib", "classifier")


def _write_predictions(path: Path, rows: list[ClipRow], order: tuple[str, ...], bundle: dict) -> None:
    import csv
    import io

    pipeline = bundle["pipeline"]
    classes = list(order) if pipeline is None else [str(c) for c in pipeline.classes_]
    with_scores = any(r.scores is not None for r in rows)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["clip", "label", "predicted", "status", "face_rows", "frames"]
        + ([f"p_{c}" for c in classes] if with_scores else [])
    )
    for r in rows:
        scores = (
            []
            if not with_scores
            else [
                "" if r.scores is None else f"{p:.4f}"
                for p in (r.scores if r.scores is not None else classes)
            ]
        )
        w.writerow([r.clip.name, r.clip.label or "", r.predicted, r.status, r.faces, r.frames, *scores])
    write_atomic(path, buf.getvalue())


def plot_confusion(path: Path, confusion: dict, title: str) -> None:
    """confusion.png: counts (rows true, columns predicted), each cell annotated."""
    from matplotlib.figure import Figure  # no pyplot: the process's matplotlib backend stays as it is

    labels, m = confusion["labels"], np.asarray(confusion["matrix"])
    n = len(labels)
    fig = Figure(figsize=(2.2 + 0.8 * n, 1.8 + 0.7 * n))
    ax = fig.subplots()
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1, m.max()))
    for (i, j), count in np.ndenumerate(m):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > m.max() / 2 else "black")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)


def load_classifier(path: Path) -> dict:
    """A classifier bundle saved by `score`, with every key (and model-set key) that `score` reads."""
    made_by = "emostream score"
    bundle = load_bundle(path, CLASSIFIER_KIND, "classifier", made_by, CLASSIFIER_VERSION, CLASSIFIER_KEYS)
    ms, pipeline = bundle["model_set"], bundle["pipeline"]
    missing = [k for k in MODEL_SET_KEYS if k not in ms] if isinstance(ms, dict) else ["model_set"]
    if missing or not (pipeline is None or hasattr(pipeline, "predict")):
        what = f"model set lacks {', '.join(missing)}" if missing else "pipeline is not a classifier"
        raise InputError(f"{path}: classifier file's {what}; make it again with {made_by}")
    return bundle


def check_model_set(path: Path, saved: dict, current: dict) -> None:
    """Refuse a classifier whose features came from other models, heads, detector or settings."""
    differ = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if differ:
        detail = "; ".join(
            f"{k}: trained {_short(saved.get(k))}, now {_short(current.get(k))}" for k in differ
        )
        raise InputError(
            f"{path}: classifier was trained on features of another model set ({detail}); "
            "retrain it with this model set"
        )


def _short(value) -> str:
    if isinstance(value, list) and value and isinstance(value[0], list):  # [[name, sha256], ...]
        return ",".join(f"{v[0]}@{str(v[1])[:8]}" for v in value)
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."

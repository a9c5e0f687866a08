"""`emostream evaluate`: the per-face net's accuracy on a labelled face set, one or several qualities.

Emotion sets (FER+, FER2013) give accuracy over FER+'s 8 classes and over 7 (contempt faces and column
dropped), per-class recall, UAR, macro-F1 and the confusion matrix; UTKFace gives age MAE overall and per
band (0-12, 13-19, 20-39, 40-59, 60+) and gender accuracy overall, for children (<= 12) and adults.
Every quality runs on the same crops, so old and new nets compare side by side in one run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.training import metrics
from pipeline.io.outlock import prepare_out_dir
from pipeline.io.sinks import write_json
from pipeline.scoring.eval_data import FaceSet, PipelineCropper, face_crops, read_set

FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
FER2013_TO_FERPLUS = (4, 5, 6, 1, 3, 2, 0)  # angry disgust fear happy sad surprise neutral -> FER+ index
CONTEMPT = FERPLUS_CLASSES.index("contempt")
EVAL_OUTPUTS = ("metrics.json", "confusion.png")


@dataclass(frozen=True)
class EvalJob:
    dataset: str
    path: Path
    out_dir: Path
    qualities: tuple[str, ...] = ("mtl",)
    crops: bool = False  # the set's own framing instead of detector + aligner
    split: str | None = None
    limit: int | None = None
    models_dir: str | None = None
    backend: str = "onnxruntime"
    overwrite: bool = False


def evaluate(job: EvalJob) -> dict:
    """Read the set, crop it once, run every quality, write metrics.json and confusion.png."""
    from engines.store.store import ModelStore

    store = ModelStore(mirror_dir=job.models_dir)
    faces = read_set(job.dataset, job.path, job.split, job.limit)
    if not faces.images:
        from pipeline.errors import InputError

        raise InputError(f"{job.path}: no labelled faces in {faces.name}")
    out = prepare_out_dir(job.out_dir, job.overwrite, EVAL_OUTPUTS, remove_earlier=False)
    cropper = None if job.crops else PipelineCropper(store)
    try:
        crops, found = face_crops(faces, cropper)
    finally:
        if cropper is not None:
            cropper.close()
    results = {q: _scores(faces, _infer(crops, q, store, job.backend)) for q in job.qualities}
    report = {
        "dataset": faces.name,
        "path": str(job.path),
        "faces": len(crops),
        "crops": "dataset framing" if job.crops else "detector + aligner",
        "faces_detected": None if job.crops else found,
        "qualities": results,
    }
    write_json(out / "metrics.json", report)
    _plot(out / "confusion.png", faces, results)
    return report


def _infer(crops: np.ndarray, quality: str, store, backend: str, batch: int = 64) -> dict[str, np.ndarray]:
    from engines.multitask import MultiTaskNet, NetConfig

    net = MultiTaskNet(NetConfig(quality=quality), store, backend)
    parts = [net.infer(crops[i : i + batch]) for i in range(0, len(crops), batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def ferplus_probs(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """(N,8) probabilities in FER+ class order from the net's FER2013-ordered emotion (+ contempt)."""
    probs = np.zeros((len(outputs["emotion"]), len(FERPLUS_CLASSES)))
    probs[:, FER2013_TO_FERPLUS] = outputs["emotion"]
    if "contempt" in outputs:
        probs[:, CONTEMPT] = outputs["contempt"]
    return probs


def _scores(faces: FaceSet, outputs: dict[str, np.ndarray]) -> dict:
    if faces.emotion is not None:
        return emotion_scores(faces.emotion, ferplus_probs(outputs))
    return attribute_scores(faces.age, faces.man, outputs["age"], outputs["gender"])


def emotion_scores(labels: np.ndarray, probs: np.ndarray) -> dict:
    """8-class and 7-class accuracy, per-class recall, UAR, macro-F1, confusion (rows true)."""
    n = len(FERPLUS_CLASSES)
    pred = probs.argmax(1)
    keep = labels != CONTEMPT
    pred7 = np.delete(probs[keep], CONTEMPT, axis=1).argmax(1)
    labels7 = labels[keep] - (labels[keep] > CONTEMPT)
    recall = metrics.per_class_recall(labels, pred, n)
    return {
        "accuracy": metrics.accuracy(labels, pred),
        "accuracy_7": metrics.accuracy(labels7, pred7),
        "uar": metrics.uar(labels, pred, n),
        "macro_f1": metrics.macro_f1(labels, pred, n),
        "recall": {
            c: None if np.isnan(r) else float(r) for c, r in zip(FERPLUS_CLASSES, recall, strict=True)
        },
        "classes": list(FERPLUS_CLASSES),
        "confusion": metrics.confusion_matrix(labels, pred, n).tolist(),
    }


def attribute_scores(age: np.ndarray, man: np.ndarray, pred_age: np.ndarray, p_man: np.ndarray) -> dict:
    """Age MAE overall and per band; gender accuracy overall, children and adults; gender confusion."""
    bands = metrics.age_mae_by_band(age, pred_age)
    return {
        "age_mae": metrics.age_mae(age, pred_age),
        "age_mae_by_band": {k: {"mae": v[0], "faces": v[1]} for k, v in bands.items()},
        "gender_accuracy": metrics.gender_accuracy_by_age(man, p_man, age),
        "classes": ["woman", "man"],
        "confusion": metrics.confusion_matrix(man.astype(int), (p_man >= 0.5).astype(int), 2).tolist(),
    }


def summary_line(report: dict) -> str:
    """One line: the headline figure of every quality."""
    parts = []
    for q, r in report["qualities"].items():
        if "accuracy" in r:
            parts.append(
                f"{q}: accuracy {r['accuracy']:.3f} (7 classes {r['accuracy_7']:.3f}), UAR {r['uar']:.3f}"
            )
        else:
            g = r["gender_accuracy"]
            parts.append(
                f"{q}: age MAE {r['age_mae']:.2f} y, gender {g['all']:.3f} (children {g['children']:.3f})"
            )
    return f"{report['dataset']}, {report['faces']} faces ({report['crops']}): " + "; ".join(parts)


def _plot(path: Path, faces: FaceSet, results: dict) -> None:
    """One confusion matrix per quality, side by side (emotion classes, or woman/man for UTKFace)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from engines.files import atomic_path

    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.8), squeeze=False)
    for ax, (q, r) in zip(axes[0], results.items(), strict=True):
        m = np.asarray(r["confusion"], float)
        rows = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(rows):
            ax.text(
                j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.5 else "black"
            )
        ax.set_xticks(range(len(r["classes"])), r["classes"], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(r["classes"])), r["classes"], fontsize=8)
        ax.set_title(f"{q} ({faces.name})", fontsize=9)
        ax.set_xlabel("predicted")
    axes[0, 0].set_ylabel("true")
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)

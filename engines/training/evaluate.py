"""Validation of an `MTLNet` on FER+ (majority protocol) and the UTKFace split, flip-averaged."""

from __future__ import annotations

import numpy as np
import torch

from engines.nets.mtl import EMOTIONS, MTLNet, decode_age
from engines.training import metrics
from engines.training.augment import make_batch
from engines.training.data import Source, TrainData

CONTEMPT = EMOTIONS.index("contempt")


@torch.no_grad()
def predict(model: MTLNet, src: Source, flip: bool = True, batch: int = 512) -> dict[str, np.ndarray]:
    """Emotion probabilities, P(man), age (years) and embeddings of the centred windows (flip-averaged)."""
    model.eval()
    device = next(model.parameters()).device
    outs: dict[str, list[np.ndarray]] = {"emotion": [], "p_man": [], "age": [], "embedding": []}
    for s in range(0, len(src.images), batch):
        x = make_batch(src.images[s : s + batch].to(device), src.base, None)
        views = [x, x.flip(3)] if flip else [x]
        res = [model(v) for v in views]
        views_mean = {
            "emotion": [torch.softmax(r["emotion_logits"], 1) for r in res],
            "p_man": [torch.sigmoid(r["gender_logit"]) for r in res],
            "age": [decode_age(r["age_logits"]) for r in res],
        }
        for k, v in views_mean.items():
            outs[k].append(torch.stack(v).mean(0).cpu().numpy())
        outs["embedding"].append(res[0]["embedding"].cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def fer_scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """8-class accuracy / UAR / macro-F1, and 7-class accuracy with contempt faces and column dropped."""
    pred = probs.argmax(1)
    keep = labels != CONTEMPT
    pred7 = np.delete(probs[keep], CONTEMPT, axis=1).argmax(1)
    lab7 = labels[keep] - (labels[keep] > CONTEMPT)
    return {
        "fer_acc": metrics.accuracy(labels, pred),
        "fer_uar": metrics.uar(labels, pred, len(EMOTIONS)),
        "fer_f1": metrics.macro_f1(labels, pred, len(EMOTIONS)),
        "fer_acc7": metrics.accuracy(lab7, pred7),
    }


def evaluate(model: MTLNet, data: TrainData, noflip: bool = False) -> dict[str, float]:
    """The per-epoch validation numbers (flip-averaged; `noflip` adds FER+ accuracy of a single pass)."""
    fer = predict(model, data.fer_val, flip=True)
    utk = predict(model, data.utk_val, flip=True)
    out = fer_scores(fer["emotion"], data.fer_val_labels)
    if noflip:
        fer1 = predict(model, data.fer_val, flip=False)
        out["fer_acc_noflip"] = metrics.accuracy(data.fer_val_labels, fer1["emotion"].argmax(1))
    out["utk_age_mae"] = metrics.age_mae(data.utk_val_age, utk["age"])
    g = metrics.gender_accuracy_by_age(data.utk_val_man, utk["p_man"], data.utk_val_age)
    out.update(
        {"utk_gender_acc": g["all"], "utk_gender_child": g["children"], "utk_gender_adult": g["adults"]}
    )
    return out


def detailed_report(model: MTLNet, data: TrainData) -> dict[str, object]:
    """Everything `evaluate` gives plus per-class recall, confusion matrix and age MAE by band."""
    fer = predict(model, data.fer_val, flip=True)
    utk = predict(model, data.utk_val, flip=True)
    pred = fer["emotion"].argmax(1)
    rep: dict[str, object] = evaluate(model, data, noflip=True)
    rep["fer_recall"] = dict(
        zip(EMOTIONS, metrics.per_class_recall(data.fer_val_labels, pred, 8).tolist(), strict=True)
    )
    rep["fer_confusion"] = metrics.confusion_matrix(data.fer_val_labels, pred, 8).tolist()
    rep["utk_age_mae_by_band"] = metrics.age_mae_by_band(data.utk_val_age, utk["age"])
    return rep

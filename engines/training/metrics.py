"""Evaluation metrics as numpy functions (classification, age, gender), for `emostream evaluate`."""

from __future__ import annotations

import numpy as np

AGE_BANDS = ((0, 12), (13, 19), (20, 39), (40, 59), (60, 200))
CHILD_MAX_AGE = 12


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts, rows = true class, columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of exact matches."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall of each class (NaN for a class absent from y_true)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def uar(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted average recall: mean recall over the classes present in y_true."""
    return float(np.nanmean(per_class_recall(y_true, y_pred, n_classes)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Mean F1 over the classes present in y_true or y_pred (sklearn's labels=present convention)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    present = denom > 0
    f1 = np.where(present, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[present].mean()) if present.any() else float("nan")


def age_mae(true_age: np.ndarray, pred_age: np.ndarray) -> float:
    """Mean absolute error in years."""
    return float(np.abs(np.asarray(pred_age, np.float64) - np.asarray(true_age, np.float64)).mean())


def age_mae_by_band(true_age: np.ndarray, pred_age: np.ndarray) -> dict[str, tuple[float, int]]:
    """{'0-12': (MAE, count), '13-19': ..., '60+': ...} over the true-age bands."""
    t, p = np.asarray(true_age), np.asarray(pred_age)
    out = {}
    for lo, hi in AGE_BANDS:
        m = (t >= lo) & (t <= hi)
        name = f"{lo}+" if hi >= 200 else f"{lo}-{hi}"
        out[name] = (age_mae(t[m], p[m]) if m.any() else float("nan"), int(m.sum()))
    return out


def gender_accuracy(true_man: np.ndarray, p_man: np.ndarray, threshold: float = 0.5) -> float:
    """Accuracy of P(man) > threshold against true_man (1 = man, 0 = woman)."""
    return accuracy(np.asarray(true_man).astype(bool), np.asarray(p_man) > threshold)


def gender_accuracy_by_age(true_man: np.ndarray, p_man: np.ndarray, ages: np.ndarray) -> dict[str, float]:
    """Gender accuracy overall, for children (age <= 12) and for adults (13+)."""
    t, p, a = np.asarray(true_man), np.asarray(p_man), np.asarray(ages)
    child = a <= CHILD_MAX_AGE
    return {
        "all": gender_accuracy(t, p),
        "children": gender_accuracy(t[child], p[child]),
        "adults": gender_accuracy(t[~child], p[~child]),
    }

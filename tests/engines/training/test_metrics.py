"""The numpy metrics against scikit-learn and direct computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from engines.training import metrics


@pytest.fixture
def labels():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 8, 500)
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, 8, 500))
    y[y == 7] = 6  # one class absent from y_true
    return y, p


def test_classification_metrics_match_sklearn(labels):
    y, p = labels
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y, p, 8), skm.confusion_matrix(y, p, labels=range(8))
    )
    assert metrics.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
    rec = metrics.per_class_recall(y, p, 8)
    present = np.unique(y)
    np.testing.assert_allclose(
        rec[present], skm.recall_score(y, p, labels=present, average=None, zero_division=0)
    )
    assert np.isnan(rec[7])
    assert metrics.uar(y, p, 8) == pytest.approx(skm.balanced_accuracy_score(y, p))
    assert metrics.macro_f1(y, p, 8) == pytest.approx(skm.f1_score(y, p, average="macro"))


def test_age_metrics():
    rng = np.random.default_rng(4)
    t = rng.integers(0, 100, 400)
    p = t + rng.normal(0, 5, 400)
    assert metrics.age_mae(t, p) == pytest.approx(skm.mean_absolute_error(t, p))
    bands = metrics.age_mae_by_band(t, p)
    assert list(bands) == ["0-12", "13-19", "20-39", "40-59", "60+"]
    m = (t >= 40) & (t <= 59)
    assert bands["40-59"] == (pytest.approx(np.abs(p[m] - t[m]).mean()), int(m.sum()))
    assert sum(n for _, n in bands.values()) == 400


def test_gender_metrics():
    true_man = np.array([1, 1, 0, 0, 1, 0])
    p_man = np.array([0.9, 0.2, 0.1, 0.7, 0.6, 0.4])
    ages = np.array([5, 30, 8, 40, 12, 70])
    assert metrics.gender_accuracy(true_man, p_man) == pytest.approx(4 / 6)
    by = metrics.gender_accuracy_by_age(true_man, p_man, ages)
    assert by == {"all": pytest.approx(4 / 6), "children": pytest.approx(1.0), "adults": pytest.approx(1 / 3)}

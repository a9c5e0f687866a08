"""`emostream evaluate` on small real subsets: metrics checked against scikit-learn, the crops it feeds,
and its command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from pipeline.scoring.eval_data import framed_crop
from pipeline.scoring.evaluate import EvalJob, emotion_scores, evaluate, ferplus_probs

REPO = Path(__file__).resolve().parents[3]


def test_emotion_scores_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 300)
    probs = rng.random((300, 8)) + np.eye(8)[labels] * rng.random((300, 1))
    s = emotion_scores(labels, probs)
    pred = probs.argmax(1)
    assert s["accuracy"] == pytest.approx(accuracy_score(labels, pred))
    assert s["uar"] == pytest.approx(recall_score(labels, pred, average="macro"))
    assert s["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro"))
    assert s["confusion"] == confusion_matrix(labels, pred, labels=range(8)).tolist()
    keep = labels != 7
    assert s["accuracy_7"] == pytest.approx(accuracy_score(labels[keep], probs[keep, :7].argmax(1)))


def test_fer2013_order_becomes_ferplus_order():
    outputs = {"emotion": np.eye(7, dtype=np.float32), "contempt": np.zeros(7, np.float32)}
    # angry disgust fear happy sad surprise neutral -> anger disgust fear happiness sadness surprise neutral
    assert ferplus_probs(outputs).argmax(1).tolist() == [4, 5, 6, 1, 3, 2, 0]


def test_a_framed_crop_puts_the_face_square_in_the_middle_half():
    from engines.training.augment import FaceFrame

    image = np.zeros((200, 200, 3), np.uint8)
    image[50:150, 50:150] = 255  # the face square: side 0.5, centre (0.5, 0.5)
    crop = framed_crop(image, FaceFrame(0.5, 0.5, 0.5))
    assert crop[33:95, 33:95].min() == 255 and crop[:30].max() == 0 and crop[:, 98:].max() == 0


def test_evaluate_ferplus_through_the_pipeline_against_an_independent_count(datasets, tmp_path):
    job = EvalJob("ferplus", datasets / "ferplus", tmp_path / "ev", ("mtl", "fast"), limit=120)
    report = evaluate(job)
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["qualities"].keys() == {"mtl", "fast"} and (tmp_path / "ev" / "confusion.png").stat().st_size
    for r in report["qualities"].values():
        m = np.asarray(r["confusion"])
        assert m.sum() == report["faces"] and r["accuracy"] == pytest.approx(np.trace(m) / m.sum())
    assert report["faces_detected"] >= 0.85 * report["faces"]  # upscaled FER faces are found by YuNet
    assert report["qualities"]["mtl"]["accuracy"] > report["qualities"]["fast"]["accuracy"]


def test_evaluate_utkface_gives_age_and_gender_scores(datasets, tmp_path):
    report = evaluate(EvalJob("utkface", datasets / "utkface", tmp_path / "ev", ("mtl",), limit=60))
    r = report["qualities"]["mtl"]
    assert report["faces"] == 60 and report["faces_detected"] >= 55
    assert 0 < r["age_mae"] < 10 and r["gender_accuracy"]["all"] > 0.75
    assert sum(b["faces"] for b in r["age_mae_by_band"].values()) == 60


def test_the_command_prints_one_line_and_refuses_bad_usage(datasets, tmp_path):
    env = {**os.environ}
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "evaluate",
        str(datasets / "utkface"),
        "--dataset",
        "utkface",
    ]
    ok = subprocess.run([*cmd, "--out", str(tmp_path / "a"), "--limit", "20", "--crops"], cwd=REPO, env=env,
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0 and len(ok.stdout.strip().splitlines()) == 1 and "age MAE" in ok.stdout
    bad = subprocess.run([*cmd, "--out", str(tmp_path / "b"), "--quality", "nope"], cwd=REPO, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "--quality" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run([*cmd[:4], str(tmp_path), "--dataset", "ferplus", "--out", str(tmp_path / "c")],
                             cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1

"""EmotiW-style scoring: clip vectors on synthetic arrays, then `score` end to end on cut real clips."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import subprocess
import sys

import joblib
import numpy as np
import pytest

from pipeline.config import AnalyzerConfig
from pipeline.errors import InputError, OutputError
from pipeline.scoring.clip_features import ClipFeatures
from pipeline.scoring.job import ScoreJob
from pipeline.scoring.report import classification_metrics
from pipeline.scoring.score import (
    clip_vector,
    main_track_rows,
    score,
    zero_shot_probs,
)
from tests.builders_clips import AFEW_NO_FACE, AFEW_SEGMENTS, VGAF_CLIPS, cached_dataset

CONFIG = AnalyzerConfig(detect_every=2, heads=("emotion", "gender"), quality="fast")  # the XCEPTION features
E = np.eye(7)  # one-hot emotion rows in FER2013 order: angry disgust fear happy sad surprise neutral


def clip(frame, track_id, emotion, xyxy=None, embedding=None) -> ClipFeatures:
    """Synthetic ClipFeatures: one row per face; boxes 10x10 unless given."""
    n = len(frame)
    xyxy = np.tile([0, 0, 10, 10], (n, 1)) if xyxy is None else np.asarray(xyxy)
    outputs = {"emotion": np.asarray(emotion, np.float32).reshape(n, 7)}
    outputs["embedding"] = np.zeros((n, 2)) if embedding is None else np.asarray(embedding, np.float64)
    return ClipFeatures(
        np.asarray(frame), np.asarray(frame) / 25, np.asarray(track_id), xyxy.astype(np.float32), outputs, 10
    )


@pytest.mark.parametrize(
    ("frame", "track_id", "xyxy", "expected"),
    [
        ([2, 0, 1, 0], [1, 1, 1, 2], None, [1, 2, 0]),  # longest track, rows in frame order
        ([0, 0, 1, 1], [1, 2, 1, 2], [[0, 0, 5, 5], [0, 0, 9, 9]] * 2, [1, 3]),  # tie: the larger face
        ([0, 1], [-1, -1], None, [0, 1]),  # nothing tracked yet: every row
        ([0, 1, 1], [-1, 3, -1], None, [1]),  # untracked rows are not a track
    ],
)
def test_main_track_rows(frame, track_id, xyxy, expected):
    emotion = np.tile(E[6], (len(frame), 1))
    assert main_track_rows(clip(frame, track_id, emotion, xyxy)).tolist() == expected


def test_afew_vector_is_l2_normalised_mean_std_min_max_of_the_main_track():
    # main track 1: happy then sad; track 2 (one row, angry) must not count
    cf = clip([0, 1, 1], [1, 1, 2], [E[3], E[4], E[0]])
    vector, used = clip_vector(cf, "afew", "emotion")
    stats = np.concatenate([(E[3] + E[4]) / 2, np.abs(E[3] - E[4]) / 2, np.zeros(7), E[3] + E[4]])
    assert used == 2 and np.allclose(vector, stats / np.linalg.norm(stats))


def test_vgaf_vector_is_mean_and_std_over_frames_of_face_mean_and_std():
    # frame 0: two faces (1, 3) -> mean 2, std 1; frame 1: one face (4) -> mean 4, std 0
    emb = [[1.0], [3.0], [4.0]]
    cf = clip([0, 0, 1], [1, 2, 1], [E[6]] * 3, embedding=emb)
    vector, used = clip_vector(cf, "vgaf", "fused")
    frame_stats = np.array([[2.0, *E[6], 1.0, *np.zeros(7)], [4.0, *E[6], 0.0, *np.zeros(7)]])
    expected = np.concatenate([frame_stats.mean(0), frame_stats.std(0)])
    assert used == 3 and np.allclose(vector, expected)


def test_a_clip_without_faces_has_no_vector_and_no_zero_shot():
    empty = clip([], [], np.zeros((0, 7)))
    assert clip_vector(empty, "afew", "fused") == (None, 0) and zero_shot_probs(empty, "vgaf") is None


@pytest.mark.parametrize(
    ("protocol", "rows", "expected"),
    [
        ("afew", [E[3], 0.5 * E[3] + 0.5 * E[5]], [0, 0, 0, 0.75, 0, 0, 0.25]),  # Angry..Surprise order
        ("vgaf", [E[3], E[5]], [1, 0, 0]),  # surprise counts as positive
        ("vgaf", [0.4 * E[0] + 0.6 * E[6], E[4]], [0, 0.3, 0.7]),
    ],
)
def test_zero_shot_maps_mean_emotions_onto_the_classes(protocol, rows, expected):
    cf = clip([0, 1], [1, 1], rows)
    assert np.allclose(zero_shot_probs(cf, protocol), expected)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "accuracy", "uar", "macro_f1", "labels"),
    [
        (["Happy", "Sad"], ["Happy", "Sad"], 1.0, 1.0, 1.0, ["Happy", "Sad"]),
        (
            ["Happy", "Happy", "Sad"],
            ["Happy", "Fear", "Fear"],
            1 / 3,
            (1 / 2 + 0) / 2,  # recall of the classes present only: Happy 1/2, Sad 0
            (0 + 2 / 3 + 0) / 3,  # Fear predicted but absent: its F1 of 0 counts
            ["Fear", "Happy", "Sad"],
        ),
        (  # imbalanced: always "Happy" is 75 % accurate, and UAR says it is chance
            ["Happy", "Happy", "Happy", "Sad"],
            ["Happy"] * 4,
            3 / 4,
            (1 + 0) / 2,
            (6 / 7 + 0) / 2,
            ["Happy", "Sad"],
        ),
    ],
)
def test_classification_metrics(y_true, y_pred, accuracy, uar, macro_f1, labels):
    m = classification_metrics(
        y_true, y_pred, ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
    )
    assert m["accuracy"] == pytest.approx(accuracy) and m["macro_f1"] == pytest.approx(macro_f1)
    assert m["uar"] == pytest.approx(uar)
    assert m["confusion"]["labels"] == labels and set(m["per_class_recall"]) == set(y_true)


# --- end to end on clips cut from the real videos -------------------------------------------------


@pytest.fixture(scope="session")
def afew(tmp_path_factory, media_dir):
    return cached_dataset(tmp_path_factory, media_dir, "afew")


@pytest.fixture(scope="session")
def vgaf(tmp_path_factory, media_dir):
    return cached_dataset(tmp_path_factory, media_dir, "vgaf")


def eval_names(split: str) -> set[str]:
    return {f"{label}/{name}" for label, segs in AFEW_SEGMENTS[split].items() for *_, name in segs}


def read_predictions(out) -> list[dict]:
    with open(out / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_cli_score_afew_end_to_end_with_a_broken_clip(afew, tmp_path):
    data = tmp_path / "afew"
    shutil.copytree(afew, data)
    (data / "Val/Sad/broken.mp4").write_bytes(b"\x00garbage" * 200)
    whole = (afew / "Train/Sad/w_sad2.avi").read_bytes()
    (data / "Val/Sad/truncated.avi").write_bytes(whole[: len(whole) * 6 // 10])  # decodes, then breaks
    out = tmp_path / "out"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "score",
            data,
            "--protocol",
            "afew",
            "--train",
            "Train",
            "--eval",
            "Val",
            "--detect-every",
            "2",
            "--heads",
            "emotion,gender",
            "--out",
            out,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 3, r.stderr  # partly readable dataset: scored, with a warning
    warning = r.stderr.strip().splitlines()
    assert len(warning) == 1 and "1 clips could not be read" in warning[0] and "broken.mp4" in warning[0]
    assert {p.name for p in out.iterdir()} >= {
        "metrics.json",
        "predictions.csv",
        "confusion.png",
        "classifier.joblib",
    }
    m = json.loads((out / "metrics.json").read_text())
    c = m["counts"]
    assert c["eval_clips"] == len(eval_names("Val")) + 2 == c["eval_labelled"]
    assert (
        c["eval_with_faces"] + len(m["no_face_clips"]["eval"]) + len(m["unreadable_clips"]["eval"])
        == c["eval_clips"]
    )
    assert set(m["no_face_clips"]["eval"]) == {n.split("/", 1)[1] for n in AFEW_NO_FACE}
    assert [u["clip"] for u in m["unreadable_clips"]["eval"]] == ["Sad/broken.mp4"]
    assert m["partly_decoded_clips"] == ["Sad/truncated.avi"]
    assert sum(c["eval_per_class"].values()) == sum(c["predicted_per_class"].values()) == c["eval_clips"]
    assert (
        c["train_used"] == c["train_clips"] == 8
        and m["classifier"] == "linearsvc"
        and m["features"] == "fused"
    )
    assert 0 <= m["accuracy"] <= 1 and 0 <= m["macro_f1"] <= 1
    assert m["uar"] == pytest.approx(np.mean(list(m["per_class_recall"].values())))
    assert m["extraction"]["backend"] in ("onnxruntime", "torch", "tensorrt")
    assert [x["name"] for x in m["models"]] == ["emostream_mtl"]  # the CLI runs the default net
    rows = read_predictions(out)
    assert {row["clip"] for row in rows} == eval_names("Val") | {"Sad/broken.mp4", "Sad/truncated.avi"}
    fallback = m["fallback"]["class"]
    assert all(row["predicted"] == fallback for row in rows if row["status"] != "ok")
    assert "afew Val: accuracy" in r.stdout and ", UAR " in r.stdout


def test_zero_shot_afew_gets_the_smiles_and_falls_back_to_neutral(afew, tmp_path):
    m = score(ScoreJob(afew, "afew", "Val", tmp_path, classifier="zeroshot", analyzer=CONFIG))
    rows = {row["clip"]: row for row in read_predictions(tmp_path)}
    assert rows["Happy/w_happy3.mp4"]["predicted"] == rows["Happy/m_smile2.mp4"]["predicted"] == "Happy"
    assert rows["Neutral/cartoon_noface.mp4"]["predicted"] == "Neutral" == m["fallback"]["class"]
    assert m["features"] == "emotion" and m["counts"]["train_clips"] == 0
    probs = [float(rows["Happy/w_happy3.mp4"][f"p_{c}"]) for c in ("Angry", "Happy", "Neutral", "Sad")]
    assert probs[1] > 0.5 > max(probs[0], probs[2], probs[3])


def test_vgaf_scores_with_both_label_formats(vgaf, tmp_path):
    m = score(
        ScoreJob(vgaf, "vgaf", "Val", tmp_path, train_split="Train", classifier="logreg", analyzer=CONFIG)
    )
    assert m["counts"]["train_per_class"] == {"Positive": 2, "Neutral": 2, "Negative": 2}
    assert m["counts"]["eval_per_class"] == {"Positive": 1, "Neutral": 1, "Negative": 1}
    assert not m["no_face_clips"]["eval"] and m["feature_dim"] == 4 * (256 + 7 + 1)
    rows = read_predictions(tmp_path)
    assert {row["clip"] for row in rows} == {f"{n}.mp4" for n, *_ in VGAF_CLIPS["Val"]}
    assert all(
        abs(sum(float(row[f"p_{c}"]) for c in ("Positive", "Neutral", "Negative")) - 1) < 1e-3 for row in rows
    )
    zero = score(ScoreJob(vgaf, "vgaf", "Val", tmp_path / "zs", classifier="zeroshot", analyzer=CONFIG))
    assert {r["clip"]: r["predicted"] for r in read_predictions(tmp_path / "zs")}[
        "party_tilt.mp4"
    ] == "Positive"
    assert zero["counts"]["eval_clips"] == 3


def test_a_saved_classifier_predicts_new_unlabelled_clips(afew, tmp_path):
    first = tmp_path / "first"
    score(
        ScoreJob(
            afew,
            "afew",
            "Val",
            first,
            train_split="Train",
            classifier="mlp",
            features="emotion",
            analyzer=CONFIG,
        )
    )
    before = {row["clip"].split("/")[-1]: row["predicted"] for row in read_predictions(first)}
    new = tmp_path / "data" / "New"
    new.mkdir(parents=True)
    for name in ("Happy/w_happy3.mp4", "Sad/w_sad3.mp4"):
        shutil.copy(afew / "Val" / name, new)
    later = score(
        ScoreJob(tmp_path / "data", "afew", "New", tmp_path / "later", model=first / "classifier.joblib")
    )
    after = {row["clip"]: row["predicted"] for row in read_predictions(tmp_path / "later")}
    assert after == {name: before[name] for name in after} and len(after) == 2
    assert later["accuracy"] is None and later["classifier"] == "mlp" and later["features"] == "emotion"
    assert later["extraction"]["extracted"] == 0  # same bytes, same model set: the cache answers


def test_a_classifier_from_another_model_set_is_refused(afew, tmp_path):
    first = tmp_path / "first"
    score(ScoreJob(afew, "afew", "Val", first, classifier="zeroshot", analyzer=CONFIG))
    bundle = joblib.load(first / "classifier.joblib")
    bundle["model_set"]["models"][0][1] = "0" * 64
    joblib.dump(bundle, tmp_path / "other.joblib")
    with pytest.raises(InputError, match=r"another model set .*models: trained fer_mini_xception@00000000"):
        score(ScoreJob(afew, "afew", "Val", tmp_path / "x", model=tmp_path / "other.joblib"))
    (tmp_path / "junk.joblib").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a classifier saved by emostream score"):
        score(ScoreJob(afew, "afew", "Val", tmp_path / "y", model=tmp_path / "junk.joblib"))


def test_an_earlier_run_is_not_overwritten_without_asking(afew, tmp_path):
    job = ScoreJob(afew, "afew", "Val", tmp_path, classifier="zeroshot", analyzer=CONFIG)
    score(job)
    with pytest.raises(OutputError, match="--overwrite"):
        score(job)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"eval_split": "Vall", "train_split": "Train"}, "split 'Vall' not found"),
        ({"train_split": "Trian", "classifier": "logreg"}, "split 'Trian' not found"),
        ({"model": "missing.joblib"}, "classifier file not found"),
        ({"train_split": "Val", "classifier": "logreg"}, "name the same split"),
    ],
)
def test_overwrite_with_a_bad_input_keeps_the_earlier_outputs(afew, tmp_path, change, fragment):
    out = tmp_path / "out"
    score(ScoreJob(afew, "afew", "Val", out, classifier="zeroshot", analyzer=CONFIG))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"metrics.json", "predictions.csv", "confusion.png", "classifier.joblib"}
    if "model" in change:
        change = {"model": tmp_path / change["model"]}
    job = dataclasses.replace(ScoreJob(afew, "afew", "Val", out, analyzer=CONFIG, overwrite=True), **change)
    with pytest.raises(InputError, match=fragment):
        score(job)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_overwrite_replaces_each_output_and_drops_a_confusion_matrix_that_no_longer_applies(afew, tmp_path):
    out = tmp_path / "out"
    score(ScoreJob(afew, "afew", "Val", out, classifier="zeroshot", analyzer=CONFIG))
    assert (out / "confusion.png").is_file()
    new = tmp_path / "data" / "New"
    new.mkdir(parents=True)
    shutil.copy(afew / "Val/Happy/w_happy3.mp4", new)
    m = score(
        ScoreJob(
            tmp_path / "data", "afew", "New", out, classifier="zeroshot", analyzer=CONFIG, overwrite=True
        )
    )
    assert m["accuracy"] is None and m["uar"] is None and not (out / "confusion.png").exists()
    assert [r["clip"] for r in read_predictions(out)] == ["w_happy3.mp4"]
    assert {p.name for p in out.iterdir()} == {"metrics.json", "predictions.csv", "classifier.joblib"}


def _edit_version(b):
    b["version"] = 1


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (_edit_version, "classifier file version 1, this emostream reads version 2"),
        (lambda b: b.pop("fallback"), "classifier file lacks fallback"),
        (lambda b: b.pop("model_set"), "classifier file lacks model_set"),
        (lambda b: b["model_set"].pop("coarse_detection"), "model set lacks coarse_detection"),
        (lambda b: b.update(model_set=["x"]), "model set lacks model_set"),
        (lambda b: b.update(pipeline="svm"), "pipeline is not a classifier"),
    ],
)
def test_a_classifier_file_of_another_version_or_shape_is_one_line_exit_2(
    afew, tmp_path, capsys, edit, fragment
):
    from pipeline.cli.main import main

    score(ScoreJob(afew, "afew", "Val", tmp_path / "first", classifier="zeroshot", analyzer=CONFIG))
    bundle = joblib.load(tmp_path / "first" / "classifier.joblib")
    edit(bundle)
    joblib.dump(bundle, tmp_path / "edited.joblib")
    args = [
        "score",
        str(afew),
        "--protocol",
        "afew",
        "--eval",
        "Val",
        "--model",
        str(tmp_path / "edited.joblib"),
    ]
    code = main([*args, "--out", str(tmp_path / "o")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["nowhere", "--protocol", "afew", "--train", "T", "--eval", "V"],
            "nowhere: dataset folder not found",
        ),
        (["{afew}", "--protocol", "afew", "--eval", "Val"], "needs --train SPLIT"),
        (["{afew}", "--protocol", "afew", "--train", "Train", "--eval", "Test"], "split 'Test' not found"),
        (["{afew}", "--protocol", "vgaf", "--train", "Train", "--eval", "Val"], "'Train' has no labels"),
        (
            ["{afew}", "--protocol", "afew", "--eval", "Val", "--model", "none.joblib"],
            "classifier file not found",
        ),
        (
            ["{afew}", "--protocol", "afew", "--train", "Train", "--eval", "Val", "--workers", "0"],
            "--workers",
        ),
        (["{afew}", "--protocol", "afew", "--train", "Val", "--eval", "Val"], "name the same split 'Val'"),
        (["{afew}", "--protocol", "afew", "--train", "Val", "--eval", "./Val/"], "name the same split"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(afew, tmp_path, capsys, args, fragment):
    from pipeline.cli.main import main

    code = main(["score", *[a.format(afew=afew) for a in args], "--out", str(tmp_path / "o")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and fragment in lines[0], lines

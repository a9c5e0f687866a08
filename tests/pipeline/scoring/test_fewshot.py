"""Few-shot heads: train on folders of photos or clips, cross-validate, load into `run` per face."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from pipeline.analyzer import FaceAnalyzer
from pipeline.config import AnalyzerConfig
from pipeline.errors import InputError, OutputError
from pipeline.runtime.offline import OfflineJob, run_job
from pipeline.scoring.fewshot import train_head
from pipeline.stages.head import load_head
from tests.builders_clips import cached_dataset

CONFIG = AnalyzerConfig(detect_every=2, heads=("emotion", "gender"), quality="fast")  # the XCEPTION features
PHOTOS = {
    "smile": ["pyfeat_happy_f15.jpg", "pyfeat_single_face_smile.jpg", "fer_justin_smile.jpg"],
    "other": [
        "pyfeat_angry_f13.jpg",
        "pyfeat_disgust_m7.jpg",
        "pyfeat_neutral_man.jpg",
        "pyfeat_surprise_f1.jpg",
    ],
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory, media_dir):
    root = tmp_path_factory.mktemp("photos")
    for label, names in PHOTOS.items():
        (root / label).mkdir()
        for name in names:
            shutil.copy(media_dir / name, root / label / name)
    return root


@pytest.fixture(scope="module")
def photo_head(photos, tmp_path_factory):
    path = tmp_path_factory.mktemp("head") / "smile.joblib"
    return path, train_head(photos, path, analyzer=CONFIG)


def test_a_head_trained_on_photos_reports_cross_validation(photo_head):
    path, report = photo_head
    assert path.is_file() and report["classes"] == ["other", "smile"]
    assert report["items_per_class"] == {"smile": 3, "other": 4} and report["face_rows"] == 7
    assert report["cv_folds"] == 3 and 0 <= report["cv_face_accuracy"] <= 1
    assert report["feature_dim"] == 256 + 7 + 1 and not report["no_face"] and not report["unreadable"]


@pytest.mark.parametrize("classifier", ["logreg", "linearsvc"])
def test_the_head_runs_on_every_face_as_probabilities(photos, tmp_path, classifier):
    path = tmp_path / "h.joblib"
    train_head(photos, path, analyzer=CONFIG, classifier=classifier)
    head = load_head(path, CONFIG)
    rng = np.random.default_rng(0)
    outputs = {
        "emotion": rng.dirichlet(np.ones(7), 4),
        "embedding": rng.normal(size=(4, 256)),
        "gender": rng.random(4),
    }
    out = head.outputs(outputs)
    assert out["head"].shape == (4, 2) and np.allclose(out["head"].sum(1), 1, atol=1e-5)
    assert set(out["head_label"]) <= {"other", "smile"}
    empty = head.outputs({k: v[:0] for k, v in outputs.items()})
    assert empty["head"].shape == (0, 2) and empty["head_label"].shape == (0,)


def test_run_with_the_head_writes_its_label_per_face(photo_head, media_dir, tmp_path):
    path, _ = photo_head
    config = dataclasses.replace(CONFIG, extra_head=str(path))
    job = OfflineJob(str(media_dir / "pyfeat_happy_f15.jpg"), tmp_path, config, write_video=False)
    run_job(job)
    rows = [json.loads(line) for line in (tmp_path / "faces.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["head"] == "smile" and 0.5 < rows[0]["head_p"] <= 1


def test_a_head_from_clips_groups_frames_by_clip(tmp_path_factory, media_dir, tmp_path):
    afew = cached_dataset(tmp_path_factory, media_dir, "afew")
    report = train_head(afew / "Train", tmp_path / "clips.joblib", analyzer=CONFIG, feature_set="emotion")
    assert report["cv_folds"] == 2  # Sad has 2 clips: k = min(5, 2)
    assert report["items_per_class"] == {"Happy": 3, "Neutral": 3, "Sad": 2} and report["face_rows"] > 200
    assert report["feature_dim"] == 7


def test_a_head_for_another_net_or_a_foreign_file_is_refused(photo_head, tmp_path):
    path, _ = photo_head
    with pytest.raises(InputError, match=r"trained on another net .*heads emotion,gender"):
        FaceAnalyzer(AnalyzerConfig(heads=("emotion",), extra_head=str(path)))
    (tmp_path / "x.joblib").write_bytes(b"x")
    with pytest.raises(InputError, match="not a head saved by emostream train-head"):
        load_head(tmp_path / "x.joblib", CONFIG)
    with pytest.raises(OutputError, match="--overwrite"):
        train_head(tmp_path, path, analyzer=CONFIG)


@pytest.mark.parametrize(
    ("layout", "fragment"),
    [
        ({"smile": PHOTOS["smile"]}, "at least 2 classes"),
        ({"smile": PHOTOS["smile"], "other": PHOTOS["other"][:1]}, "at least 2 clips or images"),
    ],
)
def test_too_few_examples_are_one_line_errors(media_dir, tmp_path, layout, fragment):
    for label, names in layout.items():
        (tmp_path / label).mkdir()
        for name in names:
            shutil.copy(media_dir / name, tmp_path / label / name)
    with pytest.raises(InputError, match=fragment):
        train_head(tmp_path, tmp_path / "h.joblib", analyzer=CONFIG)


def test_copies_of_one_file_are_one_item_and_stay_in_one_fold(photos, tmp_path):
    data = shutil.copytree(photos, tmp_path / "data")
    for copy in ("again.jpg", "and_again.jpg"):
        shutil.copy(data / "smile" / PHOTOS["smile"][0], data / "smile" / copy)
    report = train_head(data, tmp_path / "h.joblib", analyzer=CONFIG)
    assert report["items_per_class"] == {"smile": 3, "other": 4} and report["face_rows"] == 9
    assert report["cv_folds"] == 3  # three distinct smiles, not five


def test_one_file_under_two_classes_is_refused(photos, tmp_path):
    data = shutil.copytree(photos, tmp_path / "data")
    shutil.copy(data / "smile" / PHOTOS["smile"][0], data / "other" / "mislabelled.jpg")
    with pytest.raises(InputError, match=r"the same file as .* keep it in one class") as err:
        train_head(data, tmp_path / "h.joblib", analyzer=CONFIG)
    assert "mislabelled.jpg" in str(err.value) and PHOTOS["smile"][0] in str(err.value)

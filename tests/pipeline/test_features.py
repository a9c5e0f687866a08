"""Feature extraction over clips: the real pipeline, the per-clip cache, worker processes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline import capture
from pipeline.analyzer import AnalyzerConfig
from pipeline.features import (
    ClipFeatures,
    extract_features,
    face_features,
    model_set,
    model_set_key,
)
from tests.builders import make_batch
from tests.builders_clips import cached_dataset

CONFIG = AnalyzerConfig(detect_every=2, heads=("emotion", "gender"))


@pytest.fixture(scope="session")
def afew(tmp_path_factory, media_dir):
    return cached_dataset(tmp_path_factory, media_dir, "afew")


def some_clips(afew):
    """A clip per person and expression, plus the cartoon without a face."""
    names = ["Train/Happy/w_happy2.avi", "Train/Neutral/m_neutral1.mp4", "Val/Neutral/cartoon_noface.mp4"]
    return [afew / n for n in names]


def test_clip_features_from_batches_and_npz_round_trip(tmp_path):
    emotion = np.eye(7, dtype=np.float32)[:3]
    batches = [
        make_batch([[0, 0, 10, 10], [20, 0, 30, 10]], 0, track_ids=[1, 2], emotion=emotion[:2]),
        make_batch(np.zeros((0, 4)), 1, emotion=np.zeros((0, 7))),
        make_batch([[1, 0, 11, 10]], 2, track_ids=[1], emotion=emotion[2:]),
    ]
    batches = [b.with_outputs(embedding=np.full((len(b), 5), b.frame_index, np.float32)) for b in batches]
    cf = ClipFeatures.from_batches(batches, frames=3, decode_errors=1)
    assert cf.frame.tolist() == [0, 0, 2] and cf.track_id.tolist() == [1, 2, 1] and len(cf) == 3
    assert cf.outputs["embedding"].shape == (3, 5) and np.array_equal(cf.outputs["emotion"], emotion)
    cf.save(tmp_path / "c" / "x.npz")
    back = ClipFeatures.load(tmp_path / "c" / "x.npz")
    assert (back.frames, back.decode_errors) == (3, 1)
    for name in ("frame", "time_s", "track_id", "xyxy"):
        assert np.array_equal(getattr(back, name), getattr(cf, name))
    assert all(np.array_equal(back.outputs[k], v) for k, v in cf.outputs.items())


@pytest.mark.parametrize(
    ("extra", "feature_set", "expected_row"),
    [
        ({}, "emotion", [0.1, 0, 0, 0.9, 0, 0, 0]),
        ({}, "fused", [5, 6, 0.1, 0, 0, 0.9, 0, 0, 0]),
        ({"gender": [0.8]}, "fused", [5, 6, 0.1, 0, 0, 0.9, 0, 0, 0, 0.8]),
        ({"gender": [0.8], "age": [30.0]}, "fused", [5, 6, 0.1, 0, 0, 0.9, 0, 0, 0, 0.8, 0.3]),
    ],
)
def test_face_features_follow_the_heads_present(extra, feature_set, expected_row):
    outputs = {"emotion": np.array([[0.1, 0, 0, 0.9, 0, 0, 0]]), "embedding": np.array([[5.0, 6.0]])}
    outputs |= {k: np.asarray(v) for k, v in extra.items()}
    assert np.allclose(face_features(outputs, feature_set), [expected_row])


def test_model_set_changes_with_what_changes_features():
    base = model_set(CONFIG)
    assert model_set(CONFIG) == base and model_set_key(model_set(CONFIG)) == model_set_key(base)
    assert [name for name, _ in base["models"]] == ["fer_mini_xception", "gender_mini_xception"]
    for change in [{"detect_every": 3}, {"heads": ("emotion",)}, {"detector": "blazeface"}]:
        assert model_set_key(model_set(dataclasses.replace(CONFIG, **change))) != model_set_key(base), change


def test_second_run_reads_the_cache_and_decodes_nothing(afew, tmp_path, monkeypatch):
    clips = some_clips(afew)
    seen = []
    first = extract_features(clips, CONFIG, cache_dir=tmp_path, on_clip=lambda p, s: seen.append(s))
    assert first.extracted == 3 and first.cached == 0 and not first.failed and seen == ["extracted"] * 3
    assert len(list(tmp_path.rglob("*.npz"))) == 3

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached clip was decoded again")

    monkeypatch.setattr(capture, "open_source", no_decoding)
    monkeypatch.setattr("pipeline.analyzer.FaceAnalyzer", no_decoding)
    second = extract_features(clips, CONFIG, cache_dir=tmp_path)
    assert second.cached == 3 and second.extracted == 0
    for clip in clips:
        a, b = first.features[clip], second.features[clip]
        assert len(a) == len(b) and all(np.array_equal(a.outputs[k], b.outputs[k]) for k in a.outputs)
    faces = {clip.name: len(second.features[clip]) for clip in clips}
    assert faces["cartoon_noface.mp4"] == 0 and faces["w_happy2.avi"] > 20 and faces["m_neutral1.mp4"] > 15


def test_two_workers_give_the_same_features_as_one(afew, tmp_path):
    clips = some_clips(afew)
    one = extract_features(clips, CONFIG)  # the session's cache, filled by one process
    two = extract_features(clips, CONFIG, workers=2, cache_dir=tmp_path)
    assert two.extracted == 3
    for clip in clips:
        a, b = one.features[clip], two.features[clip]
        assert np.array_equal(a.frame, b.frame) and np.array_equal(a.track_id, b.track_id)
        for k in a.outputs:
            assert np.allclose(a.outputs[k], b.outputs[k], atol=1e-4), (clip.name, k)


def test_unreadable_clips_are_reported_and_the_rest_extracted(afew, tmp_path):
    broken, missing = tmp_path / "broken.mp4", tmp_path / "missing.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    good = afew / "Train/Neutral/m_neutral1.mp4"
    statuses = {}
    result = extract_features(
        [broken, good, missing], CONFIG, on_clip=lambda p, s: statuses.update({p.name: s})
    )
    assert set(result.features) == {good}
    assert "broken.mp4" in result.failed[broken] and "missing.mp4" in result.failed[missing]
    assert statuses["broken.mp4"] == statuses["missing.mp4"] == "failed"
    assert statuses["m_neutral1.mp4"] in ("cached", "extracted")

"""Feature extraction over clips: the real pipeline, the per-clip cache, worker processes."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import signal

import cv2
import numpy as np
import pytest

from engines.backends import unavailable_reason
from engines.errors import BackendUnavailable, EmostreamError
from pipeline.config import AnalyzerConfig, model_set
from pipeline.io import capture
from pipeline.scoring.clip_features import ClipFeatures
from pipeline.scoring.features import extract_features, model_set_key, runtime_of
from pipeline.stages.head import face_features
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
    assert [name for name, _ in base["models"]] == ["emostream_mtl"]
    fast = model_set(dataclasses.replace(CONFIG, quality="fast"))
    assert [name for name, _ in fast["models"]] == ["fer_mini_xception", "gender_mini_xception"]
    changes = [
        {"quality": "fast"},
        {"detect_every": 3},
        {"heads": ("emotion",)},
        {"detector": "blazeface"},
        {"coarse_detection": False},
    ]
    for change in changes:
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


def test_clips_with_the_same_bytes_are_each_reported_under_their_own_path(tmp_path):
    """An eval clip that is a byte copy of a train clip: one extraction, two messages, each its own."""
    train, val = tmp_path / "Train" / "a.mp4", tmp_path / "Val" / "copy_of_a.mp4"
    for path in (train, val):
        path.parent.mkdir()
        path.write_bytes(b"not a video at all" * 100)
    result = extract_features([train, val], CONFIG)
    assert result.failed[train].startswith(f"{train}: ") and str(val) not in result.failed[train]
    assert result.failed[val].startswith(f"{val}: ") and str(train) not in result.failed[val]


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("onnxruntime", {"backend": "onnxruntime", "precision": "fp32"}),
        ("torch", {"backend": "torch", "precision": "fp16"}),
        ("tensorrt", {"backend": "tensorrt", "precision": "fp16"}),
    ],
)
def test_the_runtime_names_the_backend_and_its_precision(backend, expected):
    assert runtime_of(dataclasses.replace(CONFIG, backend=backend)) == expected
    auto = runtime_of(dataclasses.replace(CONFIG, backend="auto"))
    assert auto["backend"] in ("onnxruntime", "torch", "tensorrt")  # auto is resolved, never "auto"


def test_features_cached_by_one_backend_are_not_read_for_another(afew, tmp_path):
    clip = [afew / "Train/Neutral/m_neutral1.mp4"]
    onnx = dataclasses.replace(CONFIG, backend="onnxruntime")
    assert extract_features(clip, onnx, cache_dir=tmp_path).extracted == 1
    assert extract_features(clip, onnx, cache_dir=tmp_path).cached == 1
    trt = dataclasses.replace(CONFIG, backend="tensorrt")
    if unavailable_reason("tensorrt"):  # not cached for TensorRT: it has to run, and cannot here
        with pytest.raises(BackendUnavailable, match="tensorrt"):
            extract_features(clip, trt, cache_dir=tmp_path)
    else:
        assert extract_features(clip, trt, cache_dir=tmp_path).extracted == 1


@pytest.fixture(scope="module")
def one_cached_clip(afew, tmp_path_factory):
    """A cache folder holding the features of one real clip, and those features."""
    cache = tmp_path_factory.mktemp("cache")
    clip = afew / "Train/Neutral/m_neutral1.mp4"
    return cache, clip, extract_features([clip], CONFIG, cache_dir=cache).features[clip]


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b"",  # emptied
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[:-200] + bytes(200),  # the end overwritten
        lambda b: b"not an npz at all",
    ],
)
def test_a_damaged_cache_entry_is_extracted_again_and_repaired(one_cached_clip, tmp_path, damage):
    source, clip, original = one_cached_clip
    cache = shutil.copytree(source, tmp_path / "cache")
    (entry,) = cache.rglob("*.npz")
    entry.write_bytes(damage(entry.read_bytes()))
    again = extract_features([clip], CONFIG, cache_dir=cache)
    assert again.extracted == 1 and again.cached == 0 and not again.failed
    assert np.array_equal(again.features[clip].frame, original.frame)
    assert np.array_equal(ClipFeatures.load(entry).outputs["emotion"], original.outputs["emotion"])
    assert extract_features([clip], CONFIG, cache_dir=cache).cached == 1


def test_a_failed_cache_write_leaves_no_temporary_file_and_the_old_entry(
    one_cached_clip, tmp_path, monkeypatch
):
    _, _, features = one_cached_clip
    entry = tmp_path / "e.npz"
    features.save(entry)
    before = entry.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the last step before the rename
    with pytest.raises(OSError, match="No space left"):
        features.save(entry)
    assert [p.name for p in tmp_path.iterdir()] == ["e.npz"] and entry.read_bytes() == before


def test_an_unexpected_error_in_one_clip_skips_that_clip_only(afew, tmp_path, monkeypatch):
    bad, good = afew / "Train/Happy/m_smile.mp4", afew / "Train/Neutral/m_neutral1.mp4"
    real_open = capture.open_source

    def open_source(path, *args, **kwargs):
        if path == bad:
            raise cv2.error("OpenCV(5.0) resize: !ssize.empty()")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(capture, "open_source", open_source)
    result = extract_features([bad, good], CONFIG, cache_dir=tmp_path)
    assert set(result.features) == {good} and set(result.failed) == {bad}
    assert "m_smile.mp4" in result.failed[bad] and "error" in result.failed[bad]
    assert "\n" not in result.failed[bad]


@pytest.mark.parametrize(
    "change",
    [
        {"detector": "no-such-detector"},
        pytest.param(
            {"backend": "tensorrt"},
            marks=pytest.mark.skipif(not unavailable_reason("tensorrt"), reason="TensorRT runs here"),
        ),
    ],
)
def test_a_worker_that_cannot_start_gives_the_one_process_error(afew, tmp_path, change):
    clips = some_clips(afew)
    config = dataclasses.replace(CONFIG, **change)
    with pytest.raises(EmostreamError) as one:
        extract_features(clips, config, cache_dir=tmp_path)
    with pytest.raises(EmostreamError) as two:
        extract_features(clips, config, workers=2, cache_dir=tmp_path)
    assert str(two.value) == str(one.value) and "\n" not in str(two.value)


def test_a_worker_process_that_dies_is_one_error_and_keeps_what_was_done(afew, tmp_path):
    clips = sorted((afew / "Train").rglob("*.*"))
    assert len(clips) == 8

    def kill_the_workers(path, status):
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)

    with pytest.raises(EmostreamError, match="a feature worker process died"):
        extract_features(clips, CONFIG, workers=2, cache_dir=tmp_path, on_clip=kill_the_workers)
    kept = len(list(tmp_path.rglob("*.npz")))
    assert 1 <= kept < len(clips)


def test_features_are_cached_under_the_backend_that_started_not_the_probed_one(afew, tmp_path, monkeypatch):
    """Issue 15: `auto` probed TensorRT, fell through to onnxruntime, and the fp32 onnxruntime features were
    cached as TensorRT fp16 ones. Here probing claims TensorRT while onnxruntime runs."""
    from pipeline.scoring import features

    clip = [afew / "Train/Neutral/m_neutral1.mp4"]
    onnx = dataclasses.replace(CONFIG, backend="onnxruntime")
    monkeypatch.setattr(features, "runtime_of", lambda config: {"backend": "tensorrt", "precision": "fp16"})
    result = extract_features(clip, onnx, cache_dir=tmp_path)
    assert result.extracted == 1 and result.runtime == {"backend": "onnxruntime", "precision": "fp32"}
    monkeypatch.undo()
    assert extract_features(clip, onnx, cache_dir=tmp_path).cached == 1  # found under onnxruntime's key

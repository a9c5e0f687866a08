"""The engine seam without a cluster: engines by name, a missing Ray as one line, the local engine's
worker state, paths as a worker on another node must open them, and a reused analyzer answering as a
fresh one."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import pytest

from engines.errors import EmostreamError
from pipeline.cli.main import main
from pipeline.config import AnalyzerConfig
from pipeline.distributed.engine import (
    ENGINES,
    RAY_INSTALL_HINT,
    LocalEngine,
    distributed_engine,
    portable_config,
    resolved,
)
from pipeline.runtime.batch import expand_inputs, run_batch
from pipeline.runtime.offline import OfflineJob, run_job


class Counting:
    """A work whose state counts the units it ran: one state for every unit of one map."""

    def __init__(self) -> None:
        self.setups, self.closed = 0, 0

    def setup(self) -> list:
        self.setups += 1
        return []

    def run(self, state: list, x: int) -> tuple[int, int]:
        state.append(x)
        return x * 2, len(state)

    def lost(self, task, why):  # pragma: no cover - a local engine never loses a unit
        raise AssertionError(why)

    def close(self, state: list) -> None:
        self.closed += 1


def test_the_local_engine_builds_the_worker_state_once_and_closes_it():
    work = Counting()
    assert list(LocalEngine().map(work, [(1,), (2,), (3,)])) == [(2, 1), (4, 2), (6, 3)]
    assert work.setups == 1 and work.closed == 1


def test_engines_are_chosen_by_name_and_an_unknown_one_lists_the_valid_ones():
    assert ENGINES == ("local", "ray") and distributed_engine("local") is None
    with pytest.raises(EmostreamError, match="unknown engine 'spark'; valid: local, ray"):
        distributed_engine("spark")
    with pytest.raises(EmostreamError, match="--workers must be >= 1"):
        distributed_engine("ray", workers=0)
    with pytest.raises(EmostreamError, match="--ray-address needs --engine ray"):
        distributed_engine("local", address="auto")


@pytest.fixture
def no_ray(monkeypatch):
    """Ray not installed: `import ray` fails as it does in an environment without the extra."""
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "pipeline.distributed.ray_engine", raising=False)


@pytest.mark.parametrize(
    "command",
    [
        ["run", "{tmp}", "{tmp}/x.mp4", "--out", "{tmp}/out"],
        ["score", "{tmp}", "--protocol", "afew", "--train", "Train", "--eval", "Val", "--out", "{tmp}/o"],
        ["train-head", "{tmp}", "--out", "{tmp}/head.joblib"],
    ],
)
def test_a_missing_ray_is_one_line_naming_the_extra_and_exit_2(no_ray, tmp_path, capsys, command):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    assert main([*args, "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"emostream: error: --engine ray needs Ray, which is not installed: {RAY_INSTALL_HINT}"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


def test_an_unknown_engine_is_argparse_one_line_listing_the_valid_ones(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["run", str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "spark"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(err) == 1 and "choose from 'local', 'ray'" in err[0], err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--ray-address", "auto"], "--ray-address needs --engine ray"),
        (["--workers", "2"], "--workers needs --engine ray here"),
        (["--engine", "ray", "--workers", "0"], "--workers must be >= 1"),
    ],
)
def test_bad_engine_options_are_one_line_and_exit_2(tmp_path, capsys, args, fragment):
    assert main(["run", str(tmp_path), str(tmp_path / "x.mp4"), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "o").exists()


def test_one_input_is_not_spread(media_dir, tmp_path, capsys):
    photo = str(media_dir / "pyfeat_happy_f15.jpg")
    assert main(["run", photo, "--out", str(tmp_path / "o"), "--engine", "ray"]) == 2
    assert "spread many inputs" in capsys.readouterr().err


def test_paths_resolve_against_the_driver_folder_on_another_node(tmp_path):
    assert resolved("clips/a.mp4", "/data/run") == "/data/run/clips/a.mp4"
    assert resolved("/abs/a.mp4", "/data/run") == "/abs/a.mp4"
    assert resolved("rtsp://cam/live", "/data/run") == "rtsp://cam/live"
    assert resolved("clips/a.mp4", None) == "clips/a.mp4"
    config = AnalyzerConfig(models_dir="models", extra_head="head.joblib")
    portable = portable_config(config)
    assert portable.models_dir == os.path.abspath("models") and portable.extra_head == os.path.abspath(
        "head.joblib"
    )
    assert portable_config(AnalyzerConfig()) == AnalyzerConfig()


def test_a_lent_analyzer_answers_as_a_fresh_one(media_dir, tmp_path):
    """A worker's analyzer serves one input after another: tracks, smoothing and summary.json's counts
    (faces below --min-face, shot cuts) start over for each, so every file equals a fresh analyzer's."""
    from pipeline.analyzer import FaceAnalyzer

    config = AnalyzerConfig(min_face_px=150)  # the face in the video (about 145 px) falls under it
    video, other = media_dir / "pyfeat_single_face.mp4", media_dir / "pyfeat_happy_f15.jpg"
    job = OfflineJob(str(video), tmp_path / "fresh", analyzer=config, write_video=False)
    fresh = run_job(job)
    lent = FaceAnalyzer(config)
    try:
        run_job(dataclasses.replace(job, out_dir=tmp_path / "before"), analyzer=lent)
        reused = run_job(dataclasses.replace(job, out_dir=tmp_path / "reused"), analyzer=lent)
        run_job(dataclasses.replace(job, input=str(other), out_dir=tmp_path / "after"), analyzer=lent)
    finally:
        lent.close()
    for name in ("faces.jsonl", "tracks.csv"):
        assert (tmp_path / "fresh" / name).read_bytes() == (tmp_path / "reused" / name).read_bytes()
    assert reused["tracking"] == fresh["tracking"] and reused["clip_emotion"] == fresh["clip_emotion"]
    assert fresh["tracking"]["faces_below_min_face"] > 0
    assert json.loads((tmp_path / "after" / "summary.json").read_text())["faces"] == 1


def test_the_local_engine_loads_the_models_once_for_many_inputs(media_dir, tmp_path, monkeypatch):
    from pipeline import analyzer as analyzer_module

    built = []
    real = analyzer_module.FaceAnalyzer
    monkeypatch.setattr(analyzer_module, "FaceAnalyzer", lambda *a, **k: built.append(1) or real(*a, **k))
    for name in ("pyfeat_happy_f15.jpg", "pyfeat_angry_f13.jpg", "pyfeat_surprise_f1.jpg"):
        os.symlink(media_dir / name, tmp_path / name)
    results = run_batch(expand_inputs([str(tmp_path)]), tmp_path / "out", OfflineJob("", tmp_path))
    assert [r.status for r in results] == ["done"] * 3 and len(built) == 1

"""The Ray engine on a local Ray instance (`ray.init(num_cpus=2)`, started once for the module): the same
rows and features as the local engine on real media, a worker killed twice (its video listed as failed,
the rest done), the command line end to end (run, score, train-head), and resume after an interrupted
driver."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import ray

from engines.errors import EmostreamError
from pipeline.cli.batch import INTERRUPTED
from pipeline.config import AnalyzerConfig
from pipeline.distributed.ray_engine import RayEngine, join_error, worker_count, worker_gpus
from pipeline.runtime.batch import expand_inputs, run_batch
from pipeline.runtime.offline import OfflineJob
from pipeline.scoring.features import extract_features
from tests.builders_clips import cached_dataset
from tests.pipeline.cli.test_main import emostream
from tests.pipeline.distributed.workers import WorkerKiller, wait_workers_gone

CONFIG = AnalyzerConfig(detect_every=2, heads=("emotion", "gender"))
WOMAN = "pexels_woman_emotions.mp4"  # 472 frames: long enough to be caught mid-run


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance for the module; its address lets command-line drivers join it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def afew(tmp_path_factory, media_dir):
    return cached_dataset(tmp_path_factory, media_dir, "afew")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, media_dir, afew):
    """Three short videos (one in a subfolder), a photo and a file that is no video (links, not copies)."""
    root = tmp_path_factory.mktemp("inputs") / "clips"
    (root / "sub").mkdir(parents=True)
    os.symlink(media_dir / "pyfeat_single_face.mp4", root / "single.mp4")
    os.symlink(afew / "Train/Happy/w_happy1.mp4", root / "w_happy1.mp4")
    os.symlink(afew / "Val/Happy/m_smile2.mp4", root / "sub" / "m_smile2.mp4")
    os.symlink(media_dir / "pyfeat_happy_f15.jpg", root / "sub" / "photo.jpg")
    (root / "sub" / "bad.mp4").write_bytes(bytes(range(256)) * 64)
    return root


def job(out) -> OfflineJob:
    return OfflineJob("", out, write_video=False)


@pytest.fixture(scope="module")
def local(inputs, tmp_path_factory):
    """The local engine's outputs for `inputs`: what every Ray run must equal."""
    out = tmp_path_factory.mktemp("local")
    run_batch(expand_inputs([str(inputs)]), out, job(out))
    return out


def index(out) -> dict[str, dict]:
    """index.csv by input, without the seconds each took."""
    rows = csv.DictReader((out / "index.csv").read_text().splitlines())
    return {r["input"]: {k: v for k, v in r.items() if k != "seconds"} for r in rows}


def assert_same_outputs(expected, actual, rel: str) -> None:
    for name in ("faces.jsonl", "tracks.csv"):
        assert (actual / rel / name).read_bytes() == (expected / rel / name).read_bytes(), (rel, name)
    tracking = [json.loads((d / rel / "summary.json").read_text())["tracking"] for d in (expected, actual)]
    assert tracking[0] == tracking[1]


DONE = ("single.mp4", "w_happy1.mp4", "sub/m_smile2.mp4", "sub/photo.jpg")


def test_ray_gives_the_local_engines_rows(ray_address, inputs, local, tmp_path):
    results = run_batch(expand_inputs([str(inputs)]), tmp_path, job(tmp_path), RayEngine(workers=2))
    assert len(results) == 5 and index(tmp_path) == index(local)  # in input order, as the local engine
    assert index(tmp_path)[str(inputs / "sub" / "bad.mp4")]["status"] == "failed"
    for rel in DONE:
        assert_same_outputs(local, tmp_path, rel)
        assert (tmp_path / rel / "finished.json").is_file()
    assert not (tmp_path / "sub" / "bad.mp4").exists()


def test_ray_gives_the_local_engines_features_and_the_driver_keeps_the_cache(ray_address, afew, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    clips = [afew / "Train/Happy/w_happy2.avi", afew / "Train/Neutral/m_neutral1.mp4", broken]
    clips.append(afew / "Val/Neutral/cartoon_noface.mp4")
    seen = []
    on_ray = extract_features(
        clips,
        CONFIG,
        cache_dir=tmp_path / "ray",
        engine=RayEngine(workers=2),
        on_clip=lambda p, s: seen.append(s),
    )
    here = extract_features(clips, CONFIG, cache_dir=tmp_path / "local")
    assert on_ray.extracted == here.extracted == 3 and sorted(seen) == ["extracted"] * 3 + ["failed"]
    assert on_ray.failed == here.failed and "broken.mp4" in on_ray.failed[broken]
    assert on_ray.runtime == here.runtime
    for clip in clips[:2] + clips[3:]:
        a, b = here.features[clip], on_ray.features[clip]
        assert np.array_equal(a.frame, b.frame) and np.array_equal(a.track_id, b.track_id)
        assert all(np.array_equal(a.outputs[k], b.outputs[k]) for k in a.outputs), clip.name
    assert extract_features(clips, CONFIG, cache_dir=tmp_path / "ray").cached == 3  # saved by the driver


def test_a_worker_that_cannot_start_gives_the_local_one_line_error(ray_address, afew, tmp_path):
    clips = [afew / "Train/Neutral/m_neutral1.mp4"]
    config = dataclasses.replace(CONFIG, detector="no-such-detector")
    with pytest.raises(EmostreamError) as here:
        extract_features(clips, config, cache_dir=tmp_path)
    with pytest.raises(EmostreamError) as on_ray:
        extract_features(clips, config, cache_dir=tmp_path, engine=RayEngine(workers=1))
    assert str(on_ray.value) == str(here.value) and "\n" not in str(on_ray.value)


def test_workers_ask_for_a_gpu_when_a_cuda_backend_runs_the_net():
    assert worker_gpus("onnxruntime", cluster_gpus=4) == 0
    assert worker_gpus("torch", cluster_gpus=0) == worker_gpus("tensorrt", cluster_gpus=8) == 1
    assert worker_gpus("auto", cluster_gpus=2) == 1 and worker_gpus("auto", cluster_gpus=0) == 0
    assert worker_gpus("torch", cluster_gpus=8, asked=0.5) == 0.5
    cluster = {"CPU": 16.0, "GPU": 2.0}
    assert worker_count(None, 100, cluster, 1, 0) == 16  # one per CPU
    assert worker_count(None, 100, cluster, 1, 1) == 2  # one per GPU
    assert worker_count(None, 3, cluster, 1, 0) == 3 and worker_count(5, 100, cluster, 1, 0) == 5
    assert worker_count(None, 100, {"CPU": 1.0}, 4, 0) == 1  # never none


class NotOnTheNodes:
    """A work the workers cannot load (as on nodes without emostream): unpickling imports a missing module."""

    def __reduce__(self):
        return importlib.import_module, ("emostream_missing_on_this_node",)


def test_workers_that_cannot_start_leave_the_pool_and_none_left_is_one_line(ray_address):
    with pytest.raises(EmostreamError) as e:
        list(RayEngine(workers=2).map(NotOnTheNodes(), [(1,), (2,), (3,)]))
    assert str(e.value).startswith("no Ray worker could start (ModuleNotFoundError: No module named ")
    assert "emostream_missing_on_this_node" in str(e.value) and "must be installed on every node" in str(
        e.value
    )


def test_a_cluster_that_cannot_be_joined_is_one_line():
    """Ray's core logs each refused attempt for 20 s on stderr (kept aside); the user gets one line."""
    logged = (
        "[W gcs_client.cc:210] Failed to get cluster ID: Unauthenticated: RPC error: InvalidAuthToken\n" * 3
    )
    refused = join_error("10.0.0.1:6379", ConnectionError("Failed to connect to Ray cluster"), logged)
    assert "RAY_AUTH_MODE=token" in refused and "\n" not in refused
    other = join_error("auto", ConnectionError("Could not find any running Ray instance.\nPlease..."), "")
    assert other == (
        "--ray-address auto: cannot start or join Ray (Could not find any running Ray instance. Please...)"
    )


def test_a_video_whose_worker_dies_twice_is_listed_failed_and_the_rest_done(
    ray_address, media_dir, inputs, local, tmp_path
):
    src = tmp_path / "in"
    src.mkdir()
    os.symlink(media_dir / WOMAN, src / "a_long.mp4")  # first: the one worker runs it first
    os.symlink(inputs / "single.mp4", src / "single.mp4")
    killer = WorkerKiller(times=2)  # the video's first run and its retry, each on a fresh process
    killer.start()
    try:
        results = run_batch(expand_inputs([str(src)]), tmp_path / "out", job(tmp_path), RayEngine(workers=1))
    finally:
        killer.stop()
    rows = {os.path.basename(r.input): r for r in results}
    assert len(killer.killed) == 2
    assert rows["a_long.mp4"].status == "failed" and "its worker died 2 times" in rows["a_long.mp4"].error
    assert rows["single.mp4"].status == "done"
    assert_same_outputs(local, tmp_path / "out", "single.mp4")
    assert not (tmp_path / "out" / "a_long.mp4" / "finished.json").exists()  # redone by a re-run


def test_cli_run_joins_a_cluster_from_another_folder_with_relative_paths(ray_address, inputs, local):
    """Workers start in the cluster's folder, not the driver's: relative inputs and --out still work."""
    out = inputs.parent / "cli-out"
    r = emostream(
        "run", "clips", "--out", "cli-out", "--no-video", "--engine", "ray", "--ray-address", ray_address,
        cwd=inputs.parent,
    )  # fmt: skip
    assert r.returncode == 3, r.stderr  # bad.mp4 failed, the rest done
    assert "bad.mp4" in r.stderr and "Traceback" not in r.stderr
    assert "4 done, 0 skipped, 0 partial, 1 failed of 5 inputs" in r.stdout
    statuses = {k: v["status"] for k, v in index(out).items()}
    assert statuses == {"clips/" + rel: "done" for rel in DONE} | {"clips/sub/bad.mp4": "failed"}
    for rel in DONE:
        assert_same_outputs(local, out, rel)


@pytest.mark.slow  # AFEW's clips extracted on both engines, then a head's (~30 s)
def test_cli_score_and_train_head_on_ray_equal_the_local_engine(ray_address, afew, tmp_path):
    def score(tag: str, *engine: str):
        r = emostream(
            "score", afew, "--protocol", "afew", "--train", "Train", "--eval", "Val", "--detect-every", "2",
            "--out", tmp_path / tag, "--cache-dir", tmp_path / f"cache-{tag}", *engine,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return json.loads((tmp_path / tag / "metrics.json").read_text())

    here = score("local")
    on_ray = score("ray", "--engine", "ray", "--ray-address", ray_address, "--workers", "2")
    assert (tmp_path / "ray" / "predictions.csv").read_text() == (
        tmp_path / "local" / "predictions.csv"
    ).read_text()
    assert {k: on_ray[k] for k in ("accuracy", "uar", "macro_f1")} == {
        k: here[k] for k in ("accuracy", "uar", "macro_f1")
    }
    assert (
        on_ray["extraction"]["engine"] == "ray"
        and on_ray["extraction"]["extracted"] == here["extraction"]["extracted"] > 10
    )

    def head(tag: str, cache: str, *engine: str) -> str:
        out = tmp_path / f"{tag}.joblib"
        r = emostream(
            "train-head", afew / "Train", "--out", out, "--detect-every", "2", "--cache-dir", cache, *engine
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.replace(str(out), "HEAD")

    fresh = str(tmp_path / "cache-head")  # nothing cached: the Ray workers extract every clip
    assert head("ray", fresh, "--engine", "ray", "--ray-address", ray_address) == head(
        "local", str(tmp_path / "cache-local")
    )


def _finished(out) -> int:
    return len(list(out.glob("*/finished.json")))


def _driver(src, out, *engine: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(src), "--out", str(out), "--no-video"]
    return subprocess.Popen(
        [*cmd, "--engine", "ray", "--workers", "1", *engine], stderr=subprocess.PIPE, text=True
    )


def _stop_after(driver: subprocess.Popen, out, finished: int, sig: int) -> str:
    """Send `sig` to the driver once `finished` videos have their marker; its stderr."""
    while _finished(out) < finished and driver.poll() is None:
        time.sleep(0.05)
    driver.send_signal(sig)
    return driver.communicate(timeout=300)[1]


@pytest.mark.slow  # three drivers, one with its own Ray instance, four 20 s videos on one worker (~40 s)
def test_resume_after_ctrl_c_and_after_a_killed_driver(ray_address, media_dir, tmp_path):
    """Ctrl-C on a driver with its own Ray instance, then a driver on the cluster killed outright: each
    re-run skips what finished, and the end result is every video's full, correct output."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for n in range(4):
        os.symlink(media_dir / WOMAN, src / f"v{n}.mp4")
    expected = tmp_path / "expected"
    run_batch(expand_inputs([str(src / "v0.mp4")]), expected, job(expected))

    interrupted = _stop_after(_driver(src, out), out, 1, signal.SIGINT)  # its own local Ray instance
    assert interrupted.strip().splitlines()[-1] == INTERRUPTED and "Traceback" not in interrupted
    wait_workers_gone()
    first = _finished(out)
    assert 1 <= first < 4
    crashed = _driver(src, out, "--ray-address", ray_address)
    _stop_after(crashed, out, first + 1, signal.SIGKILL)
    assert crashed.returncode == -signal.SIGKILL
    wait_workers_gone()  # Ray ends a dead driver's workers
    second = _finished(out)
    assert first < second <= 4  # the video in flight may finish before Ray ends its worker

    last = emostream("run", src, "--out", out, "--no-video", "--engine", "ray", "--ray-address", ray_address)
    assert last.returncode == 0, last.stderr
    statuses = [row["status"] for row in index(out).values()]
    assert statuses.count("skipped") == second and statuses.count("done") == 4 - second
    for n in range(4):
        for name in ("faces.jsonl", "tracks.csv"):
            assert (out / f"v{n}.mp4" / name).read_bytes() == (expected / "v0.mp4" / name).read_bytes()

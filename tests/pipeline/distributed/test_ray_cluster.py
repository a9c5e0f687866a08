"""A two-node Ray cluster simulated on this machine (`ray.cluster_utils.Cluster`, one CPU per node, so one
worker on each): one worker process is killed while it runs a video, Ray restarts it and retries the
video, and the job completes with every output equal to the local engine's."""

from __future__ import annotations

import logging
import os

import pytest
import ray
from ray.cluster_utils import Cluster

from pipeline.distributed.ray_engine import RayEngine
from pipeline.runtime.batch import expand_inputs, run_batch
from pipeline.runtime.offline import OfflineJob
from tests.pipeline.distributed.workers import WorkerKiller


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow  # two Ray nodes, two workers loading the models, one of them twice (~35 s on 2 cores)
def test_a_worker_killed_mid_video_on_a_two_node_cluster_still_completes_the_job(
    two_nodes, media_dir, tmp_path
):
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        os.symlink(media_dir / "pexels_woman_emotions.mp4", src / name)  # long enough to be caught mid-run
    os.symlink(media_dir / "pyfeat_single_face.mp4", src / "single.mp4")
    items = expand_inputs([str(src)])
    expected = tmp_path / "local"
    run_batch(items, expected, OfflineJob("", expected, write_video=False))

    out = tmp_path / "ray"
    killer = WorkerKiller(times=1, ready=lambda: any(out.glob("*/finished.json")))  # once a video is done
    killer.start()
    try:
        results = run_batch(items, out, OfflineJob("", out, write_video=False), RayEngine(workers=2))
    finally:
        killer.stop()
    assert len(killer.killed) == 1
    # the killed worker's video is retried; when the kill landed after that video's finished.json was
    # written, the retry finds it complete and the row is still this run's "done" (nothing was finished
    # before the run began); every video's outputs equal the local ones
    statuses = [r.status for r in results]
    assert statuses == ["done"] * len(items), statuses
    for item in items:
        for name in ("faces.jsonl", "tracks.csv"):
            assert (out / item.rel_out / name).read_bytes() == (expected / item.rel_out / name).read_bytes()
        assert (out / item.rel_out / "finished.json").is_file()

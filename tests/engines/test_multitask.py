"""The fused multi-task net: one graph equals its heads run alone, batching, export cache, real photos."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.convert import export
from engines.errors import EmostreamError, ModelStoreError
from engines.labels import gender_label, top_emotion
from engines.multitask import FusedNet, MultiTaskNet, NetConfig
from engines.nets.heads import DEFAULT_HEADS, build_head
from engines.nets.ssrnet import build_ssrnet
from engines.store.registry import MODELS
from engines.store.store import ModelStore


@pytest.fixture(scope="module")
def net() -> MultiTaskNet:
    return MultiTaskNet(NetConfig(quality="fast"), ModelStore())


@pytest.fixture(scope="module")
def accurate() -> MultiTaskNet:
    return MultiTaskNet(NetConfig(quality="accurate"), ModelStore())


def heads_alone(net: MultiTaskNet, crops: np.ndarray) -> dict[str, np.ndarray]:
    """Every head built on its own and run in torch on `crops`, embedding concatenated by hand."""
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    out, features = {}, []
    for spec in net.specs:
        with torch.no_grad():
            value, feats = build_head(spec, net.store, net.crop_size, net.crop_scale)(x)
        out[spec.name] = value.numpy()
        features.append(feats.numpy())
    return {**out, "embedding": np.concatenate(features, axis=1)}


@pytest.mark.parametrize("which", ["net", "accurate"])
def test_fused_graph_equals_each_head_run_alone(which, request, batch32):
    fused = request.getfixturevalue(which)
    alone = heads_alone(fused, batch32)
    out = fused.infer(batch32)
    assert set(out) == set(alone)
    for name, value in alone.items():
        np.testing.assert_allclose(out[name], value, atol=1e-4, rtol=0, err_msg=name)


def test_fused_age_equals_the_standalone_ssrnet_module(net, batch32, models_dir):
    """The age output is SSR-Net itself on the head's window: the module the SSR tests check vs TF."""
    ssr = build_ssrnet(models_dir / "ssrnet_age_imdb.h5", "age")
    head = net.torch_module().heads[net.config.heads.index("age")]
    with torch.no_grad():
        window = head.prep(torch.from_numpy(batch32).permute(0, 3, 1, 2).float())
        years = ssr(window).numpy()
    np.testing.assert_allclose(net.infer(batch32)["age"], years, atol=1e-4, rtol=0)
    assert years.min() > 5 and years.max() < 80  # real adult faces: plausible ages, not a saturated map


def test_outputs_have_the_documented_shapes_and_ranges(net, batch32):
    out = net.infer(batch32)
    assert net.config.heads == DEFAULT_HEADS == ("emotion", "gender", "age")
    assert net.output_names == ("emotion", "gender", "age", "embedding")
    assert {k: v.shape for k, v in out.items()} == {
        "emotion": (32, 7),
        "gender": (32,),
        "age": (32,),
        "embedding": (32, 128 + 128 + 358),
    }
    np.testing.assert_allclose(out["emotion"].sum(1), 1.0, atol=1e-5)
    assert ((out["gender"] >= 0) & (out["gender"] <= 1)).all()


@pytest.mark.parametrize("which", ["net", "accurate"])
@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_batch_size_does_not_change_per_face_results(which, batch_size, request, batch32):
    fused = request.getfixturevalue(which)
    whole = fused.infer(batch32)
    parts = [fused.infer(batch32[i : i + batch_size]) for i in range(0, len(batch32), batch_size)]
    for name in fused.output_names:
        np.testing.assert_allclose(np.concatenate([p[name] for p in parts]), whole[name], atol=1e-5, rtol=0)


def test_accurate_is_no_less_accurate_than_fast_on_the_labelled_photos(net, accurate, labelled):
    crops, labels = labelled
    hits = {
        q: sum(a == b for a, b in zip(top_emotion(n.infer(crops)["emotion"])[1], labels, strict=True))
        for q, n in (("fast", net), ("accurate", accurate))
    }
    assert len(labels) == 12
    assert hits["accurate"] >= hits["fast"] > len(labels) // 2, hits


@pytest.mark.parametrize(
    ("photo", "emotion", "gender"),
    [
        ("pyfeat_happy_f15.jpg", "happy", "woman"),
        ("pyfeat_surprise_f1.jpg", "surprise", "woman"),
        ("fer_justin_smile.jpg", "happy", "man"),
        ("pyfeat_single_face_smile.jpg", "happy", "man"),
        ("pyfeat_neutral_man.jpg", "neutral", "man"),
    ],
)
def test_real_photos_get_their_posed_emotion_and_gender(photo, emotion, gender, net, crops_of):
    out = net.infer(crops_of(128)[photo])
    assert top_emotion(out["emotion"])[1] == [emotion]
    assert gender_label(out["gender"]) == [gender]


def test_empty_batch_gives_empty_arrays_without_running_the_backend(net):
    class Refusing:
        name = "refusing"

        def run(self, crops_bgr):
            raise AssertionError("the backend ran on an empty batch")

    empty_net = MultiTaskNet(NetConfig(quality="fast"), net.store)
    empty_net.backend = Refusing()
    out = empty_net.infer(np.zeros((0, 128, 128, 3), np.uint8))
    assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
        "emotion": ((0, 7), np.float32),
        "gender": ((0,), np.float32),
        "age": ((0,), np.float32),
        "embedding": ((0, 614), np.float32),
    }


def test_emotion_only_head_set_matches_the_full_net(net, batch32):
    only = MultiTaskNet(NetConfig(heads=("emotion",), quality="fast"), net.store)
    out = only.infer(batch32)
    assert set(out) == {"emotion", "embedding"} and out["embedding"].shape == (32, 128)
    assert only.models == [("fer_mini_xception", net.store.sha256("fer_mini_xception"))]
    np.testing.assert_allclose(out["emotion"], net.infer(batch32)["emotion"], atol=1e-6)
    np.testing.assert_allclose(out["embedding"], net.infer(batch32)["embedding"][:, :128], atol=1e-6)


def test_the_export_cache_is_per_head_set_and_quality(net, accurate):
    paths = {
        (heads, quality): MultiTaskNet(NetConfig(heads=heads, quality=quality), net.store).onnx_path
        for heads in (DEFAULT_HEADS, ("emotion",))
        for quality in ("fast", "accurate")
    }
    assert len(set(paths.values())) == 4
    assert paths[(DEFAULT_HEADS, "fast")] == net.onnx_path
    assert paths[(DEFAULT_HEADS, "accurate")] == accurate.onnx_path


def test_second_construction_hits_the_export_cache(tmp_path):
    store = ModelStore(cache_dir=tmp_path)
    first = MultiTaskNet(NetConfig(heads=("gender",)), store)
    stat = first.onnx_path.stat()
    second = MultiTaskNet(NetConfig(heads=("gender",)), store)
    assert second.onnx_path == first.onnx_path
    assert (second.onnx_path.stat().st_mtime_ns, second.onnx_path.stat().st_ino) == (
        stat.st_mtime_ns,
        stat.st_ino,
    )
    assert first.onnx_path.parent == store.derived_dir / "onnx"
    names = sorted(p.name for p in first.onnx_path.parent.iterdir())  # no temp files left
    assert names == [first.onnx_path.name, first.onnx_path.name + ".sha256"]


def test_a_flipped_byte_in_a_cached_graph_is_caught_and_exported_again(tmp_path):
    """Issue 15: one flipped weight byte still parses as ONNX and silently changed the outputs."""
    store = ModelStore(cache_dir=tmp_path)
    net = MultiTaskNet(NetConfig(heads=("emotion",)), store)
    crops = np.random.default_rng(0).integers(0, 255, (4, 128, 128, 3), dtype=np.uint8)
    good = net.infer(crops)["emotion"]
    path, whole = net.onnx_path, bytearray(net.onnx_path.read_bytes())
    stat = path.stat()
    whole[len(whole) // 2] ^= 0xFF
    path.write_bytes(bytes(whole))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with its old mtime and size
    import onnx

    onnx.load(str(path))  # still a whole model: only the hash tells
    again = MultiTaskNet(NetConfig(heads=("emotion",)), ModelStore(cache_dir=tmp_path))
    assert again.onnx_path == path and path.read_bytes() != bytes(whole)
    np.testing.assert_allclose(again.infer(crops)["emotion"], good, atol=1e-6)
    for f in (path, export.digest_path(path)):
        assert f.stat().st_mode & 0o777 == 0o644


def test_source_models_are_verified_even_when_the_graph_is_cached(tmp_path, models_dir):
    """Issue 15: with a warm cache a corrupt mirror model went unnoticed while summary.json named its
    pinned sha256."""
    mirror = tmp_path / "mirror"
    shutil.copytree(models_dir, mirror)
    store = ModelStore(mirror, cache_dir=tmp_path / "cache")
    assert MultiTaskNet(
        NetConfig(heads=("gender",), quality="fast"), store
    ).onnx_path.is_file()  # the graph is cached now
    (name,) = {
        m for s in MultiTaskNet(NetConfig(heads=("gender",), quality="fast"), store).specs for m in s.models
    }
    model = mirror / MODELS[name].filename
    os.chmod(model, 0o644)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match="sha256"):
        _ = MultiTaskNet(
            NetConfig(heads=("gender",), quality="fast"), ModelStore(mirror, cache_dir=tmp_path / "cache")
        ).onnx_path


def test_a_warm_start_hashes_nothing_again(tmp_path):
    store = ModelStore(cache_dir=tmp_path)
    assert MultiTaskNet(NetConfig(heads=("gender",)), store).onnx_path.is_file()
    warm = ModelStore(cache_dir=tmp_path)  # a new process's store: the memo is read from the cache
    assert MultiTaskNet(NetConfig(heads=("gender",)), warm).onnx_path.is_file()
    assert warm._hashes.hashed == 0


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_cached_graph_is_exported_again(tmp_path, damage):
    store = ModelStore(cache_dir=tmp_path)
    path = MultiTaskNet(NetConfig(heads=("gender",)), store).onnx_path
    whole = path.read_bytes()
    damaged = {"truncate": whole[: len(whole) // 2], "garbage": b"not a graph" * 100, "empty": b""}
    path.write_bytes(damaged[damage])
    again = MultiTaskNet(NetConfig(heads=("gender",)), store)
    assert again.infer(np.zeros((2, 128, 128, 3), np.uint8))["gender"].shape == (2,)
    assert again.onnx_path == path and path.stat().st_size == len(whole)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by every user of a shared cache


def test_a_cached_graph_runs_without_importing_torch(net):
    code = (
        "import sys, numpy as np; from engines.multitask import MultiTaskNet, NetConfig; "
        "out = MultiTaskNet(NetConfig()).infer(np.zeros((1, 128, 128, 3), np.uint8)); "
        "assert out['age'].shape == (1,); assert 'torch' not in sys.modules, 'torch imported'"
    )
    assert net.onnx_path.is_file()  # exported into this session's cache, which the child inherits
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2], env=os.environ.copy()
    )


def test_a_crash_during_export_leaves_no_file(tmp_path):
    class Exploding(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    path = tmp_path / "onnx" / "x.onnx"
    with pytest.raises(RuntimeError, match="boom"):
        export.ensure_onnx(path, Exploding, lambda: torch.zeros(1, 3), ("y",))
    assert os.listdir(path.parent) == []


def test_fused_net_is_importable_from_multitask_and_runs_torch(net, batch32):
    module = net.torch_module()
    assert isinstance(module, FusedNet)
    named = module.run_named(torch.from_numpy(batch32[:3]))
    for name, value in net.infer(batch32[:3]).items():
        np.testing.assert_allclose(named[name].numpy(), value, atol=1e-4, err_msg=name)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: NetConfig(heads=("emotion", "smile")), "unknown head 'smile'"),
        (
            lambda: NetConfig(quality="best"),
            "unknown quality 'best'; valid: mtl, fast, accurate, affectnet, rafdb",
        ),
        (lambda: NetConfig(heads=()), "non-empty"),
        (lambda: NetConfig(heads=("age", "age")), "without repeats"),
    ],
)
def test_bad_configs_raise_one_line_errors(make, message):
    with pytest.raises(EmostreamError, match=message):
        MultiTaskNet(make())


@pytest.mark.parametrize("heads", ["emotion", ["emotion"], ("emotion",)])
def test_config_heads_are_stored_as_a_tuple(heads):
    assert NetConfig(heads=heads).heads == ("emotion",)


def test_wrong_crop_shape_is_refused(net):
    with pytest.raises(ValueError, match=r"\(N,128,128,3\) uint8"):
        net.infer(np.zeros((2, 64, 64, 3), np.uint8))

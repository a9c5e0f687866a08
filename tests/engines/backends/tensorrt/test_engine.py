"""TensorRT engine cache (engines/backends/tensorrt/engine.py): keys, build options, precision flags,
timing cache, sidecars and rebuilds, and the `build-engine` command without TensorRT.

TensorRT is not installable on the development machines: the cache takes its builder and
deserializer as callables, so it is tested here with small fakes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types

import pytest

from engines.backends.tensorrt.engine import (
    ENGINE_FORMAT,
    BuildOptions,
    EngineBuildError,
    EngineCache,
    EngineKey,
    effective_precision,
    ensure_engine,
    make_key,
    set_precision,
    use_timing_cache,
)
from engines.errors import BackendUnavailable, EmostreamError
from engines.files import write_atomic
from pipeline.cli import main as cli
from tests.engines.backends.tensorrt.fakes import HAS_TENSORRT, KEY


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("onnx_sha256", "cd" * 32),
        ("trt_version", "10.8.0"),
        ("gpu_name", "NVIDIA GeForce RTX 4090"),
        ("compute_capability", "8.9"),
        ("precision", "fp32"),
        ("profile", (1, 16, 128)),
        ("profile", (1, 32, 64)),
        ("profile", (2, 32, 128)),
        ("workspace_mb", 2048),
        ("format", "emostream-trt-v0"),
    ],
)
def test_every_key_field_changes_the_cache_entry(tmp_path, field, other):
    changed = dataclasses.replace(KEY, **{field: other})
    assert changed.digest() != KEY.digest()
    assert EngineCache(tmp_path).engine_path(changed) != EngineCache(tmp_path).engine_path(KEY)


def test_the_key_round_trips_through_json():
    assert EngineKey.from_dict(json.loads(json.dumps(KEY.to_dict()))) == KEY
    with pytest.raises(ValueError, match="an engine key has the fields"):
        EngineKey.from_dict({k: v for k, v in KEY.to_dict().items() if k != "gpu_name"})


def test_make_key_takes_the_profile_and_workspace_from_the_options():
    options = BuildOptions(precision="fp32", max_batch=64, opt_batch=100, workspace_mb=512)
    key = make_key("ef" * 32, options, "10.7.0", ("NVIDIA L4", "8.9"))
    assert (key.profile, key.workspace_mb, key.precision, key.gpu_name) == (
        (1, 64, 64),
        512,
        "fp32",
        "NVIDIA L4",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "int8"}, "unknown precision 'int8'; valid: fp32, fp16"),
        ({"max_batch": 0}, "max batch must be >= 1, got 0"),
        ({"opt_batch": -1}, "optimum batch must be >= 1, got -1"),
        ({"workspace_mb": 0}, "workspace must be >= 1 MiB, got 0"),
    ],
)
def test_build_options_refuse_bad_values_in_one_line(kwargs, message):
    with pytest.raises(EmostreamError) as err:
        BuildOptions(**kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("requested", "fast_fp16", "expected"),
    [("fp16", True, "fp16"), ("fp16", False, "fp32"), ("fp32", True, "fp32"), ("fp32", False, "fp32")],
)
def test_fp16_only_where_the_gpu_has_it(requested, fast_fp16, expected):
    assert effective_precision(requested, fast_fp16) == expected


TRT10_FLAGS = types.SimpleNamespace(FP16="FP16", TF32="TF32")
TRT11_FLAGS = types.SimpleNamespace(TF32="TF32")  # TensorRT 11 dropped BuilderFlag.FP16


class FakeConfig:
    """A builder config recording its flags; timing caches are ("cache", blob) or refused as TensorRT does."""

    def __init__(self) -> None:
        self.set, self.cleared, self.timing_cache = [], [], None

    def set_flag(self, flag):
        self.set.append(flag)

    def clear_flag(self, flag):
        self.cleared.append(flag)

    def create_timing_cache(self, blob: bytes):
        if blob == b"raises":
            raise RuntimeError("timing cache is corrupt")
        return None if blob == b"corrupt" else ("cache", blob)

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        if cache[1] == b"other device":
            return False
        self.timing_cache = cache
        return True


@pytest.mark.parametrize(
    ("flags", "precision", "set_", "cleared"),
    [
        (TRT10_FLAGS, "fp16", ["FP16"], []),
        (TRT10_FLAGS, "fp32", [], ["TF32"]),  # TensorRT would otherwise run fp32 convolutions in TF32
        (TRT11_FLAGS, "fp32", [], ["TF32"]),
        (types.SimpleNamespace(), "fp32", [], []),  # no TF32 flag: nothing to clear
    ],
)
def test_precision_flags(flags, precision, set_, cleared):
    config = FakeConfig()
    set_precision(types.SimpleNamespace(BuilderFlag=flags, __version__="10.7.0"), config, precision)
    assert (config.set, config.cleared) == (set_, cleared)


def test_fp16_without_a_builder_flag_is_a_one_line_build_error():
    trt = types.SimpleNamespace(BuilderFlag=TRT11_FLAGS, __version__="11.0.0")
    with pytest.raises(EngineBuildError) as err:
        set_precision(trt, FakeConfig(), "fp16")
    assert str(err.value) == (
        "TensorRT 11.0.0 has no BuilderFlag.FP16 (removed in TensorRT 11): ask for precision fp32, "
        'or install TensorRT 10 with pip install "emostream[tensorrt]"'
    )
    assert isinstance(err.value, BackendUnavailable)  # so `auto` moves on to the next backend


def test_ensure_engine_refuses_fp16_on_tensorrt_11_before_any_work(monkeypatch, tmp_path):
    class Logger:
        ERROR = 1

        def __init__(self, level):
            pass

    fake = types.SimpleNamespace(
        __version__="11.0.0", Logger=Logger, Builder=lambda logger: object(), BuilderFlag=TRT11_FLAGS
    )
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    missing = tmp_path / "not-read.onnx"  # hashing it would raise FileNotFoundError
    with pytest.raises(EngineBuildError, match=r"has no BuilderFlag\.FP16"):
        ensure_engine(missing, tmp_path / "trt", BuildOptions(precision="fp16"))
    assert not (tmp_path / "trt").exists()


@pytest.mark.parametrize(
    ("saved", "used"),
    [
        (None, b""),  # first build: an empty cache
        (b"timings", b"timings"),
        (b"corrupt", b""),  # create_timing_cache returned None
        (b"raises", b""),
        (b"other device", b""),  # set_timing_cache refused it
    ],
)
def test_a_missing_or_unusable_timing_cache_starts_an_empty_one(tmp_path, saved, used):
    path = tmp_path / "timing.cache"
    if saved is not None:
        path.write_bytes(saved)
    config = FakeConfig()
    use_timing_cache(config, path)
    assert config.timing_cache == ("cache", used)


class FakeBuilder:
    """Stands in for TensorRT: 'engines' are bytes naming their key; anything else does not load."""

    def __init__(self) -> None:
        self.builds: list[EngineKey] = []

    def build(self, key: EngineKey) -> bytes:
        self.builds.append(key)
        return b"engine:" + key.digest().encode()

    @staticmethod
    def deserialize(data: bytes):
        return ("engine", data) if data.startswith(b"engine:") else None


def _load(cache: EngineCache, builder: FakeBuilder, key: EngineKey = KEY):
    return cache.load_or_build(key, builder.build, builder.deserialize)


def test_first_use_builds_and_the_second_loads(tmp_path):
    cache, builder = EngineCache(tmp_path / "trt"), FakeBuilder()
    first = _load(cache, builder)
    second = _load(cache, builder)
    assert (first.built, second.built, len(builder.builds)) == (True, False, 1)
    assert first.path == second.path == cache.engine_path(KEY) and first.engine == second.engine
    assert cache.recorded_key(first.path) == KEY
    assert sorted(p.name for p in (tmp_path / "trt").iterdir()) == sorted(
        [first.path.name, first.path.with_suffix(".json").name]
    )


def _foreign_sidecar(path):
    data = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**data, "trt_version": "8.6.1"}))


def _no_sidecar(path):
    path.with_suffix(".json").unlink()


def _garbled_sidecar(path):
    path.with_suffix(".json").write_text("{not json")


def _corrupt_engine(path):
    path.write_bytes(b"\x00" * 64)


def _truncated_engine(path):
    path.write_bytes(path.read_bytes()[:5])


@pytest.mark.parametrize(
    "damage", [_foreign_sidecar, _no_sidecar, _garbled_sidecar, _corrupt_engine, _truncated_engine]
)
def test_a_stale_foreign_or_broken_engine_is_rebuilt_not_loaded(tmp_path, damage):
    cache, builder = EngineCache(tmp_path), FakeBuilder()
    path = _load(cache, builder).path
    damage(path)
    again = _load(cache, builder)
    assert again.built and len(builder.builds) == 2
    assert FakeBuilder.deserialize(path.read_bytes()) is not None and cache.recorded_key(path) == KEY


def test_a_deserializer_that_raises_on_the_cached_file_means_rebuild(tmp_path):
    cache, builder = EngineCache(tmp_path), FakeBuilder()
    _load(cache, builder)
    calls = []

    def picky(data: bytes):
        calls.append(data)
        if len(calls) == 1:
            raise RuntimeError("engine plan was built for another TensorRT")
        return FakeBuilder.deserialize(data)

    assert cache.load_or_build(KEY, builder.build, picky).built and len(builder.builds) == 2


def test_a_failed_build_leaves_nothing_under_the_final_names(tmp_path):
    cache = EngineCache(tmp_path)

    def broken(key):
        raise EngineBuildError("parser refused the graph")

    with pytest.raises(EngineBuildError):
        cache.load_or_build(KEY, broken, FakeBuilder.deserialize)
    with pytest.raises(EngineBuildError, match="cannot deserialize"):
        cache.load_or_build(KEY, lambda key: b"junk", FakeBuilder.deserialize)
    assert list(tmp_path.iterdir()) == []


def test_engines_cached_before_fp32_dropped_tf32_are_rebuilt(tmp_path):
    """Format v1 engines were fp32 with TF32 on; the current format names another cache entry."""
    cache, builder = EngineCache(tmp_path), FakeBuilder()
    old = _load(cache, builder, dataclasses.replace(KEY, precision="fp32", format="emostream-trt-v1"))
    new = _load(cache, builder, dataclasses.replace(KEY, precision="fp32"))
    assert KEY.format == ENGINE_FORMAT != "emostream-trt-v1"
    assert new.built and new.path != old.path and len(builder.builds) == 2


def test_keys_differing_only_in_gpu_live_side_by_side(tmp_path):
    cache, builder = EngineCache(tmp_path), FakeBuilder()
    other = dataclasses.replace(KEY, gpu_name="NVIDIA A10", compute_capability="8.6")
    paths = {_load(cache, builder, k).path for k in (KEY, other, KEY, other)}
    assert len(paths) == 2 and len(builder.builds) == 2
    assert cache.timing_cache_path(KEY) != cache.timing_cache_path(other)
    assert cache.timing_cache_path(KEY) == cache.timing_cache_path(dataclasses.replace(KEY, precision="fp32"))


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["build-engine"],
            "backend 'tensorrt' is not available: the tensorrt module is not installed; "
            'pip install "emostream[tensorrt]"',
        ),
        (["build-engine", "--max-batch", "0"], "max batch must be >= 1, got 0"),
        (["build-engine", "--workspace", "0"], "workspace must be >= 1 MiB, got 0"),
    ],
)
def test_build_engine_without_tensorrt_exits_2_with_the_reason(capsys, argv, message):
    assert cli.main(argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err == f"emostream: error: {message}\n"


def _flipped_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # still deserializes (the fake checks the prefix, TensorRT checks little more)
    path.write_bytes(bytes(data))


def test_an_engine_that_no_longer_hashes_to_its_sidecar_is_rebuilt(tmp_path):
    """Issue 15: a flipped byte deserializes fine and computes wrong numbers; the sidecar's sha256 tells."""
    cache, builder = EngineCache(tmp_path), FakeBuilder()
    path = _load(cache, builder).path
    _flipped_byte(path)
    assert FakeBuilder.deserialize(path.read_bytes()) is not None
    again = _load(cache, builder)
    assert again.built and len(builder.builds) == 2


def test_engine_sidecar_and_timing_cache_are_0644(tmp_path):
    """Shared caches: mkstemp makes 0600, every cached file must be readable by the other users, whatever
    the umask (build_serialized writes the timing cache with the same writer)."""
    old = os.umask(0o077)
    try:
        cache, builder = EngineCache(tmp_path), FakeBuilder()
        path = _load(cache, builder).path
        timing = cache.timing_cache_path(KEY)
        write_atomic(timing, b"timing blob")
    finally:
        os.umask(old)
    for f in (path, cache.sidecar_path(path), timing):
        assert f.stat().st_mode & 0o777 == 0o644, f

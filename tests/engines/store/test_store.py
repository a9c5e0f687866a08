"""ModelStore: mirror -> cache -> download resolution, repair of a corrupt cache, verify/list/fetch reports.

Downloads go to a real HTTP server on 127.0.0.1 (EMOSTREAM_DOWNLOAD_BASE) serving the mirror's real bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.errors import ModelStoreError
from engines.store.registry import MODELS, get_spec
from engines.store.store import ModelStore, VerifyRow, sha256_file
from tests.engines.store.test_download import ModelServer

YUNET = get_spec("yunet")
MIRRORED = sorted(name for name, spec in MODELS.items() if spec.in_mirror)
BUNDLED = sorted(name for name, spec in MODELS.items() if spec.bundled)


@pytest.fixture
def server(models_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """Serves every mirrored model's real bytes; the store downloads from here."""
    with ModelServer() as s:
        for name in MIRRORED:
            s.serve(MODELS[name].filename, (models_dir / MODELS[name].filename).read_bytes())
        monkeypatch.setenv("EMOSTREAM_DOWNLOAD_BASE", s.base_url)
        yield s


@pytest.fixture
def empty_mirror(tmp_path: Path) -> Path:
    (tmp_path / "mirror").mkdir()
    return tmp_path / "mirror"


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _put(folder: Path, filename: str, body: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_bytes(body)
    return folder / filename


def _corrupt(models_dir: Path, filename: str) -> bytes:
    body = bytearray((models_dir / filename).read_bytes())
    body[len(body) // 2] ^= 0xFF
    return bytes(body)


@pytest.mark.parametrize("name", MIRRORED)
def test_mirror_file_is_used_in_place(name, models_dir, cache):
    store = ModelStore(models_dir, cache, download=False)
    assert store.path(name) == models_dir / MODELS[name].filename
    assert not cache.exists()  # nothing copied


def test_mirror_comes_from_env_when_not_given(models_dir, cache, monkeypatch):
    monkeypatch.setenv("EMOSTREAM_MODELS_DIR", str(models_dir))
    assert ModelStore(cache_dir=cache, download=False).path("yunet") == models_dir / YUNET.filename


def test_download_lands_in_cache_and_second_store_uses_it_without_network(server, empty_mirror, cache):
    path = ModelStore(empty_mirror, cache).path("yunet")
    assert path == cache / "models" / YUNET.filename
    assert sha256_file(path) == YUNET.sha256
    assert ModelStore(empty_mirror, cache).path("yunet") == path
    assert server.hits == [f"/{YUNET.filename}"]


def test_download_disabled_says_how_to_provide_the_file(empty_mirror, cache):
    with pytest.raises(ModelStoreError) as err:
        ModelStore(empty_mirror, cache, download=False).path("yunet")
    msg = str(err.value)
    assert "\n" not in msg
    for fragment in ("downloading is off", YUNET.filename, "EMOSTREAM_MODELS_DIR", str(empty_mirror)):
        assert fragment in msg
    assert str(cache / "models") in msg


def test_corrupt_cached_file_is_fetched_again(server, models_dir, empty_mirror, cache):
    cached = _put(cache / "models", YUNET.filename, _corrupt(models_dir, YUNET.filename))
    assert ModelStore(empty_mirror, cache).path("yunet") == cached
    assert sha256_file(cached) == YUNET.sha256
    assert server.hits == [f"/{YUNET.filename}"]


def test_corrupt_cached_file_without_download_is_an_error_and_kept(models_dir, empty_mirror, cache):
    bad = _corrupt(models_dir, YUNET.filename)
    cached = _put(cache / "models", YUNET.filename, bad)
    with pytest.raises(ModelStoreError, match=r"sha256 .* expected 8f2383e4dd3c.*delete it and fetch again"):
        ModelStore(empty_mirror, cache, download=False).path("yunet")
    assert cached.read_bytes() == bad


def test_corrupt_mirror_file_is_an_error_even_with_download(server, models_dir, tmp_path, cache):
    mirror = tmp_path / "mirror"
    bad = _put(mirror, YUNET.filename, _corrupt(models_dir, YUNET.filename))
    with pytest.raises(ModelStoreError, match="mirror is read-only") as err:
        ModelStore(mirror, cache).path("yunet")
    assert str(bad) in str(err.value)
    assert server.hits == []  # no silent fallback to a download
    assert bad.exists()


# state of the files -> (status, location) verify() reports
VERIFY_CASES = {
    "mirror_ok": ("ok", "mirror"),
    "mirror_corrupt": ("corrupt", "mirror"),
    "cache_ok": ("ok", "cache"),
    "cache_corrupt": ("corrupt", "cache"),
    "missing": ("missing", None),
}


@pytest.mark.parametrize("case", sorted(VERIFY_CASES))
def test_verify_reports_each_state_without_raising(case, models_dir, tmp_path):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    mirror.mkdir()
    where, quality = case.split("_") if case != "missing" else (None, None)
    if where is not None:
        real = (models_dir / YUNET.filename).read_bytes()
        body = real if quality == "ok" else _corrupt(models_dir, YUNET.filename)
        _put(mirror if where == "mirror" else cache / "models", YUNET.filename, body)
    status, location = VERIFY_CASES[case]
    expected_path = {"mirror": mirror, "cache": cache / "models", None: None}[location]
    [row] = ModelStore(mirror, cache, download=False).verify(["yunet"])
    assert row == VerifyRow(
        "yunet", YUNET.filename, status, location, expected_path and expected_path / YUNET.filename
    )


def test_verify_all_against_the_real_mirror(models_dir, cache):
    rows = {row.name: row for row in ModelStore(models_dir, cache).verify()}
    assert set(rows) == set(MODELS)
    for name, row in rows.items():
        expected = (
            ("ok", "mirror")
            if name in MIRRORED
            else ("ok", "bundled")
            if name in BUNDLED
            else ("missing", None)
        )
        assert (row.status, row.location) == expected


def test_list_rows_tell_where_each_model_is(models_dir, tmp_path):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    _put(mirror, YUNET.filename, b"presence only, not hashed")
    fer = get_spec("fer_mini_xception")
    _put(cache / "models", fer.filename, (models_dir / fer.filename).read_bytes())
    rows = {row["name"]: row for row in ModelStore(mirror, cache).list_rows()}
    assert set(rows) == set(MODELS)
    assert {name: row["where"] for name, row in rows.items() if row["where"] != "absent"} == {
        "yunet": "mirror",
        "fer_mini_xception": "cache",
        **dict.fromkeys(BUNDLED, "bundled"),
    }
    for name, row in rows.items():
        spec = MODELS[name]
        assert (row["task"], row["filename"], row["licence"]) == (spec.task, spec.filename, spec.licence)
        assert spec.sha256.startswith(row["sha256"]) and len(row["sha256"]) == 12


def test_fetch_downloads_missing_and_skips_present(server, models_dir, tmp_path, cache):
    mirror = tmp_path / "mirror"
    _put(mirror, YUNET.filename, (models_dir / YUNET.filename).read_bytes())
    paths = ModelStore(mirror, cache).fetch(["yunet", "fer_mini_xception"])
    fer = get_spec("fer_mini_xception")
    assert paths == [mirror / YUNET.filename, cache / "models" / fer.filename]
    assert server.hits == [f"/{fer.filename}"]
    assert ModelStore(mirror, cache).fetch(["fer_mini_xception"]) == paths[1:]
    assert server.hits == [f"/{fer.filename}"]
    assert ModelStore(mirror, cache).fetch([]) == []


def test_fetch_all_covers_models_missing_from_the_mirror(models_dir, cache):
    unmirrored = sorted(set(MODELS) - set(MIRRORED) - set(BUNDLED))
    assert unmirrored, "the registry has a model that only a download provides"
    with pytest.raises(ModelStoreError, match=MODELS[unmirrored[0]].filename):
        ModelStore(models_dir, cache, download=False).fetch()


@pytest.mark.parametrize("call", ["path", "sha256", "fetch", "verify"])
def test_unknown_model_name_lists_the_valid_ones(call, cache):
    store = ModelStore(cache_dir=cache, download=False)
    method = getattr(store, call)
    with pytest.raises(ModelStoreError) as err:
        method(["no_such_model"]) if call in ("fetch", "verify") else method("no_such_model")
    msg = str(err.value)
    assert msg.startswith("unknown model 'no_such_model'")
    assert all(name in msg for name in MODELS)
    assert isinstance(err.value, KeyError)  # callers that catch KeyError keep working


@pytest.mark.parametrize("via", ["argument", "environment"])
def test_a_mirror_folder_that_does_not_exist_is_an_error_not_a_download(tmp_path, monkeypatch, via):
    missing = tmp_path / "no-such-mirror"
    monkeypatch.setenv("EMOSTREAM_MODELS_DIR", str(missing))
    origin = "--models-dir" if via == "argument" else "EMOSTREAM_MODELS_DIR"
    with pytest.raises(ModelStoreError, match=f"{missing} \\({origin}\\): no such folder"):
        ModelStore(missing if via == "argument" else None, tmp_path / "cache")


def test_the_bundled_weights_are_found_and_verified_without_mirror_or_cache(empty_mirror, cache):
    store = ModelStore(mirror_dir=empty_mirror, cache_dir=cache, download=False)
    path = store.path("emostream_mtl")
    assert path.parent.name == "weights" and sha256_file(path) == get_spec("emostream_mtl").sha256
    assert [r.status for r in store.verify(["emostream_mtl"])] == ["ok"]
    assert not cache.exists()  # nothing downloaded or copied


@pytest.mark.parametrize("damage", ["flip", "missing"])
def test_damaged_bundled_weights_are_a_one_line_error(damage, tmp_path, monkeypatch, empty_mirror, cache):
    from engines.store import store as store_module

    spec = get_spec("emostream_mtl")
    weights = tmp_path / "weights"
    weights.mkdir()
    if damage == "flip":
        data = bytearray((store_module.BUNDLED_DIR / spec.filename).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (weights / spec.filename).write_bytes(bytes(data))
    monkeypatch.setattr(store_module, "BUNDLED_DIR", weights)
    with pytest.raises(ModelStoreError, match="reinstall emostream") as err:
        ModelStore(mirror_dir=empty_mirror, cache_dir=cache).path("emostream_mtl")
    assert "\n" not in str(err.value)

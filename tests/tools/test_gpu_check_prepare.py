"""tools/gpu_check `prepare`: the carried folders hold exactly what the device run needs, sizes are
reported and checked against the device tool's limit, and every refusal is one line with exit 2."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

from tools import gpu_check as gc

REPO = Path(__file__).resolve().parents[2]
WHEEL = f"av-{gc.AV_VERSION}-cp311-abi3-manylinux_2_28_x86_64.whl"


def _expected(shared: Path) -> dict[str, Path]:
    """Carried path -> source, written out here independently of gpu_check's own lists."""
    models = [p for p in (shared / "models").iterdir() if p.suffix in (".onnx", ".hdf5", ".h5", ".tflite")]
    wanted = {f"models/{p.name}": p for p in models}  # every mirrored model is in the registry
    wanted |= {f"models/reference/{p.name}": p for p in (shared / "models" / "reference").glob("*.onnx")}
    media = [p for p in (shared / "media").iterdir() if p.suffix in (".jpg", ".png")]
    media += [
        shared / "media" / "facenet_crowd_walking_1080p.mp4",
        shared / "media" / "pexels_woman_emotions.mp4",
    ]
    return wanted | {f"media/{p.name}": p for p in media}


def _files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _wheels(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"not really a wheel")
    return folder


def test_prepare_copies_exactly_the_needed_files_and_reports_sizes(shared, scratch_repo, capsys):
    dest, wheels = scratch_repo / ".gpu", _wheels(scratch_repo / ".whl", WHEEL, "av-12.0.0-cp312-x.whl")
    (dest / "models").mkdir(parents=True)
    (dest / "models" / "left_over.onnx").write_bytes(b"from an earlier preparation")
    facts = gc.prepare(shared, dest, wheels, download=False, repo=scratch_repo)
    expected = _expected(shared)
    assert _files_under(dest) == {*expected, "prepared.json"}
    assert all(filecmp.cmp(src, dest / rel, shallow=False) for rel, src in expected.items())
    assert sorted(p.name for p in wheels.iterdir()) == [WHEEL]  # the other PyAV version is gone
    printed = capsys.readouterr().out
    for rel, src in expected.items():
        assert f"{rel} " in printed and f"{src.stat().st_size / 1024:.1f} KiB" in printed
    assert "gpu_check: travels " in printed and "of 64 MiB" in printed
    assert "gpu_check: removed models/left_over.onnx (no longer needed)" in printed
    assert facts["travel_bytes"]["total"] == sum(facts["travel_bytes"][k] for k in ("tree", ".whl", ".gpu"))
    assert sum(f["bytes"] for f in facts["files"]) == sum(p.stat().st_size for p in expected.values())
    assert (scratch_repo / ".git" / "info" / "exclude").read_text().splitlines()[-2:] == ["/.whl/", "/.gpu/"]


def test_prepare_prints_the_device_call_with_the_carry_list(shared, scratch_repo):
    call = gc.device_call(scratch_repo / ".gpu", scratch_repo / ".whl", scratch_repo)
    assert call == 'run(command="bash tools/gpu_check.sh device", carry=[".whl", ".gpu"], timeout_s=480)'
    assert "inspection only" in gc.device_call(scratch_repo / "x", scratch_repo / ".whl", scratch_repo)


def test_a_second_prepare_leaves_an_ignored_folder_alone(shared, scratch_repo):
    wheels = _wheels(scratch_repo / ".whl", WHEEL)
    (scratch_repo / ".gitignore").write_text("/.whl/\n/.gpu/\n")
    for _ in range(2):
        gc.prepare(shared, scratch_repo / ".gpu", wheels, download=False, repo=scratch_repo)
    assert "/.gpu/" not in (scratch_repo / ".git" / "info" / "exclude").read_text()


def test_prepare_refuses_a_missing_shared_folder_in_one_line(tmp_path):
    paths = [
        "--shared",
        str(tmp_path / "nowhere"),
        "--dest",
        str(tmp_path / ".gpu"),
        "--wheels",
        str(tmp_path),
    ]
    done = subprocess.run(
        ["bash", "tools/gpu_check.sh", "prepare", *paths, "--no-download"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "GPU_CHECK_PYTHON": sys.executable},
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"gpu_check: shared folder not found: {tmp_path / 'nowhere'} has no models/ and media/ "
        "(set EMOSTREAM_SHARED_DIR or pass --shared); nothing prepared"
    ]
    assert not (tmp_path / ".gpu").exists()


def test_prepare_names_a_needed_file_the_shared_folder_lacks(shared, tmp_path):
    partial = tmp_path / "shared"
    (partial / "media").mkdir(parents=True)
    (partial / "models").symlink_to(shared / "models")
    for name in (*gc.STILLS, gc.CLIPS["crowd"]):  # every medium but the pexels clip
        (partial / "media" / name).symlink_to(shared / "media" / name)
    with pytest.raises(gc.Refused, match=r"1 needed file\(s\) missing .*: media/pexels_woman_emotions.mp4;"):
        gc.needed_files(partial)


def test_prepare_without_a_wheel_and_without_download_is_refused(tmp_path):
    with pytest.raises(gc.Refused, match=f"no PyAV {gc.AV_VERSION} wheel"):
        gc.ensure_wheel(tmp_path / ".whl", download=False)


def test_what_travels_over_the_limit_is_refused_with_its_parts():
    parts = {"tree": gc.MIB, ".whl": 40 * gc.MIB, ".gpu": 30 * gc.MIB}
    with pytest.raises(gc.Refused, match=r"71.0 MiB, over the 64 MiB limit \(tree 1.0 MiB, .whl 40.0 MiB"):
        gc.check_travel_size(parts)
    assert gc.check_travel_size({"tree": 10, ".whl": 20}) == 30


def test_the_model_lists_are_the_mirrored_models_of_the_registry(shared):
    """The hand-written lists follow the registry (read through the CLI, which the reorganisation keeps)."""
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "models", "list", "--models-dir", str(shared / "models")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    listed = {line.split()[-1] for line in done.stdout.splitlines() if line.strip()}
    mirrored = {name for name in listed if (shared / "models" / name).is_file()}
    assert mirrored == {*gc.RUN_MODELS, *gc.TEST_MODELS}

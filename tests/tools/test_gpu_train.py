"""tools/gpu_train.py, CPU side: packs split into calls that fit the device tool's limit, stashing
collects them, and the sweep runs its rows in order (a student after its teacher), stops at the budget,
and returns one tar per run; refusals are one line with exit 2."""

from __future__ import annotations

import json
import tarfile

import pytest

from engines.training.packs import write_packs
from tools import gpu_train as gt
from tools.gpu_check import Refused


@pytest.mark.parametrize(
    ("sizes", "capacity", "groups"),
    [
        ([5, 5, 5], 10, [[5, 5], [5]]),
        ([9, 1, 1, 8], 10, [[9, 1], [8, 1]]),  # largest first, each into the first call with room
        ([3], 3, [[3]]),
    ],
)
def test_group_files_fits_each_call(sizes, capacity, groups):
    files = [{"file": f"f{i}", "bytes": n} for i, n in enumerate(sizes)]
    got = gt.group_files(files, capacity)
    assert [[f["bytes"] for f in g] for g in got] == groups
    assert sorted(f["file"] for g in got for f in g) == sorted(f["file"] for f in files)


def test_a_file_over_the_capacity_is_refused():
    with pytest.raises(Refused, match=r"f0 .* alone is over"):
        gt.group_files([{"file": "f0", "bytes": 11}], 10)


@pytest.fixture(scope="module")
def packs(small_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("packs")
    write_packs(small_data, folder, max_bytes=32 << 10)
    return folder


def test_stash_reports_what_is_still_missing(packs, tmp_path):
    manifest = json.loads((packs / "manifest.json").read_text())
    first, rest = tmp_path / "call1", tmp_path / "call2"
    for folder, files in ((first, manifest["files"][:2]), (rest, manifest["files"][2:])):
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps(manifest))
        for f in files:
            (folder / f["file"]).write_bytes((packs / f["file"]).read_bytes())
    dest = tmp_path / "stash"
    assert gt.stash(first, dest) == [f["file"] for f in manifest["files"][2:]]
    assert gt.stash(rest, dest) == []


def test_sweep_runs_the_student_after_its_teacher_and_cuts_at_the_budget(packs, tmp_path):
    tiny = ("--widths", "8", "8", "8", "8", "8", "--depths", "1", "1", "1", "1", "1", "--batch", "32")
    runs = (
        gt.Run("teacher", (*tiny, "--epochs", "1"), keep_weights=False),
        gt.Run("student", (*tiny, "--epochs", "1", "--teacher", "{teacher}/final.pt"), after="teacher"),
    )
    extra = ["--max-steps", "2"]
    status = gt.sweep(tmp_path / "runs", packs, 600, "cpu", extra, runs)
    assert {n: s["status"] for n, s in status.items()} == {"teacher": "ok", "student": "ok"}
    gt.collect(tmp_path / "runs", tmp_path / "out", status, runs)
    with tarfile.open(tmp_path / "out" / "student.tar") as tar:
        assert {"student/metrics.csv", "student/final.pt", "student/train.log"} <= set(tar.getnames())
    with tarfile.open(tmp_path / "out" / "teacher.tar") as tar:
        assert "teacher/final.pt" not in tar.getnames()  # keep_weights=False
    report = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert report["student"]["epochs_done"] == 1

    again = gt.sweep(tmp_path / "runs", packs, 600, "cpu", extra, runs)  # finished runs are not run again
    assert all(s["status"] == "ok" and s.get("earlier") for s in again.values())

    long = (gt.Run("long", (*tiny, "--epochs", "50")), gt.Run("after", tiny, after="long"))
    status = gt.sweep(tmp_path / "runs2", packs, 1, "cpu", [], long)
    assert status["long"]["status"] == "cut at the budget" and status["after"]["status"] == "not started"


def test_a_run_cut_earlier_resumes(tmp_path):
    run = gt.Run("r", ("--epochs", "8"))
    assert "--resume" not in gt.command(run, tmp_path, tmp_path / "packs", "cuda", [])
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "last.pt").write_bytes(b"checkpoint")
    assert gt.command(run, tmp_path, tmp_path / "packs", "cuda", [])[-1] == "--resume"


def test_sweep_without_packs_is_one_line(tmp_path, capsys):
    assert gt.main(["sweep", "--packs", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpu_train: no packs in") and "\n" not in err


def test_an_unknown_sweep_row_is_one_line(packs, tmp_path, capsys):
    argv = ["sweep", "--packs", str(packs), "--out", str(tmp_path / "o"), "--only", "r64", "nope"]
    assert gt.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpu_train: --only nope: no such row; the rows: r64, ") and "\n" not in err
    assert not (tmp_path / "o").exists()

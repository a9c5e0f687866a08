"""Dataset layouts: AFEW class folders, VGAF label files in both formats, class folders for heads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.scoring.datasets import (
    find_vgaf_label_file,
    parse_vgaf_labels,
    read_class_folders,
    read_split,
    vgaf_label,
)


def touch(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"\0")  # the readers never open clips, only list them
    return root


def test_afew_reads_class_folders_case_insensitively_and_ignores_other_files(tmp_path):
    touch(
        tmp_path,
        "Train/Happy/a.avi",
        "Train/happy/b.mp4",
        "Train/SAD/c.MP4",
        "Train/Sad/notes.txt",
        "Train/Sad/.hidden.mp4",
        "Train/loose.mp4",
    )
    split = read_split(tmp_path, "afew", "Train")
    got = sorted((c.name, c.label) for c in split.clips)
    assert got == [
        ("Happy/a.avi", "Happy"),
        ("SAD/c.MP4", "Sad"),
        ("happy/b.mp4", "Happy"),
        ("loose.mp4", None),
    ]
    assert split.labelled and len(split.classes) == 7


@pytest.mark.parametrize(
    ("files", "dataset", "split", "fragment"),
    [
        ([], "nowhere", "Train", "dataset folder not found"),
        (["Train/Happy/a.mp4"], ".", "Val", "split 'Val' not found"),
        (["Train/Happy/notes.txt"], ".", "Train", "has no clips"),
        (["Train/Happy/a.mp4", "Train/Joy/b.mp4"], ".", "Train", "unknown class folder 'Joy'"),
    ],
)
def test_afew_bad_layouts_are_one_line_errors(tmp_path, files, dataset, split, fragment):
    touch(tmp_path, *files)
    with pytest.raises(InputError, match=fragment) as err:
        read_split(tmp_path / dataset, "afew", split)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Vid_name Label\n10_1 1\n10_2 3\n", {"10_1": "Positive", "10_2": "Negative"}),
        ("Vid_name\tLabel\n10_1\t2\n", {"10_1": "Neutral"}),
        ("clip,label\na.mp4,Positive\nb.mp4,negative\n", {"a.mp4": "Positive", "b.mp4": "Negative"}),
        ("a.mp4,2\n\n# comment\nb.mp4 , 1\n", {"a.mp4": "Neutral", "b.mp4": "Positive"}),
    ],
)
def test_vgaf_label_files_in_both_formats(tmp_path, text, expected):
    (tmp_path / "labels.txt").write_text(text)
    assert parse_vgaf_labels(tmp_path / "labels.txt") == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Vid_name Label\na 1\nb 4\n", r"labels.txt:3: unknown label '4'"),
        ("a\n", r"labels.txt:1: expected 'clip label'"),
        ("Vid_name Label\n", "has no labelled clips"),
        ("Vid_name Label\n\n# two blank lines above count\nc 1\n", None),
        (
            "a 1\n\n# a comment\nb 1\na 3\n",
            r"labels.txt:5: clip 'a' is labelled Negative here but Positive on line 1",
        ),
        (
            "a,Positive\nb,2\na,neutral\n",
            r"labels.txt:3: clip 'a' is labelled Neutral here but Positive on line 1",
        ),
    ],
)
def test_vgaf_bad_label_files_name_the_line(tmp_path, text, fragment):
    (tmp_path / "labels.txt").write_text(text)
    if fragment is None:  # line numbers are the file's own, blank and comment lines included
        text = text.replace("c 1", "c 9")
        (tmp_path / "labels.txt").write_text(text)
        fragment = r"labels.txt:4: unknown label '9'"
    with pytest.raises(InputError, match=fragment) as err:
        parse_vgaf_labels(tmp_path / "labels.txt")
    assert "\n" not in str(err.value)


def test_vgaf_a_clip_listed_twice_with_the_same_label_is_fine(tmp_path):
    (tmp_path / "labels.txt").write_text("a 1\nb 2\na 1\n")
    assert parse_vgaf_labels(tmp_path / "labels.txt") == {"a": "Positive", "b": "Neutral"}


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("1", "Positive"),
        ("2", "Neutral"),
        ("3", "Negative"),
        ("NEUTRAL", "Neutral"),
        ("0", None),
        ("happy", None),
    ],
)
def test_vgaf_label_numbers_and_names(raw, label):
    assert vgaf_label(raw) == label


@pytest.mark.parametrize(
    "label_file",
    ["Train_labels.txt", "Train_labels.csv", "Train.csv", "Train/labels.csv", "Train/labels.txt"],
)
def test_vgaf_label_file_is_found_beside_or_inside_the_split(tmp_path, label_file):
    touch(tmp_path, "Train/x.mp4")
    (tmp_path / label_file).write_text("x 1\n")
    assert find_vgaf_label_file(tmp_path, "Train") == tmp_path / label_file


def test_vgaf_joins_labels_to_clips_by_name_with_or_without_extension(tmp_path):
    touch(tmp_path, "Val/a.mp4", "Val/sub/b.avi", "Val/unlisted.mp4")
    (tmp_path / "Val_labels.txt").write_text("Vid_name Label\na 1\nsub/b.avi 3\ngone 2\n")
    split = read_split(tmp_path, "vgaf", "Val")
    got = {c.name: (c.label, c.path.is_file()) for c in split.clips}
    assert got == {"a.mp4": ("Positive", True), "sub/b.avi": ("Negative", True), "gone": ("Neutral", False)}


@pytest.mark.parametrize(
    ("files", "labels", "expected"),
    [
        (  # an exact path wins over a nested file's bare name: each file once, with its own label
            ["x.mp4", "a/x.mp4", "y.mp4"],
            "x.mp4 1\na/x.mp4 3\ny.mp4 2\n",
            {
                "x.mp4": ("Positive", "x.mp4"),
                "a/x.mp4": ("Negative", "a/x.mp4"),
                "y.mp4": ("Neutral", "y.mp4"),
            },
        ),
        (["a/x.mp4", "x.mp4"], "x 2\n", {"x.mp4": ("Neutral", "x.mp4")}),  # the path without extension
        (
            ["a/x.mp4", "b/y.mp4"],
            "X 1\nb\\y.mp4 3\n",
            {"a/x.mp4": ("Positive", "a/x.mp4"), "b/y.mp4": ("Negative", "b/y.mp4")},
        ),
        (["a/x.mp4", "b/x.avi"], "x 1\n", "clip name 'x' matches 2 files (a/x.mp4, b/x.avi); write its path"),
        (["a/x.mp4", "b/x.mp4"], "x.mp4 1\n", "clip name 'x.mp4' matches 2 files"),
        (["x.mp4", "x.avi"], "x 1\n", "clip name 'x' matches 2 files"),
        (["x.mp4"], "x 1\nx.mp4 2\n", "'x' and 'x.mp4' name the same clip x.mp4"),
    ],
)
def test_vgaf_label_names_pick_one_file_each_or_say_which_are_ambiguous(tmp_path, files, labels, expected):
    touch(tmp_path, *(f"Val/{f}" for f in files))
    (tmp_path / "Val_labels.txt").write_text("Vid_name Label\n" + labels)
    if isinstance(expected, str):
        with pytest.raises(InputError, match=re.escape(expected)) as err:
            read_split(tmp_path, "vgaf", "Val")
        assert "\n" not in str(err.value) and "Val_labels.txt" in str(err.value)
        return
    split = read_split(tmp_path, "vgaf", "Val")
    got = {c.name: (c.label, c.path.relative_to(tmp_path / "Val").as_posix()) for c in split.clips}
    assert got == expected


def test_vgaf_without_label_file_is_unlabelled_and_all_missing_is_an_error(tmp_path):
    touch(tmp_path, "Test/a.mp4", "Test/b.mp4", "Val/keep.txt")
    assert {(c.name, c.label) for c in read_split(tmp_path, "vgaf", "Test").clips} == {
        ("a.mp4", None),
        ("b.mp4", None),
    }
    (tmp_path / "Val.csv").write_text("clip,label\nx.mp4,1\n")
    with pytest.raises(InputError, match="1 listed in its label file are missing"):
        read_split(tmp_path, "vgaf", "Val")


def test_class_folders_take_any_class_names_and_images(tmp_path):
    touch(tmp_path, "smile/a.jpg", "smile/b.mp4", "frown/c.png", "frown/d.txt")
    split = read_class_folders(tmp_path)
    assert split.classes == ("frown", "smile")
    assert sorted(c.name for c in split.clips) == ["frown/c.png", "smile/a.jpg", "smile/b.mp4"]
    with pytest.raises(InputError, match="no class folder"):
        read_class_folders(touch(tmp_path / "empty", "only.txt"))

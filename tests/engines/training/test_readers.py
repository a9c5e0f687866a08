"""The FER+ and UTKFace readers on the real folders: counts, protocol, malformed names, wrong layouts."""

from __future__ import annotations

import csv
import sys

import cv2
import numpy as np
import pytest

from engines.errors import EmostreamError
from engines.training import ferplus, utkface


def _reference_majority(rows: list[list[str]]) -> list[tuple[int, int]]:
    """FERPlus src/ferplus.py, 'majority' mode, transcribed loop by loop: (row index, label) kept."""
    kept = []
    for i, row in enumerate(rows):
        raw = [float(v) for v in row[2:]]
        raw = [0.0 if v < 1.0 + sys.float_info.epsilon else v for v in raw]
        total = sum(raw)
        emotion = [0.0] * len(raw)
        if max(raw) > 0.5 * total:
            emotion[raw.index(max(raw))] = max(raw)
        else:
            emotion[-2] = 1.0
        idx = emotion.index(max(emotion))
        if idx < 8:
            kept.append((i, idx))
    return kept


def test_majority_protocol_matches_reference_on_real_labels(datasets):
    path = datasets / "ferplus" / "FER2013Train" / "label.csv"
    with path.open(newline="") as f:
        rows = list(csv.reader(f))[:3000]
    names, votes = ferplus.read_labels(path)
    idx, labels = ferplus.majority_labels(votes[:3000])
    assert list(zip(idx.tolist(), labels.tolist(), strict=True)) == _reference_majority(rows)
    assert names[:3] == [r[0] for r in rows[:3]]


@pytest.mark.parametrize(("split", "expected"), [("train", 25045), ("valid", 3191)])
def test_majority_counts_of_whole_splits(datasets, split, expected):
    _, votes = ferplus.read_labels(datasets / "ferplus" / ferplus.SPLITS[split] / "label.csv")
    assert len(ferplus.majority_labels(votes)[0]) == expected


def test_read_split_images_and_soft_targets(datasets):
    d = ferplus.read_split(datasets, "valid", limit=200)
    assert d.images.shape == (200, 48, 48) and d.images.dtype == np.uint8
    assert d.images.std() > 10  # real faces, not blanks
    idx, soft = d.soft_targets()
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-6)
    maj, lab = d.majority()
    pos = {i: k for k, i in enumerate(idx)}
    assert all(soft[pos[i]].argmax() == y for i, y in zip(maj, lab, strict=True))


def test_header_row_is_tolerated(datasets, tmp_path):
    src = (datasets / "ferplus" / "FER2013Valid" / "label.csv").read_text().splitlines()[:5]
    path = tmp_path / "label.csv"
    path.write_text(
        "\n".join(
            ["Image name,box,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF", *src]
        )
    )
    names, votes = ferplus.read_labels(path)
    assert len(names) == 5 and votes.shape == (5, 10)


def test_missing_ferplus_folder_is_one_line_error(tmp_path):
    with pytest.raises(EmostreamError, match="FER2013Train") as e:
        ferplus.read_split(tmp_path, "train")
    assert "\n" not in str(e.value)


def test_missing_label_csv_is_named(tmp_path):
    (tmp_path / "FER2013Test").mkdir()
    with pytest.raises(EmostreamError, match=r"label\.csv") as e:
        ferplus.read_split(tmp_path, "test")
    assert "\n" not in str(e.value)


def test_utkface_reader_real_subset(datasets):
    u = utkface.read_utkface(datasets, limit=150)
    assert u.images.shape == (150, utkface.STORE_SIZE, utkface.STORE_SIZE)
    assert u.ages.min() >= 1 and u.ages.max() <= 116
    assert set(np.unique(u.genders)) <= {0, 1}
    for name, age, g in zip(u.names[:20], u.ages[:20], u.genders[:20], strict=True):
        assert name.split("_")[:2] == [str(age), str(g)]


def test_utkface_malformed_names_are_reported_not_fatal(datasets):
    u = utkface.read_utkface(datasets, limit=5)
    assert len(u.malformed) == 2  # two names of the release break the pattern (a space, a missing dot)
    assert "2 malformed" in u.report() and u.malformed[0] in u.report()


def test_parse_name():
    assert utkface.parse_name("26_1_3_20170119180430543.jpg.chip.jpg") == (26, 1, 3)
    assert utkface.parse_name("39_1_20170116174525125.jpg.chip.jpg") == (39, 1, -1)
    assert utkface.parse_name("55_0_0_20170116232725357jpg.chip.jpg") is None
    assert utkface.parse_name("x_0_0_1.jpg.chip.jpg") is None


def test_utkface_wrong_layout(tmp_path):
    with pytest.raises(EmostreamError, match="no AGE_GENDER"):
        utkface.read_utkface(tmp_path)
    with pytest.raises(EmostreamError, match="not found") as e:
        utkface.read_utkface(tmp_path / "nowhere")
    assert "\n" not in str(e.value)


def test_split_is_fixed_disjoint_and_order_free():
    names = np.array([f"{i}_0_0_{i}.jpg.chip.jpg" for i in range(1000)])
    tr, va = utkface.split_indices(names, 0.15, 0)
    assert len(va) == 150 and len(tr) == 850 and not set(tr) & set(va)
    perm = np.random.default_rng(5).permutation(1000)
    _, va2 = utkface.split_indices(names[perm], 0.15, 0)
    assert sorted(names[perm][va2]) == sorted(names[va])
    np.testing.assert_array_equal(utkface.indices_of(names, names[va].tolist()), va)


def test_utkface_colour_reader_is_bgr_and_grays_to_the_gray_reader(datasets):
    g = utkface.read_utkface(datasets, limit=40)
    c = utkface.read_utkface(datasets, limit=40, colour=True)
    assert c.images.shape == (40, utkface.STORE_SIZE, utkface.STORE_SIZE, 3) and c.images.dtype == np.uint8
    np.testing.assert_array_equal(c.names, g.names)
    assert np.abs(c.images[..., 0].astype(int) - c.images[..., 2]).mean() > 10  # real colour, not gray x 3
    # BGR->gray of the colour read is the gray read within JPEG decode rounding (RGB order would be far off)
    diff = np.abs(np.stack([cv2.cvtColor(i, cv2.COLOR_BGR2GRAY) for i in c.images]).astype(int) - g.images)
    assert diff.mean() < 0.3 and (diff <= 1).mean() > 0.999 and diff.max() <= 8


def test_utkface_gray_and_colour_are_cached_apart(datasets, tmp_path, monkeypatch):
    folder = tmp_path / "utkface"
    folder.mkdir()
    for name in sorted((datasets / "utkface").iterdir())[:6]:
        (folder / name.name).symlink_to(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    shapes = [utkface.read_utkface(tmp_path, colour=c).images.shape for c in (False, True, False, True)]
    s = utkface.STORE_SIZE
    assert shapes == [(6, s, s), (6, s, s, 3)] * 2
    assert len(list((tmp_path / "home" / ".cache" / "emostream-train").glob("utkface-*.npz"))) == 2

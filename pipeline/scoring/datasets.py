"""Dataset layouts for clip scoring: AFEW (folder per class), VGAF (label file per split), class folders.

AFEW: `DATASET/SPLIT/<ClassName>/<clip>.(avi|mp4|...)`, class names matched case-insensitively against the
7 AFEW classes; clips directly in `SPLIT/` are unlabelled (for predicting with a saved classifier).
VGAF: clips in `DATASET/SPLIT/` (any depth) and a label file, the first found of `LABEL_FILES`: either the
challenge's own `Vid_name Label` (space or tab separated, labels 1/2/3 = Positive/Neutral/Negative) or a CSV
`clip,label` with label numbers or names; a header line is optional; names match with or without extension.
Without a label file the split is unlabelled. Problems are `InputError`s with one line naming the path.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError
from pipeline.io.capture import IMAGE_EXTENSIONS
from pipeline.scoring.names import AFEW_CLASSES, PROTOCOL_CLASSES, VGAF_CLASSES

VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp"}
)
LABEL_FILES = ("{split}_labels.txt", "{split}_labels.csv", "{split}.csv", "{split}.txt")
"""VGAF label file names tried beside the split folder, then inside it (plus labels.csv / labels.txt)."""


@dataclass(frozen=True)
class Clip:
    """One clip (or image): its file, its label (None when unknown) and its name inside the split."""

    path: Path
    label: str | None
    name: str


@dataclass(frozen=True)
class Split:
    """The clips of one split (a clip listed in a label file but absent has a path that does not exist)."""

    name: str
    root: Path
    clips: tuple[Clip, ...]
    classes: tuple[str, ...]

    @property
    def labelled(self) -> bool:
        return any(c.label is not None for c in self.clips)


def read_split(dataset: str | Path, protocol: str, split: str) -> Split:
    """The clips of `split` of `dataset` in the layout of `protocol` ("afew" or "vgaf")."""
    if protocol not in PROTOCOL_CLASSES:
        raise InputError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOL_CLASSES)}")
    root = _folder(Path(dataset), "dataset folder")
    split_dir = _folder(root / split, f"split {split!r}")
    read = read_afew_split if protocol == "afew" else read_vgaf_split
    found = read(root, split)
    if not any(c.path.is_file() for c in found.clips):
        lost = f" ({len(found.clips)} listed in its label file are missing)" if found.clips else ""
        raise InputError(f"{split_dir}: split {split!r} has no clips{lost}")
    return found


def read_afew_split(root: Path, split: str) -> Split:
    """SPLIT/<Class>/<clip>: every video file in a class folder, plus unlabelled clips at the top."""
    split_dir = root / split
    by_name = {c.lower(): c for c in AFEW_CLASSES}
    clips = [Clip(p, None, p.name) for p in _media_files(split_dir, VIDEO_EXTENSIONS, recursive=False)]
    for sub in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = by_name.get(sub.name.lower())
        if label is None:
            raise InputError(
                f"{sub}: unknown class folder {sub.name!r}; AFEW classes: {', '.join(AFEW_CLASSES)}"
            )
        files = _media_files(sub, VIDEO_EXTENSIONS, recursive=False)
        clips += [Clip(p, label, f"{sub.name}/{p.name}") for p in files]
    return Split(split, split_dir, tuple(clips), AFEW_CLASSES)


def read_vgaf_split(root: Path, split: str) -> Split:
    """Clips under SPLIT/ joined with the split's label file (unlabelled when there is none)."""
    split_dir = root / split
    files = _media_files(split_dir, VIDEO_EXTENSIONS, recursive=True)
    label_file = find_vgaf_label_file(root, split)
    if label_file is None:
        clips = [Clip(p, None, p.relative_to(split_dir).as_posix()) for p in files]
        return Split(split, split_dir, tuple(clips), VGAF_CLASSES)
    tiers = _vgaf_name_tiers(files, split_dir)
    clips, claimed = [], {}
    for name, label in parse_vgaf_labels(label_file).items():
        path = _match_vgaf_name(name, tiers, label_file, split_dir)
        if path is not None and path in claimed:
            raise InputError(
                f"{label_file}: {claimed[path]!r} and {name!r} name the same clip "
                f"{path.relative_to(split_dir).as_posix()}; list it once"
            )
        if path is not None:
            claimed[path] = name
        # a listed clip without a file stays in: it is reported unreadable
        shown = path.relative_to(split_dir).as_posix() if path else name
        clips.append(Clip(path or split_dir / name, label, shown))
    return Split(split, split_dir, tuple(clips), VGAF_CLASSES)


def _vgaf_name_tiers(files: list[Path], split_dir: Path) -> list[dict[str, list[Path]]]:
    """Lower-cased keys -> files, most exact first: the path inside the split, the path without its
    extension, the bare file name, the bare stem."""
    tiers: list[dict[str, list[Path]]] = [{}, {}, {}, {}]
    for p in files:
        rel = p.relative_to(split_dir).as_posix()
        for tier, key in zip(tiers, (rel, rel[: -len(p.suffix)], p.name, p.stem), strict=True):
            tier.setdefault(key.lower(), []).append(p)
    return tiers


def _match_vgaf_name(
    name: str, tiers: list[dict[str, list[Path]]], label_file: Path, split_dir: Path
) -> Path | None:
    """The file a label-file name means: the most exact tier that knows it; None when no file matches.
    A name that matches several files in that tier is an error (which one is meant cannot be known)."""
    key = name.strip().replace("\\", "/").removeprefix("./").lower()
    for tier in tiers:
        found = tier.get(key)
        if not found:
            continue
        if len(found) > 1:
            shown = ", ".join(p.relative_to(split_dir).as_posix() for p in found[:4])
            raise InputError(
                f"{label_file}: clip name {name!r} matches {len(found)} files ({shown}); "
                "write its path inside the split instead"
            )
        return found[0]
    return None


def find_vgaf_label_file(root: Path, split: str) -> Path | None:
    """The first existing label file for `split`: beside the split folder, then inside it."""
    names = [n.format(split=split) for n in LABEL_FILES]
    candidates = [root / n for n in names] + [root / split / n for n in (*names, "labels.csv", "labels.txt")]
    return next((p for p in candidates if p.is_file()), None)


def parse_vgaf_labels(path: Path) -> dict[str, str]:
    """clip name -> class name from a VGAF label file (see the module docstring for the formats). A clip
    named twice with different labels is an error naming both lines (the same label twice is harmless)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the label file ({e})") from None
    labels: dict[str, str] = {}
    line_of: dict[str, int] = {}
    for row, (number, fields) in enumerate(_rows(text)):
        if len(fields) < 2:
            raise InputError(f"{path}:{number}: expected 'clip label', got {' '.join(fields)!r}")
        name, raw = fields[0], fields[1]
        label = vgaf_label(raw)
        if label is None:
            if row == 0:  # a header such as "Vid_name Label" or "clip,label"
                continue
            raise InputError(f"{path}:{number}: unknown label {raw!r}; use 1/2/3 or {'/'.join(VGAF_CLASSES)}")
        if labels.get(name, label) != label:
            raise InputError(
                f"{path}:{number}: clip {name!r} is labelled {label} here but {labels[name]} on line "
                f"{line_of[name]}; list it once"
            )
        labels[name] = label
        line_of.setdefault(name, number)
    if not labels:
        raise InputError(f"{path}: label file has no labelled clips")
    return labels


def vgaf_label(raw: str) -> str | None:
    """'1'/'2'/'3' or a class name (any case) -> the class name; anything else -> None."""
    raw = raw.strip()
    if raw in ("1", "2", "3"):
        return VGAF_CLASSES[int(raw) - 1]
    return {c.lower(): c for c in VGAF_CLASSES}.get(raw.lower())


def read_class_folders(root: str | Path) -> Split:
    """DATA/<class>/<clip or image> with any class names (for a few-shot head): one Split, sorted classes."""
    root = _folder(Path(root), "data folder")
    exts = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    clips = [Clip(p, sub.name, f"{sub.name}/{p.name}") for sub in subs for p in _media_files(sub, exts, True)]
    classes = tuple(sorted({c.label for c in clips}))
    if not clips:
        raise InputError(f"{root}: no class folder with videos or images (expected DATA/<class>/<file>)")
    return Split(root.name, root, tuple(clips), classes)


def _rows(text: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-empty, non-comment lines, split on commas (CSV, quotes allowed)
    or else on tabs/spaces."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "," in line:
            rows.append((number, [f.strip() for f in next(csv.reader([line]))]))
        else:
            rows.append((number, re.split(r"[\t ]+", line.strip())))
    return rows


def _folder(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    if not path.is_dir():
        raise InputError(f"{path}: {what} is not a folder")
    return path


def _media_files(folder: Path, exts: frozenset[str], recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."))

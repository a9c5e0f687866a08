"""The tables of docs/models.md: every model, top-1 on the labelled photos (fast / accurate / affectnet),
age and gender per face, the margin and age-weight measurements behind the defaults, and the fused
graph's ms per batch against the emotion-only graph (medians of interleaved runs in one process).

    python tools/models_table.py [--models-dir ../shared/models] [--media-dir ../shared/media] [--runs 9]

Faces are what `emostream run` feeds the net: YuNet detections, `pipeline.stages.align.crop_faces`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from engines.labels import top_emotion
from engines.multitask import MultiTaskNet, NetConfig
from engines.nets.heads import DEFAULT_HEADS, build_head, head_spec
from engines.store.registry import FER2013_EMOTIONS, MODELS
from engines.store.store import ModelStore
from pipeline.frames import Frame
from pipeline.stages.align import crop_faces
from pipeline.stages.detect import create_detector

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.media_labels import LABELLED_PHOTOS  # noqa: E402  (the labels the tests use too)

LABELS = LABELLED_PHOTOS  # posed expression of every face
GENDER = {  # as ../shared/media/SOURCES.md describes each single-face photo
    "pyfeat_surprise_f1.jpg": "woman",
    "pyfeat_happy_f15.jpg": "woman",
    "pyfeat_angry_f13.jpg": "woman",
    "pyfeat_disgust_m7.jpg": "man",
    "pyfeat_single_face_smile.jpg": "man",
    "pyfeat_neutral_man.jpg": "man",
    "fer_justin_smile.jpg": "man",
}
QUALITY_NOTE = {
    "fast": "mini XCEPTION",
    "accurate": "mini + big XCEPTION, mirrored too",
    "affectnet": "HSEmotion",
}


def faces(media_dir: Path, store: ModelStore, size: int = 128) -> dict[str, np.ndarray]:
    """{photo: (faces, size, size, 3) aligned crops} for the labelled photos."""
    detector = create_detector("yunet", store)
    out = {}
    for photo in LABELS:
        image = cv2.imread(str(media_dir / photo))
        out[photo] = crop_faces(image, detector.detect(Frame(0, 0.0, image)), size, 2.0)
    return out


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)])


def models_table(store: ModelStore) -> str:
    rows = []
    for spec in MODELS.values():
        source = spec.url.split("/")[3:5] if "github" in spec.url else [spec.url]
        where = "in the mirror" if spec.in_mirror else "users download it"
        rows.append(
            [spec.name, spec.task, "/".join(source), spec.licence, spec.sha256[:12], spec.input_spec, where]
        )
    return table(["model", "task", "source", "licence", "sha256", "input", "file"], rows)


def available_qualities(store: ModelStore) -> list[str]:
    """fast and accurate, plus affectnet when its file is already on disk (never downloads)."""
    offline = ModelStore(store.mirror_dir, store.cache_dir, download=False)
    have = all(offline.verify([m])[0].status == "ok" for m in head_spec("emotion", "affectnet").models)
    return ["fast", "accurate", *(["affectnet"] if have else [])]


def accuracy_table(store: ModelStore, crops: dict[str, np.ndarray]) -> tuple[str, dict]:
    """Top emotion per photo for each quality ('k/n' on the group photo) and the totals."""
    qualities = available_qualities(store)
    nets = {q: MultiTaskNet(NetConfig(heads=("emotion",), quality=q), store) for q in qualities}
    rows, totals = [], dict.fromkeys(qualities, 0)
    for photo, batch in crops.items():
        row = [photo, LABELS[photo]]
        for q, net in nets.items():
            names = top_emotion(net.infer(batch)["emotion"])[1]
            hits = sum(n == LABELS[photo] for n in names)
            totals[q] += hits
            row.append(names[0] if len(names) == 1 else f"{hits}/{len(names)} {LABELS[photo]}")
        rows.append(row)
    n = sum(len(b) for b in crops.values())
    rows.append(["**total (faces)**", str(n), *(f"**{totals[q]}/{n}**" for q in qualities)])
    header = ["photo", "posed", *(f"{q} ({QUALITY_NOTE[q]})" for q in qualities)]
    return table(header, rows), totals


def attributes_table(store: ModelStore, crops: dict[str, np.ndarray]) -> str:
    """Age (years), P(man) from mini XCEPTION (`gender`) and from SSR-Net (`gender_ssr`) per face."""
    net = MultiTaskNet(NetConfig(heads=("gender", "age", "gender_ssr")), store)
    rows = []
    for photo, batch in crops.items():
        out = net.infer(batch)
        for i in range(len(batch)):
            face = photo if len(batch) == 1 else f"{photo} #{i + 1}"
            row = [face, GENDER.get(photo, "(not stated)"), f"{out['age'][i]:.0f}"]
            rows.append([*row, f"{out['gender'][i]:.2f}", f"{out['gender_ssr'][i]:.2f}"])
    return table(["face", "source says", "age (years)", "gender: P(man)", "gender_ssr: P(man)"], rows)


def _run_head(spec, store: ModelStore, batch: np.ndarray) -> np.ndarray:
    import torch

    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        return build_head(spec, store, batch.shape[1], 2.0)(x)[0].numpy()


def margin_table(store: ModelStore, crops: dict[str, np.ndarray]) -> str:
    """Emotion top-1 and mean -log P(posed) per face_pad; gender correct on the photos with a stated one."""
    batch = np.concatenate(list(crops.values()))
    y = np.array([FER2013_EMOTIONS.index(LABELS[p]) for p, b in crops.items() for _ in b])
    single = np.concatenate([crops[p] for p in GENDER])
    man = np.array([GENDER[p] == "man" for p in GENDER])
    rows = []
    for pad in (-0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5):
        row = [f"{pad:+.2f}"]
        for quality in ("fast", "accurate"):
            probs = _run_head(dataclasses.replace(head_spec("emotion", quality), face_pad=pad), store, batch)
            nll = -np.log(probs[np.arange(len(y)), y]).mean()
            row.append(f"{(probs.argmax(1) == y).sum()}/{len(y)}, {nll:.2f}")
        p_man = _run_head(dataclasses.replace(head_spec("gender"), face_pad=pad), store, single)
        rows.append([*row, f"{((p_man >= 0.5) == man).sum()}/{len(man)}"])
    return table(["face_pad", "emotion fast: top-1, NLL", "emotion accurate: top-1, NLL", "gender"], rows)


def video_faces(path: Path, store: ModelStore, every: int = 4) -> np.ndarray:
    """Aligned crops of the most confident face in every `every`-th frame of a video."""
    from pipeline.io.capture import open_source

    detector, crops = create_detector("yunet", store), []
    with open_source(str(path)) as source:
        for i, frame in enumerate(source):
            batch = detector.detect(frame) if i % every == 0 else None
            if batch is not None and len(batch):
                crops.append(crop_faces(frame.image_bgr, batch.select([int(np.argmax(batch.scores))]))[0])
    return np.stack(crops)


def age_models_table(store: ModelStore, crops: dict[str, np.ndarray], video: np.ndarray) -> str:
    """Each SSR-Net age model on every face; how much its answer moves when the crop is mirrored or
    shifted by 4 px (mean over faces of the std over the 6 versions); its mean over the frames of
    pyfeat_single_face.mp4, the man of pyfeat_single_face_smile.jpg."""
    batch = np.concatenate(list(crops.values()))
    versions = [batch, batch[:, :, ::-1]] + [np.roll(batch, s, axis=a) for s in (-4, 4) for a in (1, 2)]
    rows = []
    for data in ("imdb", "wiki", "morph2"):
        spec = dataclasses.replace(head_spec("age"), models=(f"ssrnet_age_{data}",))
        ages = [_run_head(spec, store, np.ascontiguousarray(v)) for v in versions]
        spread = np.std(np.stack(ages), axis=0).mean()
        on_video = _run_head(spec, store, video)
        row = [data, " ".join(f"{a:.0f}" for a in ages[0]), f"{spread:.2f}"]
        rows.append([*row, f"{on_video.mean():.0f} (std {on_video.std():.1f}, {len(video)} frames)"])
    names = " ".join(p.split("_")[1][:5] for p, b in crops.items() for _ in b)
    header = ["weights", f"age per face ({names})", "std under mirror/shift (years)", "same man on video"]
    return table(header, rows)


def macs_per_face(spec, store: ModelStore) -> int:
    """Multiply-accumulates of a head's conv and dense layers for one face (preprocessing not counted)."""
    import torch
    from torch import nn

    head, total = build_head(spec, store, 128, 2.0), [0]

    def count(module, _inputs, out):
        # the input is one face: count every view the head makes of it (accurate: face + mirror image)
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += out.numel() * k
        elif isinstance(module, nn.Linear):
            total[0] += out.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in head.modules()]
    with torch.no_grad():
        head(torch.zeros(1, 3, 128, 128))
    for hook in hooks:
        hook.remove()
    return total[0]


def compute_table(store: ModelStore) -> str:
    heads = [("emotion", "fast"), ("gender", "fast"), ("age", "fast"), ("emotion", "accurate")]
    rows = [[f"{h} ({q})", f"{macs_per_face(head_spec(h, q), store) / 1e6:.1f}"] for h, q in heads]
    return table(["head", "M multiply-adds per face"], rows)


def _timed(net: MultiTaskNet, batch: np.ndarray, calls: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per call over `calls` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        net.infer(batch)
    return (time.perf_counter() - wall) * 1e3 / calls, (time.process_time() - cpu) * 1e3 / calls


def timing_table(store: ModelStore, crops: dict[str, np.ndarray], threads: int, runs: int) -> str:
    """ms per batch (median over `runs` interleaved runs) of each graph, and its ratio to emotion-only.

    The ratio uses CPU time (process_time), which other programs on the machine disturb far less
    than wall time; with one intra-op thread the two agree on a quiet machine.
    """
    graphs = {
        "emotion only (fast)": NetConfig(heads=("emotion",)),
        "emotion+gender (fast)": NetConfig(heads=("emotion", "gender")),
        "emotion+gender+age (fast)": NetConfig(heads=DEFAULT_HEADS),
        "emotion+gender+age (accurate)": NetConfig(heads=DEFAULT_HEADS, quality="accurate"),
    }
    nets = {k: MultiTaskNet(c, store, "onnxruntime", intra_op_threads=threads) for k, c in graphs.items()}
    pool = np.concatenate(list(crops.values()))
    rows = []
    for n in (1, 8, 32):
        batch = np.ascontiguousarray(pool[np.arange(n) % len(pool)])
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in nets}
        for net in nets.values():
            _timed(net, batch, 3)  # warm-up
        for _ in range(runs):
            for k, net in nets.items():
                samples[k].append(_timed(net, batch, max(1, 32 // n)))
        wall = {k: statistics.median(s[0] for s in v) for k, v in samples.items()}
        cpu = {k: statistics.median(s[1] for s in v) for k, v in samples.items()}
        base = cpu["emotion only (fast)"]
        for k in nets:
            rows.append([n, k, f"{wall[k]:.2f}", f"{cpu[k]:.2f}", f"{cpu[k] / base:.2f}x"])
    return table(["faces", "graph", "ms per batch", "CPU ms per batch", "CPU vs emotion only"], rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--models-dir",
        type=Path,
        default=os.environ.get("EMOSTREAM_MODELS_DIR", ROOT.parent / "shared/models"),
    )
    ap.add_argument("--media-dir", type=Path, default=ROOT.parent / "shared" / "media")
    ap.add_argument("--runs", type=int, default=9, help="timed runs per figure (median)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="onnxruntime intra-op threads")
    args = ap.parse_args()
    store = ModelStore(mirror_dir=args.models_dir)
    crops = faces(args.media_dir, store)
    video = args.media_dir / "pyfeat_single_face.mp4"
    accuracy, _ = accuracy_table(store, crops)
    sections = [
        ("Models", models_table(store)),
        ("Top-1 emotion on the labelled photos", accuracy),
        ("Age and gender per face (fused fast graph)", attributes_table(store, crops)),
        ("Emotion and gender margin (face_pad) on the same crops", margin_table(store, crops)),
        ("SSR-Net age weights", age_models_table(store, crops, video_faces(video, store))),
        ("Compute per head", compute_table(store)),
    ]
    for threads in dict.fromkeys(args.threads):
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        title = f"ms per batch, onnxruntime, {threads} thread(s) (load average before: {load})"
        sections.append((title, timing_table(store, crops, threads, args.runs)))
    cpu = platform.processor() or platform.machine()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, {cpu}")
    for title, body in sections:
        print(f"\n### {title}\n\n{body}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

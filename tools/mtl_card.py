"""The measured tables of the multi-task net's model card (docs/models.md), every quality side by side.

    python tools/mtl_card.py --data ../shared/datasets --out out/card [--qualities mtl,fast] [--runs 15]

FER+ validation (majority protocol) and the UTKFace validation split (the training's fixed-seed split),
each through the full pipeline (YuNet + aligner) and from the sets' own framing (`--crops`); the labelled
photos in ../shared/media; and the cost of each quality's fused graph (emotion, gender, age) per batch
of 8 faces on one onnxruntime thread, interleaved runs, medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engines.multitask import MultiTaskNet, NetConfig  # noqa: E402
from engines.store.store import ModelStore  # noqa: E402
from pipeline.frames import EMOTIONS  # noqa: E402
from pipeline.scoring.evaluate import EvalJob, evaluate  # noqa: E402
from tests.media_labels import LABELLED_PHOTOS  # noqa: E402
from tools.models_table import GENDER, faces  # noqa: E402


def dataset_rows(data: Path, out: Path, qualities: tuple[str, ...]) -> list[str]:
    rows = []
    for dataset, folder in (("ferplus", data / "ferplus"), ("utkface", data / "utkface")):
        for crops in (False, True):
            job = EvalJob(dataset, folder, out / f"{dataset}-{'crops' if crops else 'pipeline'}", qualities,
                          crops=crops, overwrite=True)  # fmt: skip
            r = evaluate(job)
            for q, m in r["qualities"].items():
                rows.append(_row(r, q, m))
    return rows


def _row(report: dict, quality: str, m: dict) -> str:
    where = "dataset framing" if report["crops"] == "dataset framing" else "detector + aligner"
    if "accuracy" in m:
        figures = f"{m['accuracy']:.1%} | {m['accuracy_7']:.1%} | {m['uar']:.1%} | |"
    else:
        g = m["gender_accuracy"]
        figures = f" | | | {m['age_mae']:.2f} | {g['all']:.1%} ({g['children']:.1%} / {g['adults']:.1%})"
    return f"| {report['dataset']} | {where} | {quality} | {report['faces']} | {figures} |"


def photo_rows(store: ModelStore, media: Path, qualities: tuple[str, ...]) -> list[str]:
    crops = faces(media, store)
    batch = np.concatenate(list(crops.values()))
    labels = [LABELLED_PHOTOS[p] for p, c in crops.items() for _ in c]
    sexes = [GENDER.get(p) for p, c in crops.items() for _ in c]
    rows = []
    for q in qualities:
        out = MultiTaskNet(NetConfig(quality=q), store).infer(batch)
        top = [EMOTIONS[i] for i in out["emotion"].argmax(1)]
        right = sum(t == y for t, y in zip(top, labels, strict=True))
        said = ["man" if p >= 0.5 else "woman" for p in out["gender"]]
        known = [(s, g) for s, g in zip(said, sexes, strict=True) if g]
        rows.append(f"| {q} | {right} of {len(labels)} | {sum(s == g for s, g in known)} of {len(known)} |")
    return rows


def cost_rows(store: ModelStore, qualities: tuple[str, ...], runs: int) -> list[str]:
    crops = np.random.default_rng(0).integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
    nets = {
        q: MultiTaskNet(NetConfig(quality=q), store, "onnxruntime", intra_op_threads=1) for q in qualities
    }
    times: dict[str, list[float]] = {q: [] for q in qualities}
    for _ in range(runs):  # interleaved: a busy moment of the machine costs every quality alike
        for q, net in nets.items():
            net.infer(crops)
            t0 = time.perf_counter()
            for _ in range(20):
                net.infer(crops)
            times[q].append((time.perf_counter() - t0) / 20 * 1000)
    base = statistics.median(times[qualities[-1]])
    return [
        f"| {q} | {statistics.median(t):.2f} | {statistics.median(t) / base:.2f}x |" for q, t in times.items()
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "card")
    ap.add_argument("--qualities", default="mtl,fast", help="the last one is the cost baseline")
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    qualities = tuple(args.qualities.split(","))
    store = ModelStore()
    print("| set | crops | quality | faces | top-1 (8) | top-1 (7) | UAR | age MAE | gender (child/adult) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(dataset_rows(args.data, args.out, qualities)))
    print("\n| quality | labelled photos: top-1 emotion | gender |\n|---|---|---|")
    print("\n".join(photo_rows(store, args.media, qualities)))
    print(f"\n| quality | ms per batch of 8, 1 thread | vs {qualities[-1]} |\n|---|---|---|")
    print("\n".join(cost_rows(store, qualities, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

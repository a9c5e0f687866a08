"""Gray or colour input for the multi-task trunk, measured on UTKFace (issue #12; docs/models.md).

FER+ exists only in gray, so colour could only help the UTKFace tasks. This trains the same trunk on
UTKFace alone (the trainer's age + gender losses: `multitask_loss` with no FER+ rows) once per arm:

* ``gray``: 1-channel input, the trunk as released;
* ``colour``: 3-channel BGR input, normalised the same way ((x / 255 - MEAN) / STD on every channel);
* ``colour_randgray``: BGR, each training window turned gray (3 equal channels) with p = 0.5: the only
  way a colour trunk could also train on FER+'s gray faces.

Same seed, the trainer's UTK split (seed 0, 15 % validation), the same augmentation draws (geometric
jitter, photometric jitter alike on all channels, erasing), schedule (SGD Nesterov, warm-up then cosine)
and epochs. Reported on the validation split, flip-averaged as the trainer's `evaluate`: age MAE (all,
children 0-12, adults 13+), gender accuracy, MACs per face, and the colour arms also on the same faces
turned gray (what a colour trunk would get from a gray source); paired bootstrap 95 % intervals of each
arm's difference to gray over the validation faces (test-set noise only, not seed-to-seed noise).

    nice -n 15 python tools/gray_vs_colour.py --data ../shared/datasets --out out/gray_vs_colour

writes ``OUT/gray_vs_colour.json`` and prints a markdown table. ``--limit`` / ``--max-steps`` are for
smoke tests only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from engines.nets.mtl import EMOTIONS, INPUT_SIZE, MTLNet, count_macs  # noqa: E402
from engines.training import metrics, train, utkface  # noqa: E402
from engines.training.augment import AugmentConfig  # noqa: E402
from engines.training.data import FER_BASE, UTK_BASE, Source, TrainData  # noqa: E402
from engines.training.evaluate import predict  # noqa: E402
from engines.training.paths import datasets_dir  # noqa: E402

ARMS = {"gray": (False, 0.0), "colour": (True, 0.0), "colour_randgray": (True, 0.5)}
"""arm -> (colour input, random-grayscale probability)."""
SPLIT_SEED = 0
VAL_FRACTION = 0.15


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="default $EMOSTREAM_SHARED_DIR/datasets")
    ap.add_argument("--out", type=Path, required=True, help="folder for gray_vs_colour.json (not the repo)")
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--depths", type=int, nargs="+", default=[1, 1, 2, 2, 1])
    ap.add_argument("--limit", type=int, default=None, help="read only N faces (smoke tests)")
    ap.add_argument("--max-steps", type=int, default=None, help="stop each epoch after N steps (smoke)")
    args = ap.parse_args(argv)
    args.utk_per_epoch = 1.0  # what train.steps_per_epoch reads
    return args


def utk_only(root: Path, colour: bool, limit: int | None) -> TrainData:
    """UTKFace (gray or BGR) in the trainer's split, as a `TrainData` with no FER+ rows."""
    utk = utkface.read_utkface(root, limit=limit, colour=colour)
    tr, va = utkface.split_indices(utk.names, VAL_FRACTION, SPLIT_SEED)
    man = (1 - utk.genders).astype(np.float32)
    empty = Source(torch.zeros((0, *utk.images.shape[1:]), dtype=torch.uint8), FER_BASE)
    return TrainData(
        fer_train=empty, fer_soft=torch.zeros(0, len(EMOTIONS)), fer_val=empty,
        fer_val_labels=np.zeros(0, np.int64),
        utk_train=Source(torch.from_numpy(utk.images[tr]), UTK_BASE),
        utk_val=Source(torch.from_numpy(utk.images[va]), UTK_BASE),
        utk_train_age=torch.from_numpy(utk.ages[tr].astype(np.float32)),
        utk_train_man=torch.from_numpy(man[tr]), utk_val_age=utk.ages[va], utk_val_man=man[va],
        utk_split={"train": utk.names[tr].tolist(), "val": utk.names[va].tolist()},
    )  # fmt: skip


def optimiser(model: MTLNet, args: argparse.Namespace) -> torch.optim.Optimizer:
    """The trainer's SGD: momentum 0.9 Nesterov, weight decay on conv/linear weights only."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=args.lr, momentum=0.9, nesterov=True)


def train_arm(data: TrainData, in_ch: int, gray_p: float, args: argparse.Namespace) -> tuple[MTLNet, list]:
    """Train one arm from the seed; returns the model and the mean training loss of each epoch."""
    torch.manual_seed(args.seed)
    model = MTLNet(tuple(args.widths), tuple(args.depths), in_ch=in_ch)
    opt = optimiser(model, args)
    spe = train.steps_per_epoch(data, args)
    sched = train.make_schedule(opt, spe * args.epochs, warmup=min(spe, 500))
    gen = torch.Generator().manual_seed(args.seed)
    aug = AugmentConfig(gray_p=gray_p)
    losses = []
    for epoch in range(args.epochs):
        order = train.epoch_order(0, len(data.utk_train.images), epoch, args.seed, 1.0)
        steps = [
            train.train_step(model, opt, sched, data, order[s * args.batch : (s + 1) * args.batch], aug, gen)
            for s in range(spe)
        ]
        losses.append(round(float(np.mean([p["loss"] for p in steps])), 4))
        print(f"  epoch {epoch + 1}/{args.epochs}: loss {losses[-1]}", flush=True)
    return model, losses


def gray3(src: Source) -> Source:
    """The same BGR faces turned gray (OpenCV weights) and repeated on 3 channels."""
    gray = np.stack([cv2.cvtColor(i, cv2.COLOR_BGR2GRAY) for i in src.images.numpy()])
    return Source(torch.from_numpy(np.repeat(gray[..., None], 3, axis=3)), src.base)


def scores(model: MTLNet, src: Source, age: np.ndarray, man: np.ndarray) -> tuple[dict, np.ndarray, ...]:
    """(metrics, per-face absolute age error, per-face gender correct) on `src`, flip-averaged."""
    pred = predict(model, src, flip=True)
    err = np.abs(pred["age"].astype(np.float64) - age)
    ok = ((pred["p_man"] > 0.5) == (man > 0.5)).astype(np.float64)
    child = age <= metrics.CHILD_MAX_AGE
    out = {
        "age_mae": float(err.mean()), "age_mae_child": float(err[child].mean()),
        "age_mae_adult": float(err[~child].mean()), "gender_acc": float(ok.mean()),
        "gender_acc_child": float(ok[child].mean()), "gender_acc_adult": float(ok[~child].mean()),
    }  # fmt: skip
    return {k: round(v, 6) for k, v in out.items()}, err, ok


def paired_diff(a: np.ndarray, b: np.ndarray, seed: int = 0, n_boot: int = 2000) -> list[float]:
    """mean(b - a) and its paired bootstrap 95 % interval over the validation faces."""
    d = b - a
    idx = np.random.default_rng(seed).integers(0, len(d), (n_boot, len(d)))
    lo, hi = np.percentile(d[idx].mean(1), [2.5, 97.5])
    return [round(float(d.mean()), 4), round(float(lo), 4), round(float(hi), 4)]


def cost(model: MTLNet, widths: list[int]) -> dict[str, int]:
    """MACs per face (whole net, and the first conv alone) and parameter count."""
    first = INPUT_SIZE * INPUT_SIZE * widths[0] * 9 * model.in_ch
    params = sum(p.numel() for p in model.parameters())
    return {"macs": count_macs(model), "first_conv_macs": first, "params": params}


def run_arm(name: str, root: Path, args: argparse.Namespace) -> tuple[dict, np.ndarray, np.ndarray]:
    """Read, train and score one arm; returns (its record, per-face age errors, per-face gender hits)."""
    colour, gray_p = ARMS[name]
    data = utk_only(root, colour, args.limit)
    print(f"{name}: {len(data.utk_train.images)} train / {len(data.utk_val.images)} val faces", flush=True)
    t0 = time.time()
    model, losses = train_arm(data, 3 if colour else 1, gray_p, args)
    t1 = time.time()
    age, man = data.utk_val_age.astype(np.float64), data.utk_val_man
    rec, err, ok = scores(model, data.utk_val, age, man)
    if colour:
        rec["on_gray_faces"] = scores(model, gray3(data.utk_val), age, man)[0]
    rec.update(cost(model, args.widths), epoch_loss=losses, train_s=round(t1 - t0, 1))
    rec.update(eval_s=round(time.time() - t1, 1), n_train=len(data.utk_train.images), n_val=len(age))
    return rec, err, ok


def table(arms: dict[str, dict]) -> str:
    """Markdown table of the arms (pct for accuracies, years for MAE, M for MACs)."""
    rows = ["| arm | age MAE (y) | 0-12 | 13+ | gender | 0-12 | 13+ | MACs/face | first conv | train min |",
            "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in arms.items():
        rows.append(
            f"| {name} | {r['age_mae']:.2f} | {r['age_mae_child']:.2f} | {r['age_mae_adult']:.2f} | "
            f"{100 * r['gender_acc']:.1f} % | {100 * r['gender_acc_child']:.1f} % | "
            f"{100 * r['gender_acc_adult']:.1f} % | {r['macs'] / 1e6:.2f} M | "
            f"{r['first_conv_macs'] / 1e6:.2f} M | {r['train_s'] / 60:.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Run every arm, write OUT/gray_vs_colour.json, print the table; 0 on success."""
    args = parse_args(argv)
    root = datasets_dir(args.data)
    if root is None:
        print("error: no datasets folder: pass --data or set EMOSTREAM_SHARED_DIR", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    t0 = time.time()
    arms, hits = {}, {}
    for name in args.arms:
        arms[name], err, ok = run_arm(name, root, args)
        hits[name] = (err, ok)
    if "gray" in hits:
        for name, (err, ok) in hits.items():
            if name != "gray":
                arms[name]["vs_gray"] = {"age_mae": paired_diff(hits["gray"][0], err),
                                         "gender_acc": paired_diff(hits["gray"][1], ok)}  # fmt: skip
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__}
    result = {"config": config, "machine": machine, "wall_s": round(time.time() - t0, 1), "arms": arms}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gray_vs_colour.json").write_text(json.dumps(result, indent=1))
    print(table(arms))
    return 0


if __name__ == "__main__":
    sys.exit(main())

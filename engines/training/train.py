"""Train the multi-task net on FER+ (emotion) and UTKFace (age, gender) with mixed, label-masked batches.

``python -m engines.training.train --data D --out DIR [--epochs N] [--resume] [--seed S] [--threads T]``
(``--packs P`` instead of ``--data``: transport packs, engines/training/packs.py; ``--device cuda``: train
on a GPU, same random stream; ``--teacher RUN/final.pt``: distil a trained net, engines/training/distill.py)

Every epoch ends with a validation row in ``DIR/metrics.csv`` and a checkpoint ``DIR/last.pt`` (model,
optimizer, scheduler, epoch, RNG state, UTK split), so ``--resume`` continues after Ctrl-C or a kill
from the last finished epoch. The end writes ``DIR/final.pt`` (weights + config + split + metrics).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engines.errors import EmostreamError
from engines.nets.mtl import DEPTHS, WIDTHS, MTLNet
from engines.training.augment import AugmentConfig, make_batch
from engines.training.data import TrainData, load_data
from engines.training.distill import Distiller, load_teacher
from engines.training.evaluate import evaluate
from engines.training.jigsaw import JigsawTask
from engines.training.losses import multitask_loss
from engines.training.packs import read_packs
from engines.training.paths import datasets_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m engines.training.train", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data", type=Path, default=None, help="datasets folder (default $EMOSTREAM_SHARED_DIR/datasets)"
    )
    ap.add_argument("--packs", type=Path, default=None, help="read transport packs instead of --data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=96)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--utk-per-epoch", type=float, default=0.6, help="fraction of UTK train used per epoch")
    ap.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    ap.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    ap.add_argument(
        "--jigsaw", type=float, default=0.0, help="weight of the self-supervised jigsaw task (0: off)"
    )
    ap.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1, ...")
    ap.add_argument("--teacher", type=Path, default=None, help="distil this trained net (a final.pt)")
    ap.add_argument("--kd", type=float, default=1.0, help="weight of the distillation loss (with --teacher)")
    ap.add_argument("--kd-temp", type=float, default=2.0, help="temperature of the emotion distillation")
    ap.add_argument("--limit", type=int, default=None, help="cap every set to N faces (smoke tests)")
    ap.add_argument("--max-steps", type=int, default=None, help="stop each epoch after N steps (smoke tests)")
    return ap.parse_args(argv)


def epoch_order(n_fer: int, n_utk: int, epoch: int, seed: int, utk_fraction: float) -> np.ndarray:
    """Shuffled sample ids of one epoch: FER+ rows are 0..n_fer-1, UTK rows n_fer + index."""
    rng = np.random.default_rng([seed, epoch])
    utk = rng.permutation(n_utk)[: round(n_utk * utk_fraction)] + n_fer
    return rng.permutation(np.concatenate([np.arange(n_fer), utk]))


def steps_per_epoch(data: TrainData, args: argparse.Namespace) -> int:
    """Optimizer steps in one epoch (batches of `args.batch`, last partial batch dropped)."""
    n = len(data.fer_train.images) + round(len(data.utk_train.images) * args.utk_per_epoch)
    steps = max(1, n // args.batch)
    return min(steps, args.max_steps) if args.max_steps else steps


def make_schedule(opt: torch.optim.Optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to zero, stepped once per batch."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_step(
    model, opt, sched, data: TrainData, ids: np.ndarray, aug: AugmentConfig, gen, aux=None, teacher=None
) -> dict:
    """One optimizer step on a mixed batch; returns the loss parts (with `aux`, its puzzle's too; with
    `teacher`, a `Distiller`, the distillation's)."""
    n_fer = len(data.fer_train.images)
    f, u = torch.from_numpy(ids[ids < n_fer]), torch.from_numpy(ids[ids >= n_fer] - n_fer)
    dev = next(model.parameters()).device
    xs = [
        make_batch(s.images[i].to(dev), s.base, aug, gen)
        for s, i in ((data.fer_train, f), (data.utk_train, u))
        if len(i)
    ]
    model.train()
    x = torch.cat(xs)
    out = model(x)
    targets = (data.fer_soft[f], data.utk_train_age[u], data.utk_train_man[u])
    loss, parts = multitask_loss(out, len(f), *(t.to(dev) for t in targets))
    if aux is not None:
        puzzle = aux.loss(model, x, gen)
        loss, parts = loss + aux.weight * puzzle, {**parts, "jigsaw": float(puzzle.detach())}
    if teacher is not None:
        kd, kd_parts = teacher.loss(out, x, len(f))
        loss, parts = loss + kd, {**parts, **kd_parts}
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return {"loss": float(loss.detach()), **parts}


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temp file then rename, so a kill never leaves a half-written checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def append_metrics(path: Path, row: dict) -> None:
    """Append one row to the metrics CSV (header written with the first row)."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def build(args: argparse.Namespace, data: TrainData):
    """Model, optimizer (SGD Nesterov, no decay on BN/bias), per-step schedule, and the jigsaw task
    (None unless --jigsaw)."""
    torch.manual_seed(args.seed)
    model = MTLNet(tuple(args.widths), tuple(args.depths)).to(args.device)
    aux = JigsawTask(model.config["embed_dim"], args.jigsaw).to(args.device) if args.jigsaw > 0 else None
    params = [*model.parameters(), *(aux.parameters() if aux else ())]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.SGD(groups, lr=args.lr, momentum=0.9, nesterov=True)
    spe = steps_per_epoch(data, args)
    sched = make_schedule(opt, spe * args.epochs, warmup=min(spe, 500))
    return model, opt, sched, aux


def resume(path: Path, model, opt, sched, gen: torch.Generator, aux: JigsawTask | None = None) -> int:
    """Restore everything from `path`; returns the number of finished epochs."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(ck["model"])
    if aux is not None:
        aux.load_state_dict(ck["aux"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    gen.set_state(ck["rng"]["aug"])
    torch.set_rng_state(ck["rng"]["torch"])
    return int(ck["epoch"])


def saved_split(out: Path) -> dict | None:
    """The UTK split saved by an earlier run in `out` (a resumed run keeps the same faces)."""
    p = out / "split.json"
    return json.loads(p.read_text()) if p.exists() else None


def run_epoch(
    model, opt, sched, data, args, epoch: int, gen, bar, aux=None, teacher=None
) -> dict[str, float]:
    """Train one epoch; returns mean loss parts."""
    order = epoch_order(
        len(data.fer_train.images), len(data.utk_train.images), epoch, args.seed, args.utk_per_epoch
    )
    sums: dict[str, float] = {}
    aug = AugmentConfig()
    n = steps_per_epoch(data, args)
    for s in range(n):
        ids = order[s * args.batch : (s + 1) * args.batch]
        parts = train_step(model, opt, sched, data, ids, aug, gen, aux, teacher)
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.3f}", lr=f"{sched.get_last_lr()[0]:.4f}", refresh=False)
    return {k: v / n for k, v in sums.items()}


def check_device(device: str) -> None:
    """A one-line error for a device torch does not know or this machine lacks."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise EmostreamError(f"--device {device}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EmostreamError(f"--device {device}: this torch sees no CUDA device")


def read_data(args: argparse.Namespace) -> TrainData:
    """The training data from --packs, else from the dataset folders (--data or EMOSTREAM_SHARED_DIR)."""
    if args.packs is not None:
        return read_packs(args.packs)
    root = datasets_dir(args.data)
    if root is None:
        raise EmostreamError("no datasets folder: pass --data or set EMOSTREAM_SHARED_DIR")
    return load_data(root, args.limit, saved_split(args.out) if args.resume else None, split_seed=args.seed)


def train(args: argparse.Namespace) -> dict[str, float]:
    """The whole run (resumable); returns the last validation metrics."""
    if args.jigsaw < 0:
        raise EmostreamError(f"--jigsaw is a loss weight, >= 0 (0: off), got {args.jigsaw}")
    check_device(args.device)
    torch.set_num_threads(args.threads)
    teacher = None
    if args.teacher is not None:  # before the data, so a bad path fails at once
        teacher = Distiller(load_teacher(args.teacher, args.device), args.kd, args.kd_temp)
    data = read_data(args)
    args.out.mkdir(parents=True, exist_ok=True)
    last = args.out / "last.pt"
    (args.out / "split.json").write_text(json.dumps(data.utk_split))
    model, opt, sched, aux = build(args, data)
    gen = torch.Generator().manual_seed(args.seed)
    start = resume(last, model, opt, sched, gen, aux) if args.resume and last.exists() else 0
    if not args.resume and (args.out / "metrics.csv").exists():
        (args.out / "metrics.csv").unlink()
    spe = steps_per_epoch(data, args)
    bar = tqdm(
        total=spe * args.epochs,
        initial=spe * start,
        desc="train",
        mininterval=1 if sys.stderr.isatty() else 60,
    )
    metrics: dict[str, float] = {}
    for epoch in range(start, args.epochs):
        t0 = time.time()
        bar.set_description(f"epoch {epoch + 1}/{args.epochs}")
        losses = run_epoch(model, opt, sched, data, args, epoch, gen, bar, aux, teacher)
        t1 = time.time()
        metrics = evaluate(model, data)
        row = {"epoch": epoch + 1, **losses, **metrics, "train_s": t1 - t0, "eval_s": time.time() - t1}
        append_metrics(
            args.out / "metrics.csv", {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}
        )
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "epoch": epoch + 1, "rng": {"aug": gen.get_state(), "torch": torch.get_rng_state()},
                 "config": model.config, "args": vars(args), "utk_split": data.utk_split,
                 "aux": aux.state_dict() if aux else None}  # fmt: skip
        save_checkpoint(last, state)
        tqdm.write(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"))
    bar.close()
    final = {
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "config": model.config,
        "utk_split": data.utk_split,
        "metrics": metrics,
    }
    save_checkpoint(args.out / "final.pt", final)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success, 2 on an EmostreamError, 130 on Ctrl-C (resume with --resume)."""
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    try:
        train(args)
    except EmostreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; continue from the last finished epoch with --resume --out {args.out}",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

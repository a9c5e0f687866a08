"""Compare two training runs epoch by epoch from their metrics.csv (docs/models.md, CPU against GPU).

    python tools/compare_runs.py GPU_RUN/metrics.csv CPU_RUN/metrics.csv [--epochs 4,8,12] [--from 5]

Prints a Markdown table of the chosen epochs (training loss, FER+, age MAE, gender: A / B), then over the
epochs both runs reached from `--from` on: the largest relative gap in training loss, the mean absolute
and mean signed gap (B - A) of each validation figure, and how much run A itself moves from one epoch to
the next (the yardstick for "within noise"); and each run's mean seconds of training and validation an
epoch and its totals.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

FIGURES = (
    ("fer_acc", 100.0, "FER+ points"),
    ("utk_age_mae", 1.0, "years"),
    ("utk_gender_acc", 100.0, "gender points"),
)


class BadRun(Exception):
    """A metrics file that cannot be compared (one line)."""


def read_rows(path: Path) -> dict[int, dict[str, float]]:
    """epoch -> numeric columns of a trainer's metrics.csv."""
    try:
        with path.open(newline="") as f:
            return {int(r["epoch"]): {k: float(v) for k, v in r.items() if v} for r in csv.DictReader(f)}
    except (OSError, KeyError, ValueError) as e:
        raise BadRun(f"{path}: not a readable metrics.csv ({e})") from None


def table(a: dict, b: dict, epochs: list[int]) -> list[str]:
    """Markdown rows 'A / B' for the chosen epochs both runs have."""
    lines = ["| epoch | training loss | FER+ | age MAE | gender |", "|---|---|---|---|---|"]
    for e in (e for e in epochs if e in a and e in b):
        x, y = a[e], b[e]
        fer = f"{100 * x['fer_acc']:.1f} / {100 * y['fer_acc']:.1f} %"
        age = f"{x['utk_age_mae']:.2f} / {y['utk_age_mae']:.2f}"
        gender = f"{100 * x['utk_gender_acc']:.1f} / {100 * y['utk_gender_acc']:.1f} %"
        lines.append(f"| {e} | {x['loss']:.3f} / {y['loss']:.3f} | {fer} | {age} | {gender} |")
    return lines


def gaps(a: dict, b: dict, start: int) -> dict[str, float]:
    """Loss gap, validation gaps and run A's own epoch-to-epoch movement over the shared epochs >= start."""
    shared = sorted(e for e in a if e in b and e >= start)
    if not shared:
        raise BadRun(f"the runs share no epoch from {start} on")
    out = {
        "epochs": float(len(shared)),
        "max_loss_gap": max(abs(b[e]["loss"] / a[e]["loss"] - 1) for e in shared),
    }
    for key, scale, _ in FIGURES:
        diff = [scale * (b[e][key] - a[e][key]) for e in shared]
        moves = [scale * abs(a[e][key] - a[e - 1][key]) for e in shared if e - 1 in a]
        out[f"{key}_mean_abs"] = statistics.mean(abs(d) for d in diff)
        out[f"{key}_mean_signed"] = statistics.mean(diff)
        out[f"{key}_a_moves"] = statistics.mean(moves) if moves else float("nan")
    return out


def timing(rows: dict) -> str:
    """Mean seconds of training and validation an epoch, and their totals."""
    tr = [r["train_s"] for r in rows.values()]
    ev = [r["eval_s"] for r in rows.values()]
    each = f"{statistics.mean(tr):.1f} s + {statistics.mean(ev):.1f} s an epoch"
    return f"{each}, {sum(tr) / 60:.1f} + {sum(ev) / 60:.1f} min in all"


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0, or 2 with one line on a bad file."""
    ap = argparse.ArgumentParser(prog="tools/compare_runs.py", description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--epochs", default="4,8,12,16,20,24")
    ap.add_argument("--from", dest="start", type=int, default=5)
    args = ap.parse_args(argv)
    try:
        a, b = read_rows(args.a), read_rows(args.b)
        g = gaps(a, b, args.start)
        epochs = [int(e) for e in args.epochs.split(",") if e.strip()]
    except (BadRun, ValueError) as e:
        print(f"compare_runs: {e}", file=sys.stderr)
        return 2
    print("\n".join(table(a, b, epochs)))
    last = max(e for e in a if e in b)
    print(f"\nepochs {args.start}-{last}: largest training-loss gap {100 * g['max_loss_gap']:.1f} %")
    for key, _, unit in FIGURES:
        mean_abs, signed, moves = (g[f"{key}_{part}"] for part in ("mean_abs", "mean_signed", "a_moves"))
        print(
            f"{key}: mean |B - A| {mean_abs:.2f} {unit}, B - A {signed:+.2f}, A's epoch-to-epoch {moves:.2f}"
        )
    print(f"A: {timing(a)}\nB: {timing(b)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

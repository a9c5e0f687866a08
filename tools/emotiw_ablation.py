"""Feature-set x classifier ablation of `emostream score` on the small test datasets (docs/emotiw.md).

Builds the AFEW- and VGAF-layout datasets the tests use (clips cut from ../shared/media, see
tests/builders_clips.py), extracts features once per protocol (cached), then scores every feature set with
every classifier plus the zero-shot baseline and prints a markdown table of accuracy / macro F1 on Val.

    python tools/emotiw_ablation.py --work /tmp/emotiw-ablation [--workers 2] [--detect-every 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import AnalyzerConfig  # noqa: E402
from pipeline.scoring.job import ScoreJob  # noqa: E402
from pipeline.scoring.names import CLASSIFIERS  # noqa: E402
from pipeline.scoring.score import score  # noqa: E402
from tests.builders_clips import build_afew, build_vgaf  # noqa: E402

FEATURE_SETS = ("emotion", "fused")
TRAINED = [c for c in CLASSIFIERS if c != "zeroshot"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--work", type=Path, required=True, help="folder for the datasets, cache and score outputs"
    )
    p.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--detect-every", type=int, default=2)
    p.add_argument("--heads", default=",".join(AnalyzerConfig().heads))
    return p.parse_args(argv)


def datasets(args) -> dict[str, Path]:
    """protocol -> dataset folder, built on first use."""
    out = {}
    for protocol, build in (("afew", build_afew), ("vgaf", build_vgaf)):
        root = args.work / "data" / protocol
        if not (root / ".complete").is_file():
            build(args.media, root)
            (root / ".complete").write_text("ok\n")
        out[protocol] = root
    return out


def run_all(args) -> list[dict]:
    config = AnalyzerConfig(detect_every=args.detect_every, heads=tuple(args.heads.split(",")))
    base = dict(eval_split="Val", train_split="Train", workers=args.workers, analyzer=config, overwrite=True)
    base["cache_dir"] = args.work / "cache"
    results = []
    for protocol, root in datasets(args).items():
        runs = [(f, c) for f in FEATURE_SETS for c in TRAINED] + [("emotion", "zeroshot")]
        for features, classifier in runs:
            out = args.work / "runs" / f"{protocol}-{features}-{classifier}"
            job = ScoreJob(root, protocol, out_dir=out, features=features, classifier=classifier, **base)
            results.append(score(job))
    return results


def table(results: list[dict]) -> str:
    """Markdown: one row per protocol and feature set, one column per classifier, cells 'acc / F1'."""
    head = ["protocol", "features", "dim", *TRAINED, "zeroshot"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for protocol in ("afew", "vgaf"):
        cells = {(m["features"], m["classifier"]): m for m in results if m["protocol"] == protocol}
        zero = cells[("emotion", "zeroshot")]
        for features in FEATURE_SETS:
            row = [cells[(features, c)] for c in TRAINED]
            zs = _cell(zero) if features == "emotion" else "(same)"
            lines.append(
                f"| {protocol} | {features} | {row[0]['feature_dim']} | "
                + " | ".join(_cell(m) for m in row)
                + f" | {zs} |"
            )
    return "\n".join(lines)


def _cell(m: dict) -> str:
    return f"{m['accuracy']:.2f} / {m['macro_f1']:.2f}"


def counts(results: list[dict]) -> str:
    lines = []
    for protocol in ("afew", "vgaf"):
        m = next(r for r in results if r["protocol"] == protocol and r["classifier"] != "zeroshot")
        c = m["counts"]
        lines.append(
            f"- {protocol}: train {c['train_clips']} clips {c['train_per_class']}, "
            f"eval {c['eval_clips']} clips {c['eval_per_class']}, "
            f"{len(m['no_face_clips']['eval'])} eval clip(s) without a face "
            f"(fallback: {m['fallback']['class']}); models " + ", ".join(x["name"] for x in m["models"])
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    os.environ.setdefault("EMOSTREAM_MODELS_DIR", str(REPO.parent / "shared" / "models"))
    args = parse_args(argv)
    results = run_all(args)
    print(table(results))
    print()
    print(counts(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

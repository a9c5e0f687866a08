"""Make the bundled multi-task weights from a training run: `python tools/release_mtl.py RUN/final.pt`.

Writes engines/weights/emostream_mtl_v1.pt (the net's config and float32 state dict only: no optimizer, no
file lists, so nothing derived from the datasets but the learned weights), and pins its sha256 in
engines/store/registry.py (MTL_SHA256), which the model store checks on every load.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "engines" / "weights" / "emostream_mtl_v1.pt"
REGISTRY = REPO / "engines" / "store" / "registry.py"


def release(final: Path, dest: Path = WEIGHTS, registry: Path = REGISTRY) -> str:
    """Write the bundle and pin its sha256; returns the sha256."""
    blob = torch.load(final, map_location="cpu", weights_only=False)
    state = blob.get("state_dict") or blob["model"]
    bundle = {"config": dict(blob["config"]), "state_dict": {k: v.float() if v.is_floating_point() else v
                                                             for k, v in state.items()}}  # fmt: skip
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(bundle, dest)
    sha = hashlib.sha256(dest.read_bytes()).hexdigest()
    text = registry.read_text()
    new, n = re.subn(r'^MTL_SHA256 = "[0-9a-f]{64}"$', f'MTL_SHA256 = "{sha}"', text, flags=re.M)
    if n != 1:
        raise SystemExit(f"{registry}: no MTL_SHA256 line to pin")
    registry.write_text(new)
    return sha


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("final", type=Path, help="final.pt (or last.pt) of an `emostream train` run")
    args = ap.parse_args()
    sha = release(args.final)
    print(f"{WEIGHTS.relative_to(REPO)}: {WEIGHTS.stat().st_size} bytes, sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

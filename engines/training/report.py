"""Final report of a training run: full validation metrics, ONNX export + check, size and 1-thread cost.

``python -m engines.training.report --data DATASETS --run DIR`` reads ``DIR/final.pt``, re-reads the
validation sets (the UTK split saved in the run), writes ``DIR/mtl.onnx`` and ``DIR/report.json``. The
ONNX timing is also taken, in the same process, for the reference 8-conv 16-32-64-128 CNN, so that a
busy machine can be told apart from a slow graph.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from engines.nets.mtl import MTLNet, count_macs, preprocess
from engines.training.data import load_data
from engines.training.evaluate import detailed_report
from engines.training.export import check_export, export_onnx, load_model, time_onnx
from engines.training.paths import datasets_dir

REFERENCE = ((16, 32, 64, 128), (2, 2, 2, 2))


def cost(model: MTLNet, onnx_path: Path, runs: int) -> dict[str, float]:
    """Parameters, MACs per face, median ms per batch of 8 on one onnxruntime thread (model, reference)."""
    ref_path = export_onnx(MTLNet(*REFERENCE), onnx_path.with_name("reference_cnn.onnx"))
    times = {"onnx_ms_b8_1thread": [], "reference_cnn_ms_b8_1thread": []}
    for _ in range(3):  # interleaved, so both see the same machine load
        times["onnx_ms_b8_1thread"].append(time_onnx(onnx_path, runs=runs))
        times["reference_cnn_ms_b8_1thread"].append(time_onnx(ref_path, runs=runs))
    out = {k: float(np.median(v)) for k, v in times.items()}
    out["params"] = sum(p.numel() for p in model.parameters())
    out["macs_per_face"] = count_macs(model)
    return out


def main(argv: list[str] | None = None) -> None:
    """Write DIR/mtl.onnx and DIR/report.json for the run in DIR."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=300, help="timed onnxruntime runs per measurement")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    blob = torch.load(args.run / "final.pt", map_location="cpu", weights_only=False)
    model = load_model(args.run / "final.pt")
    data = load_data(datasets_dir(args.data), split=blob["utk_split"])
    rep: dict[str, object] = detailed_report(model, data)
    onnx_path = export_onnx(model, args.run / "mtl.onnx")
    x = preprocess(data.fer_val.images[:8].numpy())
    rep["onnx_max_abs_diff"] = check_export(model, onnx_path, x, tol=1e-4)
    rep.update(cost(model, onnx_path, args.runs))
    rep["config"] = model.config
    rep["n_val"] = {"fer": len(data.fer_val_labels), "utk": len(data.utk_val_age)}
    (args.run / "report.json").write_text(json.dumps(rep, indent=1))
    print(json.dumps(rep, indent=1))


if __name__ == "__main__":
    main()

"""Export a trained `MTLNet` to ONNX (opset 17, dynamic batch), check it against torch, time it on one thread.

The graph input is ``input`` float32 (N, 1, 48, 48), already preprocessed (`engines.nets.mtl.preprocess`);
phase 2 grafts the crop slicing, resize and gray conversion in front of it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from engines.errors import EmostreamError
from engines.nets.mtl import DEPTHS, GRAY, INPUT_SIZE, OUTPUT_NAMES, WIDTHS, MTLNet

OPSET = 17


def export_onnx(model: MTLNet, path: Path) -> Path:
    """Write `model` (put in eval mode) as ONNX with a dynamic batch axis; returns the path."""
    model.eval()
    dummy = torch.zeros(2, 1 if GRAY else 3, INPUT_SIZE, INPUT_SIZE)
    axes = {name: {0: "batch"} for name in ("input", *OUTPUT_NAMES)}
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _TupleOutputs(model)
    torch.onnx.export(
        wrapper, (dummy,), str(path), input_names=["input"], output_names=list(OUTPUT_NAMES),
        dynamic_axes=axes, opset_version=OPSET, dynamo=False,
    )  # fmt: skip
    return path


class _TupleOutputs(torch.nn.Module):
    """ONNX export needs positional outputs: the dict of `MTLNet.forward` in `OUTPUT_NAMES` order."""

    def __init__(self, model: MTLNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[k] for k in OUTPUT_NAMES)


def ort_session(path: Path, threads: int = 1):
    """An onnxruntime CPU session with `threads` intra-op threads (inter-op 1, sequential)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def max_abs_diff(model: MTLNet, path: Path, x: np.ndarray) -> dict[str, float]:
    """Largest |torch - onnxruntime| per output on the same float32 input."""
    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    got = ort_session(path).run(list(OUTPUT_NAMES), {"input": x})
    return {k: float(np.abs(ref[k].numpy() - g).max()) for k, g in zip(OUTPUT_NAMES, got, strict=True)}


def check_export(model: MTLNet, path: Path, x: np.ndarray, tol: float = 1e-4) -> dict[str, float]:
    """`max_abs_diff`, raising EmostreamError when any output differs by more than `tol`."""
    diffs = max_abs_diff(model, path, x)
    bad = {k: v for k, v in diffs.items() if v > tol}
    if bad:
        raise EmostreamError(f"ONNX export of {path.name} disagrees with torch beyond {tol}: {bad}")
    return diffs


def time_onnx(path: Path, batch: int = 8, runs: int = 300, warmup: int = 30) -> float:
    """Median milliseconds per `batch`-face run on ONE onnxruntime thread."""
    sess = ort_session(path, threads=1)
    x = np.random.default_rng(0).standard_normal((batch, 1 if GRAY else 3, INPUT_SIZE, INPUT_SIZE))
    feed = {"input": x.astype(np.float32)}
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def load_model(path: Path) -> MTLNet:
    """An `MTLNet` from a final state file or a training checkpoint (both carry the net config)."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    cfg = blob.get("config", {})
    model = MTLNet(tuple(cfg.get("widths", WIDTHS)), tuple(cfg.get("depths", DEPTHS)))
    model.load_state_dict(blob["model"] if "model" in blob else blob["state_dict"])
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    """python -m engines.training.export WEIGHTS OUT.onnx: export, check within 1e-4, print 1-thread ms."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("weights", type=Path)
    ap.add_argument("onnx", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.weights)
    export_onnx(model, args.onnx)
    x = np.random.default_rng(1).standard_normal((8, 1, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    print("max |torch - onnx|:", check_export(model, args.onnx, x))
    print(f"onnxruntime 1 thread, batch 8: {time_onnx(args.onnx):.2f} ms (median)")


if __name__ == "__main__":
    main()

"""onnxruntime on CPU: runs the fused ONNX graph, all graph optimisations on."""

from __future__ import annotations

import numpy as np

from engines.backends.base import NetSource, usable_cpus
from engines.errors import BackendUnavailable


class OnnxRuntimeBackend:
    """`Backend` over an onnxruntime InferenceSession (CPUExecutionProvider)."""

    name = "onnxruntime"

    def __init__(self, net_source: NetSource, intra_op_threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable(
                "backend 'onnxruntime' needs the package onnxruntime, not installed"
            ) from None
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = intra_op_threads or usable_cpus()
        # Idle worker threads must sleep, not spin: the pipeline's decode, detect and encode threads need
        # those cores between inference calls (spinning costs them throughput on a 2-core machine).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.intra_op_threads = opts.intra_op_num_threads
        self.onnx_path = net_source.onnx_path
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types; the CLI needs one line
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BackendUnavailable(f"onnxruntime cannot load {self.onnx_path}: {first}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    def run(self, crops_bgr: np.ndarray) -> dict[str, np.ndarray]:
        """Named outputs for a (N,S,S,3) uint8 batch."""
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(crops_bgr, np.uint8)})
        return dict(zip(self.output_names, outputs, strict=True))

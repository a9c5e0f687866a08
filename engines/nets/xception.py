"""mini/big XCEPTION (oarriaga/face_classification) as torch modules with a feature tap.

Both nets end in `conv (k classes) -> GlobalAveragePooling2D -> softmax`; the "penultimate
features" are the global average of the final conv's input (128 channels for mini XCEPTION, 256
for big), i.e. a vector the class logits are a (spatial) linear function of.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from engines.convert.keras_import import KerasGraph, load_keras_model
from engines.errors import EmostreamError
from engines.nets.heads import HeadSpec, center_fraction
from engines.nets.preprocess import GrayWindow, Head
from engines.store.registry import get_spec

INPUT_HW = (64, 64)
"""Spatial input size of every face_classification model (N, 1, 64, 64)."""

_SCALAR_CLASS = {"gender": "man"}
"""Heads with a scalar output give the probability of this class."""


def _feature_layer(graph: KerasGraph) -> str:
    """Name of the layer feeding the last Conv2D on the path back from the output."""
    by_name = {n.name: n for n in graph.nodes}
    node = by_name.get(graph.output_name)
    while node is not None:
        if node.kind == "Conv2D":
            return node.inbound[0]
        node = by_name.get(node.inbound[0])
    raise EmostreamError(f"model output {graph.output_name}: no final Conv2D layer found before it")


class XceptionClassifier(nn.Module):
    """A converted XCEPTION: (N,1,64,64) preprocessed gray -> (softmax probs (N,K), features (N,D))."""

    def __init__(self, graph: KerasGraph):
        super().__init__()
        self.graph = graph
        self.feature_layer = _feature_layer(graph)
        self.num_classes = graph.shapes[graph.output_name][0]
        self.feature_dim = graph.shapes[self.feature_layer][0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs, fmap = self.graph.run(x, (self.graph.output_name, self.feature_layer))
        return probs, fmap.mean(dim=(2, 3))


def load_xception(path: str | Path) -> XceptionClassifier:
    """Convert a face_classification Keras HDF5 file into an `XceptionClassifier` (eval mode)."""
    return XceptionClassifier(load_keras_model(path)).eval()


class XceptionHead(Head):
    """A face_classification net with its own preprocessing: BGR crops -> (output, features).

    The output is the softmax (N,K), or one column of it (N,) when `column` is set
    (gender: column 1 = P(man) of the woman/man softmax).
    """

    uses_gray = True

    def __init__(
        self, name: str, net: XceptionClassifier, crop_size: int, fraction: float, column: int | None = None
    ):
        super().__init__()
        self.name, self.fraction, self.column = name, fraction, column
        self.prep = GrayWindow(crop_size, fraction, INPUT_HW[0])
        self.net = net
        self.feature_dim = net.feature_dim

    def forward(
        self, x_bgr: torch.Tensor, gray: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        probs, features = self.net(self.prep(x_bgr, gray))
        return (probs if self.column is None else probs[:, self.column]), features


class EnsembleHead(Head):
    """Several K-class face_classification nets on one window, each also on its mirror image.

    Output: the mean of the 2·len(nets) softmax vectors (N,K). Features: each net's features averaged
    over the two views, concatenated in net order (128 + 256 for mini + big XCEPTION). One preprocessing
    pass feeds every net with the (2N,...) batch of plain and mirrored windows.
    """

    uses_gray = True

    def __init__(self, name: str, nets: list[XceptionClassifier], crop_size: int, fraction: float):
        super().__init__()
        self.name, self.fraction = name, fraction
        self.prep = GrayWindow(crop_size, fraction, INPUT_HW[0], mirrored=True)
        self.nets = nn.ModuleList(nets)
        self.feature_dim = sum(net.feature_dim for net in nets)

    def forward(
        self, x_bgr: torch.Tensor, gray: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        views = self.prep(x_bgr, gray)
        probs, features = zip(*(net(views) for net in self.nets), strict=True)
        per_view = [p.unflatten(0, (2, -1)).mean(dim=0) for p in probs]  # (2N,K) -> (N,K)
        mean_probs = torch.stack(per_view).mean(dim=0)
        return mean_probs, torch.cat([f.unflatten(0, (2, -1)).mean(dim=0) for f in features], dim=1)


def build_head(spec: HeadSpec, paths: list[Path], crop_size: int, crop_scale: float) -> XceptionHead:
    """Head factory for the face_classification models (see `engines.nets.heads`)."""
    net = load_xception(paths[0])
    column = (
        get_spec(spec.models[0]).classes.index(_SCALAR_CLASS[spec.name]) if not spec.output_tail else None
    )
    if spec.output_tail and spec.output_tail != (net.num_classes,):
        raise EmostreamError(
            f"head {spec.name}: model has {net.num_classes} classes, spec says {spec.output_tail}"
        )
    return XceptionHead(spec.name, net, crop_size, center_fraction(spec.face_pad, crop_scale), column).eval()


def build_ensemble_head(spec: HeadSpec, paths: list[Path], crop_size: int, crop_scale: float) -> EnsembleHead:
    """Head factory for the "accurate" emotion head: every model of `spec`, averaged with mirroring."""
    nets = [load_xception(p) for p in paths]
    classes = {net.num_classes for net in nets}
    if classes != {spec.output_tail[0]}:
        raise EmostreamError(
            f"head {spec.name}: models have {sorted(classes)} classes, spec says {spec.output_tail}"
        )
    return EnsembleHead(spec.name, nets, crop_size, center_fraction(spec.face_pad, crop_scale)).eval()

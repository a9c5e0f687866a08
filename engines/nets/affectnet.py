"""ONNX-only emotion heads of the fused net: HSEmotion's AffectNet classifier (enet_b0_8_best_afew.onnx)
and OpenCV Zoo's RAF-DB MobileFaceNet (quality "rafdb").

The model is a downloaded ONNX file (no torch source), so the torch part of the fused net only does
this head's preprocessing, exactly as upstream's `HSEmotionRecognizer.preprocess` does on an RGB face:
resize to 224x224, x/255, ImageNet mean/std per channel. Here the face window comes from the shared
BGR crop, and the channel swap and the scaling are one 1x1 affine map applied to the window before
the resize (the resize weights sum to 1, so they commute). `engines.convert.compose` then grafts the ONNX
file onto this input and maps its 8 logits to the outputs: `emotion` = softmax over the 7 FER2013
classes in FER2013 order, `contempt` = P(contempt) of the softmax over all 8.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from engines.convert.compose import ExternalHead, OnnxModelInfo, inspect_onnx
from engines.errors import EmostreamError
from engines.labels import fer_columns
from engines.nets.heads import HeadSpec, center_fraction
from engines.nets.preprocess import Head, WindowResize
from engines.store.registry import get_spec

INPUT_CHW = (3, 224, 224)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


class RgbWindow(nn.Module):
    """(N,3,S,S) float BGR 0-255 -> (N,3,out,out) RGB, (x/255 - mean) / std, from the centered window."""

    def __init__(
        self,
        crop_size: int,
        fraction: float,
        out_size: int = INPUT_CHW[1],
        mean_rgb: tuple[float, ...] = IMAGENET_MEAN_RGB,
        std_rgb: tuple[float, ...] = IMAGENET_STD_RGB,
    ):
        super().__init__()
        self.window = WindowResize(crop_size, fraction, out_size)
        std = torch.tensor(std_rgb)
        mix = torch.zeros(3, 3)
        mix[torch.arange(3), torch.tensor([2, 1, 0])] = 1.0 / (255.0 * std)  # out RGB c reads BGR 2-c
        self.register_buffer("mix", mix.view(3, 3, 1, 1))
        self.register_buffer("shift", -torch.tensor(mean_rgb) / std)

    def forward(self, x_bgr: torch.Tensor) -> torch.Tensor:
        rgb = nn.functional.conv2d(self.window.crop(x_bgr), self.mix, self.shift)
        return self.window.resize(rgb)


class OnnxHead(Head):
    """A head whose network is an ONNX file: in torch it only prepares that network's input.

    `external` tells `FusedNet` to export `<name>.input` for it; `engines.convert.compose` does the rest.
    """

    external = True

    def __init__(self, spec: HeadSpec, external: ExternalHead, prep: nn.Module, fraction: float):
        super().__init__()
        self.name, self.fraction, self.spec, self.graft = spec.name, fraction, spec, external
        self.prep = prep
        self.feature_dim = external.model.feature_dim

    def forward(self, x_bgr: torch.Tensor) -> torch.Tensor:
        return self.prep(x_bgr)


def external_head(spec: HeadSpec, info: OnnxModelInfo) -> ExternalHead:
    """How `spec`'s outputs come from the model's logits (FER2013 columns, then each extra class)."""
    classes = get_spec(spec.models[0]).classes
    if info.num_classes != len(classes):
        raise EmostreamError(
            f"{info.path.name}: {info.num_classes} classes, the registry lists {len(classes)}"
        )
    columns, _ = fer_columns(classes)
    extras = tuple((out, classes.index(out)) for out, _ in spec.extra_outputs)
    return ExternalHead(spec.name, info, tuple(columns), extras)


def build_head(spec: HeadSpec, paths: list[Path], crop_size: int, crop_scale: float) -> OnnxHead:
    """Head factory for the HSEmotion models (see `engines.nets.heads`)."""
    info = inspect_onnx(paths[0], INPUT_CHW)
    fraction = center_fraction(spec.face_pad, crop_scale)
    return OnnxHead(spec, external_head(spec, info), RgbWindow(crop_size, fraction), fraction).eval()


RAFDB_INPUT_CHW = (3, 112, 112)


def build_rafdb_head(spec: HeadSpec, paths: list[Path], crop_size: int, crop_scale: float) -> OnnxHead:
    """Head factory for OpenCV Zoo's RAF-DB expression net (Progressive Teacher MobileFaceNet, int8).

    It reads the face aligned onto the ArcFace 112x112 template, which is exactly the crop's face square
    (pipeline.stages.align aligns to that template): the window at face_pad 0, RGB, (x/255 - 0.5) / 0.5.
    """
    info = inspect_onnx(paths[0], RAFDB_INPUT_CHW)
    fraction = center_fraction(spec.face_pad, crop_scale)
    prep = RgbWindow(crop_size, fraction, RAFDB_INPUT_CHW[1], (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return OnnxHead(spec, external_head(spec, info), prep, fraction).eval()

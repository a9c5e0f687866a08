"""The project's own multi-task face network: shared conv trunk; emotion, gender, age, embedding heads.

Framing (the contract with the pipeline, phase 2):

* The pipeline hands an aligned crop: uint8 BGR (N, S, S, 3), S = 128, where the face square (5-landmark
  similarity alignment) is the central S / 2 px (crop_scale 2.0).
* The net sees a window of `WINDOW_SCALE` x the face square side, centred `WINDOW_DY` x that side below
  the face square's centre, resized to `INPUT_SIZE` x `INPUT_SIZE`. In the 128 px crop (face square
  [32, 96)) that is about rows [45, 96) and columns [38, 90), resized 51 -> 48.
* `GRAY`: the window is turned to one channel with OpenCV's BGR->gray weights (`GRAY_WEIGHTS`, B, G, R),
  then scaled by `preprocess`: x = (gray / 255 - `MEAN`) / `STD`, float32 (N, 1, 48, 48).
* Training cuts the same window out of the dataset images, using where the pipeline's face square lies in
  them (`engines.training.data.FER_BASE`, `UTK_BASE`: medians over 300 faces of each set, measured by
  running the project's YuNet + 5-point aligner on the images). Random scale (+-10 %), shift (+-6 %) and
  rotation (+-10 deg) jitter cover face-to-face variation of the landmark framing. Phase 2 should still
  measure accuracy through the full detector + aligner path.

Outputs of `MTLNet.forward` (a dict, and the same names in the ONNX export):

* ``emotion_logits`` (N, 8), FER+ order `EMOTIONS`.
* ``gender_logit`` (N,): sigmoid gives P(man).
* ``age_logits`` (N, `AGE_BINS`): softmax over ages 0..100 years; `decode_age` gives the expectation.
* ``embedding`` (N, `EMBED_DIM`): the penultimate features the heads read (L2-normalise before use).

Only Conv / BatchNorm / ReLU / MaxPool / GlobalAveragePool / Gemm, so it exports to ONNX opset 17 and
compiles with TensorRT without plugins.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
INPUT_SIZE = 48
WINDOW_SCALE = 0.8
WINDOW_DY = 0.1
"""The window is `WINDOW_SCALE` x the face square, its centre `WINDOW_DY` x the face side below the face
square's centre: the ArcFace template square the pipeline aligns to holds much forehead (eyes at 46 % of its
height), and both datasets are tighter crops than it (measured with the project's YuNet + aligner: the face
square is 1.07 x a FER+ image, centred at (0.49, 0.42), and 1.17 x a UTKFace image, centred at (0.49, 0.32)),
so this window stays inside both datasets' images while matching what the pipeline cuts."""
GRAY = True
GRAY_WEIGHTS = (0.114, 0.587, 0.299)  # B, G, R as cv2.COLOR_BGR2GRAY
MEAN = 0.5
STD = 0.25
AGE_MAX = 100
AGE_BINS = AGE_MAX + 1
EMBED_DIM = 128
WIDTHS = (16, 32, 64, 128, 256)
DEPTHS = (1, 2, 2, 2, 1)
OUTPUT_NAMES = ("emotion_logits", "gender_logit", "age_logits", "embedding")


def preprocess(gray: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) gray windows -> float32 (N, 1, H, W) network input."""
    x = gray.astype(np.float32) / 255.0
    return ((x - MEAN) / STD)[:, None]


def decode_age(age_logits: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Age in years as the expectation of the softmax over the 0..AGE_MAX bins."""
    if isinstance(age_logits, np.ndarray):
        z = age_logits - age_logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return p @ np.arange(age_logits.shape[1], dtype=np.float32)
    bins = torch.arange(age_logits.shape[1], dtype=age_logits.dtype, device=age_logits.device)
    return torch.softmax(age_logits, dim=1) @ bins


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    """3x3 conv (no bias) + BN + ReLU: the only building block of the trunk."""
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def build_trunk(widths: tuple[int, ...], depths: tuple[int, ...], in_ch: int = 1) -> nn.Sequential:
    """VGG-style stages; a 2x2 max-pool after every stage but the last, then global average pooling."""
    layers: list[nn.Module] = []
    cin = in_ch
    for i, (w, d) in enumerate(zip(widths, depths, strict=True)):
        for _ in range(d):
            layers += _conv_bn_relu(cin, w)
            cin = w
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class MTLNet(nn.Module):
    """Shared trunk -> 128-D embedding -> emotion (8), gender (1), age (AGE_BINS) linear heads."""

    def __init__(
        self,
        widths: tuple[int, ...] = WIDTHS,
        depths: tuple[int, ...] = DEPTHS,
        embed_dim: int = EMBED_DIM,
        dropout: float = 0.2,
        in_ch: int = 1 if GRAY else 3,
    ) -> None:
        super().__init__()
        self.config = {"widths": list(widths), "depths": list(depths), "embed_dim": embed_dim}
        self.in_ch = in_ch  # 3 only for tools/gray_vs_colour.py's measurement; not in `config`, not exported
        self.trunk = build_trunk(tuple(widths), tuple(depths), in_ch)
        self.neck = nn.Sequential(
            nn.Linear(widths[-1], embed_dim, bias=False), nn.BatchNorm1d(embed_dim), nn.ReLU(inplace=True)
        )
        self.drop = nn.Dropout(dropout)
        self.emotion = nn.Linear(embed_dim, len(EMOTIONS))
        self.gender = nn.Linear(embed_dim, 1)
        self.age = nn.Linear(embed_dim, AGE_BINS)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (N, in_ch, INPUT_SIZE, INPUT_SIZE) preprocessed -> the four named outputs."""
        emb = self.neck(self.trunk(x))
        h = self.drop(emb)
        return {
            "emotion_logits": self.emotion(h),
            "gender_logit": self.gender(h)[:, 0],
            "age_logits": self.age(h),
            "embedding": emb,
        }


def count_macs(model: MTLNet, size: int = INPUT_SIZE) -> int:
    """Multiply-accumulates of one forward pass on one face (convs and linears only)."""
    macs = 0

    def conv_hook(m: nn.Conv2d, _inp, out) -> None:
        nonlocal macs
        k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
        macs += out.shape[1] * out.shape[2] * out.shape[3] * k

    def lin_hook(m: nn.Linear, _inp, _out) -> None:
        nonlocal macs
        macs += m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(lin_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, model.in_ch, size, size))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return macs

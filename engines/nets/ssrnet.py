"""SSR-Net (Yang et al., IJCAI 2018) rebuilt in torch; weights from the upstream weights-only .h5 files.

The upstream files (shamangary/SSR-Net, stages [3,3,3], lambda_local = lambda_d = 1.0) hold weights
but no model config, so the graph is written out here from the paper and the stored layer names:

- two streams on the (N,3,64,64) raw BGR 0-255 input, four valid 3x3 conv + BatchNorm blocks each:
  stream x (32 ch, ReLU, 2x2 average pooling; conv2d_1-4) and stream s (16 ch, Tanh, 2x2 max pooling;
  conv2d_5-8). Sizes 64 -> 62 -> 31 -> 29 -> 14 -> 12 -> 6 -> 4.
- stage k taps both streams at one depth (stage 1: the 4x4 block outputs, stage 2: the 14x14 maps after
  the 2nd pooling, stage 3: the 31x31 maps after the 1st), each through a 1x1 conv (10 ch, ReLU), a
  stream-typed pooling (none / 4 / 8) and a channels-last flatten. Fusion: the product of the two flat
  vectors gives the dynamic range Δk (Dense 1, tanh); the product of their Dense(3, ReLU) mixes goes
  through Dense(6, ReLU) to the stage feature f_k, from which the stage distribution p_k (Dense 3,
  ReLU) and the local shifts η_k (Dense 3, tanh) come.
- soft stagewise regression: y = V · Σ_k [Σ_i (i + λ_local·η_k,i) p_k,i] / Π_{j≤k} s_j (1 + λ_d·Δ_j),
  with V = 101 for age (years) and V = 1 for the gender score (>= 0.5 man).

The penultimate features (`forward_features`) are the inputs of the last Dense layers: the three
stage features f_k (3 x 6) and the three stream products (160 + 90 + 90), 358 values per face.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from engines.errors import EmostreamError
from engines.nets.heads import HeadSpec, center_fraction
from engines.nets.preprocess import Head, WindowResize
from engines.store.registry import get_spec

STAGES = (3, 3, 3)
LAMBDA_LOCAL = 1.0
LAMBDA_D = 1.0
BN_EPS = 1e-3
"""Keras BatchNormalization default epsilon (the upstream code keeps it)."""

INPUT_HW = (64, 64)
SCALE_V = {"age": 101.0, "gender": 1.0}
"""V of the regression per task: the age range in years, or 1 for the gender score."""

_X_CH, _S_CH, _TAP_CH = 32, 16, 10
_POOL = (1, 4, 8)
"""Pooling of the stage taps (stage 1, 2, 3); the taps are 4x4, 14x14 and 31x31 maps."""

_TAP_HW = (4, 3, 3)
"""Side of each stage's pooled tap: 4, 14 // 4, 31 // 8."""

FEATURE_DIM = sum(2 * s for s in STAGES) + sum(_TAP_CH * h * h for h in _TAP_HW)


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3), nn.BatchNorm2d(c_out, eps=BN_EPS))


class _Stream(nn.Module):
    """Four conv-BN-activation blocks with pooling between them; returns the three stage taps."""

    def __init__(self, channels: int, act: nn.Module, pool: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList([_conv_bn(3 if i == 0 else channels, channels) for i in range(4)])
        self.act, self.pool = act, pool

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        after_pool = []
        for block in self.blocks[:3]:
            x = self.pool(self.act(block(x)))
            after_pool.append(x)
        x = self.act(self.blocks[3](x))
        return x, after_pool[1], after_pool[0]  # stage 1, 2, 3 taps


class _Tap(nn.Module):
    """One stream's side output for one stage: 1x1 conv (ReLU) -> pool -> flatten (NHWC order) + mix."""

    def __init__(self, c_in: int, pool: nn.Module, flat_dim: int, stage_size: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, _TAP_CH, 1)
        self.pool = pool
        self.mix = nn.Linear(flat_dim, stage_size)

    def forward(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = torch.flatten(self.pool(torch.relu(self.conv(fmap))).permute(0, 2, 3, 1), 1)
        return flat, torch.relu(self.mix(flat))


class _Stage(nn.Module):
    """Fusion block of one stage: (s map, x map) -> (p, η, Δ, stage feature f, stream product)."""

    def __init__(self, index: int, size: int):
        super().__init__()
        hw, k = _TAP_HW[index], _POOL[index]
        flat = _TAP_CH * hw * hw
        self.s_tap = _Tap(_S_CH, nn.MaxPool2d(k) if k > 1 else nn.Identity(), flat, size)
        self.x_tap = _Tap(_X_CH, nn.AvgPool2d(k) if k > 1 else nn.Identity(), flat, size)
        self.delta = nn.Linear(flat, 1)
        self.feature = nn.Linear(size, 2 * size)
        self.pred = nn.Linear(2 * size, size)
        self.local = nn.Linear(2 * size, size)

    def forward(self, s_map: torch.Tensor, x_map: torch.Tensor) -> tuple[torch.Tensor, ...]:
        s_flat, s_mix = self.s_tap(s_map)
        x_flat, x_mix = self.x_tap(x_map)
        product = s_flat * x_flat
        feat = torch.relu(self.feature(s_mix * x_mix))
        p, eta = torch.relu(self.pred(feat)), torch.tanh(self.local(feat))
        return p, eta, torch.tanh(self.delta(product)), feat, product


class SsrNet(nn.Module):
    """(N,3,64,64) float BGR 0-255 -> (N,) age in years or gender score (see the module docstring)."""

    def __init__(self, task: str = "age"):
        super().__init__()
        if task not in SCALE_V:
            raise EmostreamError(f"SSR-Net task {task!r} is not known; valid: {', '.join(SCALE_V)}")
        self.task, self.scale_v = task, SCALE_V[task]
        self.x_stream = _Stream(_X_CH, nn.ReLU(), nn.AvgPool2d(2))
        self.s_stream = _Stream(_S_CH, nn.Tanh(), nn.MaxPool2d(2))
        self.stages = nn.ModuleList([_Stage(i, s) for i, s in enumerate(STAGES)])
        self.feature_dim = FEATURE_DIM

    def forward(self, x_bgr: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x_bgr)[0]

    def forward_features(self, x_bgr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output (N,), penultimate features (N, FEATURE_DIM): f_1, f_2, f_3 then the stream products)."""
        taps = zip(self.s_stream(x_bgr), self.x_stream(x_bgr), strict=True)
        outs = [stage(s, x) for stage, (s, x) in zip(self.stages, taps, strict=True)]
        features = torch.cat([o[3] for o in outs] + [o[4] for o in outs], dim=1)
        return self._regress(outs), features

    def _regress(self, outs: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        """Soft stagewise regression: each stage's expected bin, scaled by the widths of all stages so far."""
        total, width = None, None
        for (p, eta, delta, _, _), size in zip(outs, STAGES, strict=True):
            bins = torch.arange(size, dtype=p.dtype, device=p.device)
            expected = ((bins + LAMBDA_LOCAL * eta) * p).sum(dim=1)
            step = size * (1.0 + LAMBDA_D * delta[:, 0])
            width = step if width is None else width * step
            total = expected / width if total is None else total + expected / width
        return total * self.scale_v


def _keras_names(net: SsrNet, pred_prefix: str) -> dict[str, nn.Module]:
    """Upstream Keras layer name -> the torch module that takes its weights (auto names by build order)."""
    table: dict[str, nn.Module] = {}
    for i in range(4):
        for stream, first in ((net.x_stream, 1), (net.s_stream, 5)):
            table[f"conv2d_{first + i}"], table[f"batch_normalization_{first + i}"] = stream.blocks[i]
    for k, stage in enumerate(net.stages):
        table[f"conv2d_{9 + 2 * k}"], table[f"conv2d_{10 + 2 * k}"] = stage.s_tap.conv, stage.x_tap.conv
        table[f"dense_{1 + 3 * k}"], table[f"dense_{2 + 3 * k}"] = stage.s_tap.mix, stage.x_tap.mix
        table[f"dense_{3 + 3 * k}"], table[f"delta_s{k + 1}"] = stage.feature, stage.delta
        table[f"{pred_prefix}{k + 1}"], table[f"local_delta_stage{k + 1}"] = stage.pred, stage.local
    return table


def _layer_weights(f: h5py.File, name: str) -> dict[str, np.ndarray]:
    """One layer's stored weights by short name ('kernel', 'gamma', ...)."""
    group = f[name]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
    return {n.rsplit("/", 1)[-1].split(":")[0]: np.asarray(group[n], np.float32) for n in names}


def _keras_to_torch(module: nn.Module, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keras arrays re-laid out as the module's state_dict entries (HWIO -> OIHW, (in,out) -> (out,in))."""
    if isinstance(module, nn.BatchNorm2d):
        return {
            "weight": w["gamma"],
            "bias": w["beta"],
            "running_mean": w["moving_mean"],
            "running_var": w["moving_variance"],
        }
    kernel = w["kernel"].transpose(3, 2, 0, 1) if w["kernel"].ndim == 4 else w["kernel"].T
    return {"weight": kernel, "bias": w["bias"]}


def _load(net: SsrNet, f: h5py.File, label: str) -> None:
    """Copy every layer's weights into `net`; a missing layer/weight or a wrong shape is one line."""
    pred_prefix = "pred_age_stage" if net.task == "age" else "pred_stage"
    if f"{pred_prefix}1" not in f:
        other = "gender" if net.task == "age" else "age"
        raise EmostreamError(f"{label}: no layer {pred_prefix}1: not an SSR-Net {net.task} model ({other}?)")
    for name, module in _keras_names(net, pred_prefix).items():
        if name not in f:
            raise EmostreamError(f"{label}: layer {name} missing: not an SSR-Net 3-3-3 weights file")
        try:
            arrays = _keras_to_torch(module, _layer_weights(f, name))
        except KeyError as exc:
            raise EmostreamError(f"{label}: layer {name}: weight {exc} missing") from None
        for key, array in arrays.items():
            target = getattr(module, key)
            if tuple(target.shape) != array.shape:
                raise EmostreamError(
                    f"{label}: layer {name} {key} has shape {array.shape}, expected {tuple(target.shape)}"
                )
            target.data.copy_(torch.from_numpy(np.ascontiguousarray(array)))


def build_ssrnet(h5_path: str | Path, task: str = "age") -> SsrNet:
    """An SSR-Net (eval mode, no gradients) with the weights of an upstream .h5 file for `task`."""
    path = Path(h5_path)
    net = SsrNet(task)
    try:
        with h5py.File(path, "r") as f:
            _load(net, f, path.name)
    except OSError as exc:
        raise EmostreamError(f"{path}: cannot read as an HDF5 weights file ({exc})") from None
    return net.eval().requires_grad_(False)


class BgrWindow(WindowResize):
    """(N,3,S,S) float BGR 0-255 -> (N,3,out,out): the centered window resized bilinearly, values kept.

    The same Slice + Resize as the gray heads' window (cv2.resize INTER_LINEAR on the whole-pixel window)
    without the colour step: SSR-Net reads raw BGR 0-255.
    """

    def __init__(self, crop_size: int, fraction: float, out_size: int = INPUT_HW[0]):
        super().__init__(crop_size, fraction, out_size)


class SsrNetHead(Head):
    """SSR-Net with its own preprocessing: BGR crops -> (age years (N,) or P(man) (N,), features (N,358)).

    The gender score is clipped to [0, 1] so that it reads as the probability of "man" like the other
    gender head (the raw regression can overshoot 1 slightly).
    """

    def __init__(self, name: str, net: SsrNet, crop_size: int, fraction: float):
        super().__init__()
        self.name, self.fraction = name, fraction
        self.prep = BgrWindow(crop_size, fraction)
        self.net = net
        self.feature_dim = net.feature_dim

    def forward(self, x_bgr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, features = self.net.forward_features(self.prep(x_bgr))
        return (out.clamp(0.0, 1.0) if self.net.task == "gender" else out), features


def build_head(spec: HeadSpec, paths: list[Path], crop_size: int, crop_scale: float) -> SsrNetHead:
    """Head factory for the SSR-Net models (see `engines.nets.heads`); the task comes from the registry."""
    if spec.output_tail != ():
        raise EmostreamError(
            f"head {spec.name}: SSR-Net gives one value per face, spec says {spec.output_tail}"
        )
    net = build_ssrnet(paths[0], get_spec(spec.models[0]).task)
    return SsrNetHead(spec.name, net, crop_size, center_fraction(spec.face_pad, crop_scale)).eval()

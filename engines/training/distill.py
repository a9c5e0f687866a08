"""Knowledge distillation from a trained teacher net (`train --teacher RUN/final.pt`).

The teacher, any `MTLNet` the trainer wrote (e.g. a wider one trained first), sees the same augmented
batch as the student; the student also matches its softened emotion distribution on every face (the
UTKFace faces, which carry no emotion label, included) and its age and gender on the FER+ faces (which
carry no age or gender label). Training only: nothing of the teacher is exported or released.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F

from engines.errors import EmostreamError
from engines.nets.mtl import MTLNet
from engines.training.losses import WEIGHTS

BAD_CHECKPOINT = (
    OSError,
    KeyError,
    TypeError,
    ValueError,
    RuntimeError,
    AttributeError,
    pickle.UnpicklingError,
)
"""What torch.load and the state-dict load raise on a file that is not a trainer's checkpoint."""


def distill_loss(
    out: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], n_fer: int, temp: float = 2.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Knowledge distillation from a teacher's outputs on the same batch: emotion on every row (so the
    UTKFace faces also teach emotion), age and gender on the FER+ rows (which have no labels for them).
    Emotion is softened by `temp` (and scaled by temp^2, Hinton et al.); returns (total, parts)."""
    s_em, t_em = out["emotion_logits"] / temp, teacher["emotion_logits"] / temp
    parts = {"kd_emotion": F.kl_div(F.log_softmax(s_em, 1), F.softmax(t_em, 1), reduction="batchmean")}
    parts["kd_emotion"] = parts["kd_emotion"] * temp * temp
    zero = out["emotion_logits"].sum() * 0
    parts["kd_age"], parts["kd_gender"] = zero, zero
    if n_fer:
        t_age = F.softmax(teacher["age_logits"][:n_fer], 1)
        parts["kd_age"] = F.kl_div(F.log_softmax(out["age_logits"][:n_fer], 1), t_age, reduction="batchmean")
        t_man = torch.sigmoid(teacher["gender_logit"][:n_fer])
        parts["kd_gender"] = F.binary_cross_entropy_with_logits(out["gender_logit"][:n_fer], t_man)
    total = parts["kd_emotion"] + WEIGHTS["age_kl"] * parts["kd_age"] + WEIGHTS["gender"] * parts["kd_gender"]
    return total, {k: float(v.detach()) for k, v in parts.items()}


def load_teacher(path: Path, device: str | torch.device = "cpu") -> MTLNet:
    """The net saved in a trainer's final.pt (or last.pt), frozen, in eval mode, on `device`."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        state = ck.get("state_dict", ck.get("model"))
        cfg = ck["config"]
        net = MTLNet(tuple(cfg["widths"]), tuple(cfg["depths"]), cfg["embed_dim"])
        net.load_state_dict(state)
    except BAD_CHECKPOINT as e:
        raise EmostreamError(f"--teacher {path}: not a checkpoint written by train ({e})") from None
    net.requires_grad_(False)
    return net.eval().to(device)


class Distiller:
    """A frozen teacher and the weight and temperature of its loss."""

    def __init__(self, teacher: MTLNet, weight: float, temp: float) -> None:
        self.teacher, self.weight, self.temp = teacher, weight, temp

    def loss(
        self, out: dict[str, torch.Tensor], x: torch.Tensor, n_fer: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted distillation loss of the student outputs `out` on batch `x`, and its parts."""
        with torch.no_grad():
            target = self.teacher(x)
        total, parts = distill_loss(out, target, n_fer, self.temp)
        return self.weight * total, parts

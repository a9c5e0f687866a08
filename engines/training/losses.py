"""Masked multi-task losses: each sample only pays for the tasks it has labels for.

Emotion: cross-entropy on the FER+ vote distribution. Gender: BCE on P(man). Age: label-distribution
learning (DLDL-v2): KL to a Gaussian around the true age over the 0..100 bins, plus L1 on the expectation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engines.nets.mtl import AGE_BINS, decode_age

AGE_SIGMA = 2.5
WEIGHTS = {"emotion": 1.0, "gender": 1.0, "age_kl": 0.5, "age_l1": 0.05}


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum(target * log_softmax(logits))."""
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def age_distribution(ages: torch.Tensor, sigma: float = AGE_SIGMA) -> torch.Tensor:
    """(n, AGE_BINS) normalised Gaussians centred on each (clipped) age."""
    bins = torch.arange(AGE_BINS, dtype=torch.float32, device=ages.device)
    d = torch.exp(-0.5 * ((bins[None] - ages.clamp(0, AGE_BINS - 1)[:, None]) / sigma) ** 2)
    return d / d.sum(1, keepdim=True)


def multitask_loss(
    out: dict[str, torch.Tensor], n_fer: int, soft: torch.Tensor, age: torch.Tensor, man: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Rows [:n_fer] are FER+ (emotion only), the rest UTKFace (age + gender); returns (total, parts)."""
    zero = out["emotion_logits"].sum() * 0
    parts = {"emotion": zero, "gender": zero, "age_kl": zero, "age_l1": zero}
    if n_fer:
        parts["emotion"] = soft_cross_entropy(out["emotion_logits"][:n_fer], soft)
    if len(age):
        age_logits = out["age_logits"][n_fer:]
        parts["gender"] = F.binary_cross_entropy_with_logits(out["gender_logit"][n_fer:], man)
        target = age_distribution(age)
        parts["age_kl"] = F.kl_div(F.log_softmax(age_logits, 1), target, reduction="batchmean")
        parts["age_l1"] = (decode_age(age_logits) - age).abs().mean()
    total = sum(WEIGHTS[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}

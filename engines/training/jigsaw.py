"""Optional self-supervised auxiliary task for training: solve a jigsaw puzzle of the face (HMTL-style).

Each face window (N, C, 48, 48) is cut into a 3x3 grid of tiles, the tiles are put back in one of
`N_PERMUTATIONS` fixed orders, and a linear head on the shared embedding must say which order. The task
needs no labels, so every face of the mixed FER+/UTKFace batch can carry it; it pushes the trunk towards
the layout of a face (where eyes, brows and mouth are), which the emotion and age heads also read.

Training only: the head is not part of `MTLNet`, not exported, not released. `train --jigsaw W` turns it
on with loss weight W (0, the default, leaves training and its random draws exactly as without it).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GRID = 3
N_PERMUTATIONS = 24
FRACTION = 0.5
"""Share of each batch (its first rows) that is also shuffled and classified: the puzzle costs one more
trunk pass over these rows."""


def permutations(n: int = N_PERMUTATIONS, seed: int = 0) -> np.ndarray:
    """(n, GRID*GRID) tile orders, the identity first, then greedily the farthest (Hamming) from those
    chosen, among a seeded pool: orders that differ in many tiles make the classes separable."""
    rng = np.random.default_rng(seed)
    pool = np.array([rng.permutation(GRID * GRID) for _ in range(2000)])
    chosen = [np.arange(GRID * GRID)]
    distance = (pool != chosen[0]).sum(1)
    for _ in range(n - 1):
        best = int(distance.argmax())
        chosen.append(pool[best])
        distance = np.minimum(distance, (pool != pool[best]).sum(1))
    return np.stack(chosen)


def shuffle_tiles(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W), H and W divisible by GRID; order (N, GRID*GRID): out tile k = x's tile order[k]."""
    n, c, h, w = x.shape
    th, tw = h // GRID, w // GRID
    tiles = x.reshape(n, c, GRID, th, GRID, tw).permute(0, 2, 4, 1, 3, 5).reshape(n, GRID * GRID, c, th, tw)
    picked = torch.gather(tiles, 1, order[:, :, None, None, None].expand(-1, -1, c, th, tw))
    return picked.reshape(n, GRID, GRID, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


class JigsawTask(nn.Module):
    """The puzzle's head (a linear layer on the 128-D embedding) and its loss."""

    def __init__(self, embed_dim: int, weight: float) -> None:
        super().__init__()
        self.weight = weight
        self.head = nn.Linear(embed_dim, N_PERMUTATIONS)
        self.register_buffer("orders", torch.from_numpy(permutations()), persistent=False)

    def loss(self, model: nn.Module, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Cross-entropy of the order classes on the first FRACTION of `x`'s rows, shuffled."""
        m = max(1, int(len(x) * FRACTION))
        labels = torch.randint(N_PERMUTATIONS, (m,), generator=gen).to(x.device)
        shuffled = shuffle_tiles(x[:m], self.orders[labels])
        return F.cross_entropy(self.head(model.neck(model.trunk(shuffled))), labels)

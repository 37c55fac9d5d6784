"""What every data kind shares: train / validation / test splits of tensors, seeded splitting,
and batching by index permutation over tensors kept on the device. The readers of each kind of
data live in kinds/.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import VaekitError


@dataclass
class Splits:
    """Train / validation / test tensors: x is (N, *x_shape) (images: (N, C, H, W) in [0, 1]),
    y is (N,) integer labels or None."""

    train_x: torch.Tensor
    train_y: torch.Tensor | None
    val_x: torch.Tensor
    val_y: torch.Tensor | None
    test_x: torch.Tensor
    test_y: torch.Tensor | None
    extra: dict = field(default_factory=dict)  # a kind's own companions (held-out items, ids, ...)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def to(self, device) -> "Splits":
        move = lambda t: t.to(device) if hasattr(t, "to") else t
        tensors = [None if getattr(self, f) is None else move(getattr(self, f)) for f in list(self.__dataclass_fields__)[:6]]
        return Splits(*tensors, {k: move(v) for k, v in self.extra.items()})


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split: (kept, held_out) index arrays."""
    perm = np.random.default_rng(seed).permutation(n)
    held = int(round(n * fraction))
    if fraction > 0 and held == 0 and n > 2:  # a few examples still leave one out to check on
        held = 1
    if held and n - held < 1:
        raise VaekitError(f"too few examples ({n}) to hold out {fraction:.0%}")
    return np.sort(perm[held:]), np.sort(perm[:held])


def as_tensor(a: np.ndarray | None, dtype=torch.float32) -> torch.Tensor | None:
    """A tensor of `dtype`; 8-bit pixels are scaled to [0, 1] on the way."""
    if a is None:
        return None
    t = torch.from_numpy(np.require(a, requirements="CW"))
    return t.to(dtype).div_(255) if a.dtype == np.uint8 and dtype.is_floating_point else t.to(dtype)


def batches(x: torch.Tensor, y: torch.Tensor | None, batch_size: int):
    """Consecutive (x, y) batches for evaluation; y stays None when there are no labels."""
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size], None if y is None else y[start : start + batch_size]


def batch_indices(n: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """One epoch's mini-batches as index tensors over a fresh permutation (the last may be short)."""
    perm = torch.randperm(n, generator=generator, device=device)
    return list(perm.split(batch_size))

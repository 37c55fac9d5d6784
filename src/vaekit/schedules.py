"""Schedules: pure functions of the optimisation step."""

from __future__ import annotations

import math


def warmup_share(step: int, warmup_steps: int, progress: float | None, by: float) -> float:
    """How far a linear warm-up over `warmup_steps` has come; given `progress` (the share of a
    time budget spent), it also ends once that share reaches `by`."""
    share = (step + 1) / warmup_steps
    return share if progress is None else max(share, progress / by)


def learning_rate(step: int, total_steps: int, base_lr: float, schedule: str = "constant",
                  warmup_steps: int = 0, progress: float | None = None) -> float:
    """Linear warm-up over `warmup_steps`, then constant or cosine decay to 0 at `total_steps`, or,
    given `progress` (the share of a time budget spent), at the end of the budget; then the
    warm-up also ends by a tenth of the budget, as an epoch run's takes at most a quarter of it."""
    if warmup_steps and step < warmup_steps:
        share = warmup_share(step, warmup_steps, progress, by=0.1)
        if share < 1:
            return base_lr * share
    if schedule == "cosine":
        if progress is None:
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return base_lr


def kl_weight(step: int, beta: float, warmup_steps: int, progress: float | None = None) -> float:
    """KL warm-up (Bowman et al., 2016; Sonderby et al., 2016): 0 -> beta linearly over
    `warmup_steps`, or, given `progress` (the share of a time budget spent), by half the budget if
    that comes first: a short run must end on the ELBO it is judged by, not a down-weighted KL."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, warmup_share(step, warmup_steps, progress, by=0.5))

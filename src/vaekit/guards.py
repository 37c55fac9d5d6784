"""Fault guards of the training loop: a stop signal becomes a flag the loop checks (and
TrainingStopped once a checkpoint is written), steps that keep failing raise Rollback, and the
LossGuard watches a loss that climbs while staying finite. The loop (train.py) decides what to do.
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import torch


class TrainingStopped(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint was written and the run can be resumed."""

    def __init__(self, signum: int, run_dir: Path, state):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name} at epoch {state.epoch + 1}, step {state.step}; "
                         f"checkpoint saved. Resume with: vaekit train --resume {run_dir}")


class Rollback(Exception):
    pass


class LossGuard:
    """Watches the training loss once the warm-ups are over: each log window's mean loss goes into
    a moving average (about ten windows); a new best average copies the weights, optimizer moments
    and weight average aside, and an average `tolerance` (a share of the best) above the best asks
    for them back. Nothing here touches the step's numbers, so a run it never trips is unchanged."""

    SMOOTHING = 0.1

    def __init__(self, tolerance: float, tensors: list[torch.Tensor]):
        self.tolerance, self.tensors = tolerance, tensors
        self.saved: list[torch.Tensor] | None = None
        self.smooth: float | None = None
        self.best, self.best_step = math.inf, 0

    def tripped(self, loss: float, step: int) -> bool:
        """Take one window's mean loss; True when the run should go back to the best weights."""
        self.smooth = loss if self.smooth is None else self.smooth + self.SMOOTHING * (loss - self.smooth)
        if self.smooth < self.best:
            self.best, self.best_step = self.smooth, step
            if self.saved is None:
                self.saved = [t.clone() for t in self.tensors]
            else:
                torch._foreach_copy_(self.saved, self.tensors)
            return False
        return self.smooth - self.best > self.tolerance * abs(self.best)

    def restore(self) -> None:
        torch._foreach_copy_(self.tensors, self.saved)
        self.smooth = self.best



@contextmanager
def stop_signals():
    """SIGINT / SIGTERM only raise a flag: the loop finishes its step, checkpoints and stops."""
    flag = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        flag["signum"] = signum

    for s in old:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)

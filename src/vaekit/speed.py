"""Speed policy: the device, the precision and dense-layer path a run trains with (measured on
the machine that runs, calibrate.py), and whether its step is compiled. The loop (train.py) asks;
nothing here trains.
"""

from __future__ import annotations

import dataclasses
import sys

import torch
from torch import nn
from tqdm.auto import tqdm

from . import calibrate, distributed
from .config import Config
from .errors import VaekitError
from .optim import make_optimizer

# Compiling the step takes 7-25 s on a 2-core CPU (less with inductor's disk cache warm) and then
# saves 2-27% of every step, 15-17% on the defaults and the NLL models (docs/speed.md): from
# 20,000 steps on, those 15-17% repay the compile time about twice.
COMPILE_MIN_STEPS = 20_000


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise VaekitError(f"bad device {name!r} ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VaekitError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' picks what measured fastest at equal quality: bf16 on CPUs that compute it natively
    (1.4-1.5x fp32), else fp32; on CUDA fp32 with TF32 (these small models are launch-bound, and
    autocast's casts made bf16 and fp16 slower on an H100; see docs/speed.md)."""
    if precision == "fp16" and device.type != "cuda":
        raise VaekitError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp32"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def speed_options(cfg: Config, kind, data, vae, objective, device: torch.device,
                  dist: distributed.Dist, progress: bool) -> Config:
    """The precision and dense-layer path a new run trains with: measured on this machine when
    the config leaves them open (calibrate.py), else the configured or usual ones; returned in the
    config that config.json records, so a resumed run repeats them."""
    tc = cfg.train
    choice = None
    if tc.calibrate and device.type == "cpu" and not dist.enabled:
        g = torch.Generator().manual_seed(tc.seed + 1)
        batches = []
        for idx in torch.randperm(len(data.train_x), generator=g)[: 7 * tc.batch_size].split(tc.batch_size)[:7]:
            x = data.train_x.index_select(0, idx.to(device))
            if uses_channels_last(vae, tc):
                x = x.contiguous(memory_format=torch.channels_last)
            batches.append((x, data.train_y.index_select(0, idx.to(device)) if vae.conditional else None))
        signature = {"kind": kind.name, "shape": list(data.shape), "model": dataclasses.asdict(cfg.model),
                     "batch": tc.batch_size, "objective": tc.objective, "iw_samples": tc.iw_samples}
        make_step = calibrate.step_factory(vae, objective, lambda m: make_optimizer(m, tc), device)
        choice = calibrate.choose(signature, make_step, batches, tc.precision, tc.onednn)
    if choice is not None:
        if progress and dist.is_main:
            tqdm.write(choice.describe(), file=sys.stderr)
        precision, onednn = choice.precision, choice.onednn
    else:
        precision = resolve_precision(tc.precision, device)
        onednn = tc.onednn if tc.onednn is not None else True
    return dataclasses.replace(cfg, train=dataclasses.replace(tc, precision=precision, onednn=onednn))


def wants_compile(tc, device: torch.device, dist: distributed.Dist, total_steps: int, kind=None) -> bool:
    """--compile / --no-compile decide; unset, compile long single-process CPU runs, where it
    pays back its compile time (on CUDA it stays opt-in: there it is measured per configuration).
    Not kinds whose batches change shape (sequences: every batch its own length), nor runs that
    a time budget ends (their length in steps is unknown)."""
    if tc.compile is not None:
        return tc.compile
    if tc.max_minutes or (kind is not None and not kind.compiles):
        return False
    return device.type == "cpu" and not dist.enabled and total_steps >= COMPILE_MIN_STEPS


def compiled(model: nn.Module, device: torch.device):
    """torch.compile with a clean fallback: if compiling fails (now or at a later recompile), say
    so once and run eager from then on."""
    # On CUDA, "reduce-overhead" replays the step as a CUDA graph: small models are launch-bound.
    current = torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else None)

    def call(*args):
        nonlocal current
        try:
            return current(*args)
        except VaekitError:
            raise
        except Exception as e:  # no compiler, unsupported op, ...: eager still works
            if current is model:
                raise
            tqdm.write(f"vaekit: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                       "training without it")
            current = model
            return model(*args)

    return call


def uses_channels_last(model: nn.Module, tc) -> bool:
    """NHWC memory (oneDNN's fast layout for convolutions) for a model with 2-D convolutions,
    unless --no-channels-last."""
    return tc.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules())

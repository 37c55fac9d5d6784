"""Evaluation figures for a trained VAE, per example in nats."""

from __future__ import annotations

import contextlib
import math

import torch

from .objectives import elbo


def autocast(device: torch.device, precision: str):
    """bf16 autocast for the matrix work when asked; distributions are built in fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_elbo(vae, x: torch.Tensor, batch_size: int = 1000, precision: str = "fp32",
                  seed: int = 0) -> dict:
    """Mean -ELBO, reconstruction and KL over x (N, C, H, W), one z per example.

    The noise comes from a forked RNG seeded with `seed`: results repeat, and the training
    RNG stream is left untouched.
    """
    was_training = vae.training
    vae.eval()
    device = x.device
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for xb in x.split(batch_size):
            with autocast(device, precision):
                t = elbo(vae, xb)
            sums += torch.stack([t.loss.sum(), t.recon.sum(), t.kl.sum()]).double()
    vae.train(was_training)
    n = len(x)
    neg_elbo, recon, kl = (sums / max(n, 1)).tolist()
    dims = math.prod(x.shape[1:])
    return {
        "neg_elbo": neg_elbo,
        "recon": recon,
        "kl": kl,
        "bits_per_dim": neg_elbo / (dims * math.log(2)),
        "num_examples": n,
    }

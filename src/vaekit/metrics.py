"""Evaluation figures for a trained VAE, per example in nats."""

from __future__ import annotations

import contextlib
import math

import torch

from .objectives import Terms, elbo


def autocast(device: torch.device, precision: str):
    """bf16 / fp16 autocast for the matrix work when asked; distributions are built in fp32."""
    if precision in ("bf16", "fp16"):
        return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_terms(vae, x: torch.Tensor, num_samples: int = 1, batch_size: int = 1000,
                   precision: str = "fp32", seed: int = 0) -> Terms:
    """Per-example (loss, recon, kl) for x (N, C, H, W), each (N,), averaged over `num_samples`
    posterior draws.

    The noise comes from a forked RNG seeded with `seed`: results repeat, and the training RNG
    stream is left untouched.
    """
    was_training = vae.training
    vae.eval()
    device = x.device
    parts = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for xb in x.split(batch_size):
            with autocast(device, precision):
                draws = [elbo(vae, xb) for _ in range(num_samples)]
            parts.append(torch.stack([torch.stack(d) for d in draws]).mean(0))  # (3, B)
    vae.train(was_training)
    loss, recon, kl = torch.cat(parts, dim=1) if parts else torch.zeros(3, 0)
    return Terms(loss, recon, kl)


def evaluate_elbo(vae, x: torch.Tensor, batch_size: int = 1000, precision: str = "fp32",
                  seed: int = 0) -> dict:
    """Mean -ELBO, reconstruction and KL over x (one z per example) and bits per dimension."""
    t = evaluate_terms(vae, x, batch_size=batch_size, precision=precision, seed=seed)
    n = len(x)
    neg_elbo, recon, kl = (t.loss.double().sum().item() / max(n, 1), t.recon.double().sum().item() / max(n, 1),
                           t.kl.double().sum().item() / max(n, 1))
    return {
        "neg_elbo": neg_elbo,
        "recon": recon,
        "kl": kl,
        "bits_per_dim": neg_elbo / (math.prod(x.shape[1:]) * math.log(2)),
        "num_examples": n,
    }

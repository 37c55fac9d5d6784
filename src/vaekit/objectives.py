"""Training objectives: per-example terms (loss, recon, kl), each of shape (B,), in nats.

ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))   (Kingma & Welling, 2014, eq. 3)
We minimise loss = recon + beta * kl with recon = -log p(x|z) at one reparameterized z.

IWAE(x) = E[log 1/K sum_k w_k], w_k = p(x, z_k) / q(z_k|x), z_k ~ q(z|x)   (Burda et al., 2015,
eq. 8): a tighter bound that rises with K and equals the ELBO at K = 1.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import torch
from torch.distributions import Independent, Normal


class Terms(NamedTuple):
    loss: torch.Tensor  # (B,)
    recon: torch.Tensor  # (B,)  -log p(x|z)
    kl: torch.Tensor  # (B,)  KL(q(z|x) || p(z)), or its estimate


def kl_term(qz_x, pz, z: torch.Tensor) -> torch.Tensor:
    """Analytic KL for a diagonal Gaussian prior (Kingma & Welling, Appendix B), otherwise the
    one-sample Monte Carlo estimate log q(z|x) - log p(z)."""
    per_dim = kl_per_dim(qz_x, pz)
    return per_dim.sum(-1) if per_dim is not None else qz_x.log_prob(z) - pz.log_prob(z)


def kl_per_dim(qz_x, pz) -> torch.Tensor | None:
    """Analytic KL of each latent dimension (B, D) when both are diagonal Gaussians, else None.
    Written out rather than through torch's kl_divergence, whose type dispatch torch.compile
    cannot trace (it would split the compiled step in two)."""
    if not (isinstance(pz, Independent) and isinstance(pz.base_dist, Normal)):
        return None
    q, p = qz_x.base_dist, pz.base_dist
    var_ratio = (q.scale / p.scale).pow(2)
    return 0.5 * (var_ratio + ((q.loc - p.loc) / p.scale).pow(2) - 1 - var_ratio.log())


def elbo(vae, x: torch.Tensor, beta: float = 1.0, y: torch.Tensor | None = None, free_bits: float = 0.0) -> Terms:
    """Per-example terms of the ELBO at one z ~ q(z|x); y: labels, for a conditional VAE."""
    qz_x = vae.encode(x, y)
    z = qz_x.rsample()  # (B, D): z = mu + sigma * eps, so gradients reach the encoder
    recon = -vae.decode(z, y).log_prob(x)
    pz = vae.pz()
    kl = kl_term(qz_x, pz, z)
    penalty = kl
    if free_bits > 0:  # no pressure on dimensions already below `free_bits` nats
        per_dim = kl_per_dim(qz_x, pz)
        penalty = (per_dim.clamp(min=free_bits).sum(-1) if per_dim is not None
                   else kl.clamp(min=free_bits * vae.latent_dim))
    return Terms(recon + beta * penalty, recon, kl)


def log_weights(vae, x: torch.Tensor, num_samples: int, qz_x=None, pz=None, y: torch.Tensor | None = None):
    """log p(x|z_k), log p(z_k) and log q(z_k|x) for z_k ~ q(z|x), k < num_samples: each (K, B)."""
    qz_x = qz_x if qz_x is not None else vae.encode(x, y)
    pz = pz if pz is not None else vae.pz()
    z = qz_x.rsample((num_samples,))  # (K, B, D)
    c = vae.condition(y)
    c = None if c is None else c.repeat(num_samples, 1)  # (K * B, classes), matching z's rows
    out = vae.decoder(z.flatten(0, 1), c).float()  # (K * B, C', H, W)
    px_z = vae.likelihood(out.view(num_samples, len(x), *out.shape[1:]))  # batch (K, B)
    return px_z.log_prob(x), pz.log_prob(z), qz_x.log_prob(z)


def iwae(vae, x: torch.Tensor, beta: float = 1.0, y: torch.Tensor | None = None, num_samples: int = 5) -> Terms:
    log_px_z, log_pz, log_qz = log_weights(vae, x, num_samples, y=y)
    log_w = log_px_z + beta * (log_pz - log_qz)  # (K, B)
    bound = torch.logsumexp(log_w, dim=0) - math.log(num_samples)
    return Terms(-bound, -log_px_z.mean(0), (log_qz - log_pz).mean(0))


# Each entry builds the per-step objective (vae, x, beta) -> Terms from a TrainConfig.
OBJECTIVES = {
    "elbo": lambda tc: partial(elbo, free_bits=tc.free_bits),
    "iwae": lambda tc: partial(iwae, num_samples=tc.iw_samples),
}

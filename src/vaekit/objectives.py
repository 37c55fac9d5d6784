"""Training objectives: per-example terms (loss, recon, kl), each of shape (B,), in nats.

ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))   (Kingma & Welling, 2014, eq. 3)
We minimise loss = recon + beta * kl with recon = -log p(x|z) at one reparameterized z.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.distributions import kl_divergence


class Terms(NamedTuple):
    loss: torch.Tensor  # (B,)
    recon: torch.Tensor  # (B,)  -log p(x|z)
    kl: torch.Tensor  # (B,)  KL(q(z|x) || p(z))


def kl_term(qz_x, pz, z: torch.Tensor) -> torch.Tensor:
    """Analytic KL where torch knows it (Gaussian prior: Kingma & Welling, Appendix B),
    otherwise the one-sample Monte Carlo estimate log q(z|x) - log p(z)."""
    try:
        return kl_divergence(qz_x, pz)
    except NotImplementedError:
        return qz_x.log_prob(z) - pz.log_prob(z)


def elbo(vae, x: torch.Tensor, beta: float = 1.0) -> Terms:
    qz_x = vae.encode(x)
    z = qz_x.rsample()  # (B, D): z = mu + sigma * eps, so gradients reach the encoder
    recon = -vae.decode(z).log_prob(x)
    kl = kl_term(qz_x, vae.pz(), z)
    return Terms(recon + beta * kl, recon, kl)


OBJECTIVES = {"elbo": elbo}

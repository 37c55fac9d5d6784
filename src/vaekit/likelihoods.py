"""Decoder output -> p(x|z), a torch distribution over whole examples (event shape (C, H, W)).

Bernoulli on logits suits binary or [0, 1] images (its log-probability is minus the binary cross
entropy, which also serves non-binary targets in [0, 1], as in Kingma & Welling's MNIST runs).
Gaussians suit continuous data, with a fixed or a learned (per-pixel, per-example) variance.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal


class BernoulliLikelihood(nn.Module):
    num_params = 1  # decoder channels per data channel
    needs_unit_range = True

    def forward(self, out):  # out: (B, C, H, W) logits
        return Independent(Bernoulli(logits=out, validate_args=False), 3)


class GaussianLikelihood(nn.Module):
    """N(x; mean, sigma^2) with sigma fixed by the config."""

    num_params = 1
    needs_unit_range = False

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def forward(self, out):  # out: (B, C, H, W) means
        return Independent(Normal(out, self.sigma, validate_args=False), 3)


class LearnedGaussianLikelihood(nn.Module):
    """N(x; mean, sigma^2) with log sigma predicted by the decoder beside the mean."""

    num_params = 2
    needs_unit_range = False
    min_log_scale = -6.0  # keeps the density bounded where a pixel is constant (e.g. MNIST borders)

    def forward(self, out):  # out: (B, 2C, H, W) -> means and log-scales
        mean, log_scale = out.chunk(2, dim=1)
        scale = log_scale.clamp(min=self.min_log_scale).exp()
        return Independent(Normal(mean, scale, validate_args=False), 3)


LIKELIHOODS = {
    "bernoulli": lambda cfg: BernoulliLikelihood(),
    "gaussian": lambda cfg: GaussianLikelihood(cfg.sigma),
    "gaussian-learned": lambda cfg: LearnedGaussianLikelihood(),
}

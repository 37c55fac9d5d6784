"""p(z): the prior over latents, as a module that returns a torch distribution."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Independent, Normal


class StandardNormal(nn.Module):
    """p(z) = N(0, I); KL against a diagonal Gaussian posterior is analytic."""

    def __init__(self, latent_dim: int):
        super().__init__()
        # Non-persistent buffers follow .to(device) without entering the saved weights.
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self):
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)


PRIORS = {"normal": lambda cfg: StandardNormal(cfg.latent_dim)}

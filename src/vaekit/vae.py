"""The variational autoencoder (Kingma & Welling, 2014): encode -> q(z|x), decode -> p(x|z).

The model holds no loss and does no I/O; objectives.py turns its distributions into the ELBO.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Independent, Normal

from .config import ModelConfig
from .errors import VaekitError
from .likelihoods import LIKELIHOODS
from .nets import ACTIVATIONS, NETS
from .priors import PRIORS


def pick(registry: dict, name: str, kind: str):
    if name not in registry:
        raise VaekitError(f"unknown {kind} {name!r}; choose from {', '.join(registry)}")
    return registry[name]


class VAE(nn.Module):
    """A VAE over examples of shape x_shape = (C, H, W), built from a ModelConfig."""

    def __init__(self, cfg: ModelConfig, x_shape: tuple[int, int, int]):
        super().__init__()
        self.cfg, self.x_shape = cfg, tuple(x_shape)
        encoder_cls, decoder_cls = pick(NETS, cfg.net, "network")
        pick(ACTIVATIONS, cfg.activation, "activation")
        self.likelihood = pick(LIKELIHOODS, cfg.likelihood, "likelihood")(cfg)
        self.prior = pick(PRIORS, cfg.prior, "prior")(cfg, tuple(x_shape))
        c, h, w = self.x_shape
        out_shape = (c * self.likelihood.num_params, h, w)
        try:
            self.encoder = encoder_cls(self.x_shape, 2 * cfg.latent_dim, cfg.hidden, cfg.activation)
            self.decoder = decoder_cls(cfg.latent_dim, out_shape, cfg.hidden, cfg.activation)
        except ValueError as e:
            raise VaekitError(f"model {cfg.net!r} cannot take data of shape {self.x_shape}: {e}") from None

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    def encode(self, x: torch.Tensor) -> Independent:
        """q(z|x) = N(mu(x), diag sigma^2(x)) for x of shape (B, C, H, W); event shape (D,)."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=-1)  # (B, D) each
        return Independent(Normal(mu, (0.5 * logvar).exp(), validate_args=False), 1)

    def decode(self, z: torch.Tensor):
        """p(x|z) for z of shape (B, D); event shape (C, H, W)."""
        return self.likelihood(self.decoder(z).float())

    def pz(self):
        """p(z), event shape (D,); the VampPrior encodes its pseudo-inputs, hence `encode`."""
        return self.prior(self.encode)

    @torch.no_grad()
    def sample(self, num: int, temperature: float = 1.0, generator: torch.Generator | None = None):
        """Decoder means of `num` draws z ~ p(z), the prior's spread scaled by `temperature`: (N, C, H, W)."""
        return self.decode(self.prior.sample(num, temperature, generator, self.encode)).mean

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder mean at the posterior mean: (B, C, H, W)."""
        return self.decode(self.encode(x).mean).mean

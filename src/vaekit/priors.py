"""p(z): the prior over latents, as a module that returns a torch distribution.

Richer priors fight the mismatch between the aggregate posterior and N(0, I): a learned mixture
of Gaussians, and the VampPrior (Tomczak & Welling, 2018), a mixture of the encoder's own
posteriors at K learned pseudo-inputs, and a second stochastic layer (Burda et al., 2015): p(z1) =
int p(z1|z2) p(z2) dz2 with its own inference network q(z2|z1), which makes the VAE the
two-stochastic-layer model x <- z1 <- z2. Their KL has no closed form; objectives.kl_term then uses
the one-sample Monte Carlo estimate.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from .nets import mlp


class StandardNormal(nn.Module):
    """p(z) = N(0, I); KL against a diagonal Gaussian posterior is analytic."""

    def __init__(self, latent_dim: int):
        super().__init__()
        # Non-persistent buffers follow .to(device) without entering the saved weights.
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self, encode=None):
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)

    def sample(self, num: int, temperature: float, generator, encode=None):
        eps = torch.randn(num, len(self.loc), generator=generator).to(self.loc.device)  # (N, D)
        return self.loc + temperature * self.scale * eps


class DiagonalMixture(Distribution):
    """A mixture of K diagonal Gaussians: logits (K,), loc and scale (K, D).

    log_prob expands |z - mu_k|^2 / sigma_k^2 into two matrix products, so N points against K
    components cost one (N, D) x (D, K) GEMM pair instead of an (N, K, D) tensor: this is what
    makes K = 5000 importance sampling of a 500-component VampPrior take minutes, not hours. It
    runs in fp32 even under autocast, because the expansion subtracts large terms.
    """

    arg_constraints = {}

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor):
        self.logits, self.loc, self.scale = logits, loc, scale
        super().__init__(event_shape=loc.shape[-1:], validate_args=False)

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.float().softmax(-1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        with torch.autocast(z.device.type, enabled=False):
            loc, scale = self.loc.float(), self.scale.float()
            center = loc.mean(0).detach()  # shifting z and mu alike keeps the expanded terms small
            loc, flat = loc - center, z.float().reshape(-1, loc.shape[-1]) - center  # (K, D), (N, D)
            precision = scale.pow(-2)  # (K, D)
            quad = torch.addmm((loc * loc * precision).sum(-1), flat * flat, precision.T)
            quad = quad - 2 * flat @ (loc * precision).T  # (N, K): sum_d (z_d - mu_kd)^2 / sigma_kd^2
            log_norm = -scale.log().sum(-1) - 0.5 * loc.shape[-1] * math.log(2 * math.pi)  # (K,)
            log_joint = self.logits.float().log_softmax(-1) + log_norm - 0.5 * quad
            return log_joint.logsumexp(-1).reshape(z.shape[:-1])

    def sample_tempered(self, num: int, temperature: float, generator) -> torch.Tensor:
        """Pick components by weight, then draw around each mean with the spread scaled by temperature."""
        comp = torch.multinomial(self.probs.cpu(), num, replacement=True, generator=generator)
        eps = torch.randn(num, self.loc.shape[-1], generator=generator).to(self.loc.device)
        comp = comp.to(self.loc.device)
        return self.loc[comp] + temperature * self.scale[comp] * eps  # (N, D)


class GaussianMixture(nn.Module):
    """p(z) = sum_k pi_k N(mu_k, diag sigma_k^2), all parameters learned."""

    def __init__(self, latent_dim: int, num_components: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.loc = nn.Parameter(torch.randn(num_components, latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(num_components, latent_dim))

    def forward(self, encode=None):
        return DiagonalMixture(self.logits, self.loc, self.log_scale.exp())

    def sample(self, num: int, temperature: float, generator, encode=None):
        return self().sample_tempered(num, temperature, generator)


class VampPrior(nn.Module):
    """p(z) = 1/K sum_k q(z | u_k) over K learned pseudo-inputs u_k (in [0, 1], via a sigmoid)."""

    def __init__(self, latent_dim: int, num_components: int, x_shape):
        super().__init__()
        self.pseudo_inputs = nn.Parameter(torch.randn(num_components, *x_shape) * 0.5 - 1.0)

    def forward(self, encode):
        q = encode(torch.sigmoid(self.pseudo_inputs)).base_dist  # (K, D) posteriors
        return DiagonalMixture(torch.zeros(len(q.loc), device=q.loc.device), q.loc, q.scale)

    def sample(self, num: int, temperature: float, generator, encode=None):
        return self(encode).sample_tempered(num, temperature, generator)


def diagonal_gaussian(net: nn.Module, h: torch.Tensor) -> Independent:
    """N(mu, diag sigma^2) from a net whose output is [mu, log sigma^2] over the last axis;
    leading axes are flattened for the net and restored."""
    out = net(h.reshape(-1, h.shape[-1])).float()
    mu, logvar = out.view(*h.shape[:-1], out.shape[-1]).chunk(2, dim=-1)
    return Independent(Normal(mu, (0.5 * logvar).exp(), validate_args=False), 1)


class TwoLayerPrior(Distribution):
    """p(z1) of the two-layer model. log_prob is the one-sample importance estimate
    log p(z1|z2) + log p(z2) - log q(z2|z1), z2 ~ q(z2|z1): plugged into the ELBO or the IWAE
    weights it gives exactly the two-layer model's bounds (Burda et al., 2015, sec. 3)."""

    arg_constraints = {}

    def __init__(self, module: "HierarchicalPrior"):
        self.module = module
        super().__init__(event_shape=torch.Size([module.latent_dim]), validate_args=False)

    def log_prob(self, z1):
        m = self.module
        q2 = diagonal_gaussian(m.up, z1)
        z2 = q2.rsample()
        return diagonal_gaussian(m.down, z2).log_prob(z1) + m.top().log_prob(z2) - q2.log_prob(z2)


class HierarchicalPrior(nn.Module):
    """z2 ~ N(0, I) of `top_dim`; p(z1|z2) and q(z2|z1) are MLPs with `hidden` units each."""

    def __init__(self, latent_dim: int, top_dim: int, hidden: list[int], activation: str):
        super().__init__()
        self.latent_dim = latent_dim
        self.up = mlp([latent_dim, *hidden, 2 * top_dim], activation)  # q(z2|z1)
        self.down = mlp([top_dim, *reversed(hidden), 2 * latent_dim], activation)  # p(z1|z2)
        self.top = StandardNormal(top_dim)

    def forward(self, encode=None):
        return TwoLayerPrior(self)

    def sample(self, num: int, temperature: float, generator, encode=None):
        z2 = self.top.sample(num, temperature, generator)
        p1 = diagonal_gaussian(self.down, z2).base_dist
        eps = torch.randn(num, self.latent_dim, generator=generator).to(z2.device)
        return p1.loc + temperature * p1.scale * eps  # (N, D)


PRIORS = {
    "normal": lambda cfg, x_shape: StandardNormal(cfg.latent_dim),
    "mog": lambda cfg, x_shape: GaussianMixture(cfg.latent_dim, cfg.prior_components),
    "vamp": lambda cfg, x_shape: VampPrior(cfg.latent_dim, cfg.prior_components, x_shape),
    "hierarchical": lambda cfg, x_shape: HierarchicalPrior(cfg.latent_dim, cfg.top_latent_dim, cfg.top_hidden,
                                                          cfg.activation),
}

"""The variational autoencoder (Kingma & Welling, 2014): encode -> q(z|x), decode -> p(x|z).

With `num_classes` > 0 it is a conditional VAE (Sohn et al., 2015): the one-hot label y joins the
input of both networks, q(z|x, y) and p(x|z, y), and sampling can ask for a class.
The model holds no loss and does no I/O; objectives.py turns its distributions into the ELBO.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
    """A VAE over examples of shape x_shape, built from a ModelConfig: with the dense networks and
    the likelihood the config names, or with the `nets` a data kind built."""

    def __init__(self, cfg: ModelConfig, x_shape: tuple[int, ...], nets=None):
        super().__init__()
        self.cfg, self.x_shape = cfg, tuple(x_shape)
        pick(ACTIVATIONS, cfg.activation, "activation")
        if cfg.num_classes and cfg.prior == "vamp":
            raise VaekitError("the VampPrior's pseudo-inputs carry no labels: use prior normal or mog with num_classes")
        # Registration order (likelihood, prior, encoder, decoder) fixes the parameters' order, which
        # the optimizer state in checkpoints and the seeded initialisation depend on.
        self.likelihood = nets.likelihood if nets else pick(LIKELIHOODS, cfg.likelihood, "likelihood")(cfg)
        self.prior = pick(PRIORS, cfg.prior, "prior")(cfg, self.x_shape)
        if nets is None:
            self.encoder, self.decoder = dense_nets(cfg, self.x_shape, self.likelihood.num_params)
        else:
            self.encoder, self.decoder = nets.encoder, nets.decoder
        if cfg.posterior_init_std > 0:
            with torch.no_grad():
                output_bias(self.encoder, 2 * cfg.latent_dim)[cfg.latent_dim:] = 2 * math.log(cfg.posterior_init_std)

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    @property
    def conditional(self) -> bool:
        return self.cfg.num_classes > 0

    def labels_for(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """The labels this model takes: y for a conditional model, None for an unconditional one."""
        return y if self.conditional else None

    def condition(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """Labels (B,) -> one-hot (B, K) for a conditional model; None for an unconditional one."""
        if not self.conditional:
            return None
        if y is None:
            raise VaekitError("this is a conditional VAE: it needs the labels of its inputs")
        # The range check reads y back to the host; a compiled training step skips it (it would
        # split the graph), its labels having been checked once before training.
        if not torch.compiler.is_compiling() and (y.min() < 0 or y.max() >= self.cfg.num_classes):
            raise VaekitError(f"labels must lie in [0, {self.cfg.num_classes - 1}]")
        return F.one_hot(y.long(), self.cfg.num_classes).float()

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Independent:
        """q(z|x[, y]) = N(mu, diag sigma^2) for x of shape (B, *x_shape); event shape (D,)."""
        mu, logvar = self.encoder(x, self.condition(y)).float().chunk(2, dim=-1)  # (B, D) each
        return Independent(Normal(mu, (0.5 * logvar).exp(), validate_args=False), 1)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None):
        """p(x|z[, y]) for z of shape (B, D); event shape x_shape."""
        return self.likelihood(self.decoder(z, self.condition(y)).float())

    def pz(self):
        """p(z), event shape (D,); the VampPrior encodes its pseudo-inputs, hence `encode`."""
        return self.prior(self.encode)

    @torch.no_grad()
    def sample(self, num: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               y: torch.Tensor | None = None):
        """Decoder means of `num` draws z ~ p(z), the prior's spread scaled by `temperature`:
        (N, *x_shape). A conditional model draws class y (N,), or every class in turn if y is None."""
        if self.conditional and y is None:
            y = torch.arange(num) % self.cfg.num_classes
        if y is not None:
            y = y.to(next(self.parameters()).device)
        return self.decode(self.prior.sample(num, temperature, generator, self.encode), y).mean

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder mean at the posterior mean: (B, *x_shape)."""
        return self.decode(self.encode(x, y).mean, y).mean


def dense_nets(cfg: ModelConfig, x_shape: tuple[int, ...], num_params: int):
    """The generic encoder and decoder over examples of any shape (S0, S1, ...); the decoder gives
    `num_params` likelihood parameters per entry of the first axis (per channel of an image)."""
    encoder_cls, decoder_cls = pick(NETS, cfg.net, "network")
    out_shape = (x_shape[0] * num_params, *x_shape[1:])
    k = cfg.num_classes
    return (encoder_cls(x_shape, 2 * cfg.latent_dim, cfg.hidden, cfg.activation, k),
            decoder_cls(cfg.latent_dim, out_shape, cfg.hidden, cfg.activation, k))


def output_bias(encoder: nn.Module, width: int) -> torch.Tensor:
    """The bias of the encoder's output layer, [mu, log sigma^2]: the last bias of that width,
    whatever the layer (Dense, nn.Linear, an item encoder's first and only layer)."""
    biases = [p for name, p in encoder.named_parameters() if name.split(".")[-1] == "bias" and p.shape == (width,)]
    if not biases:
        raise VaekitError(f"this encoder has no output bias of width {width} to set posterior_init_std on")
    return biases[-1]

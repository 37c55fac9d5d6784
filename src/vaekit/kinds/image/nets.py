"""The image kind's convolutional networks: two stride-2 convolutions and a dense layer, and their
mirror image (`--model conv`; the dense MLP of nets.py is the other choice)."""

from __future__ import annotations

from torch import nn

from ...errors import VaekitError
from ...likelihoods import LIKELIHOODS
from ...nets import ACTIVATIONS, Dense, with_condition
from ...vae import pick
from .. import Nets


def conv_nets(cfg, x_shape: tuple[int, ...]) -> Nets:
    """Conv encoder and decoder over (C, H, W) images, with the likelihood the config names; the
    decoder gives its parameters per channel."""
    if len(x_shape) != 3:
        raise VaekitError(f"the conv network takes (C, H, W) images, not shape {x_shape}")
    likelihood = pick(LIKELIHOODS, cfg.likelihood, "likelihood")(cfg)
    c, h, w = x_shape
    channels = tuple(cfg.conv_channels)
    try:
        encoder = ConvEncoder(x_shape, 2 * cfg.latent_dim, cfg.hidden, cfg.activation, cfg.num_classes, channels)
        decoder = ConvDecoder(cfg.latent_dim, (c * likelihood.num_params, h, w), cfg.hidden, cfg.activation,
                              cfg.num_classes, channels)
    except ValueError as e:
        raise VaekitError(f"model 'conv' cannot take data of shape {x_shape}: {e}") from None
    return Nets(x_shape, encoder, decoder, likelihood)


def conv_checks(shape, hidden: list[int]) -> None:
    c, h, w = shape
    if h % 4 or w % 4:
        raise ValueError(f"the conv net needs sides divisible by 4, got {h}x{w}")
    if not hidden:
        raise ValueError("the conv net needs the size of its dense layer (e.g. --hidden 256)")


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions (side / 4), then a dense layer of hidden[0] units."""

    def __init__(self, x_shape, out_dim: int, hidden: list[int], activation: str, cond_dim: int = 0,
                 channels: tuple[int, int] = (32, 64)):
        super().__init__()
        conv_checks(x_shape, hidden)
        c, h, w = x_shape
        c1, c2 = channels
        act = ACTIVATIONS[activation]
        self.conv = nn.Sequential(nn.Conv2d(c, c1, 4, 2, 1), act(), nn.Conv2d(c1, c2, 4, 2, 1), act(), nn.Flatten())
        self.dense = nn.Sequential(Dense(c2 * (h // 4) * (w // 4) + cond_dim, hidden[0]), act(),
                                   Dense(hidden[0], out_dim))

    def forward(self, x, c=None):
        return self.dense(with_condition(self.conv(x), c))  # (B, out_dim)


class ConvDecoder(nn.Module):
    """The mirror image of ConvEncoder: dense layers, then two stride-2 transposed convolutions."""

    def __init__(self, latent_dim: int, out_shape, hidden: list[int], activation: str, cond_dim: int = 0,
                 channels: tuple[int, int] = (32, 64)):
        super().__init__()
        conv_checks(out_shape, hidden)
        c, h, w = out_shape
        c1, c2 = channels
        act = ACTIVATIONS[activation]
        self.net = nn.Sequential(
            Dense(latent_dim + cond_dim, hidden[0]), act(),
            Dense(hidden[0], c2 * (h // 4) * (w // 4)), act(),
            nn.Unflatten(1, (c2, h // 4, w // 4)),
            nn.ConvTranspose2d(c2, c1, 4, 2, 1), act(),
            nn.ConvTranspose2d(c1, c, 4, 2, 1),
        )

    def forward(self, z, c=None):
        return self.net(with_condition(z, c))  # (B, C', H, W)

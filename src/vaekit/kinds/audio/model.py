"""The audio kind's networks: 1-D convolutions over time with the mel bands as channels.

The encoder sees the spectrogram only, never the labels: z has to carry what the labels do not
(timing, intonation), and an utterance of a speaker the model never heard encodes like any other.
The decoder gets the labels at every layer, so a swapped speaker label converts the voice (as the
speaker embedding of AutoVC, Qian et al. 2019). The likelihood is a Gaussian per log-mel entry with
one learned scale per band.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Independent, Normal

from ...nets import ACTIVATIONS


def factor_matrix(sizes: list[int]) -> torch.Tensor:
    """(prod sizes, sum sizes): row k holds the one-hots of each condition of class k (mixed
    radix, first condition most significant), so one-hot(k) @ M gives them all."""
    total = math.prod(sizes)
    m = torch.zeros(total, sum(sizes))
    for k in range(total):
        rest, offset = k, sum(sizes)
        for s in reversed(sizes):
            offset -= s
            m[k, offset + rest % s] = 1
            rest //= s
    return m


class AudioEncoder(nn.Module):
    """(B, M, T) -> (B, out_dim): a 5-wide convolution, three stride-2 ones (T / 8), a dense layer."""

    def __init__(self, x_shape, out_dim: int, hidden: int, channels: int, activation: str):
        super().__init__()
        m, t = x_shape
        act = ACTIVATIONS[activation]
        self.net = nn.Sequential(
            nn.Conv1d(m, channels, 5, 1, 2), act(),
            nn.Conv1d(channels, channels, 4, 2, 1), act(),
            nn.Conv1d(channels, channels, 4, 2, 1), act(),
            nn.Conv1d(channels, channels, 4, 2, 1), act(), nn.Flatten(),
            nn.Linear(channels * (t // 8), hidden), act(), nn.Linear(hidden, out_dim))

    def forward(self, x, c=None):  # the labels are not the encoder's to see
        return self.net(x)  # (B, out_dim)


class AudioDecoder(nn.Module):
    """(B, D) and one-hot classes (B, K) -> (B, M, T) log-mel means: dense layers to (C, T / 8),
    three stride-2 transposed convolutions, each offset by the labels, and a 5-wide convolution."""

    def __init__(self, latent_dim: int, x_shape, hidden: int, channels: int, activation: str, sizes: list[int]):
        super().__init__()
        m, t = x_shape
        self.channels, self.steps = channels, t // 8
        self.register_buffer("factors", factor_matrix(sizes) if sizes else torch.zeros(0, 0), persistent=False)
        f = sum(sizes)
        act = ACTIVATIONS[activation]
        self.dense = nn.Sequential(nn.Linear(latent_dim + f, hidden), act(), nn.Linear(hidden, channels * self.steps),
                                   act())
        self.ups = nn.ModuleList(nn.ConvTranspose1d(channels, channels, 4, 2, 1) for _ in range(3))
        self.label_offsets = nn.ModuleList(nn.Linear(f, channels) for _ in range(3)) if f else None
        self.act = act()
        self.out = nn.Conv1d(channels, m, 5, 1, 2)

    def forward(self, z, c=None):
        f = c.to(z.dtype) @ self.factors.to(z.dtype) if c is not None else None  # (B, F) the labels' one-hots
        h = self.dense(z if f is None else torch.cat([z, f], 1)).view(-1, self.channels, self.steps)
        for i, up in enumerate(self.ups):
            h = up(h)
            if f is not None:
                h = h + self.label_offsets[i](f)[:, :, None]
            h = self.act(h)
        return self.out(h)  # (B, M, T)


class BandGaussian(nn.Module):
    """p(x|z): independent Gaussians around the decoder's means, one learned scale per mel band
    (floored at 0.05 of a band's spread, so a near-constant band cannot blow the density up)."""

    num_params = 1
    needs_unit_range = False
    min_log_scale = math.log(0.05)
    # Adam moves a parameter about lr per step: a log-scale stored a tenth of its size moves ten
    # times faster (unscaled, FSDD's bands were still narrowing after 2,000 steps: test -ELBO 935
    # nats at 45 epochs against -191 at 60).
    speed = 10.0

    def __init__(self, num_bands: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(num_bands))  # (M,) log-scales / speed

    def forward(self, out):  # out: (..., M, T) means
        scale = (self.speed * self.log_scale).clamp(min=self.min_log_scale).exp()[:, None].to(out.dtype)
        return Independent(Normal(out, scale.expand_as(out), validate_args=False), 2)

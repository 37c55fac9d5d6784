"""The series kind's likelihood and scores: a Gaussian per point of a window (C, W), its mean and
log-scale predicted by the decoder (Donut, Xu et al. 2018, with several channels as OmniAnomaly,
Su et al. 2019, reads them), and the score of a row: the negative log-likelihood of its newest
point, per channel, under the decoder at the window's posterior mean (or its squared error), averaged
over the last rows when asked.

Missing points (NaN in a window) are Donut's: the encoder reads them as 0 (the channel's centre)
and the likelihood leaves them out (its modified ELBO), so a gap neither teaches the model a flat
stretch nor counts against it."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.distributions import Independent, Normal

from ...nets import MLPEncoder


class GapEncoder(MLPEncoder):
    """The dense encoder with missing points read as 0, the channel's centre (Donut's input)."""

    def forward(self, x, c=None):
        return super().forward(torch.where(torch.isnan(x), torch.zeros_like(x), x), c)


class ObservedPoints(Independent):
    """Independent Gaussians over a window whose log_prob sums the observed points only: a NaN
    point adds nothing (Donut's modified ELBO)."""

    def log_prob(self, x):
        missing = torch.isnan(x)  # no branch on it: the same sums as Independent's without gaps, compiled or not
        lp = self.base_dist.log_prob(torch.where(missing, self.base_dist.loc.detach(), x))
        return torch.where(missing, torch.zeros_like(lp), lp).flatten(-2).sum(-1)


class PointGaussian(nn.Module):
    """Decoder output (B, 2C, W) -> independent Gaussians over the window's points (event (C, W))."""

    num_params = 2
    needs_unit_range = False
    min_log_scale = -5.0  # keeps the density bounded on flat stretches

    def forward(self, out):
        mean, log_scale = out.chunk(2, dim=-2)
        return ObservedPoints(Normal(mean, log_scale.clamp(min=self.min_log_scale).exp(), validate_args=False), 2)


@torch.no_grad()
def point_scores(vae, x: torch.Tensor, score: str = "neg_elbo", batch_size: int = 8192) -> torch.Tensor:
    """Per channel, how badly each window's newest point t is explained, at z = the posterior
    mean: (N, C). neg_elbo: -log p(x_t | z), which weighs a channel by its predicted noise;
    recon_error: the squared error of the decoder's mean in scaled units, which weighs channels by
    their training spread (a smooth channel that drifts does not outweigh the others). A missing
    newest point takes the decoder's mean: no evidence, the least odd it can be. Deterministic,
    and it sees only the window ending at t (causal)."""
    was = vae.training
    vae.eval()
    out = []
    for xb in x.split(batch_size):
        px_z = vae.decode(vae.encode(xb).mean).base_dist
        mean = px_z.loc[..., -1]  # (B, C)
        newest = torch.where(torch.isnan(xb[..., -1]), mean, xb[..., -1])
        if score == "recon_error":
            out.append((newest - mean) ** 2)
        else:
            out.append(-Normal(mean, px_z.scale[..., -1]).log_prob(newest))
    vae.train(was)
    return torch.cat(out) if out else torch.zeros(0, x.shape[1])


def trailing_mean(scores: np.ndarray, rows: int) -> np.ndarray:
    """Each row's score averaged with the rows-1 before it (fewer at the start): causal."""
    if rows <= 1:
        return scores
    total = np.concatenate([[0.0], np.cumsum(scores, dtype=np.float64)])
    end = np.arange(1, len(scores) + 1)
    start = np.maximum(0, end - rows)
    return (total[end] - total[start]) / (end - start)

"""The series kind's likelihood and scores: a Gaussian per point of a window (C, W), its mean and
log-scale predicted by the decoder (Donut, Xu et al. 2018, with several channels as OmniAnomaly,
Su et al. 2019, reads them), and the score of a row: the negative log-likelihood of its newest
point, per channel, under the decoder at the window's posterior mean."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Independent, Normal


class PointGaussian(nn.Module):
    """Decoder output (B, 2C, W) -> independent Gaussians over the window's points (event (C, W))."""

    num_params = 2
    needs_unit_range = False
    min_log_scale = -5.0  # keeps the density bounded on flat stretches

    def forward(self, out):
        mean, log_scale = out.chunk(2, dim=-2)
        return Independent(Normal(mean, log_scale.clamp(min=self.min_log_scale).exp(), validate_args=False), 2)


@torch.no_grad()
def point_scores(vae, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """-log p(x_t | z) of each window's newest point t, per channel, at z = the posterior mean:
    (N, C). Deterministic, and it sees only the window ending at t (causal)."""
    was = vae.training
    vae.eval()
    out = []
    for xb in x.split(batch_size):
        px_z = vae.decode(vae.encode(xb).mean).base_dist
        newest = xb[..., -1]  # (B, C)
        out.append(-Normal(px_z.loc[..., -1], px_z.scale[..., -1]).log_prob(newest))
    vae.train(was)
    return torch.cat(out) if out else torch.zeros(0, x.shape[1])

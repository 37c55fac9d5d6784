"""Why a row is odd: its per-column score against what normal rows score in that column."""

from __future__ import annotations

import numpy as np
import torch

from ...data import batches


@torch.no_grad()
def column_scores(vae, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 10,
                  seed: int = 0) -> np.ndarray:
    """-log p(x_c|z[, y]) of each column, averaged over posterior draws z ~ q(z|x[, y]): (N, C) nats."""
    out = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for xb, yb in batches(x, y, 1000):
            qz_x = vae.encode(xb, yb)
            z = qz_x.sample((num_samples,))  # (S, B, D)
            c = vae.condition(yb)
            c = None if c is None else c.repeat(num_samples, 1)
            px_z = vae.likelihood(vae.decoder(z.flatten(0, 1), c).float().view(num_samples, len(xb), -1))
            out.append(-px_z.column_log_prob(xb).mean(0))
    return torch.cat(out).numpy()


def top_columns(vae, x: torch.Tensor, y, normal_x: torch.Tensor, normal_y, schema: dict, num_samples: int = 10,
                k: int = 3) -> list[str]:
    """For each row, up to `k` columns whose score most exceeds their median on normal rows
    (largest first, ';'-separated; empty where no column is above its median)."""
    names = np.array([c["name"] for c in schema["columns"]])
    normal = column_scores(vae, normal_x, normal_y, num_samples)
    excess = column_scores(vae, x, y, num_samples) - np.median(normal, axis=0)
    order = np.argsort(-excess, axis=1)[:, :k]
    return [";".join(names[i] for i in row if e[i] > 0) for row, e in zip(order, excess)]

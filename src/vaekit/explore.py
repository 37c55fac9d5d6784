"""What a trained VAE learned, made usable: embeddings, interpolations, the decoded latent
manifold, 2-D projections, and a post-hoc sampler fitted to the aggregate posterior.

Each helper says what it uses: embeddings are posterior means, interpolations walk between
posterior means; nothing samples unless asked.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import batches
from .errors import VaekitError


@torch.no_grad()
def embed(vae, x: torch.Tensor, batch_size: int = 1000, y: torch.Tensor | None = None):
    """Posterior means and log-variances of x (N, C, H, W): two (N, D) tensors."""
    mus, logvars = [], []
    for xb, yb in batches(x, y, batch_size):
        q = vae.encode(xb, yb)
        mus.append(q.mean)
        logvars.append(2 * q.base_dist.scale.log())
    return torch.cat(mus), torch.cat(logvars)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake, 1985) between rows of a and b (P, D) at t (K,): (P, K, D).
    Falls back to linear where the two vectors are (nearly) parallel."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1).clamp(-1, 1))[:, None, None]  # (P, 1, 1)
    t = t[None, :, None]
    so = torch.sin(omega)
    linear = (1 - t) * a[:, None] + t * b[:, None]
    spherical = (torch.sin((1 - t) * omega) * a[:, None] + torch.sin(t * omega) * b[:, None]) / so.clamp(min=1e-6)
    return torch.where(so > 1e-4, spherical, linear)


@torch.no_grad()
def interpolate(vae, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10, spherical: bool = False,
                y_a: torch.Tensor | None = None, y_b: torch.Tensor | None = None):
    """Decoder means along the path between the posterior means of x_a[i] and x_b[i]:
    (P, steps, C, H, W), the first and last steps being the two reconstructions. A conditional
    model decodes the whole path with x_a's labels."""
    if steps < 2:
        raise VaekitError(f"steps must be >= 2, got {steps}")
    za, zb = vae.encode(x_a, y_a).mean, vae.encode(x_b, y_b).mean  # (P, D)
    t = torch.linspace(0, 1, steps, device=za.device)
    if spherical:
        z = slerp(za, zb, t)
    else:
        z = (1 - t)[None, :, None] * za[:, None] + t[None, :, None] * zb[:, None]  # (P, K, D)
    y = None if y_a is None else y_a.repeat_interleave(steps)
    x = vae.decode(z.reshape(-1, z.shape[-1]), y).mean
    return x.reshape(len(za), steps, *x.shape[1:])


@torch.no_grad()
def manifold(vae, grid: int = 15, span: float = 4.0, dims: tuple[int, int] = (0, 1), label: int = 0) -> torch.Tensor:
    """Decoder means over a grid x grid lattice in [-span, span]^2 along latent axes `dims`, other
    axes at 0; row-major with the second axis decreasing downwards: (grid * grid, C, H, W)."""
    i, j = dims
    if not (0 <= i < vae.latent_dim and 0 <= j < vae.latent_dim and i != j):
        raise VaekitError(f"dims must be two different axes in [0, {vae.latent_dim - 1}], got {i} {j}")
    values = torch.linspace(-span, span, grid)
    z = torch.zeros(grid, grid, vae.latent_dim)
    z[:, :, i] = values[None, :]
    z[:, :, j] = values.flip(0)[:, None]
    y = torch.full((grid * grid,), label) if vae.conditional else None  # a conditional model: one class
    return vae.decode(z.reshape(-1, vae.latent_dim), y).mean


def project_2d(z: np.ndarray, method: str = "pca") -> np.ndarray:
    """(N, D) -> (N, 2): a 2-D latent as it is, else PCA (or t-SNE when asked)."""
    if z.shape[1] == 2:
        return z
    if z.shape[1] == 1:
        return np.concatenate([z, np.zeros_like(z)], axis=1)
    if len(z) < 3:  # too few points to project: the first two axes
        return z[:, :2]
    if method == "tsne" and len(z) <= 30:
        raise VaekitError(f"t-SNE needs more than 30 points (its perplexity), got {len(z)}; use --projection pca")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=0).fit_transform(z)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, random_state=0, init="pca").fit_transform(z)
    raise VaekitError(f"unknown projection {method!r}; choose pca or tsne")


class PosteriorSampler:
    """A Gaussian mixture fitted to the training posterior means: samples land where the data's
    codes are, not in the prior's empty regions ("holes"); cf. Ghosh et al. (2020), ex-post
    density estimation."""

    def __init__(self, num_components: int = 10, seed: int = 0):
        self.num_components, self.seed = num_components, seed

    def fit(self, mu: torch.Tensor) -> "PosteriorSampler":
        from sklearn.mixture import GaussianMixture

        k = min(self.num_components, len(mu))
        self.gmm = GaussianMixture(k, covariance_type="full", random_state=self.seed, reg_covar=1e-4)
        self.gmm.fit(mu.double().cpu().numpy())
        return self

    def sample(self, num: int, temperature: float = 1.0) -> torch.Tensor:
        """(num, D) latents; temperature scales each draw's spread around its component mean."""
        rng = np.random.default_rng(self.seed)
        comp = rng.choice(len(self.gmm.weights_), size=num, p=self.gmm.weights_)
        chol = np.linalg.cholesky(self.gmm.covariances_)  # (K, D, D)
        eps = rng.standard_normal((num, self.gmm.means_.shape[1]))
        z = self.gmm.means_[comp] + temperature * np.einsum("nij,nj->ni", chol[comp], eps)
        return torch.from_numpy(z).float()


def pair_indices(n: int, pairs: int, seed: int) -> torch.Tensor:
    """2 * pairs distinct random indices below n: pairs are (idx[0], idx[1]), (idx[2], idx[3]), ..."""
    if n < 2 * pairs:
        raise VaekitError(f"need {2 * pairs} inputs for {pairs} pairs, got {n}")
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: 2 * pairs]

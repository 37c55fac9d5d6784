"""A sample-quality distance: the Fréchet distance between Gaussians fitted to classifier features
of generated and of real data (the construction of Heusel et al., 2017), with features from a small
classifier that vaekit trains itself on the labelled training split, since Inception weights cannot
be downloaded everywhere. Numbers are comparable only under the same feature net (same data set,
same recipe, same seed); it is not FID.

Recipe: an MLP (D -> 512 -> 256 -> classes, ReLU), Adam 1e-3, batch 256, 3 epochs, seed 0;
features are the 256 penultimate activations.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ... import checkpoint as ckpt
from ...errors import VaekitError
from ...nets import mlp
from ...optim import Adam

RECIPE = "mlp-512-256, adam 1e-3, batch 256, 3 epochs, seed 0"


class FeatureNet(nn.Module):
    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(mlp([in_dim, 512, 256], "relu"), nn.ReLU())
        self.head = nn.Linear(256, num_classes)

    def features(self, x):
        return self.body(x.flatten(1))  # (B, 256)

    def forward(self, x):
        return self.head(self.features(x))


def train_feature_net(x: torch.Tensor, y: torch.Tensor, epochs: int = 3, seed: int = 0) -> FeatureNet:
    """The recipe above, on (N, C, H, W) inputs and their integer labels."""
    if y is None:
        raise VaekitError("the sample-quality distance needs a labelled training split for its feature net")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = FeatureNet(math.prod(x.shape[1:]), int(y.max()) + 1)
    opt = Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(256):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def feature_net_for(run_dir: Path, x: torch.Tensor, y: torch.Tensor) -> FeatureNet:
    """The run's cached feature net (RUN/featurenet.safetensors), trained on first use."""
    path = Path(run_dir) / "featurenet.safetensors"
    net = FeatureNet(math.prod(x.shape[1:]), int(y.max()) + 1 if y is not None else 1)
    if path.exists():
        tensors, meta = ckpt.read_safetensors(path)
        if meta.get("recipe") == RECIPE:
            ckpt.load_weights(net, tensors, path)
            return net.eval()
    net = train_feature_net(x, y)
    ckpt.atomic_write(path, ckpt.dump_safetensors(ckpt.weights_of(net), {"recipe": RECIPE}))
    return net


@torch.no_grad()
def feature_stats(net: FeatureNet, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    f = torch.cat([net.features(xb) for xb in x.split(1000)]).double().cpu().numpy()
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between two Gaussians."""
    from scipy.linalg import sqrtm

    (mu_a, cov_a), (mu_b, cov_b) = a, b
    # Feature covariances of a few thousand examples are near-singular: a tiny ridge keeps the
    # square root well defined (as FID implementations do).
    eps = np.eye(len(cov_a)) * 1e-6
    covmean = sqrtm((cov_a + eps) @ (cov_b + eps))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean.real))

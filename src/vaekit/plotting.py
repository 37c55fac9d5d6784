"""Pictures from tensors: image grids (Pillow) and training curves (matplotlib).
Nothing here calls a model."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write


def image_grid(x: torch.Tensor, nrow: int | None = None, pad: int = 1, scale: int = 1) -> np.ndarray:
    """(N, C, H, W) values in [0, 1] -> one uint8 picture (rows*H', cols*W'[, 3]) with white gaps.

    Vector data (H == 1) is shown as a square-ish image when its length allows.
    """
    x = x.detach().float().cpu().clamp(0, 1)
    n, c, h, w = x.shape
    if h == 1 and math.isqrt(w) ** 2 == w:
        h = w = math.isqrt(w)
        x = x.reshape(n, c, h, w)
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = x[i]
    img = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    img = img.repeat(scale, axis=0).repeat(scale, axis=1)
    return img[..., 0] if c == 1 else img


def auto_scale(height: int) -> int:
    """Upscale small images so a grid is comfortably visible (8x8 digits -> 4x)."""
    return max(1, 32 // max(1, height))


def png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def save_grid(path: Path, x: torch.Tensor, nrow: int | None = None) -> Path:
    """Write an image grid of (N, C, H, W) in [0, 1] as a PNG, atomically."""
    atomic_write(Path(path), png_bytes(image_grid(x, nrow, scale=auto_scale(x.shape[-2]))))
    return Path(path)


def save_pairs(path: Path, x: torch.Tensor, x_rec: torch.Tensor, ncol: int = 8) -> Path:
    """Inputs over their reconstructions: pairs of rows, `ncol` examples a row."""
    n = (len(x) // ncol) * ncol or len(x)
    ncol = min(ncol, n)
    rows = []
    for i in range(0, n, ncol):
        rows += [x[i : i + ncol], x_rec[i : i + ncol]]
    return save_grid(path, torch.cat(rows), nrow=ncol)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    pyplot().close(fig)
    return buf.getvalue()


def save_figure(path: Path, fig) -> Path:
    atomic_write(Path(path), figure_png(fig))
    return Path(path)


def save_curves(path: Path, records: list[dict]) -> Path:
    """Training and validation loss per epoch, plus the KL term, as a PNG."""
    plt = pyplot()
    epochs = [r["epoch"] for r in records]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [r["train_loss"] for r in records], "o-", label="train loss")
    ax1.plot(epochs, [r["val_neg_elbo"] for r in records], "s-", label="validation -ELBO")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("nats per example")
    ax1.legend()
    ax2.plot(epochs, [r["train_recon"] for r in records], "o-", label="reconstruction")
    ax2.plot(epochs, [r["train_kl"] for r in records], "s-", label="KL")
    ax2.set_xlabel("epoch")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(path, fig)


def save_scatter(path: Path, points: np.ndarray, labels: np.ndarray | None, title: str) -> Path:
    return save_figure(path, scatter_figure(points, labels, title))


def scatter_figure(points: np.ndarray, labels: np.ndarray | None, title: str):
    """(N, 2) points, coloured by integer label when there are labels."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7,
                        vmin=-0.5, vmax=9.5 if labels.max() < 10 else labels.max() + 0.5)
        fig.colorbar(sc, ax=ax, label="label", ticks=np.unique(labels)[:20])
    ax.set_title(title)
    fig.tight_layout()
    return fig


def save_histogram(path: Path, scores: np.ndarray, is_anomaly: np.ndarray | None, threshold: float,
                   label: str) -> Path:
    """Score distributions of normal and anomalous inputs, with the threshold."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.histogram_bin_edges(scores, bins=60)
    if is_anomaly is None:
        ax.hist(scores, bins=bins, alpha=0.7, label="inputs")
    else:
        ax.hist(scores[~is_anomaly], bins=bins, alpha=0.6, density=True, label="normal")
        ax.hist(scores[is_anomaly], bins=bins, alpha=0.6, density=True, label="anomalous")
    ax.axvline(threshold, color="k", linestyle="--", label="threshold")
    ax.set_xlabel(label)
    ax.legend()
    fig.tight_layout()
    return save_figure(path, fig)

"""Anomaly scores from a trained VAE (An & Cho, 2015): inputs the model explains badly, by
negative ELBO or by reconstruction error, score high.

The threshold is the (1 - fpr) quantile of scores on normal data, so about `fpr` of normal inputs
are flagged; with labels, AUROC and average precision say how well scores rank anomalies.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import batches
from .errors import VaekitError
from .metrics import evaluate_terms

SCORES = ("neg_elbo", "recon_error")


@torch.no_grad()
def score(vae, x: torch.Tensor, kind: str = "neg_elbo", num_samples: int = 10, seed: int = 0,
          y: torch.Tensor | None = None) -> np.ndarray:
    """One score per input (N,), higher = more anomalous.

    neg_elbo: -ELBO averaged over `num_samples` posterior draws (nats);
    recon_error: squared error between x and its reconstruction at the posterior mean.
    """
    if kind == "neg_elbo":
        return evaluate_terms(vae, x, num_samples=num_samples, seed=seed, y=y).loss.cpu().numpy()
    if kind == "recon_error":
        out = [((vae.reconstruct(xb, yb) - xb) ** 2).flatten(1).sum(1) for xb, yb in batches(x, y, 1000)]
        return torch.cat(out).cpu().numpy()
    raise VaekitError(f"unknown score {kind!r}; choose from {', '.join(SCORES)}")


def threshold_at(normal_scores: np.ndarray, fpr: float) -> float:
    if not 0 < fpr < 1:
        raise VaekitError(f"fpr must be in (0, 1), got {fpr}")
    return float(np.quantile(normal_scores, 1 - fpr))


def summarize(scores: np.ndarray, threshold: float, is_anomaly: np.ndarray | None = None) -> dict:
    """Flag counts, and AUROC / average precision when the truth is known."""
    flagged = scores > threshold
    out = {"num_inputs": int(len(scores)), "threshold": threshold, "num_flagged": int(flagged.sum())}
    if is_anomaly is not None and 0 < is_anomaly.sum() < len(is_anomaly):
        from sklearn.metrics import average_precision_score, roc_auc_score

        out.update({
            "num_anomalies": int(is_anomaly.sum()),
            "auroc": float(roc_auc_score(is_anomaly, scores)),
            "average_precision": float(average_precision_score(is_anomaly, scores)),
            "true_positive_rate": float(flagged[is_anomaly].mean()),
            "false_positive_rate": float(flagged[~is_anomaly].mean()),
        })
    return out


def write_csv(path, columns: dict[str, list]) -> None:
    """One row per input, one column per entry of `columns` (all of one length), atomically."""
    import csv
    import io

    from .checkpoint import atomic_write

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(zip(*columns.values()))
    atomic_write(path, buf.getvalue().encode())

"""Ranking held-out items, as Liang et al. (2018, sec. 4.3) score it, and the two baselines.

For each held-out user the model sees the shown items and ranks every other item:

    Recall@K = |top-K ∩ held-out| / min(K, |held-out|)
    NDCG@K   = sum_{r <= K} [item_r held out] / log2(r + 1)  /  sum_{r <= min(K, |held-out|)} 1 / log2(r + 1)

Baselines on the same users: popularity (items by how many training users chose them) and EASE
(Steck, 2019): B = I - P diagMat(1 / diag(P)), P = (X^T X + lambda I)^-1, a closed form with one
regularisation value, chosen on the validation users.
"""

from __future__ import annotations

import torch

from .sparse import SparseRows

EASE_LAMBDAS = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)


def top_k(scores: torch.Tensor, shown: torch.Tensor, k: int) -> torch.Tensor:
    """The k best items per user (B, k), already-chosen items excluded."""
    scores = scores.masked_fill(shown > 0, -torch.inf)
    return scores.topk(min(k, scores.shape[1]), dim=1).indices


def ranking_metrics(score_fn, shown: SparseRows, heldout: SparseRows, ks=(20, 50, 100),
                    batch_size: int = 1000) -> dict[str, float]:
    """Mean recall@K and NDCG@K over users; `score_fn(shown_dense)` gives scores (B, I)."""
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg")}
    kmax = max(ks)
    discounts = 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float64))
    if len(shown) == 0:
        return {k: float("nan") for k in sums}
    for start in range(0, len(shown), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(shown)))
        x, truth = shown.dense(idx), heldout.dense(idx)
        hits = truth.gather(1, top_k(score_fn(x).float(), x, kmax)).double()  # (B, min(kmax, I))
        ranked = discounts[: hits.shape[1]]  # a catalogue smaller than K ranks all its items
        n_true = truth.sum(1).double()
        for k in ks:
            sums[f"recall@{k}"] += float((hits[:, :k].sum(1) / n_true.clamp(max=k)).sum())
            ideal = torch.cumsum(discounts[:k], 0)[n_true.clamp(max=k).long() - 1]
            sums[f"ndcg@{k}"] += float(((hits[:, :k] * ranked[:k]).sum(1) / ideal).sum())
    return {k: v / len(shown) for k, v in sums.items()}


@torch.no_grad()
def vae_metrics(vae, shown: SparseRows, heldout: SparseRows, ks=(20, 50, 100)) -> dict[str, float]:
    """The model's ranking metrics, scoring with the decoder's logits at the posterior mean (the
    paper's choice), in eval mode (no input dropout)."""
    was = vae.training
    vae.eval()
    try:
        return ranking_metrics(lambda x: vae.decoder(vae.encode(x).mean), shown, heldout, ks)
    finally:
        vae.train(was)


def popularity_scores(counts: list[int]):
    c = torch.tensor(counts, dtype=torch.float32)
    return lambda x: c.expand(len(x), -1)


def ease_weights(train: SparseRows, lam: float, gram: torch.Tensor | None = None) -> torch.Tensor:
    """EASE's item-item weights (I, I), zero diagonal."""
    g = gram if gram is not None else item_gram(train)
    p = torch.linalg.inv(g + lam * torch.eye(len(g), dtype=g.dtype))
    b = -p / torch.diagonal(p)[None, :]
    b.fill_diagonal_(0.0)
    return b.float()


def item_gram(train: SparseRows, batch_size: int = 2000) -> torch.Tensor:
    """X^T X over the training users, in float64: (I, I)."""
    g = torch.zeros(train.num_cols, train.num_cols, dtype=torch.float64)
    for start in range(0, len(train), batch_size):
        x = train.dense(torch.arange(start, min(start + batch_size, len(train)))).double()
        g += x.T @ x
    return g


def ease(train: SparseRows, val_shown: SparseRows, val_heldout: SparseRows, lambdas=EASE_LAMBDAS):
    """EASE with the lambda of the best validation NDCG@100: (weights, lambda, validation NDCG)."""
    gram = item_gram(train)
    best = None
    for lam in lambdas:
        b = ease_weights(train, lam, gram)
        ndcg = ranking_metrics(lambda x: x @ b, val_shown, val_heldout, ks=(100,))["ndcg@100"]
        if best is None or ndcg > best[2]:
            best = (b, lam, ndcg)
    return best


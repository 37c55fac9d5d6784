"""The commands on an item-set run: recommendations, similar items, ranking figures with the
baselines, and the report's pages."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ... import checkpoint as ckpt
from ... import files
from ...errors import VaekitError
from ...plotting import pyplot, save_figure
from .data import Bags, fold_in, rows_of
from .ranking import ease, popularity_scores, ranking_metrics, top_k, vae_metrics
from .sparse import SparseRows

EASE_MAX_ITEMS = 20_000  # EASE inverts an items x items matrix: past this it is left out


def save_final(run_dir) -> None:
    """ranking.png: validation NDCG@100 after each epoch, the kept epoch marked."""
    records = ckpt.read_metrics(run_dir)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [r["epoch"] for r in records]
    ndcg = [r.get("val_ndcg@100") for r in records]
    ax.plot(epochs, ndcg, "o-", ms=3)
    best = int(np.nanargmax(np.array(ndcg, dtype=float)))
    ax.axvline(epochs[best], color="k", ls="--", label=f"kept: epoch {epochs[best]} ({ndcg[best]:.3f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@100")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(Path(run_dir) / "ranking.png", fig)


def scores(vae, x: torch.Tensor) -> torch.Tensor:
    """Each item's probability under the decoder at the posterior mean: (B, I)."""
    with torch.no_grad():
        return torch.softmax(vae.decoder(vae.encode(x).mean).float(), dim=-1)


def bags_of(run, users) -> SparseRows:
    """Users from Python: a list of item-id lists, one per user (or a dict of them by user id);
    items the run never saw are left out, and said."""
    bags = list(users.values()) if isinstance(users, dict) else list(users)
    index = pd.Index(run.schema["items"])
    rows, unknown = [], 0
    for bag in bags:
        if isinstance(bag, str) or not hasattr(bag, "__iter__"):
            raise VaekitError(f"expected a list of item ids per user, got {type(bag).__name__}")
        codes = index.get_indexer([str(i) for i in bag])
        unknown += int((codes < 0).sum())
        rows.append(np.sort(np.unique(codes[codes >= 0])))
    if unknown:
        print(f"vaekit: left out {unknown} item(s) the run never saw", file=sys.stderr)
    return SparseRows.from_lists(rows, len(index))


def given_items(run, text: str) -> tuple[SparseRows, list[str]]:
    """One user from --items 'a,b,...'; items the run never saw are left out (and said)."""
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    index = pd.Index(run.schema["items"])
    codes = index.get_indexer(wanted)
    unknown = [w for w, c in zip(wanted, codes) if c < 0]
    if len(unknown) == len(wanted):
        raise VaekitError(f"--items: none of {', '.join(wanted[:5])} is an item the run knows; nothing to fold in")
    if unknown:
        print(f"vaekit: left out {len(unknown)} item(s) the run never saw: {', '.join(unknown[:5])}", file=sys.stderr)
    return SparseRows.from_lists([np.sort(np.unique(codes[codes >= 0]))], len(index)), ["input"]


class DenseEncoder(torch.nn.Module):
    """The encoder by its dense product: one graph for any bag (export.py)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x):
        mu, logvar = self.vae.encoder.dense(x).float().chunk(2, dim=-1)
        return mu, logvar


def onnx_graphs(run, users: SparseRows) -> list:
    from ...export import Decoder, Graph

    x = users.dense(torch.arange(min(len(users), 256)))
    z = run.vae.encode(x).mean
    batch = {"x": {0: "batch"}, "z": {0: "batch"}, "mu": {0: "batch"}, "logvar": {0: "batch"}, "params": {0: "batch"}}
    return [Graph("encoder", DenseEncoder(run.vae), (x,), ["x"], ["mu", "logvar"], batch,
                  "q(z|x) = N(mu, exp(logvar)) of users' bags over the items"),
            Graph("decoder", Decoder(run.vae), (z,), ["z"], ["params"], batch, "logits over the items")]


def recommendations(run, users: SparseRows, ids: list[str], top: int) -> pd.DataFrame:
    """The `top` items each user has not chosen, best first: columns user, item, rank, score (the
    item's probability under the decoder at the user's posterior mean)."""
    items = np.array(run.schema["items"], dtype=object)
    rows = []
    for start in range(0, len(users), 1000):
        idx = torch.arange(start, min(start + 1000, len(users)))
        x = users.dense(idx)
        p = scores(run.vae, x)
        best = top_k(p, x, top)
        for i, user in enumerate(ids[start : start + len(idx)]):
            rows += [(user, items[j], rank + 1, f"{float(p[i, j]):.6g}") for rank, j in enumerate(best[i].tolist())]
    return pd.DataFrame(rows, columns=["user", "item", "rank", "score"])


def recommend(run, opts) -> None:
    out = run.out_path(opts.out, "recommendations.csv")
    if opts.similar:
        rows = similar_items(run, opts.similar, opts.top)
    else:
        if bool(opts.items) == bool(opts.data):
            raise VaekitError("recommend needs the users' items: --items 'i1,i2,...' or --data users.csv (one of them)")
        options = run.kind.options(run.data_config(opts.data_dir))
        users, ids = given_items(run, opts.items) if opts.items else rows_of(opts.data, run.schema, options, opts.data)
        rows = recommendations(run, users, ids, opts.top)
    files.atomic_write(out, rows.to_csv(index=False, lineterminator="\n").encode())
    print(f"wrote {out} ({len(rows)} rows)")


def similar_items(run, item: str, top: int) -> pd.DataFrame:
    """Items nearest to `item` by the cosine of their decoder weights (the item embeddings)."""
    index = pd.Index(run.schema["items"])
    i = index.get_indexer([item])[0]
    if i < 0:
        raise VaekitError(f"--similar {item!r}: not an item the run knows")
    w = torch.nn.functional.normalize(run.vae.decoder.item_weights.float(), dim=1)  # (I, H)
    sim = w @ w[i]
    sim[i] = -torch.inf
    best = sim.topk(min(top, len(sim) - 1)).indices.tolist()
    return pd.DataFrame({"item": item, "similar": index[best], "rank": range(1, len(best) + 1),
                         "score": [f"{float(sim[j]):.6g}" for j in best]})


def evaluate(run, args) -> dict:
    """Recall@20, Recall@50 and NDCG@100 on the held-out users (the run's test users, or those of
    --data with the last 20% of each one's items, seeded, to predict), and the baselines'."""
    splits = run.splits(args.data_dir)
    if args.data:
        options = run.kind.options(run.data_config(args.data_dir))
        rows, users = rows_of(args.data, run.schema, options, args.data)
        shown, hidden = fold_in(Bags(np.array(users, dtype=object), rows.indptr.numpy(), rows.indices.numpy()),
                                options.fold_in, args.seed)
        shown, hidden = shown.rows(rows.num_cols), hidden.rows(rows.num_cols)
    else:
        shown, hidden = splits.test_x, splits.extra["test_heldout"]
    keep = ("recall@20", "recall@50", "ndcg@100")
    pick = lambda m: {k: m[k] for k in keep}
    out = pick(vae_metrics(run.vae, shown, hidden)) | {"num_test_users": len(shown)}
    out["popularity"] = pick(ranking_metrics(popularity_scores(run.schema["counts"]), shown, hidden))
    if len(run.schema["items"]) <= EASE_MAX_ITEMS:
        weights, lam, _ = ease(splits.train_x, splits.val_x, splits.extra["val_heldout"])
        out["ease"] = pick(ranking_metrics(lambda x: x @ weights, shown, hidden)) | {"lambda": lam}
    return out


def report(run, splits) -> list[str]:
    from types import SimpleNamespace

    from ...pages import figure, file_uri, table

    figures = evaluate(run, SimpleNamespace(data=None, data_dir=None, seed=0))
    rows = {"vaekit (Mult-VAE)": {k: v for k, v in figures.items() if "@" in k}}
    rows |= {name: {k: v for k, v in figures[name].items() if "@" in k} for name in ("popularity", "ease") if name in figures}
    body = "".join(f"<h3>{name}</h3>" + table(m) for name, m in rows.items())
    sections = [f"<h2>Ranking held-out items ({figures['num_test_users']} test users)</h2>" + body]
    if (run.run_dir / "ranking.png").exists():
        sections.append("<h2>Validation NDCG@100</h2>" + figure(file_uri(run.run_dir / "ranking.png"),
                                                                "After each epoch; the run keeps the best"))
    return sections

"""The item-set kind: implicit feedback (who chose what), users as bags of items, Mult-VAE
(Liang et al., 2018) with a multinomial likelihood; recommendations for new users folded in from
their items, ranking figures against popularity and EASE.

Users are held out whole (strong generalisation): validation and test users show the model 80% of
their items and the other 20% are the ones to predict. Validation NDCG@100 picks the epoch whose
weights the run keeps. The kind's class is light; its modules load when items are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import DataConfig
from ...errors import VaekitError
from ...options import option
from .. import Kind, KindCommand, Nets, Supports


@dataclass
class Options:
    """Options of interaction data (vaekit train --kind items --user-col U --item-col I ...)."""

    user_col: str | None = field(default=None, metadata={"help": "items: the user column (default: user_id, userId, user)"})
    item_col: str | None = field(default=None, metadata={"help": "items: the item column (default: item_id, itemId, item)"})
    rating_col: str | None = field(default=None, metadata={"help": "items: a rating column; with --min-rating, "
                                                                     "lower ratings are not positives"})
    min_rating: float | None = field(default=None, metadata={"help": "items: the lowest rating that is a positive"})
    min_items: int = field(default=5, metadata={"help": "items: users with fewer positives are dropped (default 5)"})
    fold_in: float = field(default=0.8, metadata={"help": "items: share of a held-out user's items shown to the "
                                                          "model (default 0.8; the rest are predicted)"})

    def __post_init__(self):
        if not 0 < self.fold_in < 1 or self.min_items < 2:
            raise VaekitError("fold_in must be in (0, 1) and min_items >= 2")


@dataclass
class RecommendOptions:
    items: str | None = option(None, "one user's items, comma-separated ids")
    top: int = option(20, "items per user (default 20)")
    similar: str | None = option(None, "instead: the items most similar to ITEM (decoder embeddings)", metavar="ITEM")

    def __post_init__(self):
        if self.top < 1:
            raise VaekitError(f"--top must be at least 1, got {self.top}")


class ItemsKind(Kind):
    name = "items"
    Options = Options
    commands = {"recommend": KindCommand("item-set runs: top items for users given their items", RecommendOptions,
                                         "recommend", python="recommend_for")}
    supports = Supports(likelihoods=("multinomial",), input_dropout=True)
    # A moving average of the weights (--ema 0.99): on MovieLens-100K, 5 seeds (bench/items_quality.py),
    # recall@20 0.3965 and NDCG@100 0.4486 against 0.3910 and 0.4467 without it.
    defaults = {"model.hidden": [600, 600], "model.latent_dim": 200, "model.activation": "tanh",
                "model.likelihood": "multinomial", "data.test_fraction": 0.1, "data.val_fraction": 0.1,
                "train.batch_size": 500, "train.lr": 1e-3, "train.lr_schedule": "constant", "train.warmup_steps": 0,
                "train.epochs": 300, "train.beta": 0.2, "train.kl_warmup_epochs": 150, "train.ema": 0.99}
    final_outputs = ("ranking.png",)
    # The importance-weighted NLL decodes K bags over the whole catalogue per user (100,000 test
    # users of 50,000 items had not finished after 10 minutes); the ranking figures use every test user.
    evaluate_examples = 2000
    keeps_best = True  # the epoch of the best validation NDCG@100

    def detect(self, name: str) -> bool:
        return name.lower().removesuffix(".gz").endswith(".inter")  # RecBole's interaction files

    def load(self, cfg: DataConfig, schema: dict | None = None):
        from .data import load

        return load(cfg, self.options(cfg), schema)

    def inputs(self, cfg: DataConfig, schema: dict, name: str | None):
        rows, users = self.users(cfg, schema, name)
        return rows, None, users

    def tensors(self, run, data):
        from .commands import bags_of

        return bags_of(run, data), None

    def from_records(self, run, records: list, allow_unknown: bool = False):
        """Users as JSON: each a list of the item ids they chose."""
        known = set(run.schema["items"])
        for i, bag in enumerate(records):
            if not isinstance(bag, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in bag):
                raise VaekitError(f"input {i}: a user is a list of item ids, got {type(bag).__name__}")
            unknown = [v for v in bag if str(v) not in known]
            if unknown and not allow_unknown:
                raise VaekitError(f"input {i}: item {unknown[0]!r} is not one the run knows")
        return records

    def decoded(self, run, z, labels=None, top: int = 10):
        """The `top` most likely items at each latent code."""
        import numpy as np
        import torch

        with torch.no_grad():
            best = torch.topk(run.vae.decoder(z).float(), min(top, len(run.schema["items"])), dim=-1).indices
        items = np.array(run.schema["items"], dtype=object)
        return [items[row].tolist() for row in best.numpy()]

    def onnx_graphs(self, run, x, y) -> list:
        from .commands import onnx_graphs

        return onnx_graphs(run, x)

    def export_notes(self, run) -> dict:
        return {"items": run.schema["items"],
                "x": "each user a bag over the items in this order: 1 for an item chosen, else 0",
                "params": "logits over the items; their softmax is each item's probability (recommend: the "
                          "highest not already chosen)"}

    def schema_summary(self, run) -> dict:
        return {"num_items": len(run.schema["items"]), "items": run.schema["items"][:20]}

    def users(self, cfg: DataConfig, schema: dict, name: str | None):
        """(rows, user ids) of a file of interactions, or the run's test users' shown items."""
        if name is None:
            splits, _ = self.load(cfg, schema)
            return splits.test_x, splits.extra["test_users"]
        from .data import rows_of

        return rows_of(name, schema, self.options(cfg), name)

    def nets(self, model_cfg, schema: dict) -> Nets:
        from .model import ItemsDecoder, ItemsEncoder, MultinomialLikelihood

        num_items = len(schema["items"])
        return Nets((num_items,),
                    ItemsEncoder(num_items, 2 * model_cfg.latent_dim, model_cfg.hidden, model_cfg.activation,
                                 model_cfg.input_dropout),
                    ItemsDecoder(model_cfg.latent_dim, num_items, model_cfg.activation),
                    MultinomialLikelihood())

    def epoch_metrics(self, vae, splits) -> dict:
        from .ranking import vae_metrics

        ndcg = vae_metrics(vae, splits.val_x, splits.extra["val_heldout"], ks=(100,))["ndcg@100"]
        return {"val_ndcg@100": ndcg, "selection": -ndcg}

    def save_final(self, run_dir, vae, splits, schema: dict, num_samples: int) -> None:
        from .commands import save_final

        save_final(run_dir)

    def recommend_for(self, run, users, top: int = 20):
        """The `top` items for each user given the items each one chose (a list of item-id lists,
        or a dict of them by user id): a DataFrame user, item, rank, score."""
        from .commands import bags_of, recommendations

        RecommendOptions(top=top)  # the CLI's checks
        ids = [str(u) for u in users] if isinstance(users, dict) else [str(i) for i in range(len(users))]
        return recommendations(run, bags_of(run, users), ids, top)

    def recommend(self, run, opts) -> None:
        from .commands import recommend

        recommend(run, opts)

    def evaluate(self, run, opts, x, y, figures: dict) -> dict:
        from .commands import evaluate

        return evaluate(run, opts)

    def report(self, run, splits) -> list[str]:
        from .commands import report

        return report(run, splits)

    def not_applicable(self, what: str) -> VaekitError:
        hint = "; an item-set run recommends: vaekit recommend RUN --items 'a,b' or --data users.csv"
        return VaekitError(f"{what} does not apply to items runs{hint if what == 'sample' else ''}")

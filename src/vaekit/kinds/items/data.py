"""Interactions in, users' item sets out: reading, the positives, the user split with held-out
items (strong generalisation, as Liang et al., 2018, sec. 4.2), and the item vocabulary. Every
step is vectorised over the interactions: a million users take seconds, not a Python loop each."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...config import DataConfig
from ...data import Splits
from ...errors import VaekitError
from ...tabular import read_table
from .sparse import SparseRows

USER_NAMES = ("user_id", "userId", "user", "uid")
ITEM_NAMES = ("item_id", "itemId", "item", "movie_id", "movieId", "iid")


@dataclass
class Bags:
    """Users (ids) and their items, flat: the items of user u are items[start[u]:start[u + 1]]."""

    users: np.ndarray  # (U,) ids
    start: np.ndarray  # (U + 1,) offsets
    items: np.ndarray  # (nnz,) codes: into item_ids, or (without them) into the run's vocabulary
    item_ids: np.ndarray | None = None  # the ids (str) that `items` index, sorted

    def counts(self) -> np.ndarray:
        return np.diff(self.start)

    def owner(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.users)), self.counts())

    def take(self, which: np.ndarray) -> "Bags":
        """The users `which` (indices), in that order."""
        counts = self.counts()[which]
        start = np.concatenate([[0], np.cumsum(counts)])
        index = np.repeat(self.start[which] - start[:-1], counts) + np.arange(start[-1])
        return Bags(self.users[which], start, self.items[index], self.item_ids)

    def rows(self, num_items: int) -> SparseRows:
        import torch

        return SparseRows(torch.from_numpy(self.start.astype(np.int64)), torch.from_numpy(self.items.astype(np.int64)),
                          num_items)


def plain_names(frame: pd.DataFrame) -> pd.DataFrame:
    """RecBole's typed headers (`user_id:token`) read as their plain names."""
    return frame.set_axis([str(c).split(":", 1)[0] for c in frame.columns], axis=1)


def column(frame: pd.DataFrame, given: str | None, guesses: tuple[str, ...], flag: str, source: str) -> str:
    names = list(frame.columns)
    if given is not None:
        if given not in names:
            raise VaekitError(f"{source}: --{flag} {given!r} is not a column (it has {', '.join(names[:8])})")
        return given
    for guess in guesses:
        if guess in names:
            return guess
    raise VaekitError(f"{source}: no {flag.split('-')[0]} column among {', '.join(names[:8])}; name it with --{flag}")


def offsets(owner: np.ndarray, num_users: int) -> np.ndarray:
    """CSR offsets (U + 1,) of items grouped by their owner index, owners in order."""
    return np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=num_users))])


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """np.unique of int64 keys by sorting (numpy's hashing unique took 14 s for 18 million)."""
    keys = np.sort(keys)
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys


def ids_of(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes and ids of a column, the ids as strings in string order; only the distinct values
    become strings (a million users' ids in a few seconds, not their interactions one by one)."""
    code, uniques = pd.factorize(values, use_na_sentinel=False)
    recode, ids = pd.factorize(np.asarray(uniques).astype(str), sort=True)  # "7" and 7 are one id
    return recode[code], np.asarray(ids, dtype=object)


def read_positives(path: str, options, source: str | None = None) -> tuple[Bags, dict]:
    """Each user's positive items, ids as written (ratings below --min-rating are not positives,
    a repeated pair counts once), users and items sorted by id; and the columns used."""
    source = source or path
    frame = plain_names(read_table(path))
    user = column(frame, options.user_col, USER_NAMES, "user-col", source)
    item = column(frame, options.item_col, ITEM_NAMES, "item-col", source)
    keep = None
    rating_name = None
    if options.rating_col is not None:
        rating_name = column(frame, options.rating_col, (), "rating-col", source)
        ratings = pd.to_numeric(frame[rating_name], errors="coerce")
        if ratings.isna().any():
            bad = frame[rating_name][ratings.isna()].iloc[0]
            raise VaekitError(f"{source}: rating column {rating_name!r} holds {str(bad)!r}, not a number")
        if options.min_rating is not None:
            keep = (ratings >= options.min_rating).to_numpy()
    elif options.min_rating is not None:
        raise VaekitError("--min-rating needs --rating-col")
    users, items = frame[user].to_numpy(), frame[item].to_numpy()
    if keep is not None:
        users, items = users[keep], items[keep]
    user_code, user_ids = ids_of(users)
    item_code, item_ids = ids_of(items)
    pair = sorted_unique(user_code.astype(np.int64) * len(item_ids) + item_code)  # by user, then item
    owner, code = np.divmod(pair, len(item_ids))
    start = offsets(owner, len(user_ids))
    present = np.diff(start) > 0
    bags = Bags(user_ids, start, code, item_ids)
    if not present.all():
        bags = bags.take(np.flatnonzero(present))
    return bags, {"user_col": user, "item_col": item, "rating_col": rating_name, "min_rating": options.min_rating}


def split_users(bags: Bags, cfg: DataConfig, options, source: str) -> tuple[Bags, Bags, Bags]:
    """Users with at least `min_items` positives, shuffled with the split seed: the training
    users, the validation share and the test share (each in id order)."""
    enough = np.flatnonzero(bags.counts() >= options.min_items)
    if len(enough) == 0:
        raise VaekitError(f"{source}: no user has {options.min_items} or more positive items "
                          f"({len(bags.users)} users before filtering)")
    order = enough[np.random.default_rng(cfg.split_seed).permutation(len(enough))]
    n_test = int(round(len(order) * cfg.test_fraction))
    n_val = int(round(len(order) * (cfg.val_fraction if cfg.val_fraction is not None else 0.1)))
    if len(order) - n_test - n_val < 1:
        raise VaekitError(f"{source}: {len(order)} users are too few to hold out {n_test} for test and {n_val} "
                          "for validation")
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    if cfg.max_train:
        train = train[: cfg.max_train]
    return bags.take(np.sort(train)), bags.take(np.sort(val)), bags.take(np.sort(test))


def fit_schema(train: Bags, columns: dict) -> dict:
    """The item vocabulary: the training users' items, most popular first, with their counts."""
    counts = np.bincount(train.items, minlength=len(train.item_ids))
    seen = np.flatnonzero(counts)
    order = seen[np.lexsort((seen, -counts[seen]))]  # the ids are sorted: ties go in id order
    return {"kind": "items", "items": train.item_ids[order].tolist(), "counts": counts[order].tolist(),
            "num_users": len(train.users), **columns}


def known(bags: Bags, schema: dict) -> Bags:
    """Items as vocabulary codes, sorted within each user; items the training users never had are
    dropped (a user may be left with none)."""
    codes = pd.Index(schema["items"]).get_indexer(bags.item_ids)[bags.items]
    owner = bags.owner()
    kept, size = codes >= 0, max(1, len(schema["items"]))
    key = np.sort(owner[kept].astype(np.int64) * size + codes[kept])  # by user, then code
    return Bags(bags.users, offsets(owner[kept], len(bags.users)), key % size)


def fold_in(bags: Bags, share: float, seed: int) -> tuple[Bags, Bags]:
    """Each user's items split into the `share` shown to the model and the rest to predict (at
    least one of each); users with fewer than 2 items are left out."""
    bags = bags.take(np.flatnonzero(bags.counts() >= 2))
    counts, owner = bags.counts(), bags.owner()
    rank = np.empty(len(owner), np.int64)
    order = np.lexsort((np.random.default_rng(seed).random(len(owner)), owner))
    rank[order] = np.arange(len(owner)) - np.repeat(bags.start[:-1], counts)
    n_show = np.clip(np.round(share * counts).astype(np.int64), 1, counts - 1)
    shown = rank < n_show[owner]
    part = lambda mask: Bags(bags.users, offsets(owner[mask], len(counts)), bags.items[mask])
    return part(shown), part(~shown)


def load(cfg: DataConfig, options, schema: dict | None = None):
    """Splits: training users' item sets; validation and test users' shown items (x), with
    their items to predict in `extra` (val_heldout, test_heldout) and their ids (val_users, ...)."""
    bags, columns = read_positives(cfg.name, options)
    train, val, test = split_users(bags, cfg, options, cfg.name)
    if schema is None:
        schema = fit_schema(train, columns)
    num_items = len(schema["items"])
    extra, held = {}, {}
    for name, users, seed in (("val", val, 1), ("test", test, 2)):
        shown, hidden = fold_in(known(users, schema), options.fold_in, cfg.split_seed + seed)
        held[name] = shown.rows(num_items)
        extra[f"{name}_heldout"] = hidden.rows(num_items)
        extra[f"{name}_users"] = shown.users.tolist()
    train_rows = known(train, schema).rows(num_items)
    return Splits(train_rows, None, held["val"], None, held["test"], None, extra), schema


def rows_of(path: str, schema: dict, options, source: str) -> tuple[SparseRows, list[str]]:
    """A file of new users' interactions as rows over the run's items, and the user ids; a user
    none of whose items the run knows cannot be folded in."""
    from dataclasses import replace

    columns = replace(options, user_col=schema["user_col"], item_col=schema["item_col"], rating_col=None, min_rating=None)
    frame_names = list(plain_names(read_table(path)).columns)
    rating = options.rating_col or schema.get("rating_col")
    if rating is not None and rating in frame_names:  # a file with ratings keeps only the positives
        columns = replace(columns, rating_col=rating, min_rating=options.min_rating or schema.get("min_rating"))
    bags, _ = read_positives(path, columns, source)
    codes = known(bags, schema)
    empty = np.flatnonzero(codes.counts() == 0)
    if len(empty):
        raise VaekitError(f"{source}: user {codes.users[empty[0]]!r} has only items the run never saw; nothing to fold in")
    return codes.rows(len(schema["items"])), [str(u) for u in codes.users]

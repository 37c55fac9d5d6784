"""The item-set kind: Mult-VAE on MovieLens-100K, the ranking figures, recommendations."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from vaekit.checkpoint import open_run, read_metrics
from vaekit.cli import main
from vaekit.config import DataConfig
from vaekit.kinds.items import Options
from vaekit.kinds.items.data import Bags, fold_in, ids_of, load, read_positives
from vaekit.kinds.items.ranking import ease_weights, ranking_metrics, vae_metrics
from vaekit.kinds.items.sparse import SparseRows

from conftest import one_line_error, shared, vaekit_cli

ML = ["--kind", "items", "--user-col", "user_id", "--item-col", "item_id", "--rating-col", "rating", "--min-rating", "4"]


@pytest.fixture(scope="module")
def movielens():
    return shared("movielens-100k/ml-100k.inter", "MovieLens-100K")


@pytest.fixture(scope="module")
def run(movielens, tmp_path_factory):
    out = tmp_path_factory.mktemp("items") / "run"
    assert main(["train", "--data", str(movielens), *ML, "--epochs", "60", "--quiet", "--out", str(out)]) == 0
    return out


def test_sparse_rows_densify_exactly():
    rows = [np.array([0, 3]), np.array([], dtype=np.int64), np.array([1, 2, 4])]
    sparse = SparseRows.from_lists(rows, 5)
    want = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 1, 0, 1]], dtype=torch.float32)
    assert torch.equal(sparse.index_select(0, torch.tensor([0, 1, 2])), want)
    assert torch.equal(sparse[1:3], want[1:3]) and torch.equal(sparse.index_select(0, torch.tensor([2, 0])), want[[2, 0]])
    assert torch.equal(sparse.subset(torch.tensor([2])).dense(torch.tensor([0])), want[2:3])
    assert sparse.shape == (3, 5) and len(sparse) == 3


def test_encoder_gathers_sparse_bags_as_it_multiplies_dense_ones(monkeypatch):
    from vaekit.kinds.items import model

    torch.manual_seed(0)
    x = (torch.rand(200, 2000) < 0.01).float()  # 1% of the catalogue: the gathering path
    n = x.sum(1)
    enc = model.ItemsEncoder(2000, 8, [16], "tanh", dropout=0.5).eval()
    gathered = enc(x)
    monkeypatch.setattr(model, "SPARSE_RATIO", 0)  # the dense product, always
    assert torch.allclose(enc(x), gathered, atol=1e-6)
    # Training: about half the entries dropped, the others scaled by 2. With unit weights and no
    # hidden layer the output is the sum of the bag's kept, normalised, scaled entries.
    linear = model.ItemsEncoder(2000, 1, [], "tanh", dropout=0.5).train()
    with torch.no_grad():
        linear.weight.fill_(1.0), linear.bias.zero_()
    for ratio in (0, 64):  # the dense product, then gathering (1% < 1/64)
        monkeypatch.setattr(model, "SPARSE_RATIO", ratio)
        kept = linear(x)[:, 0] * n.sqrt() / 2  # entries kept per user
        assert torch.allclose(kept, kept.round(), atol=1e-4) and (kept <= n).all()
        assert 0.45 < kept.sum() / n.sum() < 0.55


def test_ranking_metrics_follow_the_papers_definitions():
    heldout = SparseRows.from_lists([np.array([0, 1]), np.array([2])], 4)
    shown = SparseRows.from_lists([np.array([3]), np.array([0])], 4)
    scores = torch.tensor([[4.0, 1.0, 3.0, 9.0], [1.0, 2.0, 3.0, 0.0]])  # user 0 ranks 0, 2, 1; user 1 ranks 2, 1, 3
    m = ranking_metrics(lambda x: scores[: len(x)], shown, heldout, ks=(1, 2))
    assert m["recall@1"] == pytest.approx((1 / 1 + 1 / 1) / 2)
    assert m["recall@2"] == pytest.approx((1 / 2 + 1 / 1) / 2)
    dcg0 = 1 / np.log2(2)  # user 0: hit at rank 1, miss at rank 2; ideal has 2 hits
    assert m["ndcg@2"] == pytest.approx((dcg0 / (1 + 1 / np.log2(3)) + 1.0) / 2)
    # A catalogue of 4 items ranks all of them for any larger K (a crash with K=100 before).
    wide = ranking_metrics(lambda x: scores[: len(x)], shown, heldout, ks=(3, 20, 100))
    assert wide["recall@100"] == wide["recall@20"] == wide["recall@3"] == 1.0
    assert wide["ndcg@100"] == pytest.approx(wide["ndcg@3"]) and wide["ndcg@3"] < 1.0


def test_ease_closed_form_has_zero_diagonal_and_fits_the_gram():
    rows = SparseRows.from_lists([np.array([0, 1]), np.array([1, 2]), np.array([0, 1, 2])], 3)
    b = ease_weights(rows, 1.0).double()
    assert torch.all(torch.diagonal(b) == 0)
    x = rows.dense(torch.arange(3)).double()
    g = x.T @ x
    # The stationarity condition of min |X - XB|^2 + lam |B|^2 s.t. diag(B) = 0, off the diagonal.
    residual = (g + torch.eye(3, dtype=torch.float64)) @ b - g
    off = ~torch.eye(3, dtype=torch.bool)
    assert residual[off].abs().max() < 1e-4


def test_the_split_holds_out_whole_users(movielens):
    options = Options(user_col="user_id", item_col="item_id", rating_col="rating", min_rating=4)
    splits, schema = load(DataConfig(name=str(movielens), test_fraction=0.1, val_fraction=0.1), options)
    counts = splits.train_x.counts()
    assert counts.min() >= 5 and len(schema["items"]) > 1000
    n_users = len(splits.train_x) + len(splits.val_x) + len(splits.test_x)
    assert 900 < n_users <= 943 and 80 < len(splits.test_x) < 100
    shown, hidden = splits.test_x, splits.extra["test_heldout"]
    both = shown.dense(torch.arange(len(shown))) * hidden.dense(torch.arange(len(hidden)))
    assert both.sum() == 0  # a held-out item is never among the shown ones
    share = shown.counts().sum().item() / (shown.counts().sum() + hidden.counts().sum()).item()
    assert 0.75 < share < 0.85
    assert set(splits.extra["test_users"]).isdisjoint(splits.extra["val_users"])


def test_ids_are_strings_in_string_order(tmp_path):
    data = tmp_path / "mixed.csv"
    data.write_text("user,item\n10,b\n9,a\n10,a\n9,a\n10,c\n")
    bags, _ = read_positives(str(data), Options())
    assert bags.users.tolist() == ["10", "9"]  # as strings: "10" sorts before "9"
    assert bags.item_ids.tolist() == ["a", "b", "c"]
    assert bags.counts().tolist() == [3, 1]  # user 9's repeated item counts once
    assert bags.item_ids[bags.items].tolist() == ["a", "b", "c", "a"]
    codes, ids = ids_of(np.array([7, "7", 3.5, float("nan")], dtype=object))
    assert ids.tolist() == ["3.5", "7", "nan"] and codes.tolist() == [1, 1, 0, 2]


def test_fold_in_keeps_one_of_each():
    bags = Bags(np.array(["a", "b", "c"], dtype=object), np.array([0, 1, 3, 13]), np.array([5, 1, 2, *range(10)]))
    shown, hidden = fold_in(bags, 0.8, 0)
    assert shown.users.tolist() == hidden.users.tolist() == ["b", "c"]
    assert shown.counts().tolist() == [1, 8] and hidden.counts().tolist() == [1, 2]
    for user in range(2):
        both = np.concatenate([shown.items[shown.start[user] : shown.start[user + 1]],
                               hidden.items[hidden.start[user] : hidden.start[user + 1]]])
        assert sorted(both.tolist()) == sorted(bags.take(np.array([user + 1])).items.tolist())


def test_training_picks_the_best_validation_epoch(run):
    records = read_metrics(run)
    ndcg = [r["val_ndcg@100"] for r in records]
    assert max(ndcg) > ndcg[0] + 0.05
    best = int(np.argmax(ndcg)) + 1
    loaded = open_run(run)
    splits = loaded.splits()
    again = vae_metrics(loaded.vae, splits.val_x, splits.extra["val_heldout"], ks=(100,))["ndcg@100"]
    assert again == pytest.approx(max(ndcg), abs=1e-5)  # the model kept is the best epoch's
    from safetensors import safe_open

    with safe_open(run / "model.safetensors", "pt") as f:
        assert int(f.metadata()["epoch"]) == best
    assert (run / "ranking.png").is_file()


def test_evaluate_beats_popularity_and_reports_ease(run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--iw-samples", "0", "--quiet"]) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("recall@20", "recall@50", "ndcg@100"):
        assert 0 < r[key] < 1 and 0 < r["popularity"][key] < 1 and 0 < r["ease"][key] < 1
    assert r["ndcg@100"] > r["popularity"]["ndcg@100"] + 0.05
    assert r["ease"]["lambda"] > 0 and r["num_test_users"] > 80


def test_recommend_folds_in_new_users(run, movielens, tmp_path):
    frame = pd.read_csv(movielens, sep="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    users = frame[frame["user_id"].isin([1, 2])].head(40)
    users.to_csv(tmp_path / "users.csv", index=False)
    out = tmp_path / "recs.csv"
    assert main(["recommend", str(run), "--data", str(tmp_path / "users.csv"), "--top", "10", "--out", str(out)]) == 0
    recs = pd.read_csv(out, dtype=str)
    assert list(recs.columns) == ["user", "item", "rank", "score"]
    assert sorted(recs["user"].unique()) == ["1", "2"] and (recs.groupby("user").size() == 10).all()
    seen = set(zip(users["user_id"].astype(str), users["item_id"].astype(str)))
    assert not any((u, i) in seen for u, i in zip(recs["user"], recs["item"]))  # seen items excluded
    assert recs.groupby("user")["rank"].apply(lambda r: list(r.astype(int)) == list(range(1, 11))).all()
    assert main(["recommend", str(run), "--items", "50,181,nonexistent", "--top", "5", "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 5
    assert main(["recommend", str(run), "--similar", "50", "--top", "5", "--out", str(out)]) == 0
    assert pd.read_csv(out, dtype=str)["similar"].ne("50").all()


def test_user_embeddings_carry_ids(run, movielens, tmp_path):
    out = tmp_path / "emb.csv"
    assert main(["encode", str(run), "--out", str(out)]) == 0
    emb = pd.read_csv(out, dtype={"id": str})
    assert emb.columns[0] == "id" and emb.shape[1] == 1 + 200 and emb["id"].is_unique


def test_bad_interactions_give_one_line(run, movielens, tmp_path):
    one_line_error(vaekit_cli("train", "--data", movielens, "--kind", "items", "--user-col", "uid", "--out", tmp_path / "r"),
                   "--user-col", "uid")
    (tmp_path / "r.csv").write_text("u,i,r\n1,a,5\n1,b,bad\n")
    one_line_error(vaekit_cli("train", "--data", tmp_path / "r.csv", "--kind", "items", "--user-col", "u", "--item-col",
                              "i", "--rating-col", "r", "--out", tmp_path / "r"), "rating column 'r'", "bad")
    (tmp_path / "few.csv").write_text("u,i\n1,a\n1,b\n2,a\n")
    one_line_error(vaekit_cli("train", "--data", tmp_path / "few.csv", "--kind", "items", "--user-col", "u", "--item-col",
                              "i", "--out", tmp_path / "r"), "no user has 5")
    (tmp_path / "unknown.csv").write_text("user_id,item_id,rating\n7,zzz,5\n")
    one_line_error(vaekit_cli("recommend", run, "--data", tmp_path / "unknown.csv", "--out", tmp_path / "x.csv"),
                   "only items the run never saw")
    one_line_error(vaekit_cli("sample", run), "recommend")
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "r" / "model.safetensors").exists()

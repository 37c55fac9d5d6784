"""The trained-model tasks, on a digits VAE trained once for the module."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit import explore
from vaekit.cli import main

from conftest import small_config


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("explore") / "run"
    cfg = small_config(epochs=40, lr=3e-3)
    cfg.model.hidden, cfg.model.latent_dim = [128], 8
    vaekit.train(cfg, out, data=digits, progress=False)
    return out


@pytest.fixture(scope="module")
def vae(run):
    return vaekit.load(run)


def png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_interpolation_endpoints_decode_to_the_reconstructions(vae, digits):
    a, b = digits.test_x[:5], digits.test_x[5:10]
    for spherical in (False, True):
        path = explore.interpolate(vae, a, b, steps=7, spherical=spherical)
        assert path.shape == (5, 7, 1, 8, 8)
        torch.testing.assert_close(path[:, 0], vae.reconstruct(a), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(path[:, -1], vae.reconstruct(b), atol=1e-5, rtol=1e-4)
        # the middle of the path is neither endpoint
        assert (path[:, 3] - path[:, 0]).abs().mean() > 0.01


def test_slerp_keeps_the_norm_between_equal_norm_points():
    a, b = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    z = explore.slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(z.norm(dim=-1), torch.full((1, 5), 3.0))


def test_embeddings_neighbours_share_labels(vae, digits):
    mu, logvar = explore.embed(vae, digits.test_x)
    assert mu.shape == logvar.shape == (len(digits.test_x), 8)
    d = torch.cdist(mu, mu)
    d.fill_diagonal_(float("inf"))
    agree = (digits.test_y[d.argmin(1)] == digits.test_y).float().mean().item()
    assert agree > 0.6  # chance is about 0.1


def test_manifold_varies_along_both_axes(vae, digits):
    from vaekit.metrics import latent_diagnostics

    activity = torch.tensor(latent_diagnostics(vae, digits.test_x)["activity"])
    i, j = activity.argsort(descending=True)[:2].tolist()  # the two most informative axes
    x = explore.manifold(vae, grid=5, span=2.0, dims=(i, j))
    assert x.shape == (25, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    grid = x.view(5, 5, -1)
    assert (grid[:, 0] - grid[:, -1]).abs().mean() > 0.02  # along axis 0 (columns)
    assert (grid[0] - grid[-1]).abs().mean() > 0.02  # along axis 1 (rows)
    with pytest.raises(vaekit.VaekitError, match="two different axes"):
        explore.manifold(vae, dims=(1, 1))


def test_posterior_sampler_matches_codes_better_than_the_prior(vae, digits):
    mu, _ = explore.embed(vae, digits.train_x)
    z = explore.PosteriorSampler(10).fit(mu).sample(2000)
    assert z.shape == (2000, 8)
    # The mixture reproduces the codes' means and spreads; draws from the N(0, I) prior do not.
    prior = torch.randn(2000, 8, generator=torch.Generator().manual_seed(0))
    gap = lambda s: ((s.mean(0) - mu.mean(0)).abs() + (s.std(0) - mu.std(0)).abs()).mean()  # noqa: E731
    assert torch.allclose(z.std(0), mu.std(0), rtol=0.25)
    assert gap(z) < gap(prior) / 3, (gap(z), gap(prior))


def test_cli_pictures(run, tmp_path):
    assert main(["reconstruct", str(run), "--num", "16", "--out", str(tmp_path / "r.png")]) == 0
    assert png(tmp_path / "r.png").shape == ((4 * 9 + 1) * 4, (8 * 9 + 1) * 4)  # 2 pairs of rows of 8
    assert main(["interpolate", str(run), "--steps", "6", "--pairs", "3", "--out", str(tmp_path / "i.npy")]) == 0
    assert np.load(tmp_path / "i.npy").shape == (18, 1, 8, 8)
    assert main(["manifold", str(run), "--grid", "7", "--dims", "2", "5", "--out", str(tmp_path / "m.png")]) == 0
    img = png(tmp_path / "m.png")
    assert img.shape == ((7 * 9 + 1) * 4,) * 2 and img.std() > 20
    assert main(["latents", str(run), "--out", str(tmp_path / "l.png")]) == 0
    assert png(tmp_path / "l.png").shape[0] > 300
    assert main(["sample", str(run), "--sampler", "posterior", "--num", "9", "--out", str(tmp_path / "p.npy")]) == 0
    x = np.load(tmp_path / "p.npy")
    assert x.shape == (9, 1, 8, 8) and 0 <= x.min() and x.max() <= 1


def test_cli_encode_npy_and_csv(run, tmp_path, digits):
    assert main(["encode", str(run), "--out", str(tmp_path / "e.npy"), "--logvar"]) == 0
    mu = np.load(tmp_path / "e.npy")
    assert mu.shape == (len(digits.test_x), 8)
    assert np.load(tmp_path / "e_logvar.npy").shape == mu.shape
    assert main(["encode", str(run), "--out", str(tmp_path / "e.csv")]) == 0
    with open(tmp_path / "e.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(mu) and list(rows[0])[:2] == ["mu_0", "mu_1"] and "label" in rows[0]
    assert float(rows[3]["mu_2"]) == pytest.approx(mu[3, 2], rel=1e-4, abs=1e-5)


def test_cli_refuses_inputs_of_another_shape(run, tmp_path, capsys):
    np.save(tmp_path / "wrong.npy", np.zeros((4, 28, 28), np.uint8))
    assert main(["encode", str(run), "--data", str(tmp_path / "wrong.npy"), "--out", str(tmp_path / "e.npy")]) == 2
    assert "the model takes (1, 8, 8)" in capsys.readouterr().err
    assert not (tmp_path / "e.npy").exists()


def test_anomaly_scores_and_threshold(run, tmp_path, digits):
    out = tmp_path / "scores.csv"
    assert main(["anomaly", str(run), "--out", str(out), "--fpr", "0.1", "--score", "recon_error"]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(digits.test_x) and {"index", "score", "flagged"} <= set(rows[0])
    summary = json.loads(out.with_suffix(".json").read_text())
    flagged = [r for r in rows if r["flagged"] == "1"]
    # threshold set at 10% FPR on validation data: roughly a tenth of (normal) test inputs flagged
    assert 0.03 < len(flagged) / len(rows) < 0.25
    assert all(float(r["score"]) > summary["threshold"] for r in flagged)
    assert png(out.with_suffix(".png")).shape[0] > 200

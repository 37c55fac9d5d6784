"""The conditional VAE: labels in, and samples of a chosen class come out as that class."""

import numpy as np
import pytest
import torch

import vaekit
from vaekit.kinds.image import quality
from vaekit.cli import main

from conftest import small_config


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits):
    cfg = small_config(epochs=30, lr=3e-3)
    cfg.model.hidden, cfg.model.latent_dim, cfg.model.num_classes = [128], 4, 10
    out = tmp_path_factory.mktemp("cvae") / "run"
    vaekit.train(cfg, out, data=digits, progress=False)
    return out


def test_samples_of_a_chosen_class_are_that_class(run, digits):
    vae = vaekit.load(run)
    classifier = quality.train_feature_net(digits.train_x, digits.train_y, epochs=20)
    with torch.no_grad():
        assert (classifier(digits.test_x).argmax(1) == digits.test_y).float().mean() > 0.9
    y = torch.arange(500) % 10
    x = vae.sample(500, generator=torch.Generator().manual_seed(0), y=y)
    with torch.no_grad():
        accuracy = (classifier(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.6  # chance is 0.1


def test_conditional_needs_labels(run, digits):
    vae = vaekit.load(run)
    with pytest.raises(vaekit.VaekitError, match="needs the labels"):
        vae.encode(digits.test_x[:4])
    r = vaekit.metrics.evaluate(vae, digits.test_x, iw_samples=20, y=digits.test_y)
    assert r["nll"] < r["neg_elbo"]


def test_cli_sample_a_label(run, tmp_path):
    assert main(["sample", str(run), "--label", "7", "--num", "6", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (6, 1, 8, 8)
    for cmd in (["reconstruct"], ["interpolate", "--pairs", "2"], ["latents"], ["anomaly"], ["report"]):
        assert main([cmd[0], str(run), *cmd[1:]]) == 0, cmd

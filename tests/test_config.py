from pathlib import Path

import pytest

import vaekit
from conftest import image_vae, small_config
from vaekit.checkpoint import load_config_of
from vaekit.config import FAST_DEFAULTS, Config, load_config

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.json"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads_and_builds(path):
    import torch

    from vaekit.objectives import elbo
    from vaekit.priors import PRIORS

    cfg = load_config(path)
    shape = (1, 8, 8) if cfg.data.name == "digits" else (1, 28, 28)
    vae = image_vae(cfg.model, shape)
    # The preset's choices reach the model: its prior, latent size, and a loss per example.
    assert type(vae.prior) is type(PRIORS[cfg.model.prior](cfg.model, shape)) and vae.latent_dim == cfg.model.latent_dim
    x = torch.rand(3, *shape).round()
    terms = elbo(vae, x, 1.0)
    assert terms.loss.shape == (3,) and torch.isfinite(terms.loss).all()
    assert vae.encode(x).mean.shape == (3, cfg.model.latent_dim)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_trains_a_step(path, tmp_path, digits):
    cfg = load_config(path).override({"data.name": "digits", "train.epochs": 1, "train.precision": "fp32",
                                      "train.num_samples": 4})
    vaekit.train(cfg, tmp_path / "run", data=digits, progress=False)
    record = vaekit.checkpoint.read_metrics(tmp_path / "run")[0]
    assert record["step"] >= 1 and record["val_neg_elbo"] > 0


def test_overrides_and_round_trip():
    cfg = Config().override({"train.lr": 0.01, "model.hidden": [32, 16], "data.name": None})
    assert cfg.train.lr == 0.01 and cfg.model.hidden == [32, 16] and cfg.data.name == "digits"
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(vaekit.VaekitError, match="unknown config key 'train.speed'"):
        cfg.override({"train.speed": 2})
    with pytest.raises(vaekit.VaekitError, match="lr must be float"):
        Config.from_dict({"train": {"lr": "fast"}})


def test_unset_batch_size_and_rate_take_the_networks_fast_defaults():
    mlp, conv = Config().resolved().train, Config.from_dict({"model": {"net": "conv"}}).resolved().train
    assert (mlp.batch_size, mlp.lr) == FAST_DEFAULTS["mlp"] and (conv.batch_size, conv.lr) == FAST_DEFAULTS["conv"]
    half = Config().override({"train.batch_size": 128}).resolved().train  # rate scaled by sqrt(128 / 512)
    assert half.batch_size == 128 and half.lr == pytest.approx(FAST_DEFAULTS["mlp"][1] / 2)
    given = Config().override({"train.lr": 1e-3}).resolved().train
    assert (given.batch_size, given.lr) == (FAST_DEFAULTS["mlp"][0], 1e-3)
    assert Config().train.batch_size is None  # resolving does not touch the original


def test_training_records_the_resolved_batch_size_and_rate(tmp_path, digits):
    cfg = small_config(epochs=1)
    cfg.train.batch_size = None
    vaekit.train(cfg, tmp_path / "run", data=digits, progress=False)
    saved = load_config_of(tmp_path / "run").train
    assert (saved.batch_size, saved.lr) == FAST_DEFAULTS["mlp"]

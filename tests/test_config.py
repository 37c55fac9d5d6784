from pathlib import Path

import pytest

import vaekit
from vaekit.config import Config, load_config

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.json"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads_and_builds(path):
    cfg = load_config(path)
    shape = (1, 8, 8) if cfg.data.name == "digits" else (1, 28, 28)
    vae = vaekit.VAE(cfg.model, shape)
    assert sum(p.numel() for p in vae.parameters()) > 0


def test_overrides_and_round_trip():
    cfg = Config().override({"train.lr": 0.01, "model.hidden": [32, 16], "data.name": None})
    assert cfg.train.lr == 0.01 and cfg.model.hidden == [32, 16] and cfg.data.name == "digits"
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(vaekit.VaekitError, match="unknown config key 'train.speed'"):
        cfg.override({"train.speed": 2})
    with pytest.raises(vaekit.VaekitError, match="lr must be float"):
        Config.from_dict({"train": {"lr": "fast"}})

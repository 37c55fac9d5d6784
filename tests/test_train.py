import math

import pytest
import torch
from safetensors.torch import load_file

import vaekit
from vaekit.checkpoint import read_metrics
from vaekit import load_data
from vaekit.metrics import evaluate_elbo
from vaekit.config import TrainConfig
from vaekit.distributed import Dist
from vaekit.train import COMPILE_MIN_STEPS, train, wants_compile

from conftest import needs_compiler, small_config


def test_training_on_digits_lowers_the_loss(tmp_path, digits):
    cfg = small_config(epochs=8)
    vae = train(cfg, tmp_path / "run", data=digits, progress=False)
    records = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in records] == list(range(1, 9))
    assert records[-1]["train_loss"] < records[0]["train_loss"] - 5
    assert records[-1]["val_neg_elbo"] < records[0]["val_neg_elbo"] - 5
    untrained = vaekit.VAE(cfg.model, digits.shape)
    assert evaluate_elbo(vae, digits.test_x)["neg_elbo"] < evaluate_elbo(untrained, digits.test_x)["neg_elbo"] - 5
    for name in ("config.json", "model.safetensors", "checkpoint.safetensors", "curves.png",
                 "samples.png", "reconstructions.png", "samples/epoch_008.png"):
        assert (tmp_path / "run" / name).is_file(), name


def test_saved_run_reloads_to_identical_outputs(tmp_path, digits):
    vae = train(small_config(epochs=2), tmp_path / "run", data=digits, progress=False)
    loaded = vaekit.load(tmp_path / "run")
    x = digits.test_x[:16]
    assert torch.equal(vae.encode(x).mean, loaded.encode(x).mean)
    assert torch.equal(vae.reconstruct(x), loaded.reconstruct(x))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(vae.sample(8, generator=g1), loaded.sample(8, generator=g2))


@pytest.mark.parametrize("binarize,ema", [("none", 0.0), ("dynamic", 0.0), ("none", 0.9)])
def test_resume_equals_uninterrupted(tmp_path, digits, binarize, ema):
    # A constant rate: the run is extended from 2 to 4 epochs, and a cosine schedule depends on the length.
    full = small_config(epochs=4, kl_warmup_epochs=2, grad_clip=5.0, lr_schedule="constant", warmup_steps=0, ema=ema)
    full.data.options = {"binarize": binarize}
    data = load_data(full.data)
    train(full, tmp_path / "full", data=data, progress=False)

    short = small_config(epochs=2, kl_warmup_epochs=2, grad_clip=5.0, lr_schedule="constant", warmup_steps=0, ema=ema)
    short.data.options = {"binarize": binarize}
    train(short, tmp_path / "part", data=data, progress=False)
    short.train.epochs = 4
    train(short, tmp_path / "part", resume=True, data=data, progress=False)

    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "part" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    losses = lambda run: [r["train_loss"] for r in read_metrics(tmp_path / run)]
    assert losses("full") == losses("part")


def test_the_weight_average_is_the_model_validated_and_kept(tmp_path, digits):
    vae = train(small_config(epochs=3, ema=0.9), tmp_path / "run", data=digits, progress=False)
    checkpoint = load_file(tmp_path / "run" / "checkpoint.safetensors")
    kept = load_file(tmp_path / "run" / "model.safetensors")
    names = [name for name, _ in vae.named_parameters()]
    for i, name in enumerate(names):
        assert torch.equal(kept[name], checkpoint[f"extra.weight_average.{i}"]), name
        assert torch.equal(vae.state_dict()[name], kept[name]), name
    # the trained weights, which resume needs, are not the average
    assert any(not torch.equal(kept[n], checkpoint[f"model.{n}"]) for n in names)
    assert read_metrics(tmp_path / "run")[-1]["val_neg_elbo"] == pytest.approx(
        evaluate_elbo(vaekit.load(tmp_path / "run"), digits.val_x)["neg_elbo"], rel=1e-5)


@needs_compiler
def test_compiled_step_trains_like_eager(tmp_path, digits, capsys):
    torch._dynamo.reset()
    losses = {}
    for flag in (False, True):
        train(small_config(epochs=2, compile=flag), tmp_path / str(flag), data=digits, progress=False)
        losses[flag] = [r["train_loss"] for r in read_metrics(tmp_path / str(flag))]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # it compiled, not fell back
    assert "compile failed" not in capsys.readouterr().out
    # Fused kernels round differently, so the same optimisation up to float error, not bitwise.
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)


def test_a_failing_compile_falls_back_to_eager(tmp_path, digits, capsys, monkeypatch):
    def broken(model, **kwargs):
        def call(*args):
            raise RuntimeError("no compiler here")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    for name, flag in (("eager", False), ("fallback", True)):
        train(small_config(epochs=2, compile=flag), tmp_path / name, data=digits, progress=False)
    assert "torch.compile failed (RuntimeError: no compiler here); training without it" in capsys.readouterr().out
    losses = lambda run: [r["train_loss"] for r in read_metrics(tmp_path / run)]
    assert losses("fallback") == losses("eager")


def test_compile_by_default_only_for_long_cpu_runs():
    cpu, cuda, one, two = torch.device("cpu"), torch.device("cuda"), Dist(), Dist(rank=0, world_size=2)
    auto = TrainConfig()
    assert wants_compile(auto, cpu, one, COMPILE_MIN_STEPS)
    assert not wants_compile(auto, cpu, one, COMPILE_MIN_STEPS - 1)
    assert not wants_compile(auto, cuda, one, 10 * COMPILE_MIN_STEPS)
    assert not wants_compile(auto, cpu, two, 10 * COMPILE_MIN_STEPS)
    assert not wants_compile(TrainConfig(compile=False), cpu, one, 10 * COMPILE_MIN_STEPS)
    assert wants_compile(TrainConfig(compile=True), cuda, two, 1)


def test_same_seed_same_result_other_seed_differs(tmp_path, digits):
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        train(small_config(epochs=1, seed=seed), tmp_path / name, data=digits, progress=False)
        runs[name] = load_file(tmp_path / name / "model.safetensors")
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert not all(torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])


def test_early_stopping_keeps_the_best_epoch(tmp_path, digits):
    cfg = small_config(epochs=60, patience=1, lr=0.05)  # a high rate makes validation stall soon
    train(cfg, tmp_path / "run", data=digits, progress=False)
    records = read_metrics(tmp_path / "run")
    assert len(records) < 60
    best = min(records, key=lambda r: r["val_neg_elbo"])
    loaded = vaekit.load(tmp_path / "run")
    assert best["epoch"] < records[-1]["epoch"]
    # The saved model is the best epoch's: it reproduces that epoch's validation figure.
    assert evaluate_elbo(loaded, digits.val_x)["neg_elbo"] == pytest.approx(best["val_neg_elbo"], rel=1e-6)


def test_an_existing_run_is_not_overwritten(tmp_path, digits):
    train(small_config(epochs=1), tmp_path / "run", data=digits, progress=False)
    with pytest.raises(vaekit.VaekitError, match="already holds a run"):
        train(small_config(epochs=1), tmp_path / "run", data=digits, progress=False)


def test_samples_are_images_in_unit_range(tmp_path, digits):
    vae = train(small_config(epochs=2), tmp_path / "run", data=digits, progress=False)
    x = vae.sample(10, temperature=0.7)
    assert x.shape == (10, 1, 8, 8)
    assert x.min() >= 0 and x.max() <= 1 and x.std() > 0.01


def test_kl_warmup_ends_by_half_a_time_budget():
    from vaekit.schedules import kl_weight

    assert kl_weight(99, 1.0, 1000) == pytest.approx(0.1)  # by steps: a tenth of the way
    assert kl_weight(99, 1.0, 1000, progress=0.25) == pytest.approx(0.5)  # a quarter of the budget spent
    assert kl_weight(99, 0.2, 1000, progress=0.6) == pytest.approx(0.2)  # past half: full weight
    assert kl_weight(999, 1.0, 1000, progress=0.01) == pytest.approx(1.0)  # the steps end it first


def test_rate_warmup_ends_by_a_tenth_of_a_time_budget():
    from vaekit.schedules import learning_rate

    assert learning_rate(9, 1000, 1.0, "cosine", 200) == pytest.approx(0.05)  # by steps
    assert learning_rate(9, 1000, 1.0, "cosine", 200, progress=0.05) == pytest.approx(0.5)  # half of a tenth
    after = learning_rate(9, 1000, 1.0, "cosine", 200, progress=0.2)  # past the tenth: the cosine
    assert after == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))

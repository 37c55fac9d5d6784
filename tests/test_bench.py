"""The speed bench's own logic: a broken bench prints wrong ratios rather than failing, so its
bisection, time-to-target and kernel timings are checked here (on tiny repeat counts)."""

import sys

import torch

from vaekit.vae import VAE
from conftest import ROOT, small_config

sys.path.insert(0, str(ROOT / "bench"))
import train_speed  # noqa: E402


def test_fewest_epochs_bisects_to_the_first_budget_that_reaches_the_target():
    calls = []

    def run(epochs):  # (seconds, test loss): the loss falls 2 nats an epoch from 120
        calls.append(epochs)
        return float(epochs), 120.0 - 2 * epochs

    fewest, tried = train_speed.fewest_epochs(run, 105.0, 10)
    assert fewest == 8  # 104 <= 105 < 106
    assert sorted(tried) == sorted(calls) and len(calls) == len(set(calls)) <= 5
    assert tried[8] == (8.0, 104.0)


def test_fewest_epochs_is_none_when_the_longest_run_misses():
    fewest, tried = train_speed.fewest_epochs(lambda e: (float(e), 200.0), 105.0, 10)
    assert fewest is None and list(tried) == [10]


def test_seconds_to_sums_the_epochs_up_to_the_first_that_reaches():
    assert train_speed.seconds_to(105.0, [1.0, 2.0, 3.0, 4.0], [110.0, 104.0, 100.0, 99.0]) == 3.0
    assert train_speed.seconds_to(90.0, [1.0, 2.0], [110.0, 104.0]) is None


def test_the_bound_takes_each_product_from_the_faster_library():
    times = train_speed.mlp_gemm_seconds_per_step(torch.float32, repeats=2)
    libraries = {k: v for k, v in times.items() if k != "fastest"}
    assert "torch.mm" in libraries and all(v > 0 for v in times.values())
    assert times["fastest"] <= min(libraries.values())


def test_the_floor_times_the_other_kernels_without_touching_the_model():
    cfg = small_config().resolved()
    vae = VAE(cfg.model, (1, 8, 8))
    before = [p.detach().clone() for p in vae.parameters()]
    times = train_speed.mlp_other_kernels_seconds_per_step(vae, repeats=2)
    assert set(times) == {"Adam", "grad norm", "log-density"} and all(0 < t < 1 for t in times.values())
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))

"""Speed choices measured on the machine that runs (calibrate.py)."""

import json
import time

import pytest
import torch

import vaekit
from vaekit import calibrate
from vaekit.cli import main

from conftest import small_config


def fake_steps(costs, calls, state):
    """make_step for measure/choose: a step that sleeps as long as its (precision, oneDNN) costs."""
    def make_step():
        calls.append(1)
        return lambda batch, precision: time.sleep(costs[(precision, state["on"])] / 1000)
    return make_step


def test_explicit_settings_narrow_the_candidates():
    assert list(calibrate.candidates("fp32", True)) in (["fp32-onednn"], [])
    assert "bf16" not in calibrate.candidates("fp32", None)
    assert set(calibrate.candidates("bf16", None)) == {"bf16"}


def test_the_fastest_open_option_is_chosen_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("VAEKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(calibrate, "candidates", lambda p, o: {"fp32-onednn": ("fp32", True), "fp32-mm": ("fp32", False),
                                                               "bf16": ("bf16", True)})
    calls, state = [], {"on": True}
    costs = {("fp32", True): 3.0, ("fp32", False): 1.0, ("bf16", True): 2.0}  # ms per step

    def fake_set(on):
        previous, state["on"] = state["on"], on
        return previous

    monkeypatch.setattr(calibrate, "set_onednn", fake_set)
    choice = calibrate.choose({"model": "m"}, fake_steps(costs, calls, state), [(None, None)] * 7, "auto", None)
    assert (choice.precision, choice.onednn, choice.cached) == ("fp32", False, False)
    assert choice.ms_per_step["fp32-mm"] < choice.ms_per_step["bf16"] < choice.ms_per_step["fp32-onednn"]
    calls.clear()
    again = calibrate.choose({"model": "m"}, fake_steps(costs, calls, state), [(None, None)] * 7, "auto", None)
    assert again.cached and (again.precision, again.onednn) == ("fp32", False) and not calls
    assert "measured" not in again.describe() and "fp32 through torch.mm" in again.describe()


def test_an_unwritable_cache_still_gives_a_choice(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("VAEKIT_CACHE_DIR", str(blocker / "sub"))
    monkeypatch.setattr(calibrate, "candidates", lambda p, o: {"a": ("fp32", True), "b": ("fp32", False)})
    assert calibrate.choose({"m": 1}, lambda: (lambda b, p: None), [(None, None)] * 7, "auto", None) is not None


def test_one_batch_of_slow_steps_is_timed(monkeypatch):
    # Data of one batch on a busy machine: every step counts as slow, and there is no second
    # batch to time (a ZeroDivisionError traceback before).
    monkeypatch.setattr(calibrate, "SLOW_STEP", 0.0)
    calls, state = [], {"on": True}
    monkeypatch.setattr(calibrate, "set_onednn", lambda on: state.update(on=on) or True)
    costs = {("fp32", True): 2.0, ("fp32", False): 1.0}
    times = calibrate.measure(fake_steps(costs, calls, state), [(None, None)],
                              {"a": ("fp32", True), "b": ("fp32", False)})
    assert set(times) == {"a", "b"} and times["b"] < times["a"]


def test_a_small_table_trains_when_its_steps_count_as_slow(monkeypatch, tmp_path):
    import numpy as np
    import pandas as pd

    monkeypatch.setattr(calibrate, "SLOW_STEP", 0.0)
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(["a", "b"], 300)}).to_csv(tmp_path / "t.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--hidden", "16", "--min-steps", "50", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    records = vaekit.checkpoint.read_metrics(tmp_path / "run")
    assert records[-1]["step"] >= 50 and records[-1]["val_neg_elbo"] < records[0]["val_neg_elbo"]


def test_calibration_records_its_choice_and_leaves_the_run_untouched(tmp_path, digits):
    cfg = small_config(precision="auto")
    vaekit.train(cfg, tmp_path / "measured", data=digits, progress=False)
    recorded = json.loads((tmp_path / "measured" / "config.json").read_text())["train"]
    assert recorded["precision"] in ("fp32", "bf16") and recorded["onednn"] in (True, False)
    fixed = small_config(precision=recorded["precision"], onednn=recorded["onednn"], calibrate=False)
    vaekit.train(fixed, tmp_path / "fixed", data=digits, progress=False)
    a, b = vaekit.load(tmp_path / "measured"), vaekit.load(tmp_path / "fixed")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name  # same choice, same seed: the same weights


def test_train_says_what_it_chose_and_doctor_reports(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--hidden", "32", "--epochs", "1", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    # Two or more open choices (fp32 by oneDNN or torch.mm on x86, bf16 where native) are timed and
    # the choice said; with one there is nothing to measure or say.
    assert ("the fastest step here" in err) == (len(calibrate.candidates("auto", None)) >= 2), err
    assert main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch"] == torch.__version__ and info["gemm_gflops"]["fp32 torch.mm"] > 1
    assert info["choice"] in info["mnist_mlp_ms_per_step"] or not info["mnist_mlp_ms_per_step"]

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
    assert "the fastest step here" in err or "bf16" not in str(calibrate.candidates("auto", None))
    assert main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch"] == torch.__version__ and info["gemm_gflops"]["fp32 torch.mm"] > 1
    assert info["choice"] in info["mnist_mlp_ms_per_step"] or not info["mnist_mlp_ms_per_step"]

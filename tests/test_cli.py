import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.checkpoint import load
from vaekit.cli import main

SMALL = ["--data", "digits", "--hidden", "32", "--latent-dim", "2", "--epochs", "2", "--batch-size", "128",
         "--precision", "fp32", "--quiet"]


def vaekit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vaekit", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    return out


def test_train_writes_a_run_directory(run):
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["hidden"] == [32] and cfg["model"]["latent_dim"] == 2 and cfg["train"]["epochs"] == 2
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    with Image.open(run / "curves.png") as im:
        assert im.size[0] > 300


def test_sample_png_and_npy(run, tmp_path):
    assert main(["sample", str(run), "--num", "16", "--out", str(tmp_path / "s.png")]) == 0
    with Image.open(tmp_path / "s.png") as im:
        grid = np.asarray(im)
    # 4x4 grid of 8x8 digits, upscaled 4x, with 1-pixel gaps: (4 * 9 + 1) * 4
    assert grid.shape == (148, 148) and grid.std() > 10
    assert main(["sample", str(run), "--num", "5", "--out", str(tmp_path / "s.npy")]) == 0
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (5, 1, 8, 8) and 0 <= x.min() and x.max() <= 1


def test_evaluate_json(run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_examples"] == 359
    assert result["neg_elbo"] == pytest.approx(result["recon"] + result["kl"])
    assert 0 < result["kl"] < result["recon"] < 60


def test_evaluate_shows_nll_progress_on_stderr_unless_quiet(run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--iw-samples", "20"]) == 0
    shown = capsys.readouterr()
    assert json.loads(shown.out)["iw_samples"] == 20 and "NLL, K=20" in shown.err
    assert main(["evaluate", str(run), "--json", "--iw-samples", "20", "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert json.loads(quiet.out)["nll"] == pytest.approx(json.loads(shown.out)["nll"]) and "NLL" not in quiet.err


def test_resume_extends_to_more_epochs(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 0
    assert [json.loads(l)["epoch"] for l in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 3


def test_init_from_fine_tunes_a_trained_model(tmp_path, run):
    from vaekit.checkpoint import load

    source = load(run)
    out = tmp_path / "tuned"
    # The model and data come from RUN (no --data or --hidden here); a rate this small keeps its weights.
    assert main(["train", "--init-from", str(run), "--objective", "iwae", "--iw-samples", "3", "--lr", "1e-9",
                 "--epochs", "1", "--batch-size", "128", "--precision", "fp32", "--quiet", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["init_from"] == str(run) and cfg["train"]["objective"] == "iwae"
    assert cfg["model"]["hidden"] == [32] and cfg["data"]["name"] == "digits"
    tuned = load(out)
    for (name, a), b in zip(source.state_dict().items(), tuned.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    fresh = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["val_neg_elbo"]
    started = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["val_neg_elbo"]
    assert started < fresh - 1  # it began where the source run ended, not from scratch


def test_init_from_refuses_what_does_not_fit(tmp_path, run):
    one_line_error(vaekit("train", "--init-from", tmp_path / "nope", "--out", tmp_path / "r"), "nope", "not found")
    one_line_error(vaekit("train", "--init-from", run, "--hidden", "16", "--out", tmp_path / "r"),
                   "model.safetensors", "do not match")
    one_line_error(vaekit("train", "--init-from", run, "--resume", run), "--resume", "--init-from")
    assert not (tmp_path / "r").exists()


def test_hidden_none_is_a_linear_model(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--hidden", "none", "--latent-dim", "3", "--epochs", "1", "--quiet",
                 "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model"]["hidden"] == []
    vae = load(out)
    assert [name for name, _ in vae.encoder.named_parameters()] == ["net.0.weight", "net.0.bias"]
    refused = vaekit("train", "--data", "digits", "--hidden", "", "--out", tmp_path / "r")
    assert refused.returncode == 2 and "none for no hidden layer" in refused.stderr


def test_config_file_with_flag_override(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"model": {"latent_dim": 3, "hidden": [16]}, "train": {"epochs": 1}}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "c.json"), "--hidden", "24", "--quiet", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["latent_dim"] == 3 and cfg["model"]["hidden"] == [24]


def one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_bad_inputs_give_one_line_and_exit_2(tmp_path, run):
    one_line_error(vaekit("train", "--data", "mnist", "--data-dir", tmp_path / "missing", "--out", tmp_path / "r"),
                   "missing", "not found")
    assert not (tmp_path / "r").exists()
    np.save(tmp_path / "nan.npy", np.full((10, 4, 4), np.nan, np.float32))
    one_line_error(vaekit("train", "--data", tmp_path / "nan.npy", "--out", tmp_path / "r"), "nan.npy", "NaN")
    one_line_error(vaekit("sample", tmp_path / "nope"), "nope", "run directory not found")
    (tmp_path / "cfg.json").write_text("{not json")
    one_line_error(vaekit("train", "--config", tmp_path / "cfg.json", "--out", tmp_path / "r"), "cfg.json", "JSON")


def test_mismatched_checkpoint_is_refused(tmp_path, run):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model"]["latent_dim"] = 5
    (bad / "config.json").write_text(json.dumps(cfg))
    one_line_error(vaekit("sample", bad, "--out", tmp_path / "s.png"), "model.safetensors", "do not match")
    assert not (tmp_path / "s.png").exists()
    (bad / "model.safetensors").write_bytes(b"\x00" * 10)
    one_line_error(vaekit("evaluate", bad), "model.safetensors", "not a valid safetensors")

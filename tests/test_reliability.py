"""Crash-safe training: signals, kill -9, NaN steps, rollbacks, locks, a full disk, tampering."""

import errno
import importlib
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import vaekit
from vaekit import checkpoint as ckpt
from vaekit import files
from vaekit.checkpoint import read_metrics
from vaekit.cli import main
from vaekit.objectives import OBJECTIVES

from conftest import small_config

train_module = importlib.import_module("vaekit.train")

ARGS = ["--data", "digits", "--hidden", "64", "--latent-dim", "4", "--batch-size", "32", "--epochs", "25",
        "--binarize", "dynamic", "--precision", "fp32", "--threads", "2", "--quiet"]


def default_signals():
    """The child starts as from an interactive shell: a job started with `&` in a script (as CI
    may run the suite) inherits SIGINT ignored, and the test is about vaekit's own handler."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "vaekit", "train", *ARGS, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)


def wait_for_epochs(run, proc, n=1, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "metrics.jsonl").exists() and len((run / "metrics.jsonl").read_text().splitlines()) >= n:
            return
        time.sleep(0.02)
    pytest.fail(f"training did not reach epoch {n}: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}")


def sleep_into_training(run):
    """Sleep up to three epochs (as long as the first one took): on a fast machine a fixed 0.8 s
    outlasts all 25 epochs, and the signal then lands while the finished process exits."""
    time.sleep(random.uniform(0.0, min(0.8, 3 * read_metrics(run)[0]["seconds"])))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    proc = start("--out", run)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return load_file(run / "model.safetensors"), [r["train_loss"] for r in read_metrics(run)]


def assert_same_as(reference, run):
    weights, losses = reference
    resumed = load_file(run / "model.safetensors")
    assert all(torch.equal(weights[k], resumed[k]) for k in weights)
    assert [r["train_loss"] for r in read_metrics(run)] == losses


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_and_resume_is_bit_identical(tmp_path, reference, sig):
    run = tmp_path / "run"
    proc = start("--out", run)
    wait_for_epochs(run, proc, 1)
    sleep_into_training(run)
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    stderr = proc.stderr.read()
    assert code != 0, "training finished before the signal arrived: nothing was tested"
    assert code == 128 + sig, stderr
    assert "Resume with: vaekit train --resume" in stderr and "Traceback" not in stderr
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert_same_as(reference, run)


def test_kill_9_loses_at_most_the_last_steps(tmp_path, reference):
    run = tmp_path / "run"
    proc = start("--out", run, "--checkpoint-every", 7)
    wait_for_epochs(run, proc, 2)
    sleep_into_training(run)
    proc.kill()
    proc.wait(timeout=60)
    vaekit.load(run)  # whatever moment it died, the directory loads
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert_same_as(reference, run)


def test_a_nan_batch_is_skipped_and_counted(tmp_path, digits):
    data = vaekit.data.Splits(**{k: getattr(digits, k) for k in digits.__dataclass_fields__})
    data.train_x = digits.train_x.clone()
    data.train_x[5, 0, 3, 3] = float("nan")
    vae = vaekit.train(small_config(epochs=3), tmp_path / "run", data=data, progress=False)
    records = read_metrics(tmp_path / "run")
    assert [r["skipped_steps"] for r in records] == [1, 2, 3]  # one bad batch per epoch
    assert all(torch.isfinite(p).all() for p in vae.parameters())
    assert records[-1]["train_loss"] < records[0]["train_loss"]


def failing_objective(bad_steps):
    """An ELBO whose loss is NaN at the given (1-based) calls."""
    calls = {"n": 0}

    def objective(vae, x, beta=1.0, y=None):
        terms = vaekit.elbo(vae, x, beta, y)
        calls["n"] += 1
        if calls["n"] in bad_steps:
            return terms._replace(loss=terms.loss * float("nan"))
        return terms

    return lambda tc: objective


def test_repeated_failures_roll_back_with_a_lower_rate(tmp_path, digits, monkeypatch):
    monkeypatch.setitem(OBJECTIVES, "elbo", failing_objective(set(range(30, 45))))
    cfg = small_config(epochs=3, lr_schedule="constant", warmup_steps=0)
    vaekit.train(cfg, tmp_path / "run", data=digits, progress=False)
    records = read_metrics(tmp_path / "run")
    assert records[-1]["rollbacks"] == 1 and records[-1]["lr"] == pytest.approx(cfg.resolved().train.lr / 2)
    assert records[-1]["skipped_steps"] >= train_module.MAX_BAD_STEPS


def test_hopeless_divergence_fails_clearly(tmp_path, digits, monkeypatch):
    monkeypatch.setitem(OBJECTIVES, "elbo", failing_objective(set(range(10**6))))
    with pytest.raises(vaekit.VaekitError, match="training diverged"):
        vaekit.train(small_config(epochs=2), tmp_path / "run", data=digits, progress=False)
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_a_locked_run_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *ARGS[:-5], "--epochs", "1", "--quiet", "--out", str(run)]) == 0
    with ckpt.lock_run(run, create=False):
        capsys.readouterr()
        assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "in use by another vaekit process" in err and "pid" in err
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, digits, monkeypatch):
    run = tmp_path / "run"
    cfg = small_config(epochs=2)
    vaekit.train(cfg, run, data=digits, progress=False)
    before = (run / "checkpoint.safetensors").read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", no_space)
    cfg.train.epochs = 3
    with pytest.raises(vaekit.VaekitError, match="No space left on device.*previous version is intact"):
        vaekit.train(cfg, run, resume=True, data=digits, progress=False)
    monkeypatch.undo()
    assert (run / "checkpoint.safetensors").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    vaekit.train(cfg, run, resume=True, data=digits, progress=False)
    assert len(read_metrics(run)) == 3


def test_tampered_weights_are_refused(tmp_path, digits):
    run = tmp_path / "run"
    vaekit.train(small_config(epochs=1), run, data=digits, progress=False)
    raw = bytearray((run / "model.safetensors").read_bytes())
    raw[-10] ^= 0xFF
    (run / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(vaekit.VaekitError, match="model.safetensors: integrity check failed"):
        vaekit.load(run)


def test_loss_guard_goes_back_to_the_weights_of_its_best_loss():
    w = torch.zeros(3)
    guard = train_module.LossGuard(0.05, [w])
    for step, loss in enumerate([10.0, 9.0, 8.0], 1):
        w.fill_(step)
        assert not guard.tripped(loss, step)  # each a new best: its weights are kept
    w.fill_(99.0)
    step = 4
    while not guard.tripped(12.0, step):
        step += 1
        assert step < 100
    assert guard.best_step == 3 and guard.smooth > 1.05 * guard.best
    guard.restore()
    assert torch.equal(w, torch.full((3,), 3.0)) and guard.smooth == guard.best


def climbing_objective(start):
    """An ELBO whose loss grows 1% a call from the given call on, without ever going non-finite."""
    calls = {"n": 0}

    def objective(vae, x, beta=1.0, y=None):
        terms = vaekit.elbo(vae, x, beta, y)
        calls["n"] += 1
        return terms._replace(loss=terms.loss * (1 + 0.01 * max(0, calls["n"] - start)))

    return lambda tc: objective


def test_a_climbing_loss_goes_back_with_a_lower_rate(tmp_path, digits, monkeypatch, capsys):
    monkeypatch.setitem(OBJECTIVES, "elbo", climbing_objective(100))
    cfg = small_config(epochs=6, batch_size=16, lr_schedule="constant", warmup_steps=0, loss_guard=0.05)
    vae = vaekit.train(cfg, tmp_path / "run", data=digits, progress=False)
    records = read_metrics(tmp_path / "run")
    limit = train_module.MAX_ROLLBACKS
    assert records[-1]["rollbacks"] == limit  # then the guard gives up rather than failing the run
    assert records[-1]["lr"] == pytest.approx(cfg.resolved().train.lr / 2**limit)
    assert all(torch.isfinite(p).all() for p in vae.parameters())
    out = capsys.readouterr()
    assert (out.out + out.err).count("training loss rose") == limit


def test_a_guard_that_never_trips_changes_nothing(tmp_path, digits):
    for name, share in (("plain", 0.0), ("guarded", 10.0)):
        vaekit.train(small_config(epochs=3, batch_size=16, loss_guard=share), tmp_path / name, data=digits,
                     progress=False)
    a, b = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "guarded" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)

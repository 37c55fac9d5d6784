"""torchrun scale-out: two CPU processes (gloo on loopback) match one process at the same
global batch."""

import json
import os
import subprocess
import sys

import pytest

ARGS = ["--data", "digits", "--hidden", "64", "--latent-dim", "4", "--batch-size", "64", "--epochs", "4",
        "--precision", "fp32", "--quiet"]


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "vaekit", "train", *ARGS, "--threads", "2", "--out", tmp_path / "one"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "vaekit", "train", *ARGS, "--threads", "1", "--out", tmp_path / "two"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("wrote ") == one.stdout.count("wrote ") > 0  # one rank says what it wrote
    a, b = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b]  # the same global batches
    assert a[-1]["train_loss"] < a[0]["train_loss"] - 5 and b[-1]["train_loss"] < b[0]["train_loss"] - 5
    # Different posterior noise per rank, same data and optimisation: within 2% at the end.
    assert b[-1]["val_neg_elbo"] == pytest.approx(a[-1]["val_neg_elbo"], rel=0.02)
    assert b[-1]["train_loss"] == pytest.approx(a[-1]["train_loss"], rel=0.02)

    # Resume the two-process run with one process, to more epochs.
    more = subprocess.run([sys.executable, "-m", "vaekit", "train", "--resume", tmp_path / "two", "--epochs", "5",
                           "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert more.returncode == 0, more.stderr
    assert [r["epoch"] for r in metrics(tmp_path / "two")] == [1, 2, 3, 4, 5]

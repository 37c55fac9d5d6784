"""The held-out-class experiment on real MNIST: train without a digit, score it as the anomaly."""

import json

import pytest

from vaekit.cli import main


@pytest.mark.slow
def test_holdout_digit_is_detected(mnist_dir, tmp_path, capsys):
    run = tmp_path / "no-zero"
    code = main(["holdout", "--data", "mnist", "--data-dir", str(mnist_dir), "--classes", "0",
                 "--max-train", "12000", "--epochs", "3", "--hidden", "256", "--latent-dim", "10",
                 "--num-samples", "2", "--quiet", "--out", str(run)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["anomaly_classes"] == [0]
    assert summary["num_inputs"] == 10000 and summary["num_anomalies"] == 980  # MNIST test zeros
    assert summary["auroc"] > 0.8
    assert summary["false_positive_rate"] < 0.15

"""Training throughput of vaekit's configurations on one device (a GPU, or the CPU).

For the MLP VAE (784-400-20) and the conv VAE on MNIST, each precision and batch size, with and
without torch.compile: samples/s of the training loop (median over the epochs after the first,
so compilation and warm-up are excluded) and the test -ELBO reached.

    python bench/device_speed.py --device cuda --data-dir DIR [--epochs 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch

import vaekit
from vaekit.checkpoint import read_metrics
from vaekit import load_data

GRID = [  # (net, precision, batch size, lr, compile)
    ("mlp", "fp32", 128, 2e-3, False), ("mlp", "bf16", 128, 2e-3, False), ("mlp", "fp16", 128, 2e-3, False),
    ("mlp", "bf16", 128, 2e-3, True),
    ("mlp", "fp32", 4096, 8e-3, False), ("mlp", "bf16", 4096, 8e-3, False), ("mlp", "fp16", 4096, 8e-3, False),
    ("mlp", "bf16", 4096, 8e-3, True), ("mlp", "fp32", 16384, 1.2e-2, False), ("mlp", "bf16", 16384, 1.2e-2, False),
    ("mlp", "bf16", 16384, 1.2e-2, True),
    ("conv", "fp32", 128, 2e-3, False), ("conv", "bf16", 128, 2e-3, False), ("conv", "fp16", 128, 2e-3, False),
    ("conv", "fp32", 1024, 4e-3, False), ("conv", "bf16", 1024, 4e-3, False), ("conv", "bf16", 1024, 4e-3, True),
]


def measure(splits, device, net, precision, batch, lr, use_compile, epochs):
    cfg = vaekit.Config()
    cfg.data.name = "mnist"
    cfg.model.net, cfg.model.hidden, cfg.model.latent_dim = net, [400] if net == "mlp" else [256], 20
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = epochs, batch, lr
    cfg.train.precision, cfg.train.device, cfg.train.compile = precision, device, use_compile
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        vae = vaekit.train(cfg, os.path.join(tmp, "run"), data=splits, progress=False)
        wall = time.perf_counter() - start
        rates = [r["samples_per_s"] for r in read_metrics(os.path.join(tmp, "run"))]
    test = vaekit.evaluate_elbo(vae, splits.test_x.to(device))["neg_elbo"]
    return {"net": net, "precision": precision, "batch": batch, "lr": lr, "compile": use_compile,
            "samples_per_s": statistics.median(rates[1:] or rates), "first_epoch_samples_per_s": rates[0],
            "wall_s": wall, "epochs": epochs, "test_neg_elbo": test}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--only", help="comma-separated nets to run (mlp,conv)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    splits = load_data(vaekit.DataConfig(name="mnist", data_dir=args.data_dir))
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"device: {name}; torch {torch.__version__}; {len(splits.train_x)} training images; {args.epochs} epochs each")
    print(f"{'net':5} {'precision':9} {'batch':>6} {'compile':>7} {'samples/s':>12} {'test -ELBO':>11} {'wall s':>7}")
    rows = []
    for net, precision, batch, lr, use_compile in GRID:
        if args.only and net not in args.only.split(","):
            continue
        if precision == "fp16" and not args.device.startswith("cuda"):
            continue
        row = measure(splits, args.device, net, precision, batch, lr, use_compile, args.epochs)
        rows.append(row)
        print(f"{net:5} {precision:9} {batch:6d} {str(use_compile):>7} {row['samples_per_s']:12,.0f} "
              f"{row['test_neg_elbo']:11.2f} {row['wall_s']:7.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

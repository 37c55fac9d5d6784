"""How the default batch size and learning rate were chosen: the MLP VAE (784-400-20; or the conv VAE) on MNIST
for a fixed number of epochs at several (batch, learning rate, schedule) settings, in one run.
Prints seconds per epoch and the test -ELBO after the last epoch; the fp32 row at batch 128 and
Adam 1e-3 is the reference that the defaults must stay within 0.5 nats of.

    python bench/batch_size.py --data-dir ../shared/data [--epochs 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_speed import vaekit_epochs  # noqa: E402

import vaekit  # noqa: E402
from vaekit import load_data  # noqa: E402
from vaekit.train import resolve_precision  # noqa: E402

# (precision, batch, lr, schedule, warm-up steps); "native" is bf16 where the CPU computes it natively.
SETTINGS = [("fp32", 128, 1e-3, "constant", 0), ("native", 128, 1e-3, "constant", 0),
            ("native", 128, 2e-3, "constant", 0), ("native", 128, 2e-3, "cosine", 0),
            ("native", 256, 4e-3, "cosine", 0), ("native", 256, 5e-3, "cosine", 0), ("native", 256, 5e-3, "cosine", 500),
            ("native", 512, 4e-3, "cosine", 0), ("native", 512, 8e-3, "cosine", 500)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--net", choices=["mlp", "conv"], default="mlp")
    parser.add_argument("--settings", help="instead of the built-in list: precision:batch:lr:schedule:warmup,...")
    args = parser.parse_args()
    settings = SETTINGS
    if args.settings:
        settings = [(p, int(b), float(lr), sched, int(w)) for p, b, lr, sched, w in (s.split(":") for s in args.settings.split(","))]
    torch.set_num_threads(args.threads)
    splits = load_data(vaekit.DataConfig(name="mnist", data_dir=args.data_dir, val_fraction=0.0))
    native = resolve_precision("auto", torch.device("cpu"))
    print(f"MNIST {args.net} VAE, {args.epochs} epochs, {args.threads} threads, torch {torch.__version__}")
    print(f"  {'precision':9} {'batch':>5} {'lr':>6} {'schedule':>9} {'warm-up':>7} {'s/epoch':>8} {'test -ELBO':>11}")
    for precision, batch, lr, schedule, warmup in settings:
        precision = native if precision == "native" else precision
        seconds, tests, _ = vaekit_epochs(splits, args.net, args.epochs, precision, batch, lr, schedule, warmup)
        print(f"  {precision:9} {batch:5d} {lr:6g} {schedule:>9} {warmup:7d} {statistics.median(seconds):8.2f} "
              f"{tests[-1]:11.2f}", flush=True)


if __name__ == "__main__":
    main()

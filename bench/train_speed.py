"""Training speed on full MNIST: vaekit's trainer against the textbook loop, in one run.

The model is the PyTorch VAE example's (784-400-20 MLP, ReLU, Bernoulli/BCE summed per example),
batch 128, Adam at lr 1e-3, 2 threads. The textbook loop feeds it through a DataLoader over a
torchvision-style MNIST dataset, one example at a time (PIL image -> ToTensor), as most tutorials
do. vaekit trains the same model on the same 60,000 images with its own loop (fp32, then its
default precision). Both are scored on the 10,000 test images with the same one-sample -ELBO.

Also printed: the hardware bound, i.e. the time the model's matrix products alone take per epoch
(forward and backward GEMMs timed at their real shapes on this machine).

    python bench/train_speed.py --data-dir ../shared/data [--epochs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

import vaekit
from vaekit.checkpoint import read_metrics
from vaekit.data import load_data
from vaekit.train import resolve_precision

BATCH, LR, LAYERS = 128, 1e-3, [(784, 400), (400, 40), (20, 400), (400, 784)]


# ---------------------------------------------------------------- the textbook loop


class TutorialMNIST(Dataset):
    """What torchvision.datasets.MNIST(transform=ToTensor()) does per example."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels  # (N, 28, 28) uint8, (N,)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = Image.fromarray(self.images[i].numpy(), mode="L")
        x = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(28, 28, 1).permute(2, 0, 1)
        return x.contiguous().float().div(255), int(self.labels[i])


class TutorialVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h1 = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def tutorial_loss(recon, mu, logvar, x):
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def run_textbook(images, labels, test_x, epochs):
    torch.manual_seed(0)
    model = TutorialVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loader = DataLoader(TutorialMNIST(images, labels), batch_size=BATCH, shuffle=True)
    seconds = []
    for _ in range(epochs):
        start, train_loss = time.perf_counter(), 0.0
        for x, _ in loader:
            optimizer.zero_grad()
            loss = tutorial_loss(*model(x), x)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
        print(f"  textbook epoch {len(seconds)}: {seconds[-1]:.2f} s, train loss {train_loss / len(images):.2f}",
              flush=True)
    with torch.no_grad():
        torch.manual_seed(0)
        test = sum(tutorial_loss(*model(xb), xb).item() for xb in test_x.split(1000)) / len(test_x)
    return seconds, test


# ---------------------------------------------------------------- vaekit


def run_vaekit(splits, epochs, precision):
    cfg = vaekit.Config()
    cfg.data.name = "mnist"
    cfg.model.hidden, cfg.model.latent_dim = [400], 20
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = epochs, BATCH, LR
    cfg.train.precision = precision
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        vae = vaekit.train(cfg, os.path.join(tmp, "run"), data=splits, progress=False)
        wall = time.perf_counter() - start
        seconds = [r["seconds"] for r in read_metrics(os.path.join(tmp, "run"))]
    test = vaekit.evaluate_elbo(vae, splits.test_x)["neg_elbo"]
    return seconds, wall, test


# ---------------------------------------------------------------- the hardware bound


def gemm_seconds_per_step(dtype, repeats=200):
    """Time of one training step's matrix products: forward, grad-weight and grad-input."""
    shapes = []
    for i, (n_in, n_out) in enumerate(LAYERS):
        shapes.append((BATCH, n_in, n_out))  # forward
        shapes.append((n_in, BATCH, n_out))  # grad of the weight
        if i:  # no gradient flows into the data
            shapes.append((BATCH, n_out, n_in))
    mats = [(torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)) for m, k, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(repeats):
            for a, b in mats:
                torch.mm(a, b)
        times.append((time.perf_counter() - start) / repeats)
    return statistics.median(times), flops


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = vaekit.DataConfig(name="mnist", data_dir=args.data_dir, val_fraction=0.0)
    splits = load_data(cfg)  # all 60,000 training images, as the textbook loop uses
    images = (splits.train_x[:, 0] * 255).round().to(torch.uint8)
    labels = splits.train_y
    n = len(images)
    steps = -(-n // BATCH)

    print(f"MNIST {n} train / {len(splits.test_x)} test, batch {BATCH}, Adam {LR}, {args.threads} threads, "
          f"{args.epochs} epochs, torch {torch.__version__}")
    rows = []
    tb_seconds, tb_test = run_textbook(images, labels, splits.test_x, args.epochs)
    rows.append(("textbook DataLoader loop (fp32)", tb_seconds, sum(tb_seconds), tb_test))
    native = resolve_precision("auto", torch.device("cpu"))
    for precision in dict.fromkeys(["fp32", native]):
        seconds, wall, test = run_vaekit(splits, args.epochs, precision)
        rows.append((f"vaekit ({precision})", seconds, wall, test))

    bounds = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        step_s, flops = gemm_seconds_per_step(dtype)
        bounds[name] = step_s * steps
    print(f"\nFLOPs per example (forward + backward GEMMs): {flops / BATCH / 1e6:.2f} M; "
          f"matrix-work bound per epoch: fp32 {bounds['fp32']:.2f} s "
          f"({flops * steps / bounds['fp32'] / 1e9:.0f} GFLOP/s), bf16 {bounds['bf16']:.2f} s")
    base = statistics.median(tb_seconds)
    print(f"\n{'configuration':34} {'s/epoch (median)':>17} {'wall s/epoch':>13} {'samples/s':>10} "
          f"{'speed-up':>9} {'x bound':>8} {'test -ELBO':>11}")
    for name, seconds, wall, test in rows:
        med = statistics.median(seconds)
        bound = bounds["bf16" if "bf16" in name else "fp32"]
        print(f"{name:34} {med:17.2f} {wall / args.epochs:13.2f} {n / med:10,.0f} {base / med:8.2f}x "
              f"{med / bound:7.2f}x {test:11.2f}")
    print("\nspeed-up: textbook median epoch / this median epoch; x bound: median epoch / matrix-work bound;"
          "\nwall s/epoch includes vaekit's per-epoch validation, checkpoint and sample picture.")


if __name__ == "__main__":
    sys.exit(main())

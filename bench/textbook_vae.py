"""The textbook VAE loop most users write: the PyTorch example's model (784-400-20, sigmoid
outputs, BCE summed per example), Adam 1e-3, batch 128, fed by a DataLoader over a
torchvision-style MNIST dataset one example at a time (PIL image -> ToTensor), with a test pass
after every epoch as the example does. Used by train_speed.py as the baseline; runs on its own:

    python bench/textbook_vae.py --data-dir ../shared/data --epochs 10 [--conv]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset


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


class TutorialConvVAE(nn.Module):
    """The same conv architecture as vaekit's conv net, written the usual way."""

    def __init__(self, hidden=256, latent=20):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(64 * 7 * 7, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 64 * 7 * 7), nn.ReLU(),
                                 nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(32, 1, 4, 2, 1))

    def forward(self, x):
        mu, logvar = self.enc(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.dec(z)), mu, logvar


def loss_function(recon, mu, logvar, x):
    bce = F.binary_cross_entropy(recon.view(-1, 784), x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def run(images, labels, test_images, epochs, conv=False, log=print):
    """Train as the example does; returns (seconds per epoch, test loss per example after each)."""
    torch.manual_seed(1)
    model = TutorialConvVAE() if conv else TutorialVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loader = DataLoader(TutorialMNIST(images, labels), batch_size=128, shuffle=True)
    test_loader = DataLoader(TutorialMNIST(test_images, torch.zeros(len(test_images))), batch_size=128)
    seconds, tests = [], []
    for epoch in range(1, epochs + 1):
        model.train()
        start, train_loss = time.perf_counter(), 0.0
        for data, _ in train_loader:
            optimizer.zero_grad()
            loss = loss_function(*model(data), data)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for data, _ in test_loader:
                test_loss += loss_function(*model(data), data).item()
        tests.append(test_loss / len(test_images))
        log(f"  textbook{' conv' if conv else ''} epoch {epoch}: {seconds[-1]:.2f} s, "
            f"train loss {train_loss / len(images):.2f}, test loss {tests[-1]:.2f}")
    return seconds, tests


def load_mnist(data_dir):
    from vaekit.kinds.image.read import find_idx_dir, load_idx_split

    folder = find_idx_dir("mnist", data_dir)
    (x, y), (tx, _) = load_idx_split(folder, "train"), load_idx_split(folder, "test")
    return torch.from_numpy(x[:, 0].copy()), torch.from_numpy(y.astype(np.int64)), torch.from_numpy(tx[:, 0].copy())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--conv", action="store_true")
    args = parser.parse_args()
    images, labels, test_images = load_mnist(args.data_dir)
    run(images, labels, test_images, args.epochs, args.conv)


if __name__ == "__main__":
    main()

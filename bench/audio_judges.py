"""Judges for the audio benchmark: a digit classifier and a speaker classifier trained on real
recordings of FSDD's training split only (never on generated audio), with their own front end
(40 mel bands, 10 ms hop, 20 ms windows: not the model's 64 bands), a small 1-D CNN each, trained
with random time shifts. They say which digit and which speaker a .wav file sounds like, and give
the Inception-style score exp(E_x KL(p(y|x) || p(y))).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vaekit.kinds.audio.signal import Frontend, Spectra, read_wav, resample, trimmed

RATE, FRAMES = 8000, 112  # 1.12 s at a 10 ms hop
NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)")


class JudgeFrontend:
    def __init__(self):
        self.spectra = Spectra(Frontend(RATE, 256, 80, 40, FRAMES))

    def features(self, wave: np.ndarray, rate: int) -> torch.Tensor:
        x = trimmed(resample(wave, rate, RATE), 80)
        return self.spectra.log_mel(x)[0]  # (40, FRAMES)

    def files(self, paths: list[Path]) -> torch.Tensor:
        return torch.stack([self.features(*read_wav(p)) for p in paths])


class JudgeNet(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(40, 96, 5, padding=2), nn.BatchNorm1d(96), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(96, 128, 5, padding=2), nn.BatchNorm1d(128), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(128, 128, 3, padding=1), nn.BatchNorm1d(128), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(256, classes))

    def forward(self, x):  # (B, 40, T) log-mel
        h = self.net(x)
        return self.head(torch.cat([h.mean(2), h.amax(2)], 1))


class Judge:
    """A classifier of one label (digit or speaker) from log-mel features."""

    def __init__(self, classes: list[str], centre: torch.Tensor, spread: torch.Tensor):
        self.classes, self.centre, self.spread = classes, centre, spread
        self.net = JudgeNet(len(classes))

    def fit(self, x: torch.Tensor, labels: list[str], epochs: int = 30, seed: int = 0) -> "Judge":
        torch.manual_seed(seed)
        y = torch.tensor([self.classes.index(v) for v in labels])
        xs = (x - self.centre) / self.spread
        opt = torch.optim.AdamW(self.net.parameters(), 2e-3, weight_decay=1e-3)
        steps = epochs * math.ceil(len(xs) / 64)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
        self.net.train()
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            for idx in torch.randperm(len(xs), generator=g).split(64):
                shift = int(torch.randint(-8, 9, (1,), generator=g))
                xb = torch.roll(xs[idx], shift, 2) + 0.1 * torch.randn(xs[idx].shape, generator=g)
                loss = nn.functional.cross_entropy(self.net(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        self.net.eval()
        return self

    @torch.no_grad()
    def probs(self, x: torch.Tensor) -> np.ndarray:
        xs = (x - self.centre) / self.spread
        return torch.cat([self.net(b).softmax(1) for b in xs.split(256)]).numpy()

    def predict(self, x: torch.Tensor) -> list[str]:
        return [self.classes[i] for i in self.probs(x).argmax(1)]


def inception_score(p: np.ndarray) -> float:
    """exp(E_x KL(p(y|x) || p(y))) of class probabilities (N, K)."""
    marginal = p.mean(0, keepdims=True)
    kl = (p * (np.log(p + 1e-12) - np.log(marginal + 1e-12))).sum(1)
    return float(np.exp(kl.mean()))


def labels_of(paths: list[Path]) -> list[dict]:
    out = []
    for p in paths:
        m = NAME.match(p.stem)
        out.append(m.groupdict() if m else {})
    return out


def train_judges(fsdd: Path, epochs: int = 30) -> tuple[JudgeFrontend, Judge, Judge, dict]:
    """The two judges and their figures on the real test split (repetitions 0-4)."""
    fe = JudgeFrontend()
    paths = sorted(fsdd.glob("*.wav"))
    labels = labels_of(paths)
    x = fe.files(paths)
    test = np.array([int(l["index"]) < 5 for l in labels])
    train_x = x[torch.from_numpy(~test)]
    centre, spread = train_x.mean((0, 2))[:, None], train_x.std((0, 2))[:, None].clamp(min=0.1)
    digits = sorted({l["digit"] for l in labels})
    speakers = sorted({l["speaker"] for l in labels})
    tr = [l for l, t in zip(labels, test) if not t]
    te = [l for l, t in zip(labels, test) if t]
    digit = Judge(digits, centre, spread).fit(train_x, [l["digit"] for l in tr], epochs)
    speaker = Judge(speakers, centre, spread).fit(train_x, [l["speaker"] for l in tr], epochs, seed=1)
    test_x = x[torch.from_numpy(test)]
    pd_ = digit.probs(test_x)
    figures = {"digit_accuracy": float(np.mean([digit.classes[i] == l["digit"] for i, l in zip(pd_.argmax(1), te)])),
               "speaker_accuracy": float(np.mean([s == l["speaker"] for s, l in zip(speaker.predict(test_x), te)])),
               "inception_score": inception_score(pd_)}
    return fe, digit, speaker, figures

"""Sound in and out: reading and writing wav files, resampling, the log-mel spectrogram the model
sees, and Griffin-Lim, the vocoder that needs no trained weights (mel -> linear magnitude by the
filterbank's pseudo-inverse, then phase by alternating projections; Griffin & Lim, 1984)."""

from __future__ import annotations

import io
import math
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ...errors import VaekitError
from ...files import atomic_write

LOG_FLOOR = 1e-4  # mel power floor: log(1e-4) is silence, the padding's value
PEAK = 0.9  # every clip is scaled to this peak before its features (recording levels differ)


@dataclass(frozen=True)
class Frontend:
    """How a waveform becomes the (num_mels, frames) log-mel array the model sees."""

    sample_rate: int
    n_fft: int
    hop: int
    num_mels: int
    frames: int

    @classmethod
    def for_rate(cls, sample_rate: int, frames: int = 128, num_mels: int = 64) -> "Frontend":
        """32 ms windows (256 points at 8 kHz), a quarter-window hop."""
        n_fft = 2 ** max(6, round(math.log2(0.032 * sample_rate)))
        return cls(sample_rate, n_fft, n_fft // 4, num_mels, frames)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def seconds(self) -> float:
        return self.frames * self.hop / self.sample_rate


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(mono float32 samples in [-1, 1], sample rate) of a PCM wav file; a file that is not one,
    or is cut short, is refused in one line."""
    try:
        with wave.open(str(path), "rb") as w:
            n, channels, width, rate = w.getnframes(), w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as e:
        raise VaekitError(f"{path}: not a readable PCM wav file ({e})") from None
    except OSError as e:
        raise VaekitError(f"{path}: cannot read ({e.strerror or e})") from None
    if width not in (1, 2, 3, 4):
        raise VaekitError(f"{path}: {8 * width}-bit samples are not supported")
    if len(raw) < n * channels * width:
        raise VaekitError(f"{path}: truncated wav ({len(raw)} of {n * channels * width} data bytes)")
    if n == 0:
        raise VaekitError(f"{path}: the wav file holds no samples")
    if width == 3:  # 24-bit: widen to int32
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        x = (b[:, 0].astype(np.int32) << 8 | b[:, 1].astype(np.int32) << 16 | b[:, 2].astype(np.int32) << 24)
        x = x.astype(np.float32) / 2**31
    elif width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    else:
        dtype = np.int16 if width == 2 else np.int32
        x = np.frombuffer(raw, dtype).astype(np.float32) / float(2 ** (8 * width - 1))
    return x.reshape(-1, channels).mean(1), rate


def wav_bytes(x: np.ndarray, sample_rate: int) -> bytes:
    """16-bit mono PCM wav of samples in [-1, 1]."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def write_wav(path: Path, x: np.ndarray, sample_rate: int) -> None:
    atomic_write(path, wav_bytes(x, sample_rate))


def resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(rate, to)
    return resample_poly(x, to // g, rate // g).astype(np.float32)


def trimmed(x: np.ndarray, hop: int, drop: float = 0.02) -> np.ndarray:
    """x without the leading and trailing hops quieter than `drop` of its peak (-34 dB)."""
    blocks = np.abs(x[: len(x) // hop * hop]).reshape(-1, hop).max(1) if len(x) >= hop else np.abs(x)[None]
    loud = np.flatnonzero(blocks >= drop * blocks.max())
    return x[loud[0] * hop: (loud[-1] + 1) * hop] if len(loud) else x


def mel_filterbank(fe: Frontend) -> torch.Tensor:
    """Triangular filters evenly spaced on the mel scale up to Nyquist: (num_mels, n_fft // 2 + 1)."""
    hz_to_mel = lambda f: 2595 * np.log10(1 + f / 700)
    mel_to_hz = lambda m: 700 * (10 ** (m / 2595) - 1)
    edges = mel_to_hz(np.linspace(0, hz_to_mel(fe.sample_rate / 2), fe.num_mels + 2))
    bins = np.fft.rfftfreq(fe.n_fft, 1 / fe.sample_rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
    return torch.tensor(fb, dtype=torch.float32)


class Spectra:
    """The filterbank, its pseudo-inverse and the window of one Frontend, built once."""

    def __init__(self, fe: Frontend):
        self.fe = fe
        self.fb = mel_filterbank(fe)
        self.fb_pinv = torch.linalg.pinv(self.fb)
        self.window = torch.hann_window(fe.n_fft)

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, self.fe.n_fft, self.fe.hop, window=self.window, return_complex=True)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        return torch.istft(spec, self.fe.n_fft, self.fe.hop, window=self.window, length=length)

    def log_mel(self, x: np.ndarray) -> tuple[torch.Tensor, int]:
        """(num_mels, frames) log-mel power of one clip scaled to PEAK, padded with silence or cut to
        the Frontend's frames, and the frames the clip filled."""
        x = torch.from_numpy(np.ascontiguousarray(x * (PEAK / max(float(np.abs(x).max()), 1e-8))))
        m = torch.log(self.fb @ self.stft(x).abs() + LOG_FLOOR)  # (M, T')
        out = torch.full((self.fe.num_mels, self.fe.frames), math.log(LOG_FLOOR))
        n = min(self.fe.frames, m.shape[1])
        out[:, :n] = m[:, :n]
        return out, n

    def waveforms(self, log_mel: torch.Tensor, iters: int = 32, seed: int = 0) -> list[np.ndarray]:
        """Griffin-Lim on a batch of log-mel arrays (B, M, T): waveforms at the Frontend's rate, the
        trailing silence cut off, peaks at 0.5 of full scale."""
        mag = (self.fb_pinv @ log_mel.float().exp()).clamp(min=0)  # (B, F, T) linear magnitude
        length = self.fe.hop * (mag.shape[-1] - 1)
        g = torch.Generator().manual_seed(seed)
        angle = torch.polar(torch.ones_like(mag), 2 * math.pi * torch.rand(mag.shape, generator=g))
        previous = torch.zeros_like(angle)
        for _ in range(iters):  # fast Griffin-Lim (Perraudin et al., 2013): momentum 0.99
            rebuilt = self.stft(self.istft(mag * angle, length))
            angle = rebuilt - previous * (0.99 / 1.99)
            angle = angle / (angle.abs() + 1e-8)
            previous = rebuilt
        x = self.istft(mag * angle, length).numpy()
        loud = (log_mel.max(1).values > math.log(LOG_FLOOR) + 2).numpy()  # (B, T) frames above silence
        out = []
        for wave_, frames in zip(x, loud):
            last = (np.flatnonzero(frames)[-1] + 2) * self.fe.hop if frames.any() else self.fe.hop
            w = wave_[:last]
            out.append((w * (0.5 / max(float(np.abs(w).max()), 1e-8))).astype(np.float32))
        return out

"""The audio kind's commands: utterances drawn for chosen labels, voice conversion, reconstructions
and morphs as .wav files (named by the training pattern) with spectrogram pictures, a spectral
distance for evaluate, and the report's players."""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...errors import VaekitError
from ...files import atomic_write, write_json
from ...plotting import image_grid, png_bytes
from .data import (COUNTER, Clips, combined, features, label_codes, num_classes, read_inputs, scale,
                   unscale)
from .signal import LOG_FLOOR, Frontend, Spectra, read_wav, resample, wav_bytes, write_wav

PICTURE_MAX = 64  # utterances in a spectrogram picture


@dataclass
class Sounds:
    """Utterances made by a command: file names, waveforms at `rate`, their log-mel (N, M, T)."""

    names: list[str]
    waves: list[np.ndarray]
    rate: int
    log_mel: torch.Tensor

    def __len__(self) -> int:
        return len(self.names)


def spectra_of(schema: dict) -> Spectra:
    return Spectra(Frontend(**schema["frontend"]))


# ---- labels


def class_codes(y: torch.Tensor | np.ndarray, space: dict) -> np.ndarray:
    """Combined class indices (N,) -> (N, C) condition indices."""
    y = np.asarray(y, dtype=np.int64).copy()
    sizes = [len(v) for v in space.values()]
    codes = np.zeros((len(y), len(sizes)), dtype=np.int64)
    for j in reversed(range(len(sizes))):
        codes[:, j] = y % sizes[j]
        y //= sizes[j]
    return codes


def class_names(schema: dict) -> list[str]:
    space = schema["conditions"]
    if not space:
        return []
    codes = class_codes(np.arange(num_classes(space)), space)
    return ["_".join(v[i] for v, i in zip(space.values(), row)) for row in codes]


def parse_conditions(pairs: list[str], space: dict) -> dict[str, int]:
    """['speaker=theo', ...] -> {condition: value index}, refusing unknown labels and values."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise VaekitError(f"--condition {pair!r}: expected LABEL=VALUE, e.g. digit=7")
        if key not in space:
            raise VaekitError(f"--condition {key}: the run is conditioned on {', '.join(space) or 'no label'}")
        if value not in space[key]:
            raise VaekitError(f"--condition {key}={value}: unknown value (the run knows {', '.join(space[key])})")
        out[key] = space[key].index(value)
    return out


def drawn_classes(schema: dict, given: dict[str, int], num: int, g: torch.Generator) -> torch.Tensor:
    """`num` class indices with the given labels fixed and the others drawn from the training
    frequencies of the classes that agree with them."""
    space = schema["conditions"]
    codes = class_codes(np.arange(num_classes(space)), space)
    names = list(space)
    agree = np.all([codes[:, names.index(k)] == v for k, v in given.items()], axis=0) if given else \
        np.ones(len(codes), bool)
    weights = np.asarray(schema["class_counts"], dtype=np.float64) * agree
    if weights.sum() == 0:  # a combination never heard together: the labels still say what to make
        weights = agree.astype(np.float64)
    return torch.multinomial(torch.tensor(weights), num, replacement=True, generator=g)


def filled(pattern: str, fields: dict[str, str]) -> str:
    """'{digit}_{speaker}_{index}' with the fields' values, 'any' for a field not given."""
    return re.sub(r"\{(\w+)\}", lambda m: fields.get(m.group(1), "any"), pattern)


def file_name(schema: dict, fields: dict[str, str], counter: int) -> str:
    """A name in the training pattern ('{digit}_{speaker}_{index}' -> 7_theo_0): the counter in
    the index field, 'any' for a field the labels do not give."""
    pattern = schema.get("pattern")
    if pattern and fields:
        values = fields | {COUNTER: str(counter)} if COUNTER in pattern else fields
        name = filled(pattern, values)
        return name if COUNTER in pattern else f"{name}_{counter}"
    return "_".join([*fields.values(), str(counter)]) if fields else f"sample_{counter}"


# ---- decoding to sound


@torch.no_grad()
def decode_sounds(run, z: torch.Tensor, c: torch.Tensor | None, iters: int, seed: int = 0):
    """Decoder means at z under one-hot (or mixed) labels c, and their waveforms."""
    vae = run.vae
    log_mel = unscale(vae.likelihood(vae.decoder(z, c).float()).mean, run.schema)
    return spectra_of(run.schema).waveforms(log_mel, iters=iters, seed=seed), log_mel


@torch.no_grad()
def posterior_mean(run, x: torch.Tensor) -> torch.Tensor:
    """The mean of q(z|x): the encoder takes no labels, so any input has one."""
    return torch.cat([run.vae.encoder(b).float().chunk(2, -1)[0] for b in x.split(512)])  # (B, D)


def one_hot(run, y: torch.Tensor | None) -> torch.Tensor | None:
    return run.vae.condition(y) if run.vae.conditional else None


def fit_sampler(vae, x: torch.Tensor, y: torch.Tensor | None, num_classes: int, components: int = 30,
                seed: int = 0) -> dict:
    """A Gaussian mixture (full covariances) over the training utterances' posterior means, with
    each class's own weights over the components (the responsibilities of its utterances): codes
    drawn for a class land where that class's utterances are. Prior draws fall between them as
    often as not (FSDD: the digit heard in 85% of prior samples, 98% of these; docs/audio.md)."""
    from sklearn.mixture import GaussianMixture

    with torch.no_grad():
        mu = torch.cat([vae.encoder(b).float().chunk(2, -1)[0] for b in x.split(512)]).cpu().numpy()
    d = mu.shape[1]
    if len(mu) < 2 * d + 2:  # too few utterances for a covariance: the prior
        return {"weights": [1.0], "means": [[0.0] * d], "cholesky": [np.eye(d).tolist()]}
    k = max(1, min(components, len(mu) // (2 * d + 2)))  # enough points per covariance
    gm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed).fit(mu)
    out = {"weights": gm.weights_.tolist(), "means": gm.means_.tolist(),
           "cholesky": np.linalg.cholesky(gm.covariances_).tolist()}
    if y is not None and num_classes:
        r = gm.predict_proba(mu)  # (N, k)
        labels = y.cpu().numpy()
        w = np.stack([r[labels == c].sum(0) for c in range(num_classes)]) + 1e-3 * gm.weights_  # a class never
        out["class_weights"] = np.round(w / w.sum(1, keepdims=True), 6).tolist()  # seen gets the overall weights
    return out


def drawn_codes(sampler: dict, num: int, temperature: float, g: torch.Generator,
                y: torch.Tensor | None = None) -> torch.Tensor:
    """`num` codes from the fitted mixture (with class y's weights where the sampler has them),
    each component's spread scaled by `temperature`."""
    if y is not None and "class_weights" in sampler:
        which = torch.multinomial(torch.tensor(sampler["class_weights"])[y.cpu()], 1, generator=g)[:, 0]
    else:
        which = torch.multinomial(torch.tensor(sampler["weights"]), num, replacement=True, generator=g)
    means, chol = torch.tensor(sampler["means"]), torch.tensor(sampler["cholesky"])
    eps = torch.randn(num, means.shape[1], generator=g)
    return (means[which] + temperature * (chol[which] @ eps[:, :, None])[:, :, 0]).float()  # (N, D)


def read_sampler(run) -> dict:
    from ...files import read_json

    path = Path(run.run_dir) / "sampler.json"
    if not path.exists():
        raise VaekitError(f"{path}: not found (a run made before the fitted sampler; use --sampler prior)")
    return read_json(path)


def sample(run, opts) -> Sounds:
    space = run.schema["conditions"]
    given = parse_conditions(opts.condition, space)
    g = torch.Generator().manual_seed(opts.seed)
    y = drawn_classes(run.schema, given, opts.num, g) if space else None
    if opts.sampler == "posterior":
        z = drawn_codes(read_sampler(run), opts.num, opts.temperature, g, y)
    else:
        z = run.vae.prior.sample(opts.num, opts.temperature, g, run.vae.encode)
    waves, log_mel = decode_sounds(run, z, one_hot(run, y), opts.iters, opts.seed)
    codes = class_codes(y, space) if y is not None else np.zeros((opts.num, 0), int)
    names = [file_name(run.schema, {k: space[k][i] for k, i in zip(space, row)}, n) for n, row in enumerate(codes)]
    return Sounds(names, waves, run.schema["frontend"]["sample_rate"], log_mel)


def convert(run, data, condition: list[str] | str, iters: int = 32, seed: int = 0) -> Sounds:
    """The utterances `data` names (a file, folder or manifest) or holds (waveforms at the run's
    rate), each decoded from its own code with the labels `condition` sets (e.g. 'speaker=theo'):
    the Python API's and the server's convert."""
    condition = [condition] if isinstance(condition, str) else list(condition)
    given = parse_conditions(condition, run.schema["conditions"])
    if isinstance(data, (str, Path)):
        x, codes, clips = read_inputs(str(data), run.schema)
    else:
        x, codes, clips = wave_inputs(run, data)
    return converted(run, x, codes, clips, given, iters, seed)


def converted(run, x, codes, clips: Clips, given: dict[str, int], iters: int, seed: int) -> Sounds:
    space = run.schema["conditions"]
    names_ = list(space)
    codes = codes.copy()
    for k, v in given.items():
        codes[:, names_.index(k)] = v
    y = torch.from_numpy(combined(codes, space))
    waves, log_mel = decode_sounds(run, posterior_mean(run, x), one_hot(run, y), iters, seed)
    names = []
    for i, path in enumerate(clips.paths):
        fields = {f: v[i] for f, v in clips.labels.items() if v[i] is not None}
        if fields and run.schema.get("pattern"):
            fields |= {k: space[k][v] for k, v in given.items()}
            names.append(filled(run.schema["pattern"], fields))
        else:
            names.append(f"{path.stem}_" + "_".join(space[k][v] for k, v in given.items()))
    return Sounds(unique(names), waves, run.schema["frontend"]["sample_rate"], log_mel)


def unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, -1) + 1
        out.append(n if not seen[n] else f"{n}-{seen[n]}")
    return out


def convert_command(run, opts) -> None:
    if opts.data is None:
        raise VaekitError("convert needs --data: a .wav file, a folder of them or a manifest")
    sounds = convert(run, opts.data, opts.condition, opts.iters, opts.seed)
    write(run, "convert", sounds, opts)


def reconstruct(run, opts) -> Sounds:
    x, y, ids = run.inputs_with_ids(opts.data, opts.data_dir)
    x, y = x[: opts.num], None if y is None else y[: opts.num]
    ids = (ids or [f"input_{i}" for i in range(len(x))])[: opts.num]
    waves, log_mel = decode_sounds(run, posterior_mean(run, x), one_hot(run, y), opts.iters, opts.seed)
    inputs = unscale(x, run.schema)
    return Sounds([f"{i}_reconstruction" for i in ids], waves, run.schema["frontend"]["sample_rate"],
                  torch.stack([inputs, log_mel], 1).flatten(0, 1))


def interpolate(run, opts) -> Sounds:
    """Morphs between pairs of inputs: codes and labels both move in a straight line (the decoder
    takes the labels' one-hots, so a mixture of two speakers is a point between them)."""
    from ...explore import pair_indices, slerp

    x, y, ids = run.inputs_with_ids(opts.data, opts.data_dir)
    if len(x) < 2:
        raise VaekitError("interpolate needs at least 2 inputs")
    idx = pair_indices(len(x), min(opts.pairs, len(x) // 2), opts.seed)
    a, b = idx[0::2], idx[1::2]
    mu = posterior_mean(run, x)
    t = torch.linspace(0, 1, opts.steps)
    if opts.spherical:
        z = slerp(mu[a], mu[b], t)
    else:
        z = mu[a][:, None] + (mu[b] - mu[a])[:, None] * t[None, :, None]
    z = z.flatten(0, 1)  # (P * S, D)
    c = None
    if run.vae.conditional:
        ca, cb = one_hot(run, y[a]), one_hot(run, y[b])  # (P, K)
        c = (ca[:, None] * (1 - t)[None, :, None] + cb[:, None] * t[None, :, None]).flatten(0, 1)
    waves, log_mel = decode_sounds(run, z, c, opts.iters, opts.seed)
    rate = run.schema["frontend"]["sample_rate"]
    gap = np.zeros(int(0.15 * rate), np.float32)
    morphs, names = [], []
    for p in range(len(a)):
        steps = waves[p * opts.steps: (p + 1) * opts.steps]
        morphs.append(np.concatenate([s for w in steps for s in (w, gap)]))
        names.append(f"morph_{p}" + (f"_{ids[a[p]]}_to_{ids[b[p]]}" if ids else ""))
    return Sounds(names, morphs, rate, log_mel)


def write(run, command: str, sounds: Sounds, opts) -> None:
    """The waveforms as DIR/NAME.wav and their spectrograms as DIR/spectrograms.png."""
    default = {"sample": "samples", "reconstruct": "reconstructions", "interpolate": "interpolations",
               "convert": "conversions"}[command]
    out = run.out_path(opts.out, default)
    if out.exists() and not out.is_dir():
        raise VaekitError(f"{out}: --out names a file; {command} writes a folder of .wav files")
    out.mkdir(exist_ok=True)
    for name, wave in zip(sounds.names, sounds.waves):
        write_wav(out / f"{name}.wav", wave, sounds.rate)
    picture = out / "spectrograms.png"
    ncol = {"reconstruct": 2, "interpolate": getattr(opts, "steps", 8)}.get(command, 8)
    atomic_write(picture, png_bytes(spectrogram_grid(sounds.log_mel[: PICTURE_MAX * (2 if ncol == 2 else 1)], ncol)))
    print(f"wrote {len(sounds.waves)} .wav files and {picture.name} to {out}")


def spectrogram_grid(log_mel: torch.Tensor, ncol: int = 8) -> np.ndarray:
    """Log-mel arrays (N, M, T) as one picture, low frequencies at the bottom."""
    lo = math.log(LOG_FLOOR)
    img = ((log_mel - lo) / max(float(log_mel.max()) - lo, 1e-6)).clamp(0, 1).flip(1)[:, None]
    return image_grid(img, nrow=ncol, scale=2)


# ---- inputs


def inputs(cfg, schema: dict, name: str | None):
    """(scaled log-mel, class index or None, file stems) of `name` or of the run's test split."""
    if name is None:
        from .data import load_audio
        from . import AudioKind

        splits, _ = load_audio(cfg, AudioKind().options(cfg), schema)
        return splits.test_x, splits.test_y, splits.extra["test_ids"]
    x, codes, clips = read_inputs(name, schema)
    y = torch.from_numpy(combined(codes, schema["conditions"])) if schema["conditions"] else None
    return x, y, clips.ids


def wave_inputs(run, data) -> tuple[torch.Tensor, np.ndarray, Clips]:
    """(scaled log-mel, predicted condition indices, Clips named input_0, ...) of waveforms."""
    from .data import filled_codes

    waves = [np.asarray(w, dtype=np.float32).reshape(-1) for w in data]
    if not waves or any(len(w) == 0 or not np.isfinite(w).all() for w in waves):
        raise VaekitError("audio inputs are non-empty lists or arrays of finite samples")
    clips = Clips([Path(f"input_{i}") for i in range(len(waves))], waves, {})
    x = scale(features(clips, spectra_of(run.schema)), run.schema)
    return x, filled_codes(label_codes({}, run.schema["conditions"], len(waves)), x, run.schema), clips


def tensors(run, data):
    """(x, y) of waveforms at the run's rate (a list of 1-D arrays) or a path."""
    if isinstance(data, (str, Path)):
        return run.inputs(str(data))
    x, codes, _ = wave_inputs(run, data)
    return x, torch.from_numpy(combined(codes, run.schema["conditions"])) if run.schema["conditions"] else None


def from_records(run, records: list, allow_unknown: bool = False):
    """Waveforms of JSON records: base64 wav files (resampled to the run's rate) or sample lists."""
    rate = run.schema["frontend"]["sample_rate"]
    waves = []
    for i, r in enumerate(records):
        if isinstance(r, str):
            try:
                raw = base64.b64decode(r, validate=True)
            except ValueError:
                raise VaekitError(f"record {i}: not base64") from None
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".wav") as f:
                f.write(raw)
                f.flush()
                x, r_rate = read_wav(Path(f.name))
            waves.append(resample(x, r_rate, rate))
        elif isinstance(r, list) and r and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r):
            waves.append(np.asarray(r, dtype=np.float32))
        else:
            raise VaekitError(f"record {i}: expected a base64 wav string or a list of samples")
    return waves


def to_records(run, result, form: str = "list") -> list:
    if isinstance(result, Sounds):
        return [{"name": n, "wav_base64": base64.b64encode(wav_bytes(w, result.rate)).decode()}
                for n, w in zip(result.names, result.waves)]
    from .. import plain_records

    return plain_records(result)


def decoded(run, z: torch.Tensor, labels: list | None = None):
    y = torch.as_tensor(labels if labels is not None else [0] * len(z)) if run.vae.conditional else None
    waves, _ = decode_sounds(run, z, one_hot(run, y), 32)
    return waves


# ---- figures, pictures, report


@torch.no_grad()
def evaluate(run, opts, x, y, figures: dict) -> dict:
    """The log-mel distance of reconstructions (posterior mean) to the inputs, in dB, over the
    frames the inputs fill (the padding left out)."""
    dist, frames = 0.0, 0
    for i in range(0, len(x), 256):
        xb = x[i: i + 256]
        yb = None if y is None else y[i: i + 256]
        rec = run.vae.likelihood(run.vae.decoder(posterior_mean(run, xb), one_hot(run, yb)).float()).mean
        a, b = unscale(xb, run.schema), unscale(rec, run.schema)
        filled = a.max(1).values > math.log(LOG_FLOOR) + 0.5  # (B, T)
        per_frame = ((a - b) ** 2).mean(1).sqrt() * (20 / math.log(10))  # (B, T) dB of mel magnitude
        dist += float(per_frame[filled].sum())
        frames += int(filled.sum())
    return {"log_mel_distance_db": dist / max(frames, 1)}


def save_final(run_dir, vae, splits, schema: dict) -> None:
    """sampler.json (the mixture `sample` draws codes from) and samples.png."""
    sampler = fit_sampler(vae, splits.train_x, splits.train_y, num_classes(schema["conditions"]))
    write_json(Path(run_dir) / "sampler.json", sampler)
    g = torch.Generator().manual_seed(0)
    n = 32
    y = drawn_classes(schema, {}, n, g) if schema["conditions"] else None
    with torch.no_grad():
        z = drawn_codes(sampler, n, 1.0, g, y).to(splits.train_x.device)
        c = vae.condition(y.to(z.device)) if y is not None else None
        log_mel = unscale(vae.likelihood(vae.decoder(z, c).float()).mean.cpu(), schema)
    atomic_write(Path(run_dir) / "samples.png", png_bytes(spectrogram_grid(log_mel)))


def audio_tag(wave: np.ndarray, rate: int) -> str:
    return f'<audio controls src="data:audio/wav;base64,{base64.b64encode(wav_bytes(wave, rate)).decode()}"></audio>'


def report_sections(run, splits) -> list[str]:
    """Spectrograms and players: samples, reconstructions of test utterances, and conversions."""
    from types import SimpleNamespace

    from ...pages import data_uri, figure

    opts = SimpleNamespace(num=6, seed=0, temperature=1.0, condition=[], iters=32, sampler="posterior")
    s = sample(run, opts)
    x, y = splits.test_x[:6], None if splits.test_y is None else splits.test_y[:6]
    z = posterior_mean(run, x)
    rec_waves, rec = decode_sounds(run, z, one_hot(run, y), 32)
    rows = [figure(data_uri(png_bytes(spectrogram_grid(s.log_mel, 6))), "samples (spectrograms)"),
            "<p>" + " ".join(f"{html.escape(n)} {audio_tag(w, s.rate)}" for n, w in zip(s.names, s.waves)) + "</p>",
            figure(data_uri(png_bytes(spectrogram_grid(torch.stack([unscale(x, run.schema), rec], 1).flatten(0, 1), 2))),
                   "test utterances (left) and their reconstructions (right)"),
            "<p>" + " ".join(audio_tag(w, s.rate) for w in rec_waves) + "</p>"]
    space = run.schema["conditions"]
    if "speaker" in space and y is not None and len(space["speaker"]) > 1:
        codes = class_codes(y, space)
        j = list(space).index("speaker")
        codes[:, j] = (codes[:, j] + 1) % len(space["speaker"])
        conv_waves, conv = decode_sounds(run, z, one_hot(run, torch.from_numpy(combined(codes, space))), 32)
        rows += [figure(data_uri(png_bytes(spectrogram_grid(conv, 6))), "the same utterances in the next speaker's voice"),
                 "<p>" + " ".join(audio_tag(w, s.rate) for w in conv_waves) + "</p>"]
    return ["<h2>Sound</h2>" + "\n".join(rows)]

"""Recordings in: the files --data names (a folder of .wav, one .wav, or a CSV manifest with a
`path` column and label columns), their labels (from file names by a pattern such as
'{digit}_{speaker}_{index}', or the manifest's columns), the splits, and the schema: the front end,
the labels the model is conditioned on, the per-band scaling, and a small classifier that labels
inputs whose names carry no labels."""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...data import Splits, split_indices
from ...errors import VaekitError
from .signal import Frontend, Spectra, read_wav, resample, trimmed

DEFAULT_PATTERN = "{digit}_{speaker}_{index}"
COUNTER = "index"  # a pattern field that numbers takes: never a condition, its low values are the test split
SILENT = 1e-4  # a clip whose peak is below this is silence


@dataclass
class Clips:
    """Recordings read from disk: their names, waveforms at one rate, and labels (str) by field."""

    paths: list[Path]
    waves: list[np.ndarray]
    labels: dict[str, list[str | None]]
    named: bool = False  # the labels came from the file names (not a manifest)

    @property
    def ids(self) -> list[str]:
        return [p.stem for p in self.paths]


def pattern_regex(pattern: str) -> tuple[re.Pattern, list[str]]:
    """'{digit}_{speaker}_{index}' -> a regex over file stems and its field names."""
    fields = re.findall(r"\{(\w+)\}", pattern)
    if not fields:
        raise VaekitError(f"--labels-from-name {pattern!r} names no field (e.g. '{DEFAULT_PATTERN}')")
    if len(set(fields)) != len(fields):
        raise VaekitError(f"--labels-from-name {pattern!r} names a field twice")
    parts = re.split(r"\{\w+\}", pattern)
    body = "".join(re.escape(p) + (f"(?P<{f}>.+?)" if i < len(fields) else "") for i, (p, f) in
                   enumerate(zip(parts, fields + [""])))
    return re.compile(f"^{body}$"), fields


def name_labels(paths: list[Path], pattern: str) -> dict[str, list[str | None]]:
    """Labels by field from the file stems; a stem the pattern does not match gets None."""
    regex, fields = pattern_regex(pattern)
    matches = [regex.match(p.stem) for p in paths]
    return {f: [m.group(f) if m else None for m in matches] for f in fields}


def audio_files(name: str) -> tuple[list[Path], dict[str, list[str]] | None]:
    """The recordings --data names, and the manifest's labels when it is a CSV manifest."""
    path = Path(name)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".wav")
        if not found:
            raise VaekitError(f"{path}: no .wav files in this folder")
        return found, None
    if not path.exists():
        raise VaekitError(f"{path}: file or folder not found")
    if path.suffix.lower() in (".csv", ".tsv"):
        return manifest(path)
    return [path], None


def manifest(path: Path) -> tuple[list[Path], dict[str, list[str]]]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise VaekitError(f"{path}: not a readable CSV manifest ({e})") from None
    if "path" not in frame.columns:
        raise VaekitError(f"{path}: a manifest needs a 'path' column (it has {', '.join(frame.columns[:8])})")
    if frame.empty:
        raise VaekitError(f"{path}: the manifest lists no recordings")
    paths = [Path(p) if Path(p).is_absolute() else path.parent / p for p in frame["path"]]
    labels = {c: [v if v != "" else None for v in frame[c]] for c in frame.columns if c != "path"}
    return paths, labels


def read_clips(name: str, sample_rate: int | None, pattern: str | None, explicit: bool) -> tuple[Clips, int]:
    """The recordings of --data at one rate (`sample_rate`, or the most common one), silence-only
    files left out with a warning, and their labels."""
    paths, labels = audio_files(name)
    read = [read_wav(p) for p in paths]
    rate = sample_rate or Counter(r for _, r in read).most_common(1)[0][0]
    silent = [i for i, (x, _) in enumerate(read) if np.abs(x).max() < SILENT]
    if silent:
        if len(silent) == len(paths):
            raise VaekitError(f"{name}: every recording is silent (e.g. {paths[silent[0]]})")
        print(f"warning: {len(silent)} silent recording(s) left out, e.g. {paths[silent[0]]}", file=sys.stderr)
    keep = sorted(set(range(len(paths))) - set(silent))
    paths = [paths[i] for i in keep]
    waves = [resample(read[i][0], read[i][1], rate) for i in keep]
    if labels is not None:
        return Clips(paths, waves, {f: [v[i] for i in keep] for f, v in labels.items()}), rate
    labels = labels_of_names(paths, pattern, explicit, name)
    return Clips(paths, waves, labels, named=bool(labels)), rate


def labels_of_names(paths: list[Path], pattern: str | None, explicit: bool, name: str) -> dict:
    """Labels from file names: the given pattern must match them all; the default one applies only
    where it matches every name (otherwise the recordings are unlabelled)."""
    if pattern is None:
        return {}
    labels = name_labels(paths, pattern)
    misses = [p for p, v in zip(paths, next(iter(labels.values()))) if v is None]
    if not misses:
        return labels
    if not explicit:
        return {}
    if len(misses) == len(paths):
        raise VaekitError(f"{name}: --labels-from-name {pattern!r} matches no file name (e.g. {paths[0].name})")
    raise VaekitError(f"{misses[0]}: the name does not match --labels-from-name {pattern!r} "
                      f"({len(misses)} of {len(paths)} names do not)")


def frame_count(clips: Clips, fe: Frontend) -> int:
    """Frames the model sees: the 99th percentile of the trimmed clips' lengths, a multiple of 8."""
    lengths = np.array([len(trimmed(x, fe.hop)) // fe.hop + 1 for x in clips.waves])
    return int(min(1024, max(16, math.ceil(np.percentile(lengths, 99) / 8) * 8)))


def features(clips: Clips, spectra: Spectra) -> torch.Tensor:
    """(N, M, T) log-mel arrays; clips longer than T frames are cut, with a warning."""
    out, cut = [], []
    for path, x in zip(clips.paths, clips.waves):
        x = trimmed(x, spectra.fe.hop)
        m, n = spectra.log_mel(x)
        if len(x) // spectra.fe.hop + 1 > spectra.fe.frames + 2:
            cut.append((len(x), path))
        out.append(m)
    if cut:
        longest = max(cut)
        print(f"warning: {len(cut)} recording(s) longer than {spectra.fe.seconds:.2f} s were cut to it, the longest "
              f"{longest[1]} ({longest[0] / spectra.fe.sample_rate:.2f} s)", file=sys.stderr)
    return torch.stack(out)


def label_space(clips: Clips, conditions: list[str] | None) -> dict:
    """The conditioning labels and their values: the given --conditions, or every field but the
    counter; values sorted (numerically where they are all numbers)."""
    fields = [f for f in clips.labels if f != COUNTER]
    if conditions == ["none"]:
        return {}
    chosen = fields if conditions is None else conditions
    for c in chosen:
        if c not in clips.labels:
            raise VaekitError(f"--conditions {c}: no such label (the recordings have "
                              f"{', '.join(clips.labels) or 'no labels'})")
        missing = [p for p, v in zip(clips.paths, clips.labels[c]) if v is None]
        if missing:
            raise VaekitError(f"{missing[0]}: no {c!r} label ({len(missing)} recordings lack one)")
    return {c: sorted(set(clips.labels[c]), key=lambda v: (0, int(v), v) if v.isdigit() else (1, 0, v))
            for c in chosen}


def label_codes(labels: dict[str, list], space: dict, n: int) -> np.ndarray:
    """(N, C) index of each condition's value; -1 where a value is missing or unknown."""
    codes = np.full((n, len(space)), -1, dtype=np.int64)
    for j, (c, values) in enumerate(space.items()):
        where = {v: i for i, v in enumerate(values)}
        if c in labels:
            codes[:, j] = [where.get(v, -1) for v in labels[c]]
    return codes


def combined(codes: np.ndarray, space: dict) -> np.ndarray:
    """(N, C) condition indices -> one class index (mixed radix, first condition most significant)."""
    sizes = [len(v) for v in space.values()]
    y = np.zeros(len(codes), dtype=np.int64)
    for j, s in enumerate(sizes):
        y = y * s + codes[:, j]
    return y


def split_of(clips: Clips, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test indices. Names with a counter field hold out the lowest tenth of its
    values (FSDD's own split: repetitions 0-4 of 50); otherwise a seeded share (--test-fraction)."""
    n = len(clips.paths)
    counter = clips.labels.get(COUNTER)
    if counter and all(v is not None and v.isdigit() for v in counter):
        k = np.array([int(v) for v in counter])
        takes = np.unique(k)
        test = np.flatnonzero(np.isin(k, takes[: max(1, round(0.1 * len(takes)))]))
        rest = np.setdiff1d(np.arange(n), test)
        if not len(rest):
            rest, test = test, test[:0]
    else:
        rest, test = split_indices(n, cfg.test_fraction, cfg.split_seed)
    val_fraction = 0.05 if cfg.val_fraction is None else cfg.val_fraction
    keep, val = split_indices(len(rest), val_fraction, cfg.split_seed + 1)
    train, val = rest[keep], rest[val]
    if not len(test):  # a handful of recordings: test on the validation ones
        test = val
    if cfg.max_train:
        train = train[: cfg.max_train]
    return train, val, test


def pooled(x: torch.Tensor) -> np.ndarray:
    """The labeller's features: scaled log-mel averaged over 4 x 4 cells."""
    return torch.nn.functional.avg_pool2d(x[:, None], 4, ceil_mode=True).flatten(1).numpy()


def fit_labeller(x: torch.Tensor, codes: np.ndarray, space: dict) -> dict:
    """A logistic regression per condition on the training clips (scaled log-mel), as JSON: it
    labels inputs whose names carry no label (a user's own recording, a speaker never heard)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    feats, out = pooled(x), {}
    for j, c in enumerate(space):
        present = np.unique(codes[:, j])
        if len(present) < 2:
            out[c] = {"classes": present.tolist(), "coef": [], "intercept": []}
            continue
        with warnings.catch_warnings():  # a few hundred iterations label well enough
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=0.1, max_iter=300).fit(feats, codes[:, j])
        out[c] = {"classes": model.classes_.tolist(), "coef": np.round(model.coef_, 5).tolist(),
                  "intercept": np.round(model.intercept_, 5).tolist()}
    return out


def predict_labels(labeller: dict, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Each condition's predicted index for scaled log-mel x."""
    feats, out = pooled(x), {}
    for c, m in labeller.items():
        if not m["coef"]:
            out[c] = np.full(len(x), m["classes"][0])
            continue
        logits = feats @ np.array(m["coef"]).T + np.array(m["intercept"])
        if logits.shape[1] == 1:  # binary: one column, the second class's log-odds
            logits = np.concatenate([np.zeros_like(logits), logits], 1)
        out[c] = np.array(m["classes"])[logits.argmax(1)]
    return out


def scale(x: torch.Tensor, schema: dict) -> torch.Tensor:
    return (x - torch.tensor(schema["centre"])[:, None]) / torch.tensor(schema["spread"])[:, None]


def unscale(x: torch.Tensor, schema: dict) -> torch.Tensor:
    return x * torch.tensor(schema["spread"])[:, None] + torch.tensor(schema["centre"])[:, None]


def fit_schema(clips: Clips, rate: int, train: np.ndarray, options) -> dict:
    fe = Frontend.for_rate(rate)
    fe = Frontend.for_rate(rate, frames=frame_count(Clips([clips.paths[i] for i in train],
                                                          [clips.waves[i] for i in train], {}), fe))
    space = label_space(clips, options.conditions or None)
    return {"frontend": fe.as_dict(), "pattern": options.labels_from_name if clips.named else None,
            "conditions": space, "label_fields": list(clips.labels)}


def load_audio(cfg, options, schema: dict | None = None):
    """(Splits, schema): scaled log-mel (N, M, T), y the combined condition index (None when the
    run is unconditional); the schema is fitted on the training split unless given."""
    explicit = options.labels_from_name is not None
    pattern = options.labels_from_name or DEFAULT_PATTERN
    rate = schema["frontend"]["sample_rate"] if schema else options.sample_rate
    clips, rate = read_clips(cfg.name, rate, pattern if schema is None else schema.get("pattern") or pattern, explicit)
    if len(clips.paths) < 2:
        raise VaekitError(f"{cfg.name}: at least 2 recordings are needed to train, found {len(clips.paths)}")
    train, val, test = split_of(clips, cfg)
    if schema is None:
        options.labels_from_name = pattern
        schema = fit_schema(clips, rate, train, options)
    spectra = Spectra(Frontend(**schema["frontend"]))
    x = features(clips, spectra)
    space = schema["conditions"]
    codes = label_codes(clips.labels, space, len(clips.paths))
    if "centre" not in schema:
        t = x[train]
        schema["centre"] = np.round(t.mean((0, 2)).numpy(), 5).tolist()
        schema["spread"] = np.round(t.std((0, 2)).clamp(min=0.1).numpy(), 5).tolist()
        schema["class_counts"] = np.bincount(combined(codes[train], space), minlength=num_classes(space)).tolist() \
            if space else []
        schema["labeller"] = fit_labeller(scale(t, schema), codes[train], space)
    x = scale(x, schema)
    if (codes < 0).any():  # a value the run never saw (a re-read with another split): predicted
        codes = filled_codes(codes, x, schema)
    y = torch.from_numpy(combined(codes, space)) if space else None
    pick = lambda idx: None if y is None else y[idx]
    ids = clips.ids
    extra = {"test_ids": [ids[i] for i in test], "val_ids": [ids[i] for i in val]}
    return Splits(x[train], pick(train), x[val], pick(val), x[test], pick(test), extra), schema


def num_classes(space: dict) -> int:
    return int(np.prod([len(v) for v in space.values()])) if space else 0


def filled_codes(codes: np.ndarray, x: torch.Tensor, schema: dict) -> np.ndarray:
    """Condition indices with the missing or unknown ones predicted by the run's labeller."""
    guesses = predict_labels(schema["labeller"], x)
    codes = codes.copy()
    for j, c in enumerate(schema["conditions"]):
        codes[:, j] = np.where(codes[:, j] < 0, guesses[c], codes[:, j])
    return codes


def read_inputs(name: str, schema: dict) -> tuple[torch.Tensor, np.ndarray, Clips]:
    """Scaled log-mel of the recordings `name` names, read as the run reads its data, and each
    one's condition indices (from its name or manifest where known, predicted where not)."""
    fe = Frontend(**schema["frontend"])
    pattern = schema.get("pattern")
    clips, _ = read_clips(name, fe.sample_rate, pattern, False)
    x = scale(features(clips, Spectra(fe)), schema)
    codes = filled_codes(label_codes(clips.labels, schema["conditions"], len(clips.paths)), x, schema)
    return x, codes, clips

"""The commands on streams: splits of windows for training, per-row scores calibrated on the
training rows, streaming detection with refits, point-wise evaluation against labels, and the
report's pictures."""

from __future__ import annotations

import bisect
import csv
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ... import files
from ...calibrate import usable_cores
from ...config import Config, DataConfig
from ...data import Splits
from ...errors import VaekitError
from .data import (Stream, channels, filled, fit_scaling, modelled_names, read_stream, scaled, season_lags,
                   stream_files, time_column, windows)
from .model import point_scores, trailing_mean

TAIL = 0.1  # the top share of training scores whose excess an exponential tail models
TOLERANCE = 0.05  # a value past the range of every earlier row by this share of it is new (HTM's NAB detector's)
WORST_SMOOTH = 8  # rows in worst_channel's trailing mean (SKAB: 7 and 8 pass Conv-AE's two rates, 6 and 10 do not)
MIN_HELD = 20  # held-out windows enough for each channel's error spread


# ---------------------------------------------------------------- training data


def training_rows(stream: Stream, train_rows: int | None) -> int:
    return len(stream.values) if train_rows is None else min(train_rows, len(stream.values))


def load_streams(paths: list[Path], cfg: DataConfig, options, schema: dict | None = None):
    """Splits of windows: each file's first `train_rows` rows (all by default), the last
    `val_fraction` of them (in time) for validation; the test split is each file's rows after
    its training rows, or its validation rows when there are none."""
    expect = schema["columns"] if schema else None
    streams = [read_stream(p, options.time_col or (schema or {}).get("time_col"), options.columns, expect)
               for p in paths]
    if schema is None:
        first = streams[0]
        tcol = time_column(first.frame, options.time_col, Path(first.path))
        names = channels(first.frame, tcol, options.columns, Path(first.path))
        for s in streams[1:]:
            other = channels(s.frame, time_column(s.frame, options.time_col, Path(s.path)), options.columns, Path(s.path))
            if other != names:
                raise VaekitError(f"{s.path}: channels {other[:6]} differ from {first.path}'s {names[:6]}")
        for s in streams:
            if len(s.values) < options.window:
                raise VaekitError(f"{s.path}: {len(s.values)} rows, shorter than one window ({options.window})")
        train = [s.values[: training_rows(s, options.train_rows)] for s in streams]
        stamps = [s.stamps[: len(v)] for v, s in zip(train, streams)]
        schema = {"time_col": tcol, "columns": names, "window": options.window, "x_shape": [len(names), options.window],
                  **fit_scaling(train, names, cfg.name, options.changes, options.window, season=options.season,
                                stamps=stamps)}
    val_share = cfg.val_fraction if cfg.val_fraction is not None else 0.1
    parts = {"train": [], "val": [], "test": []}
    for s in streams:
        x = windows(scaled(s.values, schema), schema["window"])
        n = training_rows(s, options.train_rows)
        held = max(1, int(round(n * val_share))) if n > 2 else 0
        parts["train"].append(x[: n - held])
        parts["val"].append(x[n - held : n])
        parts["test"].append(x[n:] if n < len(x) else x[n - held : n])
    cat = {k: torch.cat(v) for k, v in parts.items()}
    return Splits(cat["train"], None, cat["val"], None, cat["test"], None), schema


def file_windows(cfg: DataConfig, schema: dict, name: str | None):
    """(windows, None, the rows' times) of a file (all its rows), or of the run's test split."""
    if name is None:
        from . import SeriesKind

        splits, _ = SeriesKind().load(cfg, schema)
        return splits.test_x, None, None
    streams = read_streams(name, schema)
    x = torch.cat([windows(scaled(s.values, schema), schema["window"]) for s in streams])
    return x, None, [t for s in streams for t in s.times]


def read_streams(name: str, schema: dict) -> list[Stream]:
    """The files `name` names, read with the run's time column and channels (a file whose columns
    differ from the run's is refused in one line)."""
    return [read_stream(p, schema["time_col"], [], schema["columns"]) for p in stream_files(name)]


def frame_windows(run, frame) -> torch.Tensor:
    """Windows of a DataFrame holding the run's channels (rows in time order): the Python API's
    inputs."""
    if not isinstance(frame, pd.DataFrame):
        raise VaekitError(f"series inputs are a DataFrame with the run's channels, got {type(frame).__name__}")
    missing = [c for c in run.schema["columns"] if c not in frame.columns]
    if missing:
        raise VaekitError(f"the DataFrame has no column {missing[0]!r}")
    values = frame[run.schema["columns"]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    return windows(scaled(values, run.schema), run.schema["window"])


def unscaled(x: np.ndarray, schema: dict) -> np.ndarray:
    """(..., C, W) scaled values back in the channels' units (changes for the run's `changes`)."""
    return x * np.array(schema["spread"])[:, None] + np.array(schema["centre"])[:, None]


def drawn_names(schema: dict) -> list[str]:
    """The columns of drawn windows: the channels, a seasonal one as its difference from a season
    earlier (`NAME (vs. L rows earlier)`: a window alone has no season to add it to)."""
    return [m if lag else c for c, m, lag in zip(schema["columns"], modelled_names(schema), season_lags(schema))]


def drawn_windows(x: np.ndarray, schema: dict) -> np.ndarray:
    """(N, C, W) windows the decoder drew, in the channels' units and levels: a channel modelled
    by its changes adds them up from its training rows' median (see drawn_names)."""
    out = unscaled(x, schema)
    for c, level in zip(schema.get("changes", []), schema.get("level", [])):
        i = schema["columns"].index(c)
        out[:, i] = level + np.cumsum(out[:, i], axis=-1)
    return out


@torch.no_grad()
def sample(run, opts) -> pd.DataFrame:
    """`num` synthetic windows: the decoder's means at z ~ p(z), in the channels' units (columns
    window, step, then the channels)."""
    g = torch.Generator().manual_seed(opts.seed)
    z = run.vae.prior.sample(opts.num, opts.temperature, g, run.vae.encode)
    means = drawn_windows(run.vae.decode(z).base_dist.loc.numpy(), run.schema)  # (N, C, W)
    n, c, w = means.shape
    frame = pd.DataFrame(means.transpose(0, 2, 1).reshape(n * w, c), columns=drawn_names(run.schema))
    frame.insert(0, "step", np.tile(np.arange(w), n))
    frame.insert(0, "window", np.repeat(np.arange(n), w))
    return frame


@torch.no_grad()
def reconstruct(run, opts) -> pd.DataFrame:
    """Each input row (its newest point) beside the decoder's mean for it at its window's
    posterior mean: columns row, then each channel and channel_reconstruction (a channel modelled
    by its changes as `NAME (change)`)."""
    x, _, times = run.inputs_with_ids(opts.data, opts.data_dir)
    x = x[: opts.num]
    rec = run.vae.decode(run.vae.encode(x).mean).base_dist.loc.numpy()[..., -1]  # (N, C)
    newest = unscaled(x.numpy(), run.schema)[..., -1]
    rec = rec * np.array(run.schema["spread"]) + np.array(run.schema["centre"])
    frame = pd.DataFrame({"row": np.arange(len(x))})
    if times is not None:
        frame[run.schema["time_col"]] = times[: len(x)]
    for i, name in enumerate(modelled_names(run.schema)):
        frame[name], frame[f"{name}_reconstruction"] = newest[:, i], rec[:, i]
    return frame


def write(run, command: str, frame: pd.DataFrame, opts) -> None:
    out = run.out_path(opts.out, {"sample": "samples.csv", "reconstruct": "reconstructions.csv"}[command])
    files.atomic_write(out, frame.to_csv(index=False, lineterminator="\n", float_format="%.7g").encode())
    print(f"wrote {out} ({len(frame)} rows)")


# ---------------------------------------------------------------- calibration


def fit_calibration(scores: np.ndarray) -> dict:
    """The training rows' scores as 201 quantiles, and an exponential tail over their top TAIL
    share (peaks over a threshold): what turns a score into a probability."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    start = float(np.quantile(scores, 1 - TAIL))
    excess = scores[scores > start] - start
    scale = float(excess.mean()) if len(excess) else 0.0
    spread = float(scores[-1] - scores[0]) if len(scores) > 1 else 1.0
    return {"quantiles": np.quantile(scores, np.linspace(0, 1, 201)).tolist(), "tail_start": start,
            "tail_scale": max(scale, 1e-6 * max(spread, 1e-6)), "num_scores": int(len(scores))}


def calibrated(scores: np.ndarray, cal: dict) -> np.ndarray:
    """P(a training row scores below `scores`): the empirical distribution up to the tail's start,
    then a heavy (Pareto) tail 1 - TAIL / (1 + excess / scale), which keeps ranking rows far past
    every training score (an exponential tail rounded them all to 1.0, and a threshold above the
    training scores then flagged nothing)."""
    q = np.asarray(cal["quantiles"])
    p = np.interp(scores, q, np.linspace(0, 1, len(q)))
    above = scores > cal["tail_start"]
    p[above] = 1 - TAIL / (1 + (scores[above] - cal["tail_start"]) / cal["tail_scale"])
    return np.clip(p, 0.0, 1.0)


def resolved(schema: dict, score: str, smooth: int | None) -> tuple[str, int]:
    """--score and --smooth as given, `auto` and an unset smooth made the run's defaults. `auto`
    with several channels is the worst channel's error (SKAB over 8 rows: FAR 12.70%, MAR 25.68%
    against 17.10 / 24.56 for the likelihood over 5 rows); a lone channel keeps its newest point's
    likelihood, unsmoothed (NAB: a lone odd row is the news)."""
    if score == "auto":
        score = "worst_channel" if len(schema["columns"]) > 1 else "neg_elbo"
    return score, (WORST_SMOOTH if score == "worst_channel" else 1) if smooth is None else smooth


def channel_reference(vae, held: torch.Tensor, fitted: torch.Tensor) -> dict:
    """Each channel's squared error on windows the model was not fitted on (the validation
    windows; every window when fewer than MIN_HELD were held out): median and standard deviation.
    The rows a model was fitted on it explains better than any later normal row, by more in some
    channels than in others; held-out rows say how far off each channel normally is."""
    x = held if len(held) >= MIN_HELD else torch.cat([fitted, held])
    se = point_scores(vae, x, "recon_error").numpy().astype(np.float64)
    return {"channel_centre": np.median(se, 0).tolist(), "channel_spread": np.maximum(se.std(0), 1e-9).tolist()}


def row_scores(vae, x: torch.Tensor, score: str = "neg_elbo", smooth: int = 1, reference: dict | None = None):
    """(per channel (N, C), each row's score (N,)) of one stream's windows x, averaged over the
    last `smooth` rows. neg_elbo and recon_error: the channels' sum; worst_channel: each channel's
    squared error in units of its spread on held-out rows (`reference`), the largest channel's."""
    if score == "worst_channel":
        centre, spread = (torch.tensor(reference[k], dtype=torch.float32) for k in ("channel_centre", "channel_spread"))
        per_channel = (point_scores(vae, x, "recon_error") - centre) / spread
        return per_channel, trailing_mean(per_channel.max(1).values.numpy().astype(np.float64), smooth)
    per_channel = point_scores(vae, x, score)
    return per_channel, trailing_mean(per_channel.sum(1).numpy(), smooth)


def save_calibration(run_dir, vae, splits, schema: dict) -> dict:
    """RUN/calibration.json: each channel's held-out error, and the training windows' scores under
    the run's default score (`--score auto`)."""
    score, smooth = resolved(schema, "auto", None)
    reference = channel_reference(vae, splits.val_x, splits.train_x)
    cal = fit_calibration(row_scores(vae, splits.train_x, score, smooth, reference)[1])
    files.write_json(Path(run_dir) / "calibration.json", cal | reference | {"score": score, "smooth": smooth})
    return cal


def calibration_of(run, score: str, smooth: int) -> dict:
    """The saved calibration of the run's default score, or one fitted now on the training
    windows' scores for another (several training streams are joined: a mean over the last rows
    runs across their ends, smooth-1 rows each). Either holds the channels' held-out errors."""
    path = Path(run.run_dir) / "calibration.json"
    saved = files.read_json(path) if path.exists() else {}
    held_out = "channel_centre" in saved  # not in runs trained before worst_channel
    kept = (saved.get("score", "neg_elbo"), saved.get("smooth", 1)) if saved else None
    if kept == (score, smooth) and (held_out or score != "worst_channel"):
        return saved
    splits = run.splits()
    reference = ({k: saved[k] for k in ("channel_centre", "channel_spread")} if held_out
                 else channel_reference(run.vae, splits.val_x, splits.train_x))
    return fit_calibration(row_scores(run.vae, splits.train_x, score, smooth, reference)[1]) | reference


# ---------------------------------------------------------------- scoring


def scoring(run, score: str = "auto", smooth: int | None = None) -> tuple[str, int, dict]:
    """(score, smooth, calibration) of a run: `auto` and an unset smooth resolved."""
    score, smooth = resolved(run.schema, score, smooth)
    return score, smooth, calibration_of(run, score, smooth)


def scored(vae, x: torch.Tensor, cal: dict, names: list[str], fpr: float, score: str, smooth: int) -> dict:
    """anomaly_score, flagged and top_columns for one stream's windows x."""
    per_channel, raw = row_scores(vae, x, score, smooth, cal)
    p = calibrated(raw, cal)
    out = {"anomaly_score": p, "flagged": (p > 1 - fpr).astype(int)}
    if len(names) > 1:
        out["top_columns"] = culprits(per_channel, names)
    return out


def scored_streams(run, streams: list[Stream], cal: dict, fpr: float, score: str, smooth: int) -> dict:
    """`scored` for each stream on its own (a mean over the last rows never joins two streams),
    the streams' rows one after another."""
    schema = run.schema
    parts = [scored(run.vae, windows(scaled(s.values, schema), schema["window"]), cal, schema["columns"], fpr, score,
                    smooth) for s in streams]
    return {k: np.concatenate([p[k] for p in parts]) if k != "top_columns" else [c for p in parts for c in p[k]]
            for k in parts[0]}


def culprits(per_channel: torch.Tensor, names: list[str]) -> list[str]:
    """The channels whose newest point the model explains worst, most to least: those above an
    even share of the row's score (at least the worst one), joined by ';'."""
    order = torch.argsort(per_channel, dim=1, descending=True).numpy()
    shifted = per_channel - per_channel.min(1, keepdim=True).values  # NLLs can be negative
    above = (shifted / shifted.sum(1, keepdim=True).clamp(min=1e-12) > 1 / len(names)).numpy()
    return [";".join(names[j] for j in row if above[i, j]) or names[row[0]] for i, row in enumerate(order)]


def write_scores(out: Path, time_col: str, times: list[str], result: dict) -> None:
    """The scores as CSV, each float in its shortest exact form. Arrow's writer is 7 times
    pandas' (1.9 -> 0.27 s for 500,000 rows); it quotes only when a cell needs it."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = {time_col: times, "anomaly_score": np.asarray(result["anomaly_score"], dtype=np.float64),
               "flagged": np.asarray(result["flagged"], dtype=np.int64)}
    if "top_columns" in result:
        columns["top_columns"] = result["top_columns"]
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(columns)  # Arrow would quote every name
    table, sink = pa.table(columns), pa.BufferOutputStream()
    try:
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    except pa.ArrowInvalid:  # a cell holds a comma, quote or line break: quote the text cells
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    files.atomic_write(out, header.getvalue().encode() + sink.getvalue().to_pybytes())


def anomaly(run, opts) -> None:
    """One output row per input row, in order: time, anomaly_score in [0, 1] (calibrated on the
    training rows), flagged (at --fpr, default 0.01 of the training rows) and top_columns."""
    if opts.normal_data or opts.num_samples is not None:
        raise VaekitError("series runs score each row by its newest point, calibrated on the training rows: "
                          "--normal-data and --num-samples do not apply")
    fpr = opts.fpr if opts.fpr is not None else 0.01
    if not 0 < fpr < 1:
        raise VaekitError(f"--fpr must be in (0, 1), got {fpr}")
    name = opts.data or run.cfg.data.name
    schema = run.schema
    streams = read_streams(name, schema)
    out = run.out_path(opts.out, "anomaly.csv")
    score, smooth, cal = scoring(run, opts.score, opts.smooth)
    result = scored_streams(run, streams, cal, fpr, score, smooth)
    times = [t for s in streams for t in s.times]
    write_scores(out, schema["time_col"], times, result)
    picture = save_stream_picture(out.with_suffix(".png"), streams, schema["columns"], result["anomaly_score"], 1 - fpr)
    summary = {"rows": len(times), "flagged": int(result["flagged"].sum()), "target_fpr": fpr, "score": score,
               "smooth": smooth, "scores_csv": str(out), "picture": str(picture)}
    files.write_json(Path(run.run_dir) / "anomaly.json", summary)
    print(json.dumps(summary))


# ---------------------------------------------------------------- streaming detection


def probation_rows(value: str | None, n: int) -> int:
    """NAB's probation: 15% of the file, at most 750 rows; or ROWS, or a SHARE below 1."""
    if value is None:
        return min(750, int(0.15 * n))
    try:
        number = float(value)
    except ValueError:
        raise VaekitError(f"--probation must be a number of rows or a share, got {value!r}") from None
    rows = int(number * n) if 0 < number < 1 else int(number)
    if rows < 2:
        raise VaekitError(f"--probation gives {rows} rows; at least 2 are needed to learn from")
    return rows


def refit_points(probation: int, n: int, every: int | None) -> list[int]:
    """The rows after which the model is fitted again on everything before them."""
    points, r = [], probation
    while r < n:
        points.append(r)
        r = r + every if every else 2 * r
    return points


def fit_stream(values: np.ndarray, stamps: np.ndarray, names: list[str], opts, path: str, seed: int, work: Path):
    """A model, its schema and its channels' held-out errors, fitted on `values`, the rows seen so far."""
    from ...train import train
    from . import SeriesKind

    kind = SeriesKind()
    window = min(opts.window, len(values))
    cfg = Config().override(kind.defaults).override(
        {"data.name": path, "data.kind": "series", "data.options.window": window, "train.seed": seed,
         "train.precision": "fp32", "train.compile": False, "train.threads": 1})
    schema = {"time_col": "t", "columns": names, "window": window, "x_shape": [values.shape[1], window]}
    schema |= fit_scaling([values], names, path, opts.changes, window, allow_flat=True, season=opts.season,
                          stamps=[stamps])
    x = windows(scaled(values, schema), window)
    held = max(1, len(x) // 10)
    splits = Splits(x[: len(x) - held], None, x[len(x) - held :], None, x[len(x) - held :], None)
    run_dir = Path(tempfile.mkdtemp(dir=work))
    vae = train(cfg, run_dir, data=splits, schema=schema, progress=False)
    vae.eval()
    return vae, schema, channel_reference(vae, splits.val_x, splits.train_x)


class PastScores:
    """The raw scores of every row seen so far, sorted: a row's probability is its rank among
    them (ties counted half), and past the highest a heavy tail whose scale is how far the
    highest lies above the median. Against the stream's own past, a level the stream has settled
    into stops alarming; against the probation rows alone it alarmed for the rest of the file."""

    def __init__(self, scores: np.ndarray):
        self.sorted = sorted(float(v) for v in scores)

    def scale(self) -> float:
        """A record's excess is measured against the gap between the typical score and the
        highest so far (it was the spread of the top 10%: NAB 56.57 -> 59.63, three seeds' mean):
        a stream whose past already holds far-out scores needs a farther one to alarm."""
        past = self.sorted
        return max(past[-1] - past[len(past) // 2], 1e-6 * max(past[-1] - past[0], 1e-6))

    def add(self, score: float) -> float:
        """The probability of `score` against the past, then `score` joins the past."""
        past, n = self.sorted, len(self.sorted)
        low, high = bisect.bisect_left(past, score), bisect.bisect_right(past, score)
        if low == n:  # past every earlier score: a heavy tail beyond the highest
            p = 1 - 0.5 / n / (1 + (score - past[-1]) / self.scale())
        else:
            p = (low + 0.5 * (high - low)) / n
        bisect.insort(past, score)
        return p


def overshoot(values: np.ndarray) -> np.ndarray:
    """Per row, how far its farthest channel lies outside the range of every earlier row, as a
    share of that range: 0 inside it, inf where a channel flat so far moves."""
    v = filled(values)
    hi = np.vstack([v[:1], np.maximum.accumulate(v, axis=0)[:-1]])
    lo = np.vstack([v[:1], np.minimum.accumulate(v, axis=0)[:-1]])
    out = np.maximum(v - hi, lo - v)  # (N, C), <= 0 inside the range
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(out > 0, out / (hi - lo), 0.0)
    return share.max(1)


def detect_stream(stream: Stream, opts, work: Path, progress=None) -> dict:
    """Scores of every row of one stream from the past only: 0 during probation, then the raw
    score of the model fitted at the last refit before the row, ranked against that model's
    scores of every earlier row; a value beyond the range of every earlier row (by TOLERANCE of
    it) ranks as past every earlier score, as HTM's detector for NAB calls it a spatial anomaly:
    the window model is trained on the stream's range and says too little about values outside
    it (NAB 48.40 -> 60.30 with this)."""
    n = len(stream.values)
    probation = probation_rows(opts.probation, n)
    if probation >= n:
        raise VaekitError(f"{stream.path}: {n} rows, all of them probation ({probation}); nothing to score")
    points = refit_points(probation, n, opts.refit_every)
    advance = progress or (lambda rows: None)
    advance(probation)
    score = np.zeros(n)
    tops = [""] * n
    names = channel_names(stream, opts)
    how, smooth = resolved({"columns": names}, opts.score, opts.smooth)
    for k, start in enumerate(points):
        end = points[k + 1] if k + 1 < len(points) else n
        vae, schema, reference = fit_stream(stream.values[:start], stream.stamps[:start], names, opts, stream.path,
                                            opts.seed, work)
        # Rows 0..end-1 scored by this model, scaled as at the refit; each window ends at its row.
        per_channel, raw = row_scores(vae, windows(scaled(stream.values[:end], schema), schema["window"]), how, smooth,
                                      reference)
        # Each model's scores are ranked among its own: the rows seen so far, scored again by the
        # refitted model. Two models' raw scores do not share a scale (after a refit every row
        # of a stream could rank above the old model's scores; NAB 40.57 -> 48.40 with this).
        past = PastScores(raw[:start])
        score[start:end] = [past.add(v) for v in raw[start:end].tolist()]
        if len(names) > 1:
            tops[start:end] = culprits(per_channel[start:end], names)
        advance(end - start)
    new = overshoot(stream.values)
    new[:probation] = 0.0
    rows = np.flatnonzero(new > TOLERANCE)  # row t has t earlier scores: a record's tail, further the further out
    score[rows] = np.maximum(score[rows], 1 - 0.5 / rows / (1 + new[rows] / TOLERANCE))
    out = {"anomaly_score": score, "flagged": (score > 1 - opts.fpr).astype(int)}
    if len(names) > 1:
        out["top_columns"] = tops
    return out


def channel_names(stream: Stream, opts) -> list[str]:
    frame = stream.frame
    return channels(frame, time_column(frame, opts.time_col, Path(stream.path)), opts.columns, Path(stream.path))


def detect(opts) -> None:
    """`vaekit detect --data F --kind series --out scores.csv`: each file of --data scored as a
    stream; several files write a folder of CSVs named as the inputs, scored side by side by
    --workers processes (default one per core; each fit trains one thread)."""
    from tqdm.auto import tqdm

    paths = stream_files(opts.data)
    if not opts.out:
        raise VaekitError("detect needs --out (a CSV for one file, a folder for several)")
    out = Path(opts.out)
    many = len(paths) > 1 or Path(opts.data).is_dir()
    if not many and not out.parent.is_dir():
        raise VaekitError(f"{out.parent}: output directory not found")
    root = Path(opts.data) if Path(opts.data).is_dir() else None
    streams = [read_stream(p, opts.time_col, opts.columns) for p in paths]  # every file checked before any is scored
    for s in streams:
        if len(s.values) < 2:
            raise VaekitError(f"{s.path}: fewer than 2 rows")
        first = s.values[: probation_rows(opts.probation, len(s.values))]  # what the first fit will see
        fit_scaling([first], channel_names(s, opts), s.path, opts.changes, opts.window, allow_flat=True)
    if many:
        out.mkdir(parents=True, exist_ok=True)
    targets = [out / (p.relative_to(root) if root else Path(p.name)) if many else out for p in paths]
    settings = dict(vars(opts))  # plain values: what a worker process gets of the options
    workers = min(opts.workers or usable_cores(), len(paths))
    with tempfile.TemporaryDirectory(prefix="vaekit-detect-") as work:
        if workers < 2:
            for stream, target in tqdm(list(zip(streams, targets)), desc="detect", unit="file", disable=len(paths) < 2,
                                       file=sys.stderr):
                detect_file(stream, target, settings, work, progress=len(paths) == 1)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=one_thread) as pool:
                longest_first = sorted(zip(streams, targets), key=lambda st: -len(st[0].values))  # even loads
                futures = [pool.submit(detect_file, s, t, settings, work) for s, t in longest_first]
                try:
                    for done in tqdm(as_completed(futures), total=len(futures), desc="detect", unit="file",
                                     file=sys.stderr):
                        done.result()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    print(f"wrote {out}" + ("" if many else f" and {out.with_suffix('.png')}"))


def detect_file(stream: Stream, target: Path, settings: dict, work: str, progress: bool = False) -> None:
    """One stream scored and written (CSV and picture), in this process or a worker. The seed is
    set per file, so a file scores the same alone, among others, or in any worker."""
    from types import SimpleNamespace

    from tqdm.auto import tqdm

    opts = SimpleNamespace(**settings)
    torch.manual_seed(opts.seed)
    with tqdm(total=len(stream.values), desc="detect", unit="row", disable=not progress, file=sys.stderr) as bar:
        result = detect_stream(stream, opts, Path(work), bar.update)  # a long stream refits for a minute
    target.parent.mkdir(parents=True, exist_ok=True)
    write_scores(target, time_column(stream.frame, opts.time_col, Path(stream.path)), stream.times, result)
    save_stream_picture(target.with_suffix(".png"), [stream], channel_names(stream, opts), result["anomaly_score"],
                        1 - opts.fpr)


def one_thread() -> None:
    torch.set_num_threads(1)  # a worker per core


# ---------------------------------------------------------------- evaluation


def evaluate(run, opts) -> dict:
    """Point-wise F1, false alarm rate (% of normal rows flagged), missed alarm rate (% of
    anomalous rows not flagged), AUROC and average precision of the calibrated scores (--score,
    --smooth), at the run's threshold (0.01 of the training rows), against --label-col of --data."""
    if not opts.label_col:
        return {}
    if not opts.data:
        raise VaekitError("--label-col needs --data FILE (the file whose rows the labels belong to)")
    from sklearn.metrics import average_precision_score, roc_auc_score

    streams = read_streams(opts.data, run.schema)
    labels = []
    for s in streams:
        if opts.label_col not in s.frame.columns:
            raise VaekitError(f"{s.path}: no label column {opts.label_col!r}")
        values = pd.to_numeric(s.frame[opts.label_col], errors="coerce")
        if values.isna().any() or not values.isin([0, 1]).all():
            raise VaekitError(f"{s.path}: the label column {opts.label_col!r} must hold 0 and 1")
        labels.append(values.to_numpy(dtype=int))
    y = np.concatenate(labels)
    score, smooth, cal = scoring(run, opts.score, opts.smooth)
    result = scored_streams(run, streams, cal, 0.01, score, smooth)
    flagged, p = result["flagged"].astype(bool), result["anomaly_score"]
    tp, fp = int((flagged & (y == 1)).sum()), int((flagged & (y == 0)).sum())
    fn, tn = int((~flagged & (y == 1)).sum()), int((~flagged & (y == 0)).sum())
    both = len(set(y.tolist())) == 2
    return {"f1": tp / (tp + (fp + fn) / 2) if tp + fp + fn else 0.0,
            "far": 100 * fp / (fp + tn) if fp + tn else 0.0, "mar": 100 * fn / (fn + tp) if fn + tp else 0.0,
            "auroc": float(roc_auc_score(y, p)) if both else None,
            "average_precision": float(average_precision_score(y, p)) if both else None,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


# ---------------------------------------------------------------- report


def report_sections(run, splits) -> list[str]:
    from ...pages import data_uri, figure
    from ...plotting import figure_png

    x = splits.test_x
    score, smooth, cal = scoring(run)
    p = calibrated(row_scores(run.vae, x, score, smooth, cal)[1], cal)
    values = unscaled(x.numpy(), run.schema)[..., -1]  # (N, C): each row's newest point
    fig = stream_figure(np.arange(len(p)), values, modelled_names(run.schema), p, 0.99)
    return ["<h2>The test rows and their scores</h2>" + figure(data_uri(figure_png(fig)),
            "Each channel (red: flagged rows), then how rare each row's score is among the training rows "
            "(dashed: the flagging threshold, 0.99)")]


MAX_PANELS = 8  # channels drawn in a picture; the rest are in the CSV
PLOT_POINTS = 1000  # a line thinned to each stretch's lowest and highest value: more points than pixels only cost time


def thinned(x_axis, y: np.ndarray):
    """(x, y) of a line drawn as PLOT_POINTS stretches, each its first x with its lowest then highest y
    (missing points skipped): the same picture as every point at a picture's width, much faster."""
    if len(y) <= 2 * PLOT_POINTS:
        return x_axis, y
    edges = np.linspace(0, len(y), PLOT_POINTS + 1).astype(int)[:-1]
    with np.errstate(invalid="ignore"):
        low, high = np.fmin.reduceat(y, edges), np.fmax.reduceat(y, edges)
    return np.repeat(np.asarray(x_axis)[edges], 2), np.column_stack([low, high]).ravel()


def stream_figure(x_axis, values: np.ndarray, names: list[str], score: np.ndarray, threshold: float):
    """Each channel over time with its flagged rows in red, then the score as a rarity,
    -log10(1 - score): 2 is one training row in a hundred (a score in [0, 1] squeezes every
    interesting row against 1)."""
    from ...plotting import pyplot

    plt = pyplot()
    shown = names[:MAX_PANELS]
    flagged = score > threshold
    fig, axes = plt.subplots(len(shown) + 1, 1, figsize=(10, 1.5 * (len(shown) + 1)), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for i, name in enumerate(shown):
        axes[i].plot(*thinned(x_axis, values[:, i]), lw=0.6)
        axes[i].plot(np.asarray(x_axis)[flagged], values[flagged, i], ".", color="C3", ms=3)
        axes[i].set_ylabel(name, rotation=0, ha="right", fontsize=8)
    axes[-1].plot(*thinned(x_axis, -np.log10(np.clip(1 - score, 1e-12, 1))), color="C3", lw=0.6)
    axes[-1].axhline(-np.log10(1 - threshold), color="k", ls="--", lw=0.6)
    axes[-1].set_ylabel("rarity\n-log10(1-score)", rotation=0, ha="right", fontsize=8)
    if len(names) > MAX_PANELS:
        axes[0].set_title(f"the first {MAX_PANELS} of {len(names)} channels", fontsize=8)
    fig.tight_layout()
    return fig


def save_stream_picture(path: Path, streams: list[Stream], names: list[str], score: np.ndarray,
                        threshold: float) -> Path:
    """PATH: the streams' rows one after another, against their times where every one parses."""
    from ...plotting import save_figure

    times = pd.to_datetime(pd.Series([t for s in streams for t in s.times]), errors="coerce", format="mixed")
    x_axis = times.to_numpy() if len(streams) == 1 and times.notna().all() else np.arange(len(score))
    values = np.concatenate([s.values for s in streams])
    fig = stream_figure(x_axis, values, names, score, threshold)
    fig.axes[0].set_title(f"{', '.join(Path(s.path).name for s in streams[:3])}: {int((score > threshold).sum())} of "
                          f"{len(score)} rows flagged", fontsize=9)
    fig.tight_layout()
    return save_figure(path, fig)

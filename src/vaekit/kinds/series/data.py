"""Reading metric and sensor streams: CSV files (comma or semicolon) with a time column and numeric
channels; a folder (or several files) is several streams with the same columns. Checks: the time
column parses and increases without duplicates, channels are numbers, a channel does not stay
constant over the training rows, a stream is at least one window long. A channel that repeats each
day or week is modelled by its difference from the same time a season earlier, and with several
channels one that wanders slowly by its change from the row before; channels are scaled by the
training rows' median and spread; missing cells stay missing (NaN) in the windows, which the model
leaves out of its likelihood.

Windows: the example for row t is rows t-W+1..t of every channel, (C, W); the first W-1 rows of a
stream repeat its first row on the left, so every row gets a window and a score.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...errors import VaekitError
from ...tabular import read_table

TIME_NAMES = ("timestamp", "datetime", "time", "date", "ts")
LABEL_NAMES = ("anomaly", "changepoint", "label", "is_anomaly")  # never channels unless named
STRETCH = 4  # windows in a stretch over which `changes_of` asks whether a channel wanders


@dataclass
class Stream:
    """One file's rows: times (N,) as strings, values (N, C) float64 with NaN where missing."""

    path: str
    times: list[str]
    values: np.ndarray
    frame: pd.DataFrame  # the file's cells as read (labels for evaluate)
    stamps: np.ndarray  # (N,) times as float nanoseconds (dates) or numbers: how many rows make a day


def stream_files(name: str | list[str]) -> list[Path]:
    """The files a --data value names: a file, a folder of CSV files (sorted, recursively), or
    several paths separated by commas."""
    parts = name if isinstance(name, list) else [p for p in str(name).split(",") if p]
    files = []
    for part in parts:
        path = Path(part)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().removesuffix(".gz").endswith(
                (".csv", ".tsv")))
            if not found:
                raise VaekitError(f"{path}: no CSV files in this folder")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise VaekitError(f"{path}: file not found")
    return files


def time_column(frame: pd.DataFrame, given: str | None, path: Path) -> str:
    if given:
        if given not in frame.columns:
            raise VaekitError(f"{path}: no time column {given!r} (it has {', '.join(list(frame.columns)[:8])})")
        return given
    for column in frame.columns:
        if column.strip().lower() in TIME_NAMES:
            return column
    raise VaekitError(f"{path}: no time column found (named one of {', '.join(TIME_NAMES)}); name it with --time-col")


def channels(frame: pd.DataFrame, time_col: str, given: list[str], path: Path) -> list[str]:
    if given:
        missing = [c for c in given if c not in frame.columns]
        if missing:
            raise VaekitError(f"{path}: no column {missing[0]!r} (it has {', '.join(list(frame.columns)[:8])})")
        return list(given)
    out = [c for c in frame.columns if c != time_col and c.strip().lower() not in LABEL_NAMES]
    if not out:
        raise VaekitError(f"{path}: no value columns besides the time column {time_col!r}")
    return out


def parse_times(cells: pd.Series, path: Path, column: str) -> np.ndarray:
    """Times as datetime64 nanoseconds (or numbers, for a numeric time column); an unparsable cell
    is refused. Repeated times and times that go back (a clock put back for daylight saving, as
    in four of NAB's files) are said in one warning and kept in the file's order: the rows are
    scored in the order they arrive, as a stream's are."""
    # Numbers only if the first cell is one: a date column skips a failed parse of every cell.
    numeric = pd.to_numeric(cells.iloc[:1], errors="coerce").notna().all()
    numbers = pd.to_numeric(cells, errors="coerce") if numeric else None
    if numbers is not None and numbers.notna().all():
        t = numbers.to_numpy(dtype=np.float64)
    else:
        parsed = pd.to_datetime(cells, errors="coerce", format="mixed")
        if parsed.isna().any():
            row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise VaekitError(f"{path}: row {row + 2} of {column!r} is not a time: {cells.iloc[row]!r}")
        t = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    steps = np.diff(t)
    repeated, back = int((steps == 0).sum()), int((steps < 0).sum())
    if repeated or back:
        first = int(np.flatnonzero(steps <= 0)[0]) + 1
        what = ", ".join(w for w in (f"{repeated} duplicate timestamps" if repeated else "",
                                     f"{back} steps back in time" if back else "") if w)
        print(f"vaekit: {path}: {what} (first at row {first + 2}, {cells.iloc[first]!r}); rows kept in the "
              "file's order", file=sys.stderr)
    return t


def read_stream(path: Path, time_col: str | None, columns: list[str], expect: list[str] | None = None) -> Stream:
    """One file as a Stream; `expect` (a run's channels) must all be there."""
    frame = read_table(path)
    frame.columns = [str(c).strip() for c in frame.columns]
    tcol = time_column(frame, time_col, path)
    names = channels(frame, tcol, expect or columns, path)
    stamps = parse_times(frame[tcol], path, tcol)
    values = np.empty((len(frame), len(names)))
    for i, name in enumerate(names):
        cells = frame[name].astype(str).str.strip()
        missing = cells.isin(["", "nan", "NaN", "NA", "N/A", "null", "NULL", "?"])
        numbers = pd.to_numeric(cells.where(~missing), errors="coerce")
        bad = numbers.isna() & ~missing
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise VaekitError(f"{path}: column {name!r} is not numeric (row {row + 2}: {cells.iloc[row]!r})")
        values[:, i] = numbers.to_numpy(dtype=np.float64)
    if not np.isfinite(values[~np.isnan(values)]).all():
        raise VaekitError(f"{path}: infinite values")
    return Stream(str(path), frame[tcol].astype(str).tolist(), values, frame, stamps)


def filled(values: np.ndarray) -> np.ndarray:
    """Missing cells carry the last value seen forward (causal); leading ones take the first value."""
    frame = pd.DataFrame(values).ffill().bfill()
    return frame.fillna(0.0).to_numpy()


def changes_of(train_values: list[np.ndarray], names: list[str], given: str = "auto",
               stretch: int = STRETCH * 32) -> list[str]:
    """The channels modelled by their change from the row before instead of their level: `given`
    names them (comma-separated), `none` none, and `auto`, with several channels, those that
    wander: over stretches of `stretch` training rows, their mean squared change is below their
    variance (neighbouring rows correlate above 0.5), at the median stretch. A slow channel such as
    a machine's temperature drifts past the range of a short training stretch, and a model of its
    level then calls the drift a fault (SKAB: 66% false alarms with levels, 10% with changes,
    docs/series.md). Measured stretch by stretch, a channel that is noisy within each of several
    states it steps between (a vibration) keeps its level: a step is news. A lone channel keeps
    its level too: it is all the stream has to say."""
    named = named_changes(given, names)
    if named is not None:
        return named
    if len(names) < 2:
        return []
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a stretch of one value or of gaps only
        parts = [v[a : a + stretch] for v in train_values for a in range(0, max(len(v) - stretch, 0) + 1, stretch)]
        ratios = [np.nanmean(np.diff(p, axis=0) ** 2, axis=0) / np.nanvar(p, axis=0) for p in parts]  # (stretches, C)
        median = np.nanmedian(np.array(ratios), axis=0)
        steps = np.concatenate([np.diff(v, axis=0) for v in train_values])
        moving = np.nanstd(steps, axis=0) > 0  # a channel that climbs by one fixed step keeps its level
    return [name for name, r, m in zip(names, median, moving) if r < 1 and m]


def named_changes(given: str, names: list[str]) -> list[str] | None:
    """The channels `--changes` names (none for `none`), checked against `names`; None for `auto`."""
    if given == "auto":
        return None
    chosen = [] if given == "none" else [c.strip() for c in given.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in names]
    if unknown:
        raise VaekitError(f"--changes: no channel {unknown[0]!r} (the channels are {', '.join(names[:8])})")
    return chosen


def changed(values: np.ndarray, names: list[str], changes: list[str]) -> np.ndarray:
    """`values` with each channel in `changes` replaced by its change from the row before (0 on
    the first row, missing where either row is): causal."""
    if not changes:
        return values
    out = values.copy()
    for i in [names.index(c) for c in changes]:
        out[:, i] = np.diff(values[:, i], prepend=values[:1, i])
    return out


SEASONS = {"day": 86_400e9, "week": 604_800e9}  # in nanoseconds, as parse_times gives dates
SEASONAL = 0.5  # a channel whose change over one season keeps below this share of its variance is seasonal
LAGS = 3  # seasons back that a seasonal row is compared with
SPAN = 3  # seasons the training rows must span for `auto` to consider one


def season_lag(stamps: np.ndarray, length: float) -> int:
    """Rows in `length` nanoseconds at the stream's median time step (0 for times that are not dates)."""
    step = float(np.median(np.diff(stamps))) if len(stamps) > 1 else 0.0
    if not step > 0 or stamps[-1] < 1e15:  # numbers, not dates since 1970: no day or week
        return 0
    return int(round(length / step))


def season_of(parts: list[tuple[np.ndarray, np.ndarray | None]], given: str = "auto") -> list[int]:
    """Per channel, the lag in rows of the season it repeats, 0 for none, from the training rows
    of each stream, (values (N, C), stamps (N,)). `auto`: of a day and a week, the one over which
    the channel changes least, where the rows span SPAN of them and the change's variance is below
    SEASONAL of the channel's (NAB's probation rows: 0.4 or less in the daily artificial streams,
    nyc_taxi and two AWS metrics, 0.8 or more in every other stream). A taxi count on a holiday
    looks like a Sunday: it is odd only next to the same hours a week earlier."""
    channels = parts[0][0].shape[1]
    if given == "none":
        return [0] * channels
    if given.isdigit():
        return [int(given)] * channels
    stamps = [t for _, t in parts if t is not None and len(t) > 1]
    if not stamps:
        return [0] * channels
    lags = {name: season_lag(stamps[0], length) for name, length in SEASONS.items()}
    if given in SEASONS:
        return [lags[given]] * channels
    best, chosen = np.full(channels, SEASONAL), [0] * channels
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a channel of gaps only
        for lag in lags.values():
            if lag < 2 or all(len(v) < SPAN * lag for v, _ in parts):
                continue
            change = np.concatenate([v[lag:] - v[:-lag] for v, _ in parts if len(v) >= SPAN * lag])
            ratio = np.nanvar(change, axis=0) / np.nanvar(np.concatenate([v for v, _ in parts]), axis=0)
            for i in np.flatnonzero(ratio < best):
                best[i], chosen[i] = ratio[i], lag
    return chosen


def season_lags(schema: dict) -> list[int]:
    """The run's season lag per channel (0: none; runs from before seasons have none)."""
    return schema.get("season") or [0] * len(schema["columns"])


def deseasoned(values: np.ndarray, lags: list[int]) -> np.ndarray:
    """Each seasonal channel as its difference from the nearest of the same rows 1..LAGS seasons
    earlier (missing where none is there): a row compared with several seasons is not called odd
    because one of them was (an anomaly a week ago would otherwise echo a week later)."""
    if not any(lags):
        return values
    out = values.copy()
    for i, lag in enumerate(lags):
        if not lag:
            continue
        x = values[:, i]
        diffs = np.full((LAGS, len(x)), np.nan)
        for k in range(1, LAGS + 1):
            if k * lag < len(x):
                diffs[k - 1, k * lag :] = x[k * lag :] - x[: -k * lag]
        nearest = np.nanargmin(np.where(np.isnan(diffs), np.inf, np.abs(diffs)), axis=0)
        out[:, i] = diffs[nearest, np.arange(len(x))]
    return out


def spread_of(v: np.ndarray) -> float:
    """The IQR's normal-equivalent spread, but not below a quarter of the std: a metric that sits
    on one value with rare excursions (a CPU at 0.13% with spikes to 1.5%) would otherwise scale its
    spikes to a thousand spreads, and the loss with them."""
    q1, q3 = np.quantile(v, [0.25, 0.75])
    return float(max((q3 - q1) / 1.349, v.std() / 4))


def fit_scaling(train_values: list[np.ndarray], names: list[str], source: str, changes: str = "none",
                window: int = 32, allow_flat: bool = False, season: str = "none",
                stamps: list[np.ndarray] | None = None) -> dict:
    """Per-channel centre (median) and spread (spread_of) of the training rows, after the channels
    chosen by `changes` (changes_of, over stretches of STRETCH windows) become their changes and
    those chosen by `season` (season_of, from the rows' `stamps`; none for a channel modelled by its
    changes) their seasonal differences. A channel that never changes is refused, or with
    `allow_flat` (detect's refits: it may move later) scaled by 1 about its value."""
    levels = np.concatenate(train_values)
    still = set()
    for i, name in enumerate(names):
        v = levels[:, i][~np.isnan(levels[:, i])]
        if len(v) == 0 or np.ptp(v) == 0:
            if not allow_flat:
                raise VaekitError(f"{source}: channel {name!r} is constant over the training rows; leave it out "
                                  "with --columns")
            still.add(i)
    moved = changes_of(train_values, names, changes, STRETCH * window)
    chosen = season_of(list(zip(train_values, stamps or [None] * len(train_values))), season)
    lags = [0 if n in moved else lag for n, lag in zip(names, chosen)]
    rows = np.concatenate([deseasoned(changed(t, names, moved), lags) for t in train_values])
    centre, spread = [], []
    for i in range(len(names)):
        v = rows[:, i][~np.isnan(rows[:, i])]
        if i in still:  # flat (or missing) so far, in detect: scaled by 1 about its value until it moves
            centre.append(float(np.median(v)) if len(v) else 0.0)
            spread.append(1.0)
            continue
        if len(v) == 0 and lags[i]:
            raise VaekitError(f"{source}: --season of {lags[i]} rows leaves channel {names[i]!r} nothing to "
                              "compare with in the training rows")
        if len(v) == 0:  # a channel never seen on two rows in a row has no change to model
            raise VaekitError(f"{source}: channel {names[i]!r} has no two neighbouring rows; leave it out of --changes")
        s = spread_of(v)
        if s == 0:  # a level that moves but repeats exactly each season: 1% of its own spread is news
            s = spread_of(levels[:, i][~np.isnan(levels[:, i])]) / 100 or 1.0
        centre.append(float(np.median(v)))
        spread.append(s)
    level = [float(np.nanmedian(levels[:, names.index(c)])) for c in moved]  # where drawn windows start
    return {"centre": centre, "spread": spread, "changes": moved, "level": level, "season": lags}


CLIP = 50.0  # scaled values are kept within +-CLIP spreads: far enough to score as anomalous, near enough to train on


def scaled(values: np.ndarray, schema: dict) -> np.ndarray:
    """Each channel (or its change, for the run's `changes`) minus its centre over its spread,
    clipped; missing cells stay NaN (the model leaves them out)."""
    values = changed(values, schema["columns"], schema.get("changes", []))
    values = deseasoned(values, season_lags(schema))
    return np.clip((values - np.array(schema["centre"])) / np.array(schema["spread"]), -CLIP, CLIP)


def modelled_names(schema: dict) -> list[str]:
    """The channels as the model sees them: a channel modelled by its changes is `NAME (change)`,
    a seasonal one `NAME (vs. L rows earlier)`."""
    return [f"{c} (change)" if c in schema.get("changes", []) else f"{c} (vs. {lag} rows earlier)" if lag else c
            for c, lag in zip(schema["columns"], season_lags(schema))]


def windows(x: np.ndarray, window: int) -> torch.Tensor:
    """(N, C) scaled rows -> (N, C, W) windows ending at each row, the start padded with row 0."""
    padded = np.concatenate([np.repeat(x[:1], window - 1, axis=0), x]) if len(x) else x
    view = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # (N, C, W)
    return torch.from_numpy(np.ascontiguousarray(view, dtype=np.float32))

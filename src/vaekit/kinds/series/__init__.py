"""The series kind: metric and sensor streams (a time column and numeric channels), a VAE over
sliding windows, and causal per-row anomaly scores calibrated on the training rows, with the
channels that explain them (data.py, model.py, commands.py; docs/series.md).

Commands: `anomaly` scores every row of a file with a trained run (the kind's own CSV: time,
anomaly_score, flagged, top_columns), `detect` learns and scores a stream in one go as an operator
runs it (NAB's protocol), `evaluate --label-col` gives point-wise F1, false and missed alarm rates,
AUROC and average precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import DataConfig
from ...errors import VaekitError
from ...options import option
from .. import Kind, KindCommand, Nets, Supports, lazy


CHANGES_HELP = ("series: channels modelled by their change from the row before instead of their level: auto "
                "(with several channels, those that wander slowly over the training rows, as a temperature "
                "does), none, or their names, comma-separated")
SEASON_HELP = ("series: compare each row with the same time one season earlier (the nearest of the last three): "
               "auto (default: a day or a week, for the channels that repeat it over the training rows), none, "
               "day, week, or a number of rows")


def check_season(given: str) -> str:
    if given in ("auto", "none", "day", "week") or (given.isdigit() and int(given) >= 1):
        return given
    raise VaekitError(f"--season must be auto, none, day, week or a number of rows, got {given!r}")


@dataclass
class Options:
    """Options of stream data (vaekit train --kind series --time-col T --columns A,B --window 32 ...)."""

    time_col: str | None = field(default=None, metadata={"help": "series: the time column (default: timestamp, "
                                                                 "datetime, time, date)"})
    columns: list[str] = field(default_factory=list, metadata={
        "help": "series: the channels (default: every column but the time and label columns)"})
    window: int = field(default=32, metadata={"help": "series: rows in each window the VAE sees (default 32)"})
    train_rows: int | None = field(default=None, metadata={
        "help": "series: fit on the first N rows of each file only (default: all rows)"})
    changes: str = field(default="auto", metadata={"help": CHANGES_HELP})
    season: str = field(default="auto", metadata={"help": SEASON_HELP})

    def __post_init__(self):
        check_season(self.season)
        if not 2 <= self.window <= 4096:
            raise VaekitError(f"--window must be in [2, 4096], got {self.window}")
        if self.train_rows is not None and self.train_rows < 2:
            raise VaekitError(f"--train-rows must be at least 2, got {self.train_rows}")


SCORES = ("auto", "neg_elbo", "recon_error", "worst_channel")
SCORE_HELP = ("series: how a row's newest point is scored: neg_elbo, its negative log-likelihood summed over the "
              "channels (each weighed by its predicted noise); recon_error, its squared error (each channel weighed "
              "by its training spread); worst_channel, each channel's squared error in units of its spread on "
              "held-out training rows, the largest; auto (default): worst_channel for several channels, neg_elbo "
              "for one")
SMOOTH_HELP = ("series: score each row by the mean of its last ROWS rows' scores (causal; default 8 for "
               "worst_channel, else 1)")


def check_smooth(smooth: int | None) -> None:
    if smooth is not None and not 1 <= smooth <= 10_000:
        raise VaekitError(f"--smooth must be in [1, 10000], got {smooth}")


@dataclass
class AnomalyOptions:
    score: str = option("auto", SCORE_HELP, choices=SCORES)
    smooth: int | None = option(None, SMOOTH_HELP, metavar="ROWS")

    def __post_init__(self):
        check_smooth(self.smooth)


@dataclass
class EvaluateOptions:
    label_col: str | None = option(None, "series: the 0/1 label column of --data, for F1, false and missed alarm "
                                         "rates, AUROC and average precision at the run's threshold")
    score: str = option("auto", SCORE_HELP, choices=SCORES)
    smooth: int | None = option(None, SMOOTH_HELP, metavar="ROWS")

    def __post_init__(self):
        check_smooth(self.smooth)


@dataclass
class DetectOptions:
    time_col: str | None = option(None, "the time column (default: timestamp, datetime, time, date)")
    columns: list[str] = option(help="the channels (default: every column but the time and label columns)",
                                default_factory=list)
    window: int = option(32, "rows in each window (default 32)")
    changes: str = option("auto", CHANGES_HELP.removeprefix("series: "))
    season: str = option("auto", SEASON_HELP.removeprefix("series: "))
    probation: str | None = option(None, "rows (or a share, e.g. 0.15) learned from before any score: default "
                                         "NAB's, 15% of the file and at most 750 rows", metavar="ROWS|SHARE")
    refit_every: int | None = option(None, "refit on everything seen so far every ROWS rows (default: each time "
                                           "the rows seen have doubled)", metavar="ROWS")
    fpr: float = option(0.01, "false-positive rate on the training rows' scores for `flagged` (default 0.01)")
    score: str = option("auto", SCORE_HELP.removeprefix("series: "), choices=SCORES)
    smooth: int | None = option(None, SMOOTH_HELP.removeprefix("series: "), metavar="ROWS")
    workers: int | None = option(None, "files scored side by side, each in a process of its own on one core "
                                       "(default: one per core)")

    def __post_init__(self):
        check_smooth(self.smooth)
        check_season(self.season)
        if self.workers is not None and self.workers < 1:
            raise VaekitError(f"--workers must be at least 1, got {self.workers}")
        if self.refit_every is not None and self.refit_every < 1:
            raise VaekitError(f"--refit-every must be at least 1, got {self.refit_every}")
        if not 0 < self.fpr < 1:
            raise VaekitError(f"--fpr must be in (0, 1), got {self.fpr}")


class SeriesKind(Kind):
    name = "series"
    Options = Options
    command_options = {"anomaly": AnomalyOptions, "evaluate": EvaluateOptions}
    commands = {"detect": KindCommand("series: learn from a stream's first rows and score the rest as they come "
                                      "(causal, with refits)", DetectOptions, "detect_command", takes_run=False)}
    replaces = {"anomaly": "anomaly"}  # its own CSV: time, anomaly_score, flagged, top_columns
    supports = Supports(likelihoods=("gaussian-per-point",))
    # A small MLP over windows, as Donut (two 100-unit layers); at least 1,000 steps however short the stream.
    defaults = {"model.hidden": [100, 100], "model.latent_dim": 8, "model.likelihood": "gaussian-per-point",
                "train.batch_size": 128, "train.lr": 2e-3, "train.epochs": 20, "train.warmup_steps": 100,
                "train.min_steps": 1000, "train.grad_clip": 5.0, "data.val_fraction": 0.1}
    final_outputs = ("calibration.json",)
    sample = lazy("commands", "sample")
    reconstruct = lazy("commands", "reconstruct")
    write = lazy("commands", "write")

    def detect(self, name) -> bool:
        return False  # a CSV is a table unless --kind series says otherwise

    def load(self, cfg: DataConfig, schema: dict | None = None):
        from .data import stream_files
        from .commands import load_streams

        return load_streams(stream_files(cfg.name), cfg, self.options(cfg), schema)

    def inputs(self, cfg: DataConfig, schema: dict, name: str | None):
        from .commands import file_windows

        return file_windows(cfg, schema, name)

    def tensors(self, run, data):
        from .commands import frame_windows

        return frame_windows(run, data), None

    records_batch = False  # a request is a stream: its windows must not run into another's rows

    def from_records(self, run, records: list, allow_unknown: bool = False):
        """A stream as JSON: its rows in time order, objects keyed by channel (the time column optional)."""
        import pandas as pd

        bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
        if bad is not None:
            raise VaekitError(f"input {bad} is a {type(records[bad]).__name__}, not an object keyed by channel")
        return pd.DataFrame.from_records(records)

    def score_objects(self, run, data, fpr: float) -> dict:
        """Each row of a stream (its rows in time order): anomaly_score, flagged and top_columns,
        as `vaekit anomaly` scores the rows of a file."""
        from .commands import frame_windows, scored, scoring

        score, smooth, cal = scoring(run)
        result = scored(run.vae, frame_windows(run, data), cal, run.schema["columns"], fpr, score, smooth)
        return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in result.items()}

    def decoded(self, run, z, labels=None):
        """Windows at latent codes z: per code, each channel's values over the window."""
        import torch

        from .commands import drawn_names, drawn_windows

        with torch.no_grad():
            means = drawn_windows(run.vae.decode(z).base_dist.loc.numpy(), run.schema)  # (N, C, W)
        return [{c: [round(float(v), 6) for v in window[i]] for i, c in enumerate(drawn_names(run.schema))}
                for window in means]

    def export_notes(self, run) -> dict:
        return {"schema": run.schema,
                "x": "windows (B, channels, window) of the newest rows, each channel (its change from the row before "
                     "for the schema's changes; for a channel with a season lag L, its difference from the nearest of "
                     "the rows L, 2L and 3L before) minus its centre over its spread",
                "params": "per point a mean and a log-scale: (B, 2 * channels, window), means first"}

    def schema_summary(self, run) -> dict:
        return {"columns": run.schema["columns"], "time_col": run.schema["time_col"], "window": run.schema["window"],
                "changes": run.schema.get("changes", []), "season": run.schema.get("season", [])}

    def nets(self, model_cfg, schema: dict) -> Nets:
        from ...nets import MLPDecoder
        from .model import GapEncoder, PointGaussian

        c, w = schema["x_shape"]
        return Nets((c, w), GapEncoder((c, w), 2 * model_cfg.latent_dim, model_cfg.hidden, model_cfg.activation),
                    MLPDecoder(model_cfg.latent_dim, (2 * c, w), model_cfg.hidden, model_cfg.activation),
                    PointGaussian())

    def save_final(self, run_dir, vae, splits, schema: dict, num_samples: int) -> None:
        from .commands import save_calibration

        save_calibration(run_dir, vae, splits, schema)

    def anomaly(self, run, opts) -> None:
        from .commands import anomaly

        anomaly(run, opts)

    def detect_command(self, opts) -> None:
        from .commands import detect

        detect(opts)

    def evaluate(self, run, opts, x, y, figures: dict) -> dict:
        from .commands import evaluate

        return evaluate(run, opts)

    def report(self, run, splits) -> list[str]:
        from .commands import report_sections

        return report_sections(run, splits)

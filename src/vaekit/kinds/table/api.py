"""TableVAE: the table kind from Python, DataFrame in and DataFrame out, in the style of SDV's
synthesizers and scikit-learn's estimators (fit, then sample / score / encode)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ... import anomaly
from ... import checkpoint as ckpt
from ...config import Config
from ...errors import VaekitError
from ...explore import embed
from . import TableKind
from .data import split_frames
from .anomaly import column_scores, top_columns
from .columns import encode_records
from .quality import table_quality
from .sampling import sample_frame


class TableVAE:
    """A VAE for one table.

        model = TableVAE(target="income").fit(frame)          # frame: a pandas DataFrame
        synthetic = model.sample(1000)                         # a DataFrame like `frame`
        rich = model.sample(100, conditions={"income": ">50K"})
        scores = model.score(new_rows)                         # score, top_columns per row

    Args:
        categorical, numeric, ignore: column names whose type to set, or to leave out.
        target: a column that samples are conditioned on (when categorical) and that
            `evaluate` predicts for ML efficacy.
        run_dir: where the run is written (default: a new temporary folder).
        config: dotted config keys over the table defaults, e.g. {"train.epochs": 50}.
    """

    def __init__(self, categorical=(), numeric=(), ignore=(), target: str | None = None,
                 run_dir: str | Path | None = None, config: dict | None = None, progress: bool = False):
        self.options = {"categorical": list(categorical), "numeric": list(numeric), "ignore": list(ignore),
                        "target": target}
        self.run_dir = Path(run_dir) if run_dir else None
        self.overrides = dict(config or {})
        self.progress = progress
        self.run = None
        self.frames = None

    @classmethod
    def load(cls, run_dir: str | Path) -> "TableVAE":
        """A trained table run (from `fit` or `vaekit train`)."""
        model = cls(run_dir=run_dir)
        model.run = ckpt.open_run(run_dir)
        if not isinstance(model.run.kind, TableKind):
            raise VaekitError(f"{run_dir}: a {model.run.kind.name} run, not a table run")
        return model

    def fit(self, frame: pd.DataFrame, test: pd.DataFrame | None = None) -> "TableVAE":
        """Train on `frame`'s rows (a seeded 10% held out for validation); `test` rows (default:
        a seeded 20% of `frame`) are kept for `evaluate`."""
        from ...train import train

        frame, test = as_frame(frame), None if test is None else as_frame(test)
        kind = TableKind()
        cfg = Config().override(kind.defaults).override(
            {"data.name": "<DataFrame>", "data.kind": "table"} | {f"data.options.{k}": v for k, v in self.options.items()}
            | self.overrides)
        self.frames = split_frames(frame, test, cfg.data)
        splits, schema = kind.encode_frames(self.frames, cfg.data)
        self.run_dir = self.run_dir or Path(tempfile.mkdtemp(prefix="vaekit-table-"))
        train(cfg, self.run_dir, data=splits, schema=schema, progress=self.progress)
        self.run = ckpt.open_run(self.run_dir)
        return self

    def trained(self):
        if self.run is None:
            raise VaekitError("the model is not trained: call fit(frame) or TableVAE.load(run_dir) first")
        return self.run

    def sample(self, num_rows: int, conditions: dict | None = None, temperature: float = 1.0,
               seed: int = 0) -> pd.DataFrame:
        """`num_rows` synthetic rows; `conditions` {column: value} hold in every row, the other
        columns following their conditional distribution."""
        run = self.trained()
        return sample_frame(run.vae, run.schema, num_rows, {k: str(v) for k, v in (conditions or {}).items()},
                            temperature, seed)

    def fields(self, frame: pd.DataFrame):
        run = self.trained()
        return run.kind.tensor(as_frame(frame), run.schema, "the DataFrame")

    def column_log_prob(self, frame: pd.DataFrame, num_samples: int | None = None) -> pd.DataFrame:
        """log p(x_c | z) of every cell, averaged over posterior draws: one column per column."""
        run = self.trained()
        num_samples = run.kind.score_samples(num_samples)
        x, y = self.fields(frame)
        scores = column_scores(run.vae, x, run.vae.labels_for(y), num_samples)
        return pd.DataFrame(-scores, columns=[c["name"] for c in run.schema["columns"]])

    def score(self, frame: pd.DataFrame, normal: pd.DataFrame | None = None,
              num_samples: int | None = None) -> pd.DataFrame:
        """Anomaly scores (negative ELBO, nats; higher is odder; one posterior draw unless
        `num_samples` says) and, for each row, the columns that most exceed their median score on
        normal rows (default: the validation rows)."""
        run = self.trained()
        num_samples = run.kind.score_samples(num_samples)
        x, y = self.fields(frame)
        if normal is not None:
            normal_x, normal_y = self.fields(normal)
        elif self.frames is not None:
            normal_x, normal_y = self.fields(self.frames.val)
        else:
            splits = run.splits()
            normal_x, normal_y = splits.val_x, splits.val_y
        vae = run.vae
        scores = anomaly.score(vae, x, num_samples=num_samples, y=vae.labels_for(y))
        tops = top_columns(vae, x, vae.labels_for(y), normal_x, vae.labels_for(normal_y), run.schema, num_samples)
        return pd.DataFrame({"score": scores, "top_columns": tops}, index=frame.index)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Posterior means (N, latent_dim): embeddings for downstream use."""
        run = self.trained()
        x, y = self.fields(frame)
        return embed(run.vae, x, y=run.vae.labels_for(y))[0].numpy()

    def evaluate(self, synthetic: pd.DataFrame | None = None) -> dict:
        """Fidelity, ML efficacy and privacy figures (quality.py) of `synthetic` (default: a fresh
        sample as large as the training rows) against the training and test rows."""
        run = self.trained()
        frames = self.frames or run.kind.frames(run.cfg.data)
        synthetic = self.sample(len(frames.train)) if synthetic is None else as_frame(synthetic)
        return table_quality(frames.train, frames.test, synthetic, run.schema)


def as_frame(frame) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise VaekitError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise VaekitError("the DataFrame has no rows")
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise VaekitError(f"the DataFrame has duplicate column names {sorted({n for n in names if names.count(n) > 1})}")
    return frame.set_axis(names, axis=1).reset_index(drop=True)




def frame_of_records(schema: dict, records: list, allow_unknown: bool = False) -> pd.DataFrame:
    """Rows from JSON records (objects keyed by column, null for a missing cell), checked as
    columns.encode_records checks them."""
    encode_records(records, schema, allow_unknown)
    return pd.DataFrame.from_records(records, columns=[c["name"] for c in schema["columns"]])

"""A table's rows: read, split into training / validation / test rows, and turned into the
fields the VAE sees (with the target's tokens as labels)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ...config import DataConfig
from ...data import Splits, split_indices
from ...errors import VaekitError
from . import columns as cols
from ...tabular import read_table, write_csv
from .sampling import target_index


@dataclass
class Frames:
    """The table's rows as read, split like the tensors."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def read_frames(cfg: DataConfig) -> Frames:
    """Read and split the configured table (and its --test-data) as the run does."""
    test = read_table(cfg.test_data) if cfg.test_data else None
    return split_frames(read_table(cfg.name), test, cfg)


def split_frames(frame: pd.DataFrame, test: pd.DataFrame | None, cfg: DataConfig) -> Frames:
    """Training / validation / test rows: the test rows are `test`, or a seeded share of
    `frame`; validation is a seeded share of the rest (10% unless configured)."""
    if test is not None and list(test.columns) != list(frame.columns):
        raise VaekitError(f"{cfg.test_data or 'the test rows'}: columns {list(test.columns)[:6]} differ from "
                          f"{cfg.name}'s {list(frame.columns)[:6]}")
    if test is None:
        keep, held = split_indices(len(frame), cfg.test_fraction, cfg.split_seed)
        frame, test = frame.iloc[keep], frame.iloc[held]
    val_fraction = cfg.val_fraction if cfg.val_fraction is not None else 0.1
    train_i, val_i = split_indices(len(frame), val_fraction, cfg.split_seed + 1)
    train_i = train_i[: cfg.max_train]
    reset = lambda f: f.reset_index(drop=True)
    return Frames(reset(frame.iloc[train_i]), reset(frame.iloc[val_i]), reset(test))


def encode_frames(frames: Frames, cfg: DataConfig, options, schema: dict | None = None):
    """Splits of fields for the frames, with the schema (fitted on the training rows if None)."""
    if schema is None:
        schema = cols.fit_schema(frames.train, options, cfg.name)
    x = [tensor(f, schema, src) for f, src in
         ((frames.train, cfg.name), (frames.val, cfg.name), (frames.test, cfg.test_data or cfg.name))]
    return Splits(x[0][0], x[0][1], x[1][0], x[1][1], x[2][0], x[2][1]), schema


def tensor(frame: pd.DataFrame, schema: dict, source: str):
    """(fields (N, F), the target column's tokens (N,) or None) of a frame's rows: the labels
    a run conditioned on its target takes, and latent plots colour by."""
    fields = torch.from_numpy(cols.encode(frame, schema, source))
    return with_target(fields, schema, lambda name, i: frame[name].iloc[i], source)


def with_target(fields: torch.Tensor, schema: dict, cell, source: str):
    """(fields, the target's tokens or None); `cell(name, i)` is row i's target value, for the error."""
    c = target_index(schema)
    if c is None:
        return fields, None
    y = fields[:, cols.num_fields({"columns": schema["columns"][:c]})].long()  # after the columns before it
    if (y < 0).any():
        name = schema["columns"][c]["name"]
        value = cell(name, int((y < 0).nonzero()[0, 0]))
        raise VaekitError(f"{source}: target column {name!r} holds {str(value)!r}, a value the training rows "
                          "never hold (the model is conditioned on its values)")
    return fields, y


def write_frame(frame: pd.DataFrame, schema: dict, out: Path) -> None:
    """CSV/TSV (gzipped when the name ends in .gz) or Parquet by the file name."""
    if out.suffix.lower() in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ...checkpoint import atomic_write

        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False, nthreads=1), sink)  # no Arrow threads
        atomic_write(out, sink.getvalue().to_pybytes())
    else:
        write_csv(cols.to_file_frame(frame, schema), out)

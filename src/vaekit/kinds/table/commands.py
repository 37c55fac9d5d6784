"""The commands on a table run: files of synthetic, reconstructed and interpolated rows, quality
figures, and the columns that explain anomaly scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ... import explore
from ...errors import VaekitError
from . import columns as cols
from .data import read_frames, write_frame
from ...tabular import read_table, write_csv
from .sampling import parse_conditions, sample_frame


def save_final(run_dir, vae, splits, schema: dict) -> None:
    """samples.csv (1,000 synthetic rows) and columns.png (each column, real beside synthetic)."""
    from .plots import save_columns

    run_dir = Path(run_dir)
    n = min(1000, len(splits.train_x))
    synthetic = sample_frame(vae, schema, n, seed=0)
    write_csv(cols.to_file_frame(synthetic, schema), run_dir / "samples.csv")
    real = cols.decode(splits.train_x[:n].numpy(), schema)
    save_columns(run_dir / "columns.png", real, synthetic, schema)


def sample(run, opts) -> pd.DataFrame:
    """`num` synthetic rows; --condition COL=VALUE holds in every one."""
    conditions = parse_conditions(opts.condition)
    return sample_frame(run.vae, run.schema, opts.num, conditions, opts.temperature, opts.seed)


def reconstruct(run, opts) -> pd.DataFrame:
    """Each input row followed by its reconstruction (columns row, version, then the table's)."""
    x, y = run.inputs(opts.data, opts.data_dir)
    x, y = x[: opts.num], run.vae.labels_for(None if y is None else y[: opts.num])
    rec = run.vae.reconstruct(x, y)
    both = pd.concat([cols.decode(x.numpy(), run.schema), cols.decode(rec.numpy(), run.schema)],
                     keys=["input", "reconstruction"])
    both = both.reset_index(level=0, names="version").sort_index(kind="stable")
    both.insert(0, "row", both.index)
    return both.reset_index(drop=True)


def interpolate(run, opts) -> pd.DataFrame:
    """Rows along paths between the posterior means of random input pairs (columns pair, step)."""
    x, y = run.inputs(opts.data, opts.data_dir)
    y = run.vae.labels_for(y)
    idx = explore.pair_indices(len(x), opts.pairs, opts.seed)
    ya, yb = (None, None) if y is None else (y[idx[::2]], y[idx[1::2]])
    fields = explore.interpolate(run.vae, x[idx[::2]], x[idx[1::2]], opts.steps, opts.spherical, ya, yb)
    frame = cols.decode(fields.flatten(0, 1).numpy(), run.schema)  # (P * K) rows
    frame.insert(0, "step", np.tile(np.arange(opts.steps), opts.pairs))
    frame.insert(0, "pair", np.repeat(np.arange(opts.pairs), opts.steps))
    return frame


@torch.no_grad()
def decoded(run, z: torch.Tensor, labels=None) -> pd.DataFrame:
    """Rows at latent codes z: the decoder's most likely cells (a conditional run's target from
    `labels`, its tokens; default the first)."""
    vae = run.vae
    y = None
    if vae.conditional:
        labels = labels if labels is not None else [0] * len(z)
        if len(labels) != len(z) or any(type(v) is not int or not 0 <= v < vae.cfg.num_classes for v in labels):
            raise VaekitError(f"labels: one integer in [0, {vae.cfg.num_classes - 1}] per latent code")
        y = torch.as_tensor(labels, dtype=torch.long)
    return cols.decode(vae.decode(z, y).mean.numpy(), run.schema)


OUTPUTS = {"sample": ("samples.csv", "{n} rows"), "reconstruct": ("reconstructions.csv",
           "{inputs} inputs, each followed by its reconstruction"), "interpolate": ("interpolations.csv",
           "{pairs} paths of {steps} rows")}


def write(run, command: str, frame: pd.DataFrame, opts) -> None:
    name, what = OUTPUTS[command]
    out = run.out_path(opts.out, name)
    write_frame(frame, run.schema, out)
    print(f"wrote {out} ({what.format(n=len(frame), inputs=len(frame) // 2, pairs=getattr(opts, 'pairs', 0), steps=getattr(opts, 'steps', 0))})")


def evaluate(run, args) -> dict:
    from .quality import table_quality

    frames = read_frames(run.data_config(args.data_dir))
    synthetic = args.synthetic
    synth = read_table(synthetic) if synthetic else sample_frame(run.vae, run.schema, len(frames.train), seed=args.seed)
    return table_quality(frames.train, frames.test, synth, run.schema, synthetic or "a fresh sample")


def explain(run, x, y, normal_x, normal_y, args) -> dict[str, list]:
    """The columns that raise each row's score most above what normal rows score there."""
    from .anomaly import top_columns

    vae = run.vae
    return {"top_columns": top_columns(vae, x, vae.labels_for(y), normal_x, vae.labels_for(normal_y), run.schema,
                                       args.num_samples)}


def report(run, splits) -> list[str]:
    from .plots import report_sections

    return report_sections(run, read_frames(run.data_config()), splits)

"""The commands on a table run: files of synthetic, reconstructed and interpolated rows, quality
figures, and the columns that explain anomaly scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import explore
from ...errors import VaekitError
from ..image import pair_indices
from . import columns as cols
from .data import read_frames, write_frame
from .read import read_table, write_csv
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


def sample(run, args) -> None:
    if args.label is not None or args.sampler != "prior":
        raise VaekitError("table runs sample from the prior, with --condition COL=VALUE to fix columns")
    conditions = parse_conditions(args.condition)
    frame = sample_frame(run.vae, run.schema, args.num, conditions, args.temperature, args.seed)
    out = run.out_path(args.out, "samples.csv")
    write_frame(frame, run.schema, out)
    print(f"wrote {out} ({len(frame)} rows)")


def reconstruct(run, args) -> None:
    x, y = run.inputs(args.data, args.data_dir)
    x, y = x[: args.num], run.vae.labels_for(None if y is None else y[: args.num])
    rec = run.vae.reconstruct(x, y)
    both = pd.concat([cols.decode(x.numpy(), run.schema), cols.decode(rec.numpy(), run.schema)],
                     keys=["input", "reconstruction"])
    both = both.reset_index(level=0, names="version").sort_index(kind="stable")
    both.insert(0, "row", both.index)
    out = run.out_path(args.out, "reconstructions.csv")
    write_frame(both.reset_index(drop=True), run.schema, out)
    print(f"wrote {out} ({len(x)} inputs, each followed by its reconstruction)")


def interpolate(run, args) -> None:
    x, y = run.inputs(args.data, args.data_dir)
    y = run.vae.labels_for(y)
    idx = pair_indices(len(x), args.pairs, args.seed)
    ya, yb = (None, None) if y is None else (y[idx[::2]], y[idx[1::2]])
    fields = explore.interpolate(run.vae, x[idx[::2]], x[idx[1::2]], args.steps, args.spherical, ya, yb)
    frame = cols.decode(fields.flatten(0, 1).numpy(), run.schema)  # (P * K) rows
    frame.insert(0, "step", np.tile(np.arange(args.steps), args.pairs))
    frame.insert(0, "pair", np.repeat(np.arange(args.pairs), args.steps))
    out = run.out_path(args.out, "interpolations.csv")
    write_frame(frame, run.schema, out)
    print(f"wrote {out} ({args.pairs} paths of {args.steps} rows)")


def evaluate(run, args) -> dict:
    from .quality import table_quality

    frames = read_frames(run.data_config(args.data_dir))
    synthetic = getattr(args, "synthetic", None)
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

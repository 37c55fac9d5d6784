"""The table kind: CSV / TSV / Parquet tables with numeric, categorical and boolean columns and
missing cells, modelled by a product of per-column likelihoods (columns.py, model.py).

Outputs are tables again: samples (optionally conditioned on column values) as CSV with the
training table's columns, types and spellings; anomaly scores with the columns that explain them;
fidelity, utility and privacy figures (quality.py).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...config import DataConfig
from ...data import Splits, split_indices
from ...errors import VaekitError
from .. import Kind, Nets
from . import columns as cols
from .model import Layout, TableDecoder, TableEncoder, TableLikelihood
from .read import is_table_path, read_table, write_csv

SAMPLE_CHUNK = 65_536  # rows decoded at a time: memory stays flat in the sample size


@dataclass
class Options:
    """Options of table data (vaekit train --categorical A,B --target C ...)."""

    categorical: list[str] = field(default_factory=list, metadata={"help": "table: columns to model as categories"})
    numeric: list[str] = field(default_factory=list, metadata={"help": "table: columns to model as numbers"})
    ignore: list[str] = field(default_factory=list, metadata={"help": "table: columns to leave out"})
    target: str | None = field(default=None, metadata={
        "help": "table: the column ML efficacy predicts and latent plots colour by"})


@dataclass
class Frames:
    """The table's rows as read, split like the tensors."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


class TableKind(Kind):
    name = "table"
    Options = Options
    defaults = {"model.hidden": [256, 256], "model.latent_dim": 32, "model.likelihood": "columns",
                "train.batch_size": 512, "train.lr": 2e-3, "train.epochs": 30, "train.warmup_steps": 200}
    final_outputs = ("samples.csv", "columns.png")

    def detect(self, name: str) -> bool:
        return is_table_path(name)

    def frames(self, cfg: DataConfig) -> Frames:
        """Read and split the configured table (and its --test-data) as the run does."""
        frame = read_table(cfg.name)
        if cfg.test_data:
            test = read_table(cfg.test_data)
            if list(test.columns) != list(frame.columns):
                raise VaekitError(f"{cfg.test_data}: columns {list(test.columns)[:6]}... differ from {cfg.name}'s")
        else:
            keep, held = split_indices(len(frame), cfg.test_fraction, cfg.split_seed)
            frame, test = frame.iloc[keep], frame.iloc[held]
        val_fraction = cfg.val_fraction if cfg.val_fraction is not None else 0.1
        train_i, val_i = split_indices(len(frame), val_fraction, cfg.split_seed + 1)
        train_i = train_i[: cfg.max_train]
        reset = lambda f: f.reset_index(drop=True)
        return Frames(reset(frame.iloc[train_i]), reset(frame.iloc[val_i]), reset(test))

    def load(self, cfg: DataConfig, schema: dict | None = None):
        options = self.options(cfg)
        frames = self.frames(cfg)
        if schema is None:
            schema = cols.fit_schema(frames.train, options, cfg.name)
        x = [self.tensor(f, schema, src) for f, src in
             ((frames.train, cfg.name), (frames.val, cfg.name), (frames.test, cfg.test_data or cfg.name))]
        return Splits(x[0][0], x[0][1], x[1][0], x[1][1], x[2][0], x[2][1]), schema

    def tensor(self, frame: pd.DataFrame, schema: dict, source: str):
        """(fields (N, F), the target column's tokens (N,) or None) of a frame's rows: the labels
        a run conditioned on its target takes, and latent plots colour by."""
        fields = torch.from_numpy(cols.encode(frame, schema, source))
        c = target_index(schema)
        if c is None:
            return fields, None
        y = fields[:, Layout(schema).token_field[c]].long()
        if (y < 0).any():
            name = schema["columns"][c]["name"]
            value = frame[name].iloc[int((y < 0).nonzero()[0, 0])]
            raise VaekitError(f"{source}: target column {name!r} holds {str(value)!r}, a value the training rows "
                              "never hold (the model is conditioned on its values)")
        return fields, y

    def model_config(self, model_cfg, schema: dict):
        """Conditioned on a categorical target: p(x|z, y), q(z|x, y) with y the target's token,
        so the columns' dependence on the target does not have to pass through z (sampling draws
        y from its training frequencies). This raised Adult's ML efficacy at equal fidelity."""
        c = target_index(schema)
        return dataclasses.replace(model_cfg, num_classes=cols.num_tokens(schema["columns"][c]) if c is not None else 0)

    def inputs(self, cfg: DataConfig, schema: dict, name: str | None):
        if name is None:
            splits, _ = self.load(cfg, schema)
            return splits.test_x, splits.test_y
        return self.tensor(read_table(name), schema, name)

    def nets(self, model_cfg, schema: dict) -> Nets:
        if model_cfg.net != "mlp":
            raise VaekitError(f"table runs use the mlp network, not {model_cfg.net!r}")
        if model_cfg.prior == "vamp":
            raise VaekitError("the VampPrior's pseudo-inputs are images; table runs take prior normal, mog or hierarchical")
        if model_cfg.num_classes != self.model_config(model_cfg, schema).num_classes:
            raise VaekitError("a table run is conditioned on its categorical --target, never on --num-classes")
        layout = Layout(schema)
        k = model_cfg.num_classes
        return Nets((layout.num_fields,),
                    TableEncoder(layout, 2 * model_cfg.latent_dim, model_cfg.hidden, model_cfg.activation, k),
                    TableDecoder(layout, model_cfg.latent_dim, model_cfg.hidden, model_cfg.activation, k),
                    TableLikelihood(layout))

    # ---- outputs

    def save_final(self, run_dir, vae, splits, schema: dict, num_samples: int) -> None:
        from .plots import save_columns

        run_dir = Path(run_dir)
        n = min(1000, len(splits.train_x))
        synthetic = sample_frame(vae, schema, n, seed=0)
        write_csv(cols.to_file_frame(synthetic, schema), run_dir / "samples.csv")
        real = cols.decode(splits.train_x[:n].numpy(), schema)
        save_columns(run_dir / "columns.png", real, synthetic, schema)

    def sample(self, run, args) -> None:
        if args.label is not None or args.sampler != "prior":
            raise VaekitError("table runs sample from the prior, with --condition COL=VALUE to fix columns")
        conditions = parse_conditions(args.condition)
        frame = sample_frame(run.vae, run.schema, args.num, conditions, args.temperature, args.seed)
        out = run.out_path(args.out, "samples.csv")
        write_frame(frame, run.schema, out)
        print(f"wrote {out} ({len(frame)} rows)")

    def reconstruct(self, run, args) -> None:
        x, y = run.inputs(args.data, args.data_dir)
        x, y = x[: args.num], run.vae.labels_for(None if y is None else y[: args.num])
        rec = run.vae.reconstruct(x, y)
        both = pd.concat([cols.decode(x.numpy(), run.schema), cols.decode(rec.numpy(), run.schema)], keys=["input", "reconstruction"])
        both = both.reset_index(level=0, names="version").sort_index(kind="stable")
        both.insert(0, "row", both.index)
        out = run.out_path(args.out, "reconstructions.csv")
        write_frame(both.reset_index(drop=True), run.schema, out)
        print(f"wrote {out} ({len(x)} inputs, each followed by its reconstruction)")

    def interpolate(self, run, args) -> None:
        from ... import explore
        from ..image import pair_indices

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

    def evaluate(self, run, args, x, y) -> dict:
        from .quality import table_quality

        frames = self.frames(run.data_config(args.data_dir))
        synthetic = getattr(args, "synthetic", None)
        if synthetic:
            synth = read_table(synthetic)
        else:
            synth = sample_frame(run.vae, run.schema, len(frames.train), seed=args.seed)
        return table_quality(frames.train, frames.test, synth, run.schema, synthetic or "a fresh sample")

    def explain(self, run, x, y, normal_x, normal_y, args) -> dict[str, list]:
        """The columns that raise each row's score most above what normal rows score there."""
        from .anomaly import top_columns

        vae = run.vae
        return {"top_columns": top_columns(vae, x, vae.labels_for(y), normal_x, vae.labels_for(normal_y), run.schema,
                                           args.num_samples)}

    def report(self, run, splits) -> list[str]:
        from .plots import report_sections

        return report_sections(run, self.frames(run.data_config()), splits)


def write_frame(frame: pd.DataFrame, schema: dict, out: Path) -> None:
    """CSV/TSV (gzipped when the name ends in .gz) or Parquet by the file name."""
    if out.suffix.lower() in (".parquet", ".pq"):
        import io

        from ...checkpoint import atomic_write

        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        atomic_write(out, buf.getvalue())
    else:
        write_csv(cols.to_file_frame(frame, schema), out)


def parse_conditions(items: list[str]) -> dict[str, str]:
    conditions = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise VaekitError(f"--condition {item!r}: expected COL=VALUE")
        conditions[name.strip()] = value.strip()
    return conditions


def condition_fields(schema: dict, conditions: dict[str, str]) -> dict[int, tuple[int, float]]:
    """{column index: (token, normal score)} for each condition, checked against the schema."""
    out = {}
    names = [c["name"] for c in schema["columns"]]
    for name, value in conditions.items():
        if name not in names:
            raise VaekitError(f"--condition {name}={value}: no column {name!r} in this run "
                              f"(it has {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
        c = names.index(name)
        col = schema["columns"][c]
        series = pd.Series([value], dtype=object)
        missing = cols.missing_mask(series)
        if col["type"] == "numeric":
            try:
                token, z = cols.encode_numeric(series, missing, col, "--condition")
            except VaekitError:
                raise VaekitError(f"--condition {name}={value}: column {name!r} is numeric, {value!r} is not a number") from None
            token, z = int(token[0]), float(z[0])
        else:
            token = cols.missing_token(col) if missing[0] else (
                col["categories"].index(value) if value in col["categories"] else -1)
            z = 0.0
        if token < 0:
            shown = ", ".join(col.get("categories", [])[:8])
            raise VaekitError(f"--condition {name}={value}: column {name!r} never holds {value!r} in the training "
                              f"rows" + (f" (its values include {shown})" if shown else ""))
        out[c] = (token, z)
    return out


def target_index(schema: dict) -> int | None:
    """The index of the target column when it is categorical (the model is conditioned on it)."""
    for c, col in enumerate(schema["columns"]):
        if col["name"] == schema.get("target") and col["type"] != "numeric":
            return c
    return None


@torch.no_grad()
def draw_latents(vae, schema: dict, fixed: dict[int, tuple[int, float]], num: int, temperature: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """z, and the target token y of a conditioned model, for `num` rows that satisfy `fixed`.

    Without conditions: z ~ p(z), y from the target's training frequencies. A condition on the
    target fixes y. Conditions on other columns are met by sampling-importance-resampling: draws
    (z, y) weighted by p(x_c = v | z, y), resampled; the columns being independent given (z, y),
    decoding them gives the other columns' conditional distribution given the conditions."""
    c_target = target_index(schema) if vae.conditional else None
    others = {c: v for c, v in fixed.items() if c != c_target}

    def propose(m):
        z = vae.prior.sample(m, 1.0 if others else temperature, generator, vae.encode)
        if c_target is None:
            return z, None
        if c_target in fixed:
            return z, torch.full((m,), fixed[c_target][0])
        counts = torch.tensor(schema["columns"][c_target]["counts"], dtype=torch.float)
        return z, torch.multinomial(counts, m, replacement=True, generator=generator)

    if not others:
        return propose(num)
    lay = Layout(schema)
    x = torch.zeros(1, lay.num_fields)
    for c, (token, value) in others.items():
        x[0, lay.token_field[c]] = token
        if lay.value_field[c] >= 0:
            x[0, lay.value_field[c]] = value
    which = torch.tensor(sorted(others))
    pool, log_w, ess = [], [], 0.0
    while ess < num and sum(len(p[0]) for p in pool) < 50 * max(num, 20_000):
        z, y = propose(max(4 * num, 20_000))
        pool.append((z, y))
        log_w.append(vae.decode(z, y).column_log_prob(x)[:, which].sum(-1))
        w = torch.cat(log_w)
        w = (w - w.max()).exp()
        ess = float(w.sum() ** 2 / (w * w).sum())
    if ess < num / 10:
        print(f"vaekit: the conditions are rare under the model: {num} rows drawn from {ess:.0f} effective latent "
              "draws, so rows may share latent codes", file=sys.stderr)
    idx = torch.multinomial(w, num, replacement=True, generator=generator)
    z = torch.cat([p[0] for p in pool])[idx]
    return z, None if c_target is None else torch.cat([p[1] for p in pool])[idx]


@torch.no_grad()
def sample_frame(vae, schema: dict, num: int, conditions: dict[str, str] | None = None, temperature: float = 1.0,
                 seed: int = 0) -> pd.DataFrame:
    """`num` synthetic rows: z ~ p(z) (or given the conditions), then each column from p(x_c|z)."""
    if num < 1:
        raise VaekitError(f"--num must be >= 1, got {num}")
    g = torch.Generator().manual_seed(seed)
    fixed = condition_fields(schema, conditions or {})
    lay = Layout(schema)
    parts = []
    was_training = vae.training
    vae.eval()
    for start in range(0, num, SAMPLE_CHUNK):
        n = min(SAMPLE_CHUNK, num - start)
        z, y = draw_latents(vae, schema, fixed, n, temperature, g)
        px_z = vae.decode(z, y)
        px_z.temperature = temperature
        fields = px_z.sample(generator=g)
        for c, (token, value) in fixed.items():  # the conditions hold exactly
            fields[:, lay.token_field[c]] = token
            if lay.value_field[c] >= 0:
                fields[:, lay.value_field[c]] = value
        if y is not None:  # the target column is the label the rows were drawn with
            fields[:, lay.token_field[target_index(schema)]] = y.float()
        parts.append(cols.decode(fields.numpy(), schema))
    vae.train(was_training)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

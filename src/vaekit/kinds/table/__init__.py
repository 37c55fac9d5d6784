"""The table kind: CSV / TSV / Parquet tables with numeric, categorical and boolean columns and
missing cells, modelled by a product of per-column likelihoods (columns.py, model.py).

Outputs are tables again: samples (optionally conditioned on column values) as CSV with the
training table's columns, types and spellings; anomaly scores with the columns that explain them;
fidelity, utility and privacy figures (quality.py). The kind's class is light (the CLI builds its
flags from Options); pandas and the rest load when a table is used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ...config import DataConfig
from ...options import option
from ...tabular import is_table_path
from .. import Kind, Nets, Supports, lazy



@dataclass
class Options:
    """Options of table data (vaekit train --categorical A,B --target C ...)."""

    categorical: list[str] = field(default_factory=list, metadata={"help": "table: columns to model as categories"})
    numeric: list[str] = field(default_factory=list, metadata={"help": "table: columns to model as numbers"})
    ignore: list[str] = field(default_factory=list, metadata={"help": "table: columns to leave out"})
    target: str | None = field(default=None, metadata={
        "help": "table: a column the model is conditioned on (when categorical), ML efficacy predicts and "
                "latent plots colour by"})


@dataclass
class SampleOptions:
    condition: list[str] = option(help="every row drawn has COL=VALUE, the other columns their conditional "
                                       "distribution (repeatable)", metavar="COL=VALUE", repeat=True,
                                  default_factory=list)


@dataclass
class EvaluateOptions:
    synthetic: str | None = option(None, "a synthetic table to score (default: a fresh sample as large as the "
                                         "training rows)")


class TableKind(Kind):
    name = "table"
    # One draw per score: on Adult rows with a corrupted column 10 draws raised AUROC by 0.001-0.014
    # for 10x the decoding (bench/table_score_draws.py); a service scoring rows wants the one pass.
    score_draws = 1
    Options = Options
    command_options = {"sample": SampleOptions, "evaluate": EvaluateOptions}
    supports = Supports(likelihoods=("columns",))
    defaults = {"model.hidden": [256, 256], "model.latent_dim": 32, "model.likelihood": "columns",
                "train.batch_size": 512, "train.lr": 2e-3, "train.epochs": 30, "train.warmup_steps": 200,
                "train.min_steps": 1500}
    final_outputs = ("samples.csv", "columns.png")
    sample = lazy("commands", "sample")
    reconstruct = lazy("commands", "reconstruct")
    interpolate = lazy("commands", "interpolate")
    write = lazy("commands", "write")

    def detect(self, name: str) -> bool:
        return is_table_path(name)

    def frames(self, cfg: DataConfig):
        from .data import read_frames

        return read_frames(cfg)

    def load(self, cfg: DataConfig, schema: dict | None = None):
        return self.encode_frames(self.frames(cfg), cfg, schema)

    def encode_frames(self, frames, cfg: DataConfig, schema: dict | None = None):
        from .data import encode_frames

        return encode_frames(frames, cfg, self.options(cfg), schema)

    def tensor(self, frame, schema: dict, source: str):
        from .data import tensor

        return tensor(frame, schema, source)

    def inputs(self, cfg: DataConfig, schema: dict, name: str | None):
        if name is None:
            splits, _ = self.load(cfg, schema)
            return splits.test_x, splits.test_y, None
        from ...tabular import read_table

        return (*self.tensor(read_table(name), schema, name), None)

    def data_from(self, objects, cfg: DataConfig):
        import pandas as pd

        if not isinstance(objects, pd.DataFrame):
            return None
        from .api import as_frame
        from .data import split_frames

        return self.encode_frames(split_frames(as_frame(objects), None, cfg), cfg)

    def tensors(self, run, data):
        from .api import as_frame

        return self.tensor(as_frame(data), run.schema, "the DataFrame")

    def model_config(self, model_cfg, schema: dict):
        """Conditioned on a categorical target: p(x|z, y), q(z|x, y) with y the target's token,
        so the columns' dependence on the target does not have to pass through z (sampling draws
        y from its training frequencies). This raised Adult's ML efficacy at equal fidelity."""
        from .columns import num_tokens
        from .sampling import target_index

        c = target_index(schema)
        return dataclasses.replace(model_cfg, num_classes=num_tokens(schema["columns"][c]) if c is not None else 0)

    def nets(self, model_cfg, schema: dict) -> Nets:
        from .model import Layout, TableDecoder, TableEncoder, TableLikelihood

        layout = Layout(schema)
        k = model_cfg.num_classes
        return Nets((layout.num_fields,),
                    TableEncoder(layout, 2 * model_cfg.latent_dim, model_cfg.hidden, model_cfg.activation, k),
                    TableDecoder(layout, model_cfg.latent_dim, model_cfg.hidden, model_cfg.activation, k),
                    TableLikelihood(layout))

    def save_final(self, run_dir, vae, splits, schema: dict, num_samples: int) -> None:
        from .commands import save_final

        save_final(run_dir, vae, splits, schema)

    def evaluate(self, run, opts, x, y, figures: dict) -> dict:
        from .commands import evaluate

        return evaluate(run, opts)

    def explain(self, run, x, y, normal_x, normal_y, opts) -> dict[str, list]:
        from .commands import explain

        return explain(run, x, y, normal_x, normal_y, opts)

    def from_records(self, run, records: list, allow_unknown: bool = False):
        from .api import frame_of_records

        return frame_of_records(run.schema, records, allow_unknown)

    def records_tensors(self, run, records: list, allow_unknown: bool = False):
        import torch

        from .columns import encode_records
        from .data import with_target

        fields = torch.from_numpy(encode_records(records, run.schema, allow_unknown))
        return with_target(fields, run.schema, lambda name, i: records[i][name], "the inputs")

    def decoded(self, run, z, labels=None):
        from .commands import decoded

        return decoded(run, z, labels)

    def column_names(self, run) -> list[str]:
        return [c["name"] for c in run.schema["columns"]]

    def export_notes(self, run) -> dict:
        from .model import Layout

        lay = Layout(run.schema)
        return {"schema": run.schema,
                "x": "fields per row: each column's token (its category's index, a numeric column's spike index "
                     "or continuous/missing token; -1 unseen), then for each numeric column with a continuous "
                     "part its quantile-transformed normal score (columns.py)",
                "token_field": lay.token_field, "value_field": lay.value_field,
                "params": {"groups": [{"columns": [lay.names[c] for c in g.cols.tolist()], "start": g.start,
                                       "rows": g.n, "width": g.width} for g in lay.groups],
                           "gaussians_start": lay.gauss_start, "value_columns": [lay.names[c] for c in lay.value_cols],
                           "about": "each group an (rows, width) block of logits (softmax per row; padding slots "
                                    "at -1e30), then the value columns' means and log-scales"}}

    def schema_summary(self, run) -> dict:
        from .sampling import target_index

        c = target_index(run.schema)
        return {"columns": [{"name": col["name"], "type": col["type"]} | (
                    {"categories": col["categories"][:100]} if col["type"] != "numeric" else {})
                for col in run.schema["columns"]],
                "target": None if c is None else run.schema["columns"][c]["name"]}

    def label_names(self, run) -> list[str] | None:
        from .sampling import target_index

        c = target_index(run.schema)
        return None if c is None else list(run.schema["columns"][c]["categories"])

    def report(self, run, splits) -> list[str]:
        from .commands import report

        return report(run, splits)

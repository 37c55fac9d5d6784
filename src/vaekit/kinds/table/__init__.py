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
from ...errors import VaekitError
from .. import Kind, Nets

CSV_SUFFIXES = (".csv", ".tsv", ".tab")
PARQUET_SUFFIXES = (".parquet", ".pq")


def is_table_path(name: str) -> bool:
    lower = name.lower()
    return lower.removesuffix(".gz").endswith(CSV_SUFFIXES) or lower.endswith(PARQUET_SUFFIXES)


@dataclass
class Options:
    """Options of table data (vaekit train --categorical A,B --target C ...)."""

    categorical: list[str] = field(default_factory=list, metadata={"help": "table: columns to model as categories"})
    numeric: list[str] = field(default_factory=list, metadata={"help": "table: columns to model as numbers"})
    ignore: list[str] = field(default_factory=list, metadata={"help": "table: columns to leave out"})
    target: str | None = field(default=None, metadata={
        "help": "table: a column the model is conditioned on (when categorical), ML efficacy predicts and "
                "latent plots colour by"})


class TableKind(Kind):
    name = "table"
    Options = Options
    defaults = {"model.hidden": [256, 256], "model.latent_dim": 32, "model.likelihood": "columns",
                "train.batch_size": 512, "train.lr": 2e-3, "train.epochs": 30, "train.warmup_steps": 200}
    final_outputs = ("samples.csv", "columns.png")

    def detect(self, name: str) -> bool:
        return is_table_path(name)

    def frames(self, cfg: DataConfig):
        from .data import read_frames

        return read_frames(cfg)

    def load(self, cfg: DataConfig, schema: dict | None = None):
        if cfg.binarize != "none" or cfg.exclude_classes:
            raise VaekitError("--binarize and --exclude-classes apply to image data, not to tables")
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
            return splits.test_x, splits.test_y
        from .read import read_table

        return self.tensor(read_table(name), schema, name)

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

    def save_final(self, run_dir, vae, splits, schema: dict, num_samples: int) -> None:
        from .commands import save_final

        save_final(run_dir, vae, splits, schema)

    def sample(self, run, args) -> None:
        from .commands import sample

        sample(run, args)

    def reconstruct(self, run, args) -> None:
        from .commands import reconstruct

        reconstruct(run, args)

    def interpolate(self, run, args) -> None:
        from .commands import interpolate

        interpolate(run, args)

    def evaluate(self, run, args, x, y, figures: dict) -> dict:
        from .commands import evaluate

        return evaluate(run, args)

    def explain(self, run, x, y, normal_x, normal_y, args) -> dict[str, list]:
        from .commands import explain

        return explain(run, x, y, normal_x, normal_y, args)

    def report(self, run, splits) -> list[str]:
        from .commands import report

        return report(run, splits)

"""Data kinds: everything that is specific to a kind of data, one module each.

A kind reads and validates raw data, fits a schema on the training split (saved as
RUN/schema.json, never pickle), turns examples into tensors and tensors back into what a user
wants (a PNG, CSV rows, ...), and names the encoder, decoder and likelihood that suit it. The VAE
core (priors, objectives, the training loop, checkpoints, evaluation) never asks which kind it
is running; commands ask the run's kind, and a kind says in one line when a command does not
apply to it.

A new kind is one module with a `Kind` subclass and one line in KINDS.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from ..config import DataConfig, build
from ..errors import VaekitError


@dataclass
class NoOptions:
    """A kind without options of its own."""


class Nets(NamedTuple):
    """What a kind builds for the VAE: example shape, encoder, decoder, likelihood."""

    x_shape: tuple[int, ...]
    encoder: nn.Module  # (x (B, *x_shape), condition) -> (B, 2 * latent_dim)
    decoder: nn.Module  # (z (B, D), condition) -> decoder output
    likelihood: nn.Module  # decoder output -> p(x|z), a torch distribution over whole examples


class Kind:
    """The interface every data kind implements. Methods a kind does not override say that the
    command does not apply to it (exit 2 from the CLI)."""

    name = ""
    Options: type = NoOptions
    # Config values (dotted keys) a fresh run of this kind starts from; --config and flags win.
    defaults: dict = {}
    # Values laid over `defaults` for time budgets (--max-minutes) of at least so many minutes:
    # {minutes: {dotted key: value}}, the largest threshold reached applies.
    budget_defaults: dict = {}
    final_outputs: tuple[str, ...] = ()  # files save_final writes into the run directory
    keeps_best = False  # keep the epoch whose epoch_metrics "selection" was lowest, not the last
    evaluate_examples: int | None = None  # vaekit evaluate's default cap on inputs (None: all)
    compiles = True  # may torch.compile the step by default (batches of one shape)

    def detect(self, name: str) -> bool:
        """Does `--data NAME` look like this kind's data (for --kind auto)?"""
        return False

    def defaults_for(self, minutes: float | None) -> dict:
        """`defaults`, with the budget_defaults of the largest threshold a budget reaches."""
        reached = [m for m in self.budget_defaults if minutes and minutes >= m]
        return self.defaults | (self.budget_defaults[max(reached)] if reached else {})

    def options(self, cfg: DataConfig):
        """The kind's Options, built from the config's `options` object and checked."""
        return build(self.Options, cfg.options, f"data.options ({self.name} data)")

    def load(self, cfg: DataConfig, schema: dict | None = None):
        """Train / validation / test Splits and the schema; the schema is fitted on the training
        split unless one is given (a trained run's)."""
        raise self.not_applicable("loading data")

    def inputs(self, cfg: DataConfig, schema: dict, name: str | None):
        """(x, y) to score or picture: the file `name`, or the run's test split when None."""
        raise self.not_applicable("reading inputs")

    def model_config(self, model_cfg, schema: dict):
        """The model config a run of this data trains with (e.g. conditioned on a column)."""
        return model_cfg

    def nets(self, model_cfg, schema: dict) -> Nets | None:
        """The kind's networks and likelihood; None: the generic dense ones (nets.py)."""
        return None

    def input_ids(self, cfg: DataConfig, schema: dict, name: str | None) -> list | None:
        """Names of the inputs `inputs` returns (e.g. user ids), for the files commands write."""
        return None

    def batches(self, n: int, batch_size: int, generator, device, data) -> list:
        """One epoch's mini-batches as index tensors (default: a random permutation)."""
        from ..data import batch_indices

        return batch_indices(n, batch_size, generator, device)

    def epoch_metrics(self, vae, splits) -> dict:
        """Figures of the validation split after each epoch, for metrics.jsonl; a "selection" entry
        (lower is better) replaces the validation -ELBO in choosing the best epoch."""
        return {}

    # ---- what a run writes during and after training

    def save_epoch(self, run_dir, vae, z, epoch: int) -> None:
        """A picture of fixed prior draws after each epoch, where the kind has one."""

    def save_final(self, run_dir, vae, splits, schema: dict, num_samples: int) -> None:
        """The outputs a person looks at first (final_outputs)."""

    # ---- commands

    def sample(self, run, args) -> None:
        raise self.not_applicable("sample")

    def reconstruct(self, run, args) -> None:
        raise self.not_applicable("reconstruct")

    def interpolate(self, run, args) -> None:
        raise self.not_applicable("interpolate")

    def manifold(self, run, args) -> None:
        raise self.not_applicable("manifold")

    def recommend(self, run, args) -> None:
        raise self.not_applicable("recommend")

    def optimize(self, run, args) -> None:
        raise self.not_applicable("optimize")

    def evaluation_order(self, x: torch.Tensor) -> torch.Tensor | None:
        """An order of the inputs that makes `vaekit evaluate`'s batches cheaper (its figures are
        means, so the order changes nothing else); None keeps theirs."""
        return None

    def evaluate(self, run, args, x, y, figures: dict) -> dict:
        """Figures of this kind beyond `figures` (the ELBO, NLL and latent diagnostics of x)."""
        return {}

    def explain(self, run, x, y, normal_x, normal_y, args) -> dict[str, list]:
        """Per-input columns for `vaekit anomaly`'s CSV beyond index, score and flag."""
        return {}

    def report(self, run, splits) -> list[str]:
        """HTML sections of `vaekit report`."""
        return []

    def not_applicable(self, what: str) -> VaekitError:
        return VaekitError(f"{what} does not apply to {self.name} runs")


# One line per kind: its name and where its Kind class lives (imported when first asked for).
KINDS = {
    "image": "vaekit.kinds.image:ImageKind",
    "table": "vaekit.kinds.table:TableKind",
    "items": "vaekit.kinds.items:ItemsKind",
    "smiles": "vaekit.kinds.sequence:SmilesKind",
    "text": "vaekit.kinds.sequence:TextKind",
}


def registry() -> dict[str, Kind]:
    import importlib

    kinds = {}
    for name, where in KINDS.items():
        module, cls = where.split(":")
        kinds[name] = getattr(importlib.import_module(module), cls)()
    return kinds


def kind_of(cfg: DataConfig) -> Kind:
    """The kind a DataConfig names, or the one whose data `name` looks like (kind auto)."""
    kinds = registry()
    if cfg.kind != "auto":
        if cfg.kind not in kinds:
            raise VaekitError(f"unknown data kind {cfg.kind!r}; choose from auto, {', '.join(kinds)}")
        return kinds[cfg.kind]
    for kind in kinds.values():
        if kind.detect(cfg.name):
            return kind
    return kinds["image"]  # its reader says what it cannot read


def option_fields() -> dict[str, dataclasses.Field]:
    """Every kind's option fields by name (the CLI makes a flag of each)."""
    fields = {}
    for kind in registry().values():
        for f in dataclasses.fields(kind.Options):
            fields.setdefault(f.name, f)
    return fields

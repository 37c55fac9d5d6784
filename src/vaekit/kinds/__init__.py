"""Data kinds: the interface every kind implements, and the registry of kinds.

A kind reads and validates raw data, fits a schema on the training split (saved as
RUN/schema.json, never pickle), turns examples into tensors and tensors back into what a user
wants (a PNG, CSV rows, strings, ...), names the encoder, decoder and likelihood that suit it, and
declares the options it adds to each command and the commands of its own. The VAE core (priors,
objectives, the training loop, checkpoints, evaluation) never asks which kind it is running.

A new kind is one folder under kinds/ with a `Kind` subclass, and one line in KINDS
(docs/architecture.md). This module is part of the core: it imports no kind.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..config import DataConfig, ModelConfig, build
from ..data import batch_indices
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


@dataclass(frozen=True)
class Supports:
    """The model choices a kind takes, declared once and checked in one place (check_model)."""

    nets: tuple[str, ...] = ("mlp",)
    priors: tuple[str, ...] = ("normal", "mog", "hierarchical")
    likelihoods: tuple[str, ...] = ()  # --likelihood values; the first is the kind's own
    conditioning: bool = False  # --num-classes: a conditional VAE on the data's labels
    input_dropout: bool = False  # --input-dropout: dropout on the encoder's input


@dataclass(frozen=True)
class KindCommand:
    """A command a kind adds (recommend, optimize, ...): `Kind.<method>(run, options)` with
    `options` the core's RunOptions or DataOptions merged with `options`. A command that takes no
    run (`takes_run=False`: `vaekit CMD --data F --kind K ...`, e.g. training and scoring a stream
    in one go) is `Kind.<method>(options)`, with --data, --data-dir, --out and --seed."""

    help: str
    options: type
    method: str
    reads_data: bool = True  # takes --data / --data-dir
    python: str | None = None  # the Kind method the Python API calls: (run, objects..., **options) -> objects
    takes_run: bool = True


def lazy(module: str, name: str):
    """A Kind method that calls `name(*args)` of the kind's sub-module `module`, imported on the
    first call: a kind's class stays light (the CLI builds its flags from it) and its pandas,
    RDKit or plotting load only when a command needs them."""

    def method(self, *args, **kwargs):
        return getattr(importlib.import_module(f"{type(self).__module__}.{module}"), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"{module}.{name} of the kind's folder."
    return method


class Kind:
    """The interface every data kind implements. What a kind does not override either has a
    default that fits every kind or says, in one line, that the command does not apply."""

    name = ""
    Options: type = NoOptions  # the options of its data: flags of `vaekit train`
    # Flags a kind adds to the shared commands: {command: dataclass}; a given flag that the run's
    # kind does not declare is refused (exit 2), never ignored.
    command_options: dict[str, type] = {}
    commands: dict[str, KindCommand] = {}  # commands of its own
    # Shared commands the kind does its own way: {command: Kind method (run, options)}, with the
    # shared command's options (e.g. a series' anomaly CSV: time, anomaly_score, flagged, top_columns).
    replaces: dict[str, str] = {}
    score_draws = 10  # posterior draws per -ELBO anomaly score unless the user says (--num-samples)
    supports = Supports()
    # Config values (dotted keys) a fresh run of this kind starts from; --config and flags win.
    defaults: dict = {}
    # Values laid over `defaults` for time budgets (--max-minutes) of at least so many minutes:
    # {minutes: {dotted key: value}}, the largest threshold reached applies.
    budget_defaults: dict = {}
    final_outputs: tuple[str, ...] = ()  # files save_final writes into the run directory
    keeps_best = False  # keep the epoch whose epoch_metrics "selection" was lowest, not the last
    evaluate_examples: int | None = None  # the evaluation's default cap on inputs (None: all)
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

    # ---- data

    def load(self, cfg: DataConfig, schema: dict | None = None):
        """Train / validation / test Splits and the schema; the schema is fitted on the training
        split unless one is given (a trained run's)."""
        raise NotImplementedError

    def inputs(self, cfg: DataConfig, schema: dict, name: str | None):
        """(x, y, ids) to score or picture: the file `name`, or the run's test split when None.
        ids name the inputs in the files commands write (user ids, strings), or are None."""
        raise NotImplementedError

    def data_from(self, objects, cfg: DataConfig):
        """(Splits, schema) of in-memory training data (a DataFrame for tables), or None when
        the kind takes no such objects: what vaekit.fit trains on when it is not given a path."""
        return None

    def tensors(self, run, data):
        """(x, y) of the kind's natural objects (arrays, a DataFrame, strings, ...): the Python
        API's inputs."""
        raise self.not_applicable("Python inputs")

    # ---- the model

    def model_config(self, model_cfg, schema: dict):
        """The model config a run of this data trains with (e.g. conditioned on a column)."""
        return model_cfg

    def nets(self, model_cfg, schema: dict) -> Nets | None:
        """The kind's networks and likelihood; None: the generic dense ones (nets.py)."""
        return None

    # ---- training

    def batches(self, n: int, batch_size: int, generator, device, data) -> list:
        """One epoch's mini-batches as index tensors (default: a random permutation)."""
        return batch_indices(n, batch_size, generator, device)

    def prepare_batch(self, cfg: DataConfig):
        """A function (x, generator) -> x the loop applies to every training batch (e.g. dynamic
        binarisation), or None."""
        return None

    def epoch_metrics(self, vae, splits) -> dict:
        """Figures of the validation split after each epoch, for metrics.jsonl; a "selection" entry
        (lower is better) replaces the validation -ELBO in choosing the best epoch."""
        return {}

    def save_epoch(self, run_dir, vae, z, epoch: int) -> None:
        """A picture of fixed prior draws after each epoch, where the kind has one."""

    def save_final(self, run_dir, vae, splits, schema: dict, num_samples: int) -> None:
        """The outputs a person looks at first (final_outputs)."""

    # ---- the shared commands: results as the kind's natural objects, then written

    def sample(self, run, opts):
        raise self.not_applicable("sample")

    def reconstruct(self, run, opts):
        raise self.not_applicable("reconstruct")

    def interpolate(self, run, opts):
        raise self.not_applicable("interpolate")

    def write(self, run, command: str, result, opts) -> None:
        """Write what `command` returned to --out (or its default file in the run)."""
        raise self.not_applicable(command)

    def evaluation_order(self, x: torch.Tensor) -> torch.Tensor | None:
        """An order of the inputs that makes evaluation's batches cheaper (its figures are means,
        so the order changes nothing else); None keeps theirs."""
        return None

    def evaluate(self, run, opts, x, y, figures: dict) -> dict:
        """Figures of this kind beyond `figures` (the ELBO, NLL and latent diagnostics of x)."""
        return {}

    def score_samples(self, num_samples: int | None) -> int:
        """Posterior draws per anomaly score: the user's number, else this kind's default."""
        return self.score_draws if num_samples is None else num_samples

    def anomalies(self, run, y, opts) -> tuple[list | None, np.ndarray | None]:
        """(the anomaly classes, which inputs are anomalies) where the kind knows, for AUROC."""
        return None, None

    def explain(self, run, x, y, normal_x, normal_y, opts) -> dict[str, list]:
        """Per-input columns for the anomaly CSV beyond index, score and flag."""
        return {}

    def report(self, run, splits) -> list[str]:
        """HTML sections of the report."""
        return []

    # ---- JSON records: the kind's objects in the bodies a server (serve.py) takes and gives

    records_batch = True  # reading several requests' records together equals reading each alone

    def from_records(self, run, records: list, allow_unknown: bool = False):
        """The objects `tensors` takes, from a request's JSON records (one per example). Values the
        training data never held (a category, an item) are refused unless `allow_unknown`."""
        return records

    def records_tensors(self, run, records: list, allow_unknown: bool = False):
        """(x, y) of JSON records: `tensors` of `from_records`, or a faster way to the same."""
        return self.tensors(run, self.from_records(run, records, allow_unknown))

    def to_records(self, run, result, form: str = "list") -> list:
        """A command's result as JSON records (`form`: how arrays such as images are written)."""
        return plain_records(result)

    def decoded(self, run, z: torch.Tensor, labels: list | None = None):
        """The kind's objects at latent codes z (N, D): what the explorer shows at a point."""
        raise self.not_applicable("decode")

    def score_objects(self, run, data, fpr: float) -> dict | None:
        """A kind that scores its own way (`replaces` anomaly): per-input columns (lists) for the
        inputs `from_records` gave, as its `anomaly` command scores them; None where it has none."""
        return None

    def column_names(self, run) -> list[str] | None:
        """The columns of an example whose likelihood scores each one (column_log_prob): a
        server's scores then name the columns that explain them. None: no such columns."""
        return None

    def schema_summary(self, run) -> dict:
        """What a client needs to know to send this run's records."""
        return {}

    def label_names(self, run) -> list[str] | None:
        """The names of the labels (y) the run's examples carry, where they have names."""
        return None

    # ---- export (export.py)

    def onnx_graphs(self, run, x: torch.Tensor, y: torch.Tensor | None) -> list:
        """The export.Graph list `vaekit export` writes, traced at the test inputs x (default: the
        encoder and decoder of fixed-shape examples)."""
        from ..export import dense_graphs

        return dense_graphs(run, x, y)

    def export_notes(self, run) -> dict:
        """What model.json says about turning the kind's data into the encoder's input and the
        decoder's parameters back into data."""
        return {"schema": run.schema}

    def not_applicable(self, what: str) -> VaekitError:
        return VaekitError(f"{what} does not apply to {self.name} runs")


def plain_records(result) -> list:
    """JSON records of a DataFrame (objects, null for missing cells), an array or a list."""
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        return result.astype(object).where(result.notna(), None).to_dict("records")
    if isinstance(result, torch.Tensor):
        result = result.numpy()
    if isinstance(result, np.ndarray):
        return np.round(result, 5).tolist() if result.dtype.kind == "f" else result.tolist()
    return list(result)


def check_model(kind: Kind, model_cfg, schema: dict) -> None:
    """Refuse a model choice the kind does not take, naming the value and the kind (the classes a
    kind conditions on by itself, e.g. a table's target, are the kind's to set)."""
    s, name = kind.supports, kind.name
    if model_cfg.net not in s.nets:
        raise VaekitError(f"--model {model_cfg.net} does not apply to {name} runs (they take {', '.join(s.nets)})")
    if model_cfg.prior not in s.priors:
        raise VaekitError(f"--prior {model_cfg.prior} does not apply to {name} runs (they take {', '.join(s.priors)})")
    if s.likelihoods and model_cfg.likelihood not in s.likelihoods:
        raise VaekitError(f"--likelihood {model_cfg.likelihood} does not apply to {name} runs "
                          f"(they take {', '.join(s.likelihoods)})")
    if not s.conditioning and model_cfg.num_classes not in (0, kind.model_config(model_cfg, schema).num_classes):
        raise VaekitError(f"--num-classes does not apply to {name} runs")
    if model_cfg.input_dropout != ModelConfig.input_dropout and not s.input_dropout:
        raise VaekitError(f"--input-dropout does not apply to {name} runs")


# One line per kind: its name and where its Kind class lives (imported when first asked for).
# `--kind auto` asks them in this order: audio's test (wav files) before image's (any folder).
KINDS = {
    "audio": "vaekit.kinds.audio:AudioKind",
    "image": "vaekit.kinds.image:ImageKind",
    "table": "vaekit.kinds.table:TableKind",
    "items": "vaekit.kinds.items:ItemsKind",
    "smiles": "vaekit.kinds.sequence:SmilesKind",
    "text": "vaekit.kinds.sequence:TextKind",
    "series": "vaekit.kinds.series:SeriesKind",
}


@functools.cache
def registry() -> dict[str, Kind]:
    """Every kind, by name (kinds hold no state: one instance each serves every run)."""
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


def option_fields(kinds=None) -> dict[str, dataclasses.Field]:
    """The data option fields of `kinds` (default: every kind) by name: the CLI makes a flag of
    each."""
    fields = {}
    for kind in (kinds if kinds is not None else registry().values()):
        for f in dataclasses.fields(kind.Options):
            fields.setdefault(f.name, f)
    return fields

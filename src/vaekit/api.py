"""The Python API over every data kind: `fit` trains a run, `open` loads one, and the Model they
return takes and gives back the kind's natural objects (arrays of images, DataFrames of rows,
lists of SMILES or sentences, lists of item ids). The CLI's commands call the same kind methods
with the same option dataclasses, so the two cannot drift.

    model = vaekit.fit("adult.csv", target="income", epochs=50)     # any kind: a path, or objects
    rows = model.sample(1000)                                        # a DataFrame like the table
    z = model.encode(rows)                                           # (N, latent_dim) posterior means
    model = vaekit.open("runs/digits")
    images = model.sample(16, seed=1)                                # (16, 1, 8, 8) in [0, 1]
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from . import anomaly, explore
from . import checkpoint as ckpt
from .commands import core_options, own_options
from .config import SECTION_FIELDS, Config
from .errors import VaekitError
from .evaluation import test_figures
from .kinds import kind_of, registry
from .options import build_options, merged


def load_data(cfg):
    """Load, validate and split the configured data set, whatever its kind (see kinds/)."""
    return kind_of(cfg).load(cfg)[0]


def fit(data, kind: str = "auto", out: str | Path | None = None, progress: bool = False, **options) -> "Model":
    """Train a VAE on `data` and return it. `data` is what `vaekit train --data` takes (a path,
    or a named set such as "digits"), or objects a kind reads in memory (a DataFrame: a table).

    `options` are the flags of `vaekit train` by their field names (`epochs=20`, `latent_dim=8`,
    `target="income"`, `user_col="user"`, ...): config fields and the kind's data options alike.
    The run is written to `out` (default: a new temporary folder).
    """
    from .train import train

    keys = {}
    for name, value in options.items():
        section = SECTION_FIELDS.get(name)
        keys[f"{section}.{name}" if section else f"data.options.{name}"] = value
    in_memory = not isinstance(data, (str, Path))
    name = "<objects>" if in_memory else str(data)
    splits = schema = None
    if in_memory:
        found = next((k for n, k in registry().items() if kind in ("auto", n)
                      and k.data_from(data, Config().data) is not None), None)
        if found is None:
            raise VaekitError(f"fit takes a path, or objects a kind reads in memory (a DataFrame), not "
                              f"{type(data).__name__}")
    else:
        found = kind_of(Config().override({"data.name": name, "data.kind": kind}).data)
    known = {f.name for f in dataclasses.fields(found.Options)}
    for key in keys:
        if key.startswith("data.options.") and key.split(".")[-1] not in known:
            raise VaekitError(f"{key.split('.')[-1]} does not apply to {found.name} data")
    cfg = Config().override(found.defaults).override({"data.name": name, "data.kind": found.name} | keys)
    if in_memory:
        splits, schema = found.data_from(data, cfg.data)
    run_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix=f"vaekit-{found.name}-"))
    train(cfg, run_dir, data=splits, schema=schema, progress=progress)
    return Model(ckpt.open_run(run_dir))


def open(run_dir: str | Path, device: str = "cpu") -> "Model":  # noqa: A001 - vaekit.open(run), as gzip.open
    """A trained run (from `fit` or `vaekit train`)."""
    return Model(ckpt.open_run(run_dir, device))


class Model:
    """A trained run of any kind. Methods take and return the kind's natural objects; `vae` is the
    torch model underneath (encode -> q(z|x), decode -> p(x|z))."""

    def __init__(self, run):
        self.run = run

    @property
    def vae(self):
        return self.run.vae

    @property
    def kind(self) -> str:
        return self.run.kind.name

    def __repr__(self) -> str:
        return f"vaekit.Model({self.kind}, {self.vae.latent_dim} latents, {str(self.run.run_dir)!r})"

    def options(self, command: str, values: dict):
        """The option dataclass `command` takes for this run's kind, built from `values` (the
        CLI's flags by field name) and checked as the CLI checks them."""
        kind = self.run.kind
        cls = merged(f"{kind.name}_{command}", core_options(kind, command), *own_options(kind, command))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise VaekitError(f"{unknown[0]} does not apply to {kind.name} runs' {command}")
        return build_options(cls, values)

    def tensors(self, data):
        """(x, y) of natural inputs, or of a file of the kind's data (a path)."""
        if isinstance(data, (str, Path)):
            return self.run.inputs(str(data))
        return self.run.kind.tensors(self.run, data)

    # ---- the commands every kind has

    def sample(self, num: int = 64, seed: int = 0, temperature: float = 1.0, **options):
        """`num` new examples: images (N, C, H, W) in [0, 1], a DataFrame of rows, a list of strings."""
        result = self.run.kind.sample(self.run, self.options("sample", {"num": num, "seed": seed,
                                                                          "temperature": temperature} | options))
        return result.numpy() if isinstance(result, torch.Tensor) else result

    @torch.no_grad()
    def encode(self, data, logvar: bool = False):
        """Posterior means (N, latent_dim) of the inputs (and log-variances with `logvar`)."""
        x, y = self.tensors(data)
        mu, lv = explore.embed(self.vae, x, y=self.vae.labels_for(y))
        return (mu.numpy(), lv.numpy()) if logvar else mu.numpy()

    @torch.no_grad()
    def decode(self, z):
        """The decoder's means (N, *example shape) at latent codes z (N, latent_dim)."""
        return self.vae.decode(torch.as_tensor(np.asarray(z), dtype=torch.float32)).mean.numpy()

    def reconstruct(self, data, num: int | None = None):
        """The inputs beside their reconstructions (images: (N, 2, C, H, W); rows and strings: a
        DataFrame pairing each input with its reconstruction)."""
        result = self.with_inputs(data, "reconstruct", {"num": num if num is not None else 10**9})
        return result.numpy() if isinstance(result, torch.Tensor) else result

    def interpolate(self, data, steps: int = 10, pairs: int = 1, spherical: bool = False, seed: int = 0):
        """Paths between the posterior means of random pairs of the inputs."""
        result = self.with_inputs(data, "interpolate", {"steps": steps, "pairs": pairs, "spherical": spherical,
                                                        "seed": seed})
        return result.numpy() if isinstance(result, torch.Tensor) else result

    @torch.no_grad()
    def score(self, data, num_samples: int | None = None, how: str = "neg_elbo", seed: int = 0) -> np.ndarray:
        """Anomaly scores (N,): -ELBO in nats (or reconstruction error), higher is odder; averaged
        over `num_samples` posterior draws (default: the kind's, as `vaekit anomaly`)."""
        x, y = self.tensors(data)
        num_samples = self.run.kind.score_samples(num_samples)
        return anomaly.score(self.vae, x, how, num_samples=num_samples, seed=seed, y=self.vae.labels_for(y))

    def evaluate(self, data=None, iw_samples: int = 100, seed: int = 0, max_examples: int | None = None) -> dict:
        """The core test figures (-ELBO, NLL, bits/dim, KL per dimension, active units) of the
        inputs (default: the run's test split), capped as the kind caps them."""
        if data is None:
            splits = self.run.splits()
            x, y = splits.test_x, splits.test_y
        else:
            x, y = self.tensors(data)
        return test_figures(self.run, x, y, iw_samples=iw_samples, seed=seed, max_examples=max_examples)

    def export(self, out: str | Path, data_dir: str | None = None) -> list[Path]:
        """The encoder and decoder as ONNX models in `out`, checked against PyTorch on the run's
        test inputs, and model.json describing them (as `vaekit export`)."""
        from .export import export

        return export(self.run, out, data_dir)

    # ---- what one kind adds (Kind.commands with a Python method: recommend, optimize, ...)

    def __getattr__(self, name: str):
        kind = self.__dict__["run"].kind if "run" in self.__dict__ else None
        command = kind.commands.get(name) if kind is not None else None
        if command is None or command.python is None:
            raise AttributeError(f"a {kind.name if kind else ''} model has no {name!r}")
        method = getattr(kind, command.python)
        return lambda *args, **kwargs: method(self.run, *args, **kwargs)

    def with_inputs(self, data, command: str, values: dict):
        """The kind's `command` (reconstruct, interpolate) on `data`: a path is read as the CLI
        reads --data; objects stand in for the run's inputs."""
        if isinstance(data, (str, Path)):
            return getattr(self.run.kind, command)(self.run, self.options(command, values | {"data": str(data)}))
        x, y = self.tensors(data)
        ids = list(data) if isinstance(data, (list, tuple)) and all(isinstance(d, str) for d in data) else None
        if ids is not None and len(ids) != len(x):
            ids = None  # some strings were left out: the kind decodes its own
        run = InputsRun(self.run, x, y, ids)
        return getattr(self.run.kind, command)(run, self.options(command, values))


class InputsRun:
    """An open run whose `inputs` are given objects instead of a file: what the kinds' commands
    read when the Python API hands them data."""

    def __init__(self, run, x, y, ids):
        self._run, self._inputs = run, (x, y, ids)

    def __getattr__(self, name):
        return getattr(self._run, name)

    def inputs_with_ids(self, name=None, data_dir=None):
        return self._inputs

    def inputs(self, name=None, data_dir=None):
        return self._inputs[:2]


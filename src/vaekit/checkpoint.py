"""The run directory, vaekit's unit of persistence, assembled from the formats of files.py. No
pickle anywhere: tensors go to safetensors, everything else to JSON, every file written atomically.

    RUN/config.json              the Config the run was trained with
    RUN/schema.json              what the data kind fitted on the training split (columns, ...)
    RUN/model.safetensors        the trained weights (+ x_shape and epoch in its metadata)
    RUN/checkpoint.safetensors   weights + optimizer state + RNG states + progress, for --resume
    RUN/metrics.jsonl            one JSON record per epoch
    RUN/*.png, RUN/samples/      pictures
    RUN/.lock                    held (flock) by the process training the run

Each safetensors file records the SHA-256 of its tensor bytes in its JSON header; a file whose
bytes do not match is refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .config import Config, build
from .errors import VaekitError
# The file formats a run is made of (re-exported: benches and kinds' older code call them here).
from .files import (atomic_write, dump_safetensors, lock_run, read_json, read_safetensors,  # noqa: F401
                    write_json, write_npy)

FORMAT = "vaekit-run-1"


@dataclass
class TrainState:
    """Where training stands; saved with every checkpoint."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed steps (including skipped ones)
    epoch_step: int = 0  # steps done in the current, unfinished epoch
    best_val: float | None = None  # best validation -ELBO so far (or the kind's own selection score)
    best_epoch: int = 0
    stopped_early: bool = False
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient
    rollbacks: int = 0
    lr_scale: float = 1.0  # halved at each rollback
    train_seconds: float = 0.0  # time spent in training epochs (the --max-minutes budget)
    time_up: bool = False  # the --max-minutes budget is spent: the run is complete


# ---------------------------------------------------------------- run directory


def create_run(run_dir: Path, cfg: Config, schema: dict) -> None:
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():
        raise VaekitError(f"{run_dir}: already holds a run; use --resume {run_dir} or another --out")
    try:
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VaekitError(f"{run_dir}: cannot create run directory ({e.strerror})") from None
    write_json(run_dir / "schema.json", schema)
    write_json(run_dir / "config.json", cfg.to_dict())
    (run_dir / "metrics.jsonl").write_text("")


def load_config_of(run_dir: Path) -> Config:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise VaekitError(f"{run_dir}: run directory not found")
    return Config.from_dict(read_json(run_dir / "config.json"), source=str(run_dir / "config.json"))


def weights_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in module.state_dict().items()}


def save_model(run_dir: Path, vae, epoch: int, name: str = "model.safetensors") -> None:
    save_weights(Path(run_dir) / name, weights_of(vae), vae.x_shape, epoch)


def save_weights(path: Path, weights: dict[str, torch.Tensor], x_shape, epoch: int) -> None:
    meta = {"format": FORMAT, "x_shape": json.dumps(list(x_shape)), "epoch": str(epoch)}
    atomic_write(Path(path), dump_safetensors(weights, meta))


def save_checkpoint(run_dir: Path, vae, optimizer, generator: torch.Generator, state: TrainState,
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Everything --resume needs, in one file, so a crash never leaves a mixed checkpoint.
    `extra` holds the mid-epoch tensors (the epoch's starting RNG state, partial sums)."""
    tensors = {f"model.{k}": v for k, v in weights_of(vae).items()}
    tensors.update({f"extra.{k}": v for k, v in (extra or {}).items()})
    opt = optimizer.state_dict()
    for i, per_param in opt["state"].items():
        for k, v in per_param.items():
            tensors[f"optim.{i}.{k}"] = torch.as_tensor(v).detach().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.data"] = generator.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {
        "format": FORMAT,
        "state": json.dumps(asdict(state)),
        "param_groups": json.dumps(opt["param_groups"]),
        "x_shape": json.dumps(list(vae.x_shape)),
    }
    atomic_write(Path(run_dir) / "checkpoint.safetensors", dump_safetensors(tensors, meta))


def load_weights(vae, tensors: dict[str, torch.Tensor], source: Path, against: str = "config.json") -> None:
    try:
        vae.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = " ".join(s.strip() for s in first[1:3]) if len(first) > 1 else first[0]
        raise VaekitError(f"{source}: weights do not match {against} ({detail})") from None


def load_checkpoint(run_dir: Path, vae, optimizer, generator: torch.Generator) -> tuple[TrainState, dict]:
    """Restore weights, optimizer and RNG states; returns the progress and the mid-epoch extras."""
    path = Path(run_dir) / "checkpoint.safetensors"
    tensors, meta = read_safetensors(path)
    try:
        state = build(TrainState, json.loads(meta["state"]), f"{path}: training state")
        groups = json.loads(meta["param_groups"])
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise TypeError("param_groups is not a list of objects")
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise VaekitError(f"{path}: missing or bad training state ({e})") from None
    load_weights(vae, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    per_param: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, i, name = k.split(".", 2)
            if not i.isdigit():
                raise VaekitError(f"{path}: bad optimizer entry {k!r}")
            per_param.setdefault(int(i), {})[name] = v
    try:
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
        torch.set_rng_state(tensors["rng.torch"])
        generator.set_state(tensors["rng.data"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as e:
        raise VaekitError(f"{path}: optimizer or RNG state does not fit this run ({e})") from None
    extra = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
    if state.epoch_step and not {"rng.epoch_start", "partial.sums"} <= extra.keys():
        raise VaekitError(f"{path}: mid-epoch checkpoint lacks its epoch state")
    return state, extra


def shape_of(meta: dict, path: Path) -> tuple[int, ...]:
    """The example shape recorded with the weights ((C, H, W) for images, (F,) for a table's
    fields), checked before anything is allocated for it."""
    try:
        shape = json.loads(meta["x_shape"])
    except (KeyError, json.JSONDecodeError) as e:
        raise VaekitError(f"{path}: metadata lacks the data shape ({e})") from None
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 3
            or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 2**24 for s in shape)
            or math.prod(shape) > 2**24):
        raise VaekitError(f"{path}: bad data shape {str(shape)[:40]} in metadata")
    return tuple(shape)


def read_model(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], tuple[int, ...], Path]:
    """A run's trained weights, the data shape they were trained on, and the file they came from."""
    path = Path(run_dir) / "model.safetensors"
    tensors, meta = read_safetensors(path)
    return tensors, shape_of(meta, path), path


def read_schema(run_dir: Path, x_shape: tuple[int, ...] | None = None) -> dict:
    """RUN/schema.json; runs made before data kinds had none, and get {"x_shape": x_shape}
    (an image's shape is its whole schema)."""
    path = Path(run_dir) / "schema.json"
    if not path.exists() and x_shape is not None:
        return {"x_shape": list(x_shape)}
    schema = read_json(path)
    if not isinstance(schema, dict):
        raise VaekitError(f"{path}: expected a JSON object")
    return schema


def build_vae(cfg: Config, kind, schema: dict, x_shape: tuple[int, ...] | None = None):
    """The VAE a run's config, kind and schema describe (untrained)."""
    from .vae import VAE

    nets = kind.nets(cfg.model, schema)
    if nets is not None:
        return VAE(cfg.model, nets.x_shape, nets)
    return VAE(cfg.model, tuple(x_shape if x_shape is not None else schema["x_shape"]))


@dataclass
class LoadedRun:
    """A trained run, ready for the commands: its config, data kind, schema and model."""

    run_dir: Path
    cfg: Config
    kind: object  # kinds.Kind
    schema: dict
    vae: torch.nn.Module

    def data_config(self, data_dir: str | None = None):
        return self.cfg.override({"data.data_dir": data_dir}).data

    def splits(self, data_dir: str | None = None):
        """The run's train / validation / test splits, encoded with its schema."""
        return self.kind.load(self.data_config(data_dir), self.schema)[0]

    def inputs(self, name: str | None = None, data_dir: str | None = None):
        """(x, y) from the file `name`, or the run's test split; checked against the model."""
        return self.inputs_with_ids(name, data_dir)[:2]

    def inputs_with_ids(self, name: str | None = None, data_dir: str | None = None):
        """(x, y, ids): `inputs` read once, with the names the kind gives them (or None)."""
        x, y, ids = self.kind.inputs(self.data_config(data_dir), self.schema, name)
        shown = name or self.cfg.data.name
        if tuple(x.shape[1:]) != self.vae.x_shape:
            raise VaekitError(f"{shown}: examples of shape {tuple(x.shape[1:])}, the model takes {self.vae.x_shape}")
        if self.vae.conditional and y is None:
            raise VaekitError(f"{shown}: a conditional VAE needs labelled inputs")
        return x, y, ids

    def out_path(self, out: str | None, default: str) -> Path:
        """`out`, or `default` inside the run directory; its folder must exist."""
        path = Path(out) if out else self.run_dir / default
        if not path.parent.is_dir():
            raise VaekitError(f"{path.parent}: output directory not found")
        return path


def open_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """A run directory's config, kind, schema and trained model (eval mode, on `device`)."""
    from .kinds import kind_of

    run_dir = Path(run_dir)
    cfg = load_config_of(run_dir)
    tensors, x_shape, path = read_model(run_dir)
    kind = kind_of(cfg.data)
    schema = read_schema(run_dir, x_shape)
    vae = build_vae(cfg, kind, schema, x_shape)
    if tuple(vae.x_shape) != x_shape:
        raise VaekitError(f"{path}: trained on examples of shape {x_shape}, {run_dir / 'schema.json'} describes {vae.x_shape}")
    load_weights(vae, tensors, path)
    return LoadedRun(run_dir, cfg, kind, schema, vae.to(device).eval())


def load(run_dir: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the trained VAE of a run directory (eval mode, on `device`)."""
    return open_run(run_dir, device).vae


def load_trained_weights(run_dir: str | Path, vae) -> None:
    """Copy a run's trained weights into `vae`, whose config and data shape must match them."""
    tensors, shape, path = read_model(run_dir)
    if shape != tuple(vae.x_shape):
        raise VaekitError(f"{path}: trained on data of shape {shape}, not {tuple(vae.x_shape)}")
    load_weights(vae, tensors, path, against="the new run's model")  # copied onto the model's device


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise VaekitError(f"{path}: corrupt metrics log ({e})") from None


def write_metrics(run_dir: Path, records: list[dict]) -> None:
    atomic_write(Path(run_dir) / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records).encode())

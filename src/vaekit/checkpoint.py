"""The run directory, vaekit's unit of persistence. No pickle anywhere: tensors go to
safetensors, everything else to JSON, and every file is written atomically.

    RUN/config.json              the Config the run was trained with
    RUN/model.safetensors        the trained weights (+ x_shape and epoch in its metadata)
    RUN/checkpoint.safetensors   weights + optimizer state + RNG states + progress, for --resume
    RUN/metrics.jsonl            one JSON record per epoch
    RUN/*.png, RUN/samples/      pictures
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import Config
from .errors import VaekitError

FORMAT = "vaekit-run-1"


@dataclass
class TrainState:
    """Where training stands; saved with every checkpoint."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    best_val: float = float("inf")
    best_epoch: int = 0
    stopped_early: bool = False


# ---------------------------------------------------------------- atomic files


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise VaekitError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VaekitError(f"{path}: not valid JSON ({e})") from None


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise VaekitError(f"{path}: file not found") from None
    try:
        tensors = st_load(raw)
        n = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8 : 8 + n]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise VaekitError(f"{path}: not a valid safetensors file ({e})") from None
    return tensors, meta


# ---------------------------------------------------------------- run directory


def create_run(run_dir: Path, cfg: Config) -> None:
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():
        raise VaekitError(f"{run_dir}: already holds a run; use --resume {run_dir} or another --out")
    if run_dir.exists() and not run_dir.is_dir():
        raise VaekitError(f"{run_dir}: exists and is not a directory")
    try:
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VaekitError(f"{run_dir}: cannot create run directory ({e.strerror})") from None
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
    meta = {"format": FORMAT, "x_shape": json.dumps(list(vae.x_shape)), "epoch": str(epoch)}
    atomic_write(Path(run_dir) / name, st_save({k: v.cpu() for k, v in weights_of(vae).items()}, meta))


def save_checkpoint(run_dir: Path, vae, optimizer, generator: torch.Generator, state: TrainState) -> None:
    """Everything --resume needs, in one file, so a crash never leaves a mixed checkpoint."""
    tensors = {f"model.{k}": v for k, v in weights_of(vae).items()}
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
    atomic_write(Path(run_dir) / "checkpoint.safetensors", st_save({k: v.cpu() for k, v in tensors.items()}, meta))


def load_weights(vae, tensors: dict[str, torch.Tensor], source: Path) -> None:
    try:
        vae.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = " ".join(s.strip() for s in first[1:3]) if len(first) > 1 else first[0]
        raise VaekitError(f"{source}: weights do not match config.json ({detail})") from None


def load_checkpoint(run_dir: Path, vae, optimizer, generator: torch.Generator) -> TrainState:
    path = Path(run_dir) / "checkpoint.safetensors"
    tensors, meta = read_safetensors(path)
    try:
        state = TrainState(**json.loads(meta["state"]))
        groups = json.loads(meta["param_groups"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise VaekitError(f"{path}: missing or bad training state ({e})") from None
    load_weights(vae, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    per_param: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, i, name = k.split(".", 2)
            per_param.setdefault(int(i), {})[name] = v
    try:
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
        torch.set_rng_state(tensors["rng.torch"])
        generator.set_state(tensors["rng.data"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
    except (KeyError, ValueError, RuntimeError) as e:
        raise VaekitError(f"{path}: optimizer or RNG state does not fit this run ({e})") from None
    return state


def load(run_dir: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the trained VAE of a run directory (eval mode, on `device`)."""
    from .vae import VAE

    run_dir = Path(run_dir)
    cfg = load_config_of(run_dir)
    path = run_dir / "model.safetensors"
    tensors, meta = read_safetensors(path)
    try:
        x_shape = tuple(json.loads(meta["x_shape"]))
    except (KeyError, json.JSONDecodeError) as e:
        raise VaekitError(f"{path}: metadata lacks the data shape ({e})") from None
    vae = VAE(cfg.model, x_shape)
    load_weights(vae, tensors, path)
    return vae.to(device).eval()


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

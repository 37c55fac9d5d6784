"""The `vaekit` command: each sub-command is a short function over the library.

Bad input raises VaekitError, printed as one line `vaekit: error: ...` with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .config import Config, load_config
from .data import load_data
from .errors import VaekitError
from .metrics import evaluate_elbo
from .plotting import save_grid


def hidden_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes:
        raise argparse.ArgumentTypeError("expected at least one layer size")
    return sizes


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="digits | mnist | fashion-mnist | path to .npy/.npz or an image folder")
    p.add_argument("--data-dir", help="folder of IDX files (default: $VAEKIT_DATA_DIR)")


# Flags of `train` and the config keys they set; None (not given) leaves the config's value.
TRAIN_FLAGS = {
    "data": "data.name", "data_dir": "data.data_dir", "binarize": "data.binarize",
    "val_fraction": "data.val_fraction",
    "model": "model.net", "latent_dim": "model.latent_dim", "hidden": "model.hidden",
    "activation": "model.activation", "likelihood": "model.likelihood", "sigma": "model.sigma",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr",
    "lr_schedule": "train.lr_schedule", "beta": "train.beta", "kl_warmup": "train.kl_warmup_epochs",
    "grad_clip": "train.grad_clip", "patience": "train.patience", "seed": "train.seed",
    "precision": "train.precision", "threads": "train.threads", "device": "train.device",
}


def cmd_train(args) -> None:
    from .train import train

    if args.resume:
        run_dir = Path(args.resume)
        cfg = ckpt.load_config_of(run_dir)
        # Only the length of a run and where its data lives may change on resume.
        cfg = cfg.override({"train.epochs": args.epochs, "data.data_dir": args.data_dir,
                            "train.threads": args.threads})
        ckpt.write_json(run_dir / "config.json", cfg.to_dict())
    else:
        if not args.out:
            raise VaekitError("train needs --out RUN (or --resume RUN)")
        run_dir = Path(args.out)
        cfg = load_config(args.config) if args.config else Config()
        cfg = cfg.override({key: getattr(args, flag) for flag, key in TRAIN_FLAGS.items()})
    train(cfg, run_dir, resume=bool(args.resume), progress=not args.quiet)
    for name in ("model.safetensors", "samples.png", "reconstructions.png", "curves.png"):
        print(f"wrote {run_dir / name}")


def cmd_sample(args) -> None:
    vae = ckpt.load(args.run)
    g = torch.Generator().manual_seed(args.seed)
    x = vae.sample(args.num, temperature=args.temperature, generator=g)  # (N, C, H, W)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise VaekitError(f"{out.parent}: output directory not found")
    if out.suffix == ".npy":
        import io

        buf = io.BytesIO()
        np.save(buf, x.numpy())
        ckpt.atomic_write(out, buf.getvalue())
    else:
        save_grid(out, x)
    print(f"wrote {out}")


def cmd_evaluate(args) -> None:
    cfg = ckpt.load_config_of(Path(args.run))
    vae = ckpt.load(args.run)
    cfg = cfg.override({"data.name": args.data, "data.data_dir": args.data_dir})
    x = load_data(cfg.data).test_x
    result = evaluate_elbo(vae, x, batch_size=args.batch_size, seed=args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>14}: {v:.4f}" if isinstance(v, float) else f"{k:>14}: {v}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaekit", description="Train and use variational autoencoders.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a VAE into a run directory")
    add_data_args(p)
    p.add_argument("--out", help="run directory to create")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN")
    p.add_argument("--config", help="JSON config file; flags override it")
    p.add_argument("--model", choices=["mlp", "conv"])
    p.add_argument("--latent-dim", type=int)
    p.add_argument("--hidden", type=hidden_sizes, help="layer sizes, e.g. 400 or 512,256")
    p.add_argument("--activation", choices=["relu", "tanh", "elu", "gelu"])
    p.add_argument("--likelihood", choices=["bernoulli", "gaussian", "gaussian-learned"])
    p.add_argument("--sigma", type=float, help="std of the fixed Gaussian likelihood")
    p.add_argument("--binarize", choices=["none", "static", "dynamic"])
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-schedule", choices=["constant", "cosine"])
    p.add_argument("--beta", type=float, help="KL weight (beta-VAE)")
    p.add_argument("--kl-warmup", type=float, help="epochs of linear KL warm-up")
    p.add_argument("--grad-clip", type=float, help="max gradient norm (0: off)")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int)
    p.add_argument("--device")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="draw new examples from the prior")
    p.add_argument("run")
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="samples.png", help=".png grid or .npy array")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="test-set figures of a trained run")
    p.add_argument("run")
    add_data_args(p)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except VaekitError as e:
        print(f"vaekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return 130
    return 0

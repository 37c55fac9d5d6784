"""The `vaekit` command: each sub-command is a short function over the library.

Bad input raises VaekitError, printed as one line `vaekit: error: ...` with exit code 2.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from . import anomaly, distributed, explore
from . import checkpoint as ckpt
from .config import Config, load_config
from .errors import VaekitError
from .kinds import kind_of, option_fields
from .metrics import evaluate
from .plotting import save_histogram, save_scatter
from .train import TrainingStopped, train


def int_list(text: str) -> list[int]:
    """'512,256' -> [512, 256]; 'none' -> [] (no hidden layer: a linear map)."""
    if text.strip().lower() == "none":
        return []
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers or none, got {text!r}") from None
    if not sizes:
        raise argparse.ArgumentTypeError("expected layer sizes, e.g. 512,256, or none for no hidden layer")
    return sizes


UNCONSTRAINED = ("SMILES runs: sample from the model as it is, without the grammar that keeps samples "
                 "well-formed and within valence")


def temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):  # nan fails too
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def str_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="digits | mnist | fashion-mnist | a file (.npy/.npz, .csv/.tsv/.parquet, ...) "
                                  "or an image folder")
    p.add_argument("--data-dir", help="folder of IDX files (default: $VAEKIT_DATA_DIR)")


def add_kind_option_args(p: argparse.ArgumentParser) -> None:
    """A flag for every option of every data kind (kinds/*.py: Options), e.g. --categorical A,B."""
    for name, f in option_fields().items():
        kwargs = {"dest": f"option_{name}", "help": f.metadata.get("help"), "default": None}
        if "bool" not in str(f.type):
            kwargs["metavar"] = name.upper()
        if "list[str]" in str(f.type):
            kwargs["type"] = str_list
        elif "bool" in str(f.type):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif "int" in str(f.type):
            kwargs["type"] = int
        elif "float" in str(f.type):
            kwargs["type"] = float
        p.add_argument("--" + name.replace("_", "-"), **kwargs)


def option_flags(args) -> dict:
    """The kind options given on the command line: {name: value}."""
    return {k[len("option_"):]: v for k, v in vars(args).items() if k.startswith("option_") and v is not None}


# Flags of `train` and the config keys they set; None (not given) leaves the config's value.
TRAIN_FLAGS = {
    "data": "data.name", "kind": "data.kind", "test_data": "data.test_data", "data_dir": "data.data_dir", "binarize": "data.binarize",
    "val_fraction": "data.val_fraction", "test_fraction": "data.test_fraction", "split_seed": "data.split_seed",
    "exclude_classes": "data.exclude_classes",
    "max_train": "data.max_train",
    "model": "model.net", "latent_dim": "model.latent_dim", "hidden": "model.hidden",
    "conv_channels": "model.conv_channels",
    "activation": "model.activation", "likelihood": "model.likelihood", "sigma": "model.sigma",
    "prior": "model.prior", "prior_components": "model.prior_components", "posterior_init_std": "model.posterior_init_std",
    "num_classes": "model.num_classes",
    "top_latent_dim": "model.top_latent_dim", "top_hidden": "model.top_hidden", "objective": "train.objective",
    "iw_samples": "train.iw_samples", "free_bits": "train.free_bits",
    "epochs": "train.epochs", "max_minutes": "train.max_minutes", "batch_size": "train.batch_size", "lr": "train.lr",
    "lr_schedule": "train.lr_schedule", "weight_decay": "train.weight_decay", "input_dropout": "model.input_dropout", "warmup_steps": "train.warmup_steps", "beta": "train.beta", "kl_warmup": "train.kl_warmup_epochs",
    "grad_clip": "train.grad_clip", "ema": "train.ema", "loss_guard": "train.loss_guard", "patience": "train.patience", "seed": "train.seed",
    "precision": "train.precision", "threads": "train.threads", "device": "train.device",
    "checkpoint_every": "train.checkpoint_every", "checkpoint_minutes": "train.checkpoint_minutes",
    "compile": "train.compile", "channels_last": "train.channels_last", "tf32": "train.tf32",
    "onednn": "train.onednn", "calibrate": "train.calibrate",
    "init_from": "train.init_from",
}


def cmd_train(args) -> None:
    if args.resume and args.init_from:
        raise VaekitError("--resume continues a run and --init-from starts a new one: give one of them")
    if args.resume:
        run_dir = Path(args.resume)
        cfg = ckpt.load_config_of(run_dir)
        # Only the length of a run and where its data lives may change on resume.
        cfg = cfg.override({"train.epochs": args.epochs, "data.data_dir": args.data_dir,
                            "train.threads": args.threads, "train.checkpoint_every": args.checkpoint_every,
                            "train.checkpoint_minutes": args.checkpoint_minutes})
        ckpt.write_json(run_dir / "config.json", cfg.to_dict())
    else:
        if not args.out:
            raise VaekitError("train needs --out RUN (or --resume RUN)")
        run_dir = Path(args.out)
        cfg = new_config(args)
    train(cfg, run_dir, resume=bool(args.resume), progress=not args.quiet)
    if distributed.close():  # one rank says what the run wrote
        for name in ("model.safetensors", "curves.png", *kind_of(cfg.data).final_outputs):
            print(f"wrote {run_dir / name}")


def new_config(args) -> Config:
    """A new run's config: its data kind's defaults, under --config, under the flags."""
    file = load_config(args.config).to_dict() if args.config else {}
    if args.init_from:  # the model and its data come with the weights; the training recipe is new
        source = ckpt.load_config_of(Path(args.init_from)).to_dict()
        file.update(model=source["model"], data=source["data"])
    flags = {key: getattr(args, flag) for flag, key in TRAIN_FLAGS.items()}
    data = Config.from_dict({"data": file.get("data", {})}).override(flags).data
    kind = kind_of(data)
    options = option_flags(args)
    known = {f.name for f in dataclasses.fields(kind.Options)}
    for name in options:
        if name not in known:
            raise VaekitError(f"--{name.replace('_', '-')} does not apply to {kind.name} data")
    minutes = args.max_minutes or file.get("train", {}).get("max_minutes")
    cfg = Config().override(kind.defaults_for(minutes)).merged(file)
    if args.max_minutes and args.epochs is None and "epochs" not in file.get("train", {}):
        flags["train.epochs"] = 10**6  # the time budget ends the run, not a default epoch count
    return cfg.override(flags | {f"data.options.{k}": v for k, v in options.items()})


def kind_command(name: str):
    """A command that opens the run and hands it to its kind's method of the same name."""

    def command(args) -> None:
        run = ckpt.open_run(args.run)
        getattr(run.kind, name)(run, args)

    return command


cmd_sample, cmd_reconstruct, cmd_interpolate, cmd_manifold, cmd_recommend, cmd_optimize = map(
    kind_command, ("sample", "reconstruct", "interpolate", "manifold", "recommend", "optimize"))


def cmd_evaluate(args) -> None:
    run = ckpt.open_run(args.run)
    vae = run.vae
    x, y = run.inputs(args.data, args.data_dir)
    if not 0 <= args.iw_samples <= 5000:
        raise VaekitError(f"--iw-samples must be in [0, 5000], got {args.iw_samples}")
    cap = args.max_examples if args.max_examples is not None else run.kind.evaluate_examples
    if cap is not None:
        x, y = x[:cap], None if y is None else y[:cap]
    order = run.kind.evaluation_order(x)
    if order is not None:
        x, y = x[order], None if y is None else y[order]
    result = evaluate(vae, x, iw_samples=args.iw_samples, precision=args.precision, seed=args.seed, y=vae.labels_for(y),
                      progress=not args.quiet)
    result.update(run.kind.evaluate(run, args, x, y, result))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            if isinstance(v, list):
                v = " ".join(f"{e:.2f}" for e in v)
            print(f"{k:>28}: {v:.4f}" if isinstance(v, float) else f"{k:>28}: {v}")


def cmd_latents(args) -> None:
    run = ckpt.open_run(args.run)
    vae = run.vae
    x, y = run.inputs(args.data, args.data_dir)
    mu, _ = explore.embed(vae, x[: args.num], y=vae.labels_for(None if y is None else y[: args.num]))
    points = explore.project_2d(mu.numpy(), args.projection)
    how = "latent space" if vae.latent_dim <= 2 else f"{args.projection.upper()} of {vae.latent_dim}-D posterior means"
    out = run.out_path(args.out, "latents.png")
    save_scatter(out, points, None if y is None else y[: args.num].numpy(), how)
    print(f"wrote {out}")


def cmd_encode(args) -> None:
    run = ckpt.open_run(args.run)
    vae = run.vae
    x, y = run.inputs(args.data, args.data_dir)
    mu, logvar = explore.embed(vae, x, y=vae.labels_for(y))
    out = run.out_path(args.out, "embeddings.npy")
    if out.suffix == ".csv":
        import csv
        import io

        d = vae.latent_dim
        ids = run.kind.input_ids(run.data_config(args.data_dir), run.schema, args.data)
        cols = [f"mu_{i}" for i in range(d)] + ([f"logvar_{i}" for i in range(d)] if args.logvar else [])
        table = torch.cat([mu, logvar], 1) if args.logvar else mu
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow((["id"] if ids else []) + cols + (["label"] if y is not None else []))
        for i, row in enumerate(table.tolist()):
            w.writerow(([ids[i]] if ids else []) + [f"{v:.6g}" for v in row] + ([int(y[i])] if y is not None else []))
        ckpt.atomic_write(out, buf.getvalue().encode())
    else:
        ckpt.write_npy(out, mu.numpy())
        if args.logvar:
            ckpt.write_npy(out.with_name(out.stem + "_logvar.npy"), logvar.numpy())
    print(f"wrote {out} ({len(mu)} x {vae.latent_dim})")


def cmd_anomaly(args) -> None:
    run = ckpt.open_run(args.run)
    vae = run.vae
    x, y = run.inputs(args.data, args.data_dir)
    scores = anomaly.score(vae, x, args.score, num_samples=args.num_samples, y=vae.labels_for(y))
    if args.normal_data:
        normal_x, normal_y = run.inputs(args.normal_data, args.data_dir)
    else:  # the run's validation split: held out from training, never an excluded class
        splits = run.splits(args.data_dir)
        normal_x, normal_y = splits.val_x, splits.val_y
    normal_scores = anomaly.score(vae, normal_x, args.score, num_samples=args.num_samples, y=vae.labels_for(normal_y))
    threshold = anomaly.threshold_at(normal_scores, args.fpr)
    classes = args.anomaly_classes if args.anomaly_classes is not None else run.cfg.data.exclude_classes
    is_anomaly = np.isin(y.numpy(), classes) if (y is not None and classes) else None
    summary = {"score": args.score, "target_fpr": args.fpr, "anomaly_classes": classes,
               **anomaly.summarize(scores, threshold, is_anomaly)}
    out = run.out_path(args.out, "anomaly.csv")
    ids = run.kind.input_ids(run.data_config(args.data_dir), run.schema, args.data)
    columns = {"index": list(range(len(scores)))} | ({"id": ids} if ids else {})
    columns |= {"score": [f"{s:.6g}" for s in scores], "flagged": [int(s > threshold) for s in scores]}
    if is_anomaly is not None:
        columns.update(label=[int(v) for v in y], is_anomaly=[int(v) for v in is_anomaly])
    columns.update(run.kind.explain(run, x, y, normal_x, normal_y, args))
    anomaly.write_csv(out, columns)
    picture = save_histogram(out.with_suffix(".png"), scores, is_anomaly, threshold, args.score)
    summary.update(scores_csv=str(out), histogram=str(picture))
    ckpt.write_json(out.with_suffix(".json"), summary)
    ckpt.write_json(Path(args.run) / "anomaly.json", summary)  # the report shows the latest
    print(json.dumps(summary))


def cmd_holdout(args) -> None:
    """Train without some classes, then score the test split with them as the anomalies."""
    args.exclude_classes = args.classes
    cmd_train(args)
    args.run, args.out, args.anomaly_classes, args.normal_data = args.out, None, None, None
    cmd_anomaly(args)


def cmd_doctor(args) -> None:
    """The machine, the libraries, the GEMM rates, and the speed choice for a model of MNIST's
    shapes (the default MLP at batch 512, random inputs): what `vaekit train` would measure."""
    from . import calibrate
    from .config import Config, ModelConfig
    from .objectives import OBJECTIVES
    from .optim import Adam
    from .vae import VAE

    info = {"vaekit": __import__("vaekit").__version__, **calibrate.machine(), "gemm_gflops": calibrate.gemm_rates()}
    cfg = Config().resolved()
    vae = VAE(ModelConfig(), (1, 28, 28))
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(cfg.train.batch_size, 1, 28, 28, generator=g), None) for _ in range(7)]
    make_step = calibrate.step_factory(vae, OBJECTIVES["elbo"](cfg.train), lambda m: Adam(m.parameters(), lr=1e-3),
                                       torch.device("cpu"))
    options = calibrate.candidates("auto", None)
    info["mnist_mlp_ms_per_step"] = calibrate.measure(make_step, batches, options) if options else {}
    info["choice"] = min(info["mnist_mlp_ms_per_step"], key=info["mnist_mlp_ms_per_step"].get, default=None)
    if args.json:
        print(json.dumps(info))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:.1f}" for k, v in value.items())
        print(f"{key:>22}: {value}")


def cmd_report(args) -> None:
    from .report import write_report

    out = ckpt.open_run(args.run).out_path(args.out, "report.html")
    write_report(Path(args.run), out, data_dir=args.data_dir)
    print(f"wrote {out}")


def add_train_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    p.add_argument("--kind", help="the data kind: image, table, ... (default: from --data, e.g. a .csv is a table)")
    p.add_argument("--test-data", help="a file of test examples (default: a held-out share of --data)")
    add_kind_option_args(p)
    p.add_argument("--out", help="run directory to create")
    p.add_argument("--config", help="JSON config file; flags override it")
    p.add_argument("--model", choices=["mlp", "conv"])
    p.add_argument("--latent-dim", type=int)
    p.add_argument("--hidden", type=int_list, help="layer sizes, e.g. 400 or 512,256; none: a linear encoder and decoder")
    p.add_argument("--conv-channels", type=int_list, help="conv net: channels of its two stride-2 convolutions (default 32,64)")
    p.add_argument("--activation", choices=["relu", "tanh", "elu", "gelu"])
    p.add_argument("--likelihood", choices=["bernoulli", "gaussian", "gaussian-learned", "discretized-logistic"])
    p.add_argument("--prior", choices=["normal", "mog", "vamp", "hierarchical"])
    p.add_argument("--top-latent-dim", type=int, help="hierarchical: size of the second stochastic layer")
    p.add_argument("--top-hidden", type=int_list, help="hierarchical: hidden sizes between the two layers")
    p.add_argument("--num-classes", type=int, help="> 0: a conditional VAE on labels 0..N-1")
    p.add_argument("--prior-components", type=int, help="mixture components / VampPrior pseudo-inputs")
    p.add_argument("--posterior-init-std", type=float,
                   help="q(z|x) starts with this std instead of ~1 (e.g. 0.05: tanh nets with a VampPrior or two layers)")
    p.add_argument("--objective", choices=["elbo", "iwae"])
    p.add_argument("--iw-samples", type=int, help="importance samples of the IWAE objective")
    p.add_argument("--free-bits", type=float, help="nats per latent dimension free of KL pressure")
    p.add_argument("--sigma", type=float, help="std of the fixed Gaussian likelihood")
    p.add_argument("--binarize", choices=["none", "static", "dynamic"])
    p.add_argument("--val-fraction", type=float, help="share of the training data held out for validation")
    p.add_argument("--test-fraction", type=float, help="share held out for test when there is no test split")
    p.add_argument("--split-seed", type=int, help="seed of the train / validation / test split (default 0)")
    p.add_argument("--max-train", type=int, help="use at most this many training examples")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-minutes", type=float,
                   help="stop cleanly after this many minutes of training (the cosine schedule spans them); "
                        "--epochs, when given, still caps the run")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-schedule", choices=["constant", "cosine"])
    p.add_argument("--weight-decay", type=float, help="decoupled weight decay (AdamW; default 0, plain Adam)")
    p.add_argument("--input-dropout", type=float, help="item sets: dropout on the encoder's input (default 0.5)")
    p.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up (at most a quarter of the run)")
    p.add_argument("--beta", type=float, help="KL weight (beta-VAE)")
    p.add_argument("--kl-warmup", type=float, help="epochs of linear KL warm-up")
    p.add_argument("--grad-clip", type=float, help="max gradient norm (0: off)")
    p.add_argument("--ema", type=float, help="decay of a moving average of the weights, the model kept (0: off)")
    p.add_argument("--loss-guard", type=float, metavar="SHARE",
                   help="go back to the best weights with half the rate when the smoothed training loss "
                        "climbs this share above its best (0: off)")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto (the default): on a CPU the faster of bf16 and fp32, measured; fp32 on CUDA")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the training step (default: on for CPU runs of 20,000+ steps, where it pays)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format for the conv net (default on)")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=None,
                   help="TF32 matrix products for fp32 on CUDA (default on)")
    p.add_argument("--onednn", action=argparse.BooleanOptionalAction, default=None,
                   help="fp32 dense layers on x86 CPUs through oneDNN instead of torch.mm (default: whichever measures faster)")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="time bf16 / fp32 (oneDNN or torch.mm) steps on this machine and train with the fastest "
                        "(default on; cached per machine and model; explicit --precision / --onednn win)")
    p.add_argument("--threads", type=int)
    p.add_argument("--device")
    p.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps")
    p.add_argument("--checkpoint-minutes", type=float, help="also checkpoint every M minutes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_anomaly_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--score", choices=list(anomaly.SCORES), default="neg_elbo")
    p.add_argument("--fpr", type=float, default=0.05, help="false-positive rate on normal data for the threshold")
    p.add_argument("--num-samples", type=int, default=10, help="posterior draws per -ELBO score")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="vaekit", description="Train and use variational autoencoders.")
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, func, help, run=True, data=True):
        p = sub.add_parser(name, help=help)
        if run:
            p.add_argument("run", help="run directory")
            p.add_argument("--out", help="output file (default: inside the run directory)")
        if data:
            add_data_args(p)
        p.add_argument("--seed", type=int, default=0)
        p.set_defaults(func=func)
        return p

    p = sub.add_parser("train", help="train a VAE into a run directory")
    add_train_args(p)
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN")
    p.add_argument("--init-from", metavar="RUN",
                   help="start from RUN's trained weights, model and data (fine-tuning); "
                        "the training flags and --config set the new recipe")
    p.add_argument("--exclude-classes", type=int_list, help="labels left out of training, e.g. 7 or 0,1")
    p.set_defaults(func=cmd_train)

    p = command("sample", cmd_sample, "draw new examples (PNG grid or .npy)", data=False)
    p.add_argument("--data-dir", help="where the run's data lives (posterior sampler)")
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--temperature", type=temperature, default=1.0)
    p.add_argument("--sampler", choices=["prior", "posterior"], default="prior",
                   help="prior: z ~ p(z); posterior: a Gaussian mixture fitted to training codes")
    p.add_argument("--components", type=int, default=10, help="mixture components of the posterior sampler")
    p.add_argument("--label", type=int, help="the class to draw (conditional VAE; default: every class in turn)")
    p.add_argument("--condition", action="append", default=[], metavar="COL=VALUE",
                   help="table runs: every row drawn has COL=VALUE, the other columns their conditional "
                        "distribution (repeatable)")
    p.add_argument("--unconstrained", action="store_true", help=UNCONSTRAINED)

    p = command("evaluate", cmd_evaluate, "test-set figures of a trained run")
    p.add_argument("--iw-samples", type=int, default=100,
                   help="importance samples per example for the NLL (up to 5000; 0 skips it)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--quality", action="store_true",
                   help="also the Fréchet distance of samples to the test data in a vaekit-trained classifier's features")
    p.add_argument("--synthetic", help="table runs: a synthetic table to score (default: a fresh sample as large "
                                       "as the training rows)")
    p.add_argument("--max-examples", type=int, help="score at most this many inputs (default: all; sequences and item sets 2,000)")
    p.add_argument("--reference", help="SMILES runs: a folder laid out like MOSES's data (test.csv.gz): adds the "
                                       "MOSES metrics of a fresh sample")
    p.add_argument("--num-samples", type=int, default=30_000, help="samples for the MOSES metrics (default 30,000)")
    p.add_argument("--temperature", type=temperature, default=1.0,
                   help="SMILES runs with --reference: the sampling temperature of that sample (default 1)")
    p.add_argument("--unconstrained", action="store_true", help=UNCONSTRAINED)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it goes to stderr)")

    p = command("reconstruct", cmd_reconstruct, "inputs beside their reconstructions")
    p.add_argument("--num", type=int, default=32)

    p = command("interpolate", cmd_interpolate, "walks between posterior means of input pairs")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--spherical", action="store_true", help="slerp instead of a straight line")

    p = command("manifold", cmd_manifold, "decoded grid over two latent axes", data=False)
    p.add_argument("--grid", type=int, default=15)
    p.add_argument("--span", type=float, default=4.0)
    p.add_argument("--dims", type=int, nargs=2, default=[0, 1], metavar=("I", "J"))
    p.add_argument("--label", type=int, help="the class to decode (conditional VAE)")

    p = command("latents", cmd_latents, "scatter of encoded data coloured by label")
    p.add_argument("--projection", choices=["pca", "tsne"], default="pca")
    p.add_argument("--num", type=int, default=5000, help="at most this many points")

    p = command("encode", cmd_encode, "export posterior means (.npy or .csv)")
    p.add_argument("--logvar", action="store_true", help="also export log-variances")

    p = command("anomaly", cmd_anomaly, "anomaly scores, threshold, AUROC")
    add_anomaly_args(p)
    p.add_argument("--normal-data", help="normal inputs for the threshold (default: the run's validation split)")
    p.add_argument("--anomaly-classes", type=int_list, help="labels that are anomalies (default: the run's excluded classes)")

    p = sub.add_parser("holdout", help="train without some classes, score them as anomalies")
    add_train_args(p)
    add_anomaly_args(p)
    p.add_argument("--classes", type=int_list, required=True, help="held-out labels, e.g. 7")
    p.set_defaults(func=cmd_holdout, resume=None, init_from=None)

    command("report", cmd_report, "one HTML page with everything", data=False).add_argument(
        "--data-dir", help="where the run's data lives")
    p = command("recommend", cmd_recommend, "item-set runs: top items for users given their items")
    p.add_argument("--items", help="one user's items, comma-separated ids")
    p.add_argument("--top", type=int, default=20, help="items per user (default 20)")
    p.add_argument("--similar", metavar="ITEM", help="instead: the items most similar to ITEM (decoder embeddings)")

    p = command("optimize", cmd_optimize, "SMILES runs: search the latent space for molecules with a property",
                data=True)
    p.add_argument("--property", required=True, choices=["qed", "logp", "penalized_logp", "sa"])
    p.add_argument("--budget", type=int, default=5000, help="decoder calls at most (default 5,000)")
    p.add_argument("--top", type=int, default=10, help="molecules written (default 10)")
    p.add_argument("--method", choices=["es", "gradient"], default="es",
                   help="an evolution strategy the property predictor screens (default; found higher penalized "
                        "logP than gradient ascent and as high a QED, docs/sequences.md), or gradient ascent on it")

    p = command("doctor", cmd_doctor, "this machine, its libraries and speed choices", run=False, data=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


@contextmanager
def heap_for_large_tensors():
    """Serve large tensors from the heap and keep what is freed there, for as long as a command
    runs. A batch of logits over 50,000 items is 100 MB, above glibc's mmap threshold (32 MB at
    most), so each one was mapped afresh and the kernel faulted in and zeroed its pages: at a
    million users, half the CPU time of training (bench/items_scale.py, docs/items.md). glibc
    only; the defaults come back after, and the kept memory is returned. Code calling `train`
    itself can wrap it the same way."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        yield
        return
    m_trim_threshold, m_mmap_max = -1, -4
    mallopt(m_mmap_max, 0)
    mallopt(m_trim_threshold, 2047 << 20)
    try:
        yield
    finally:
        mallopt(m_mmap_max, 65536)  # glibc's defaults
        mallopt(m_trim_threshold, 128 << 10)
        trim(0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with heap_for_large_tensors():
            args.func(args)
    except VaekitError as e:
        print(f"vaekit: error: {e}", file=sys.stderr)
        return 2
    except TrainingStopped as e:
        print(f"vaekit: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return 130
    return 0

"""The `vaekit` command: a thin layer over the library.

Every flag comes from a dataclass field by one mechanism (options.py): `train`'s from the config
dataclasses and the data kinds' Options, the run commands' from commands.py and the options each
kind adds (Kind.command_options), the kinds' own commands from Kind.commands. A flag given to a run
whose kind does not take it is refused in one line, never ignored; `vaekit CMD RUN --help` lists
the flags of that run's kind. Bad input raises VaekitError, printed as one line
`vaekit: error: ...` with exit code 2.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import sys
from contextlib import contextmanager
from pathlib import Path

from . import checkpoint as ckpt
from . import distributed
from .commands import COMMANDS, AnomalyOptions, DataOptions, RunOptions, anomaly_scores, core_options, own_options
from .config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from .errors import VaekitError
from .kinds import kind_of, option_fields, registry
from .options import add_flags, argparse_kwargs, build_options, flag_name, given, int_list, merged
from .train import TrainingStopped, train

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
# What --resume may change: the length of a run, where its data lives, and how it runs here.
RESUMABLE = {"train.epochs", "data.data_dir", "train.threads", "train.checkpoint_every", "train.checkpoint_minutes"}


# ---------------------------------------------------------------- train


def add_train_args(p: argparse.ArgumentParser, kinds) -> None:
    """The config's fields as flags (dest "section.field"), then the data options of `kinds`."""
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.metadata.get("help") is None:  # data.options, train.num_samples: config keys only
                continue
            p.add_argument(flag_name(f), **(argparse_kwargs(f) | {"dest": f"{section}.{f.name}"}))
    for name, f in option_fields(kinds).items():
        p.add_argument(flag_name(f), **(argparse_kwargs(f) | {"dest": f"data.options.{name}"}))
    p.add_argument("--out", help="run directory to create")
    p.add_argument("--config", help="JSON config file; flags override it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def config_flags(args) -> dict:
    """The config keys the flags given set: {"train.lr": 0.01, "data.options.target": "y", ...}."""
    return {k: v for k, v in vars(args).items() if k.split(".")[0] in SECTIONS and v is not None}


def cmd_train(args) -> None:
    flags = config_flags(args)
    if args.resume and flags.get("train.init_from"):
        raise VaekitError("--resume continues a run and --init-from starts a new one: give one of them")
    if args.resume:
        run_dir = Path(args.resume)
        fixed = sorted(k for k in flags if k not in RESUMABLE)
        if fixed or args.config or args.out:
            name = fixed[0].split(".")[-1].replace("_", "-") if fixed else ("config" if args.config else "out")
            raise VaekitError(f"--{name} does not apply with --resume: a resumed run keeps its recipe (only "
                              "--epochs, --data-dir, --threads, --checkpoint-every and --checkpoint-minutes change)")
        cfg = ckpt.load_config_of(run_dir).override(flags)
        ckpt.write_json(run_dir / "config.json", cfg.to_dict())
    else:
        if not args.out:
            raise VaekitError("train needs --out RUN (or --resume RUN)")
        run_dir = Path(args.out)
        cfg = new_config(args.config, flags)
    train(cfg, run_dir, resume=bool(args.resume), progress=not args.quiet)
    if distributed.close():  # one rank says what the run wrote
        for name in ("model.safetensors", "curves.png", *kind_of(cfg.data).final_outputs):
            print(f"wrote {run_dir / name}")


def new_config(config_file: str | None, flags: dict) -> Config:
    """A new run's config: its data kind's defaults, under --config, under the flags."""
    file = load_config(config_file).to_dict() if config_file else {}
    if flags.get("train.init_from"):  # the model and its data come with the weights; the recipe is new
        source = ckpt.load_config_of(Path(flags["train.init_from"])).to_dict()
        file.update(model=source["model"], data=source["data"])
    data_flags = {k: v for k, v in flags.items() if k.startswith("data.") and not k.startswith("data.options.")}
    data = Config.from_dict({"data": file.get("data", {})}).override(data_flags).data
    kind = kind_of(data)
    known = {f.name for f in dataclasses.fields(kind.Options)}
    for key in flags:
        name = key.removeprefix("data.options.")
        if key.startswith("data.options.") and name not in known:
            raise VaekitError(f"--{name.replace('_', '-')} does not apply to {kind.name} data")
    minutes = flags.get("train.max_minutes") or file.get("train", {}).get("max_minutes")
    cfg = Config().override(kind.defaults_for(minutes)).merged(file)
    if flags.get("train.max_minutes") and "train.epochs" not in flags and "epochs" not in file.get("train", {}):
        flags = flags | {"train.epochs": 10**6}  # the time budget ends the run, not a default epoch count
    if "train.epochs" in flags and "train.min_steps" not in flags:
        flags = flags | {"train.min_steps": 0}  # epochs given on the command line are the run's length
    return cfg.override(flags)


def cmd_holdout(args) -> None:
    """Train without some classes, then score the test split with them as the anomalies."""
    setattr(args, "data.options.exclude_classes", args.classes)
    args.resume = None
    cmd_train(args)
    run = ckpt.open_run(args.out)
    opts = build_options(merged("HoldoutAnomalyOptions", AnomalyOptions, *own_options(run.kind, "anomaly")),
                         given(args, AnomalyOptions) | {"data": None, "out": None, "seed": 0})
    anomaly_scores(run, opts)


# ---------------------------------------------------------------- commands on a run


def cmd_run(args) -> None:
    """Open the run, refuse the flags its kind does not take, and hand the options to the command."""
    command = args.command
    run = ckpt.open_run(args.run)
    kind = run.kind
    if command not in COMMANDS and command not in kind.commands:
        raise kind.not_applicable(command)
    own = own_options(kind, command)
    core = core_options(kind, command)
    allowed = {f.name for cls in (core, *own) for f in dataclasses.fields(cls)}
    for other in registry().values():
        for cls in own_options(other, command):
            for f in dataclasses.fields(cls):
                if f.name not in allowed and getattr(args, f.name, None) is not None:
                    raise VaekitError(f"{flag_name(f)} does not apply to {kind.name} runs")
    values = {name: getattr(args, name) for name in allowed if getattr(args, name, None) is not None}
    opts = build_options(merged(f"{kind.name}_{command}", core, *own), values)
    if command in kind.replaces:
        getattr(kind, kind.replaces[command])(run, opts)
    elif command in COMMANDS:
        COMMANDS[command].function(run, opts)
    else:
        getattr(kind, kind.commands[command].method)(run, opts)


def cmd_data(args) -> None:
    """A kind's command that takes data, not a run: the kind is --kind's, or the one --data looks like."""
    if not args.data:
        raise VaekitError(f"{args.command} needs --data FILE")
    kind = kind_of(DataConfig(name=args.data, kind=args.kind or "auto"))
    spec = kind.commands.get(args.command)
    if spec is None or spec.takes_run:
        raise kind.not_applicable(args.command)
    for other in registry().values():  # another kind's flags of a command of the same name
        if other is not kind and args.command in other.commands:
            for f in dataclasses.fields(other.commands[args.command].options):
                if f.name not in {g.name for g in dataclasses.fields(spec.options)} and getattr(args, f.name, None) is not None:
                    raise VaekitError(f"{flag_name(f)} does not apply to {kind.name} data")
    classes = (DataOptions, spec.options)
    values = {f.name: getattr(args, f.name) for cls in classes for f in dataclasses.fields(cls)
              if getattr(args, f.name, None) is not None}
    getattr(kind, spec.method)(build_options(merged(f"{kind.name}_{args.command}", *classes), values))


def add_command_args(p: argparse.ArgumentParser, classes: list[type]) -> None:
    """The flags of `classes` (the core's first, then the kinds'); a name two kinds share once, with
    the choices of all of them (each kind's options check their own)."""
    choices: dict[str, list] = {}
    for f in (f for cls in classes for f in dataclasses.fields(cls) if f.metadata.get("choices")):
        known = choices.setdefault(f.name, [])
        known += [c for c in f.metadata["choices"] if c not in known]
    seen = set()
    for f in (f for cls in classes for f in dataclasses.fields(cls)):
        if f.name not in seen:
            merged_choices = {"choices": choices[f.name]} if f.name in choices else {}
            p.add_argument(flag_name(f), **argparse_kwargs(f) | merged_choices)
            seen.add(f.name)


# ---------------------------------------------------------------- serve, export


def cmd_serve(args) -> None:
    try:
        from .serve import serve
    except ImportError as e:
        raise VaekitError(f"serve needs the serve extra ({e.name} is missing): pip install 'vaekit[serve]'") from None

    serve(args.runs, host=args.host, port=args.port, token_file=args.token_file, max_batch=args.max_batch,
          threads=args.threads, data_dir=args.data_dir, workers=args.workers)


def cmd_export(args) -> None:
    from .export import export

    for path in export(ckpt.open_run(args.run), args.out, data_dir=args.data_dir):
        print(f"wrote {path}")


# ---------------------------------------------------------------- doctor


def cmd_doctor(args) -> None:
    """The machine, the libraries, the GEMM rates, and the speed choice for a model of MNIST's
    shapes (the default MLP at batch 512, random inputs): what `vaekit train` would measure."""
    import torch

    from . import calibrate
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


# ---------------------------------------------------------------- the parser


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command and flag; with `only` (a kind's name), just the flags of that kind."""
    from . import __version__

    kinds = [k for name, k in registry().items() if only in (None, name)]
    parser = argparse.ArgumentParser(prog="vaekit", description="Train and use variational autoencoders.")
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a VAE into a run directory")
    add_train_args(p, kinds)
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN")
    p.set_defaults(func=cmd_train)

    run_commands = {name: (c.help, [c.options] + [cls for k in kinds for cls in own_options(k, name)], True)
                    for name, c in COMMANDS.items()}
    for kind in kinds:
        for name, c in kind.commands.items():
            core = DataOptions if c.reads_data or not c.takes_run else RunOptions
            run_commands.setdefault(name, (c.help, [core], c.takes_run))[1].append(c.options)
    for name, (help, classes, takes_run) in run_commands.items():
        p = sub.add_parser(name, help=help)
        if takes_run:
            p.add_argument("run", help="run directory")
        else:
            p.add_argument("--kind", help="the data kind (default: from --data)")
        add_command_args(p, classes)
        p.set_defaults(func=cmd_run if takes_run else cmd_data)

    p = sub.add_parser("holdout", help="image runs: train without some classes, score them as anomalies")
    add_train_args(p, [k for k in kinds if k.name == "image"] or kinds)
    add_flags(p, AnomalyOptions, skip={"out", "seed", "data", "data_dir", "normal_data"})
    p.add_argument("--classes", type=int_list, required=True, help="held-out labels, e.g. 7")
    p.set_defaults(func=cmd_holdout)

    p = sub.add_parser("serve", help="answer other programs over HTTP (JSON), with a latent-space explorer at /")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories to serve (each at /v1/<its name>/...)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token-file", help="a file holding the token every request but /health must bear "
                                        "(Authorization: Bearer TOKEN)")
    p.add_argument("--max-batch", type=int, default=4096, help="inputs of concurrent score/encode requests run "
                                                               "as one batch, at most (default 4096; 1: no batching)")
    p.add_argument("--threads", type=int, help="torch threads of the model (default: torch's)")
    p.add_argument("--workers", type=int, help="processes that answer large score/encode requests, each with its "
                                            "own copy of the models (default: one per core, at most 4; 1: none)")
    p.add_argument("--data-dir", help="where the runs' data lives (for scores' thresholds and the explorer)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="the encoder and decoder as ONNX models, with how to feed them")
    p.add_argument("run", help="run directory")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="the model format (onnx)")
    p.add_argument("--out", required=True, help="directory to write encoder.onnx, decoder.onnx, model.json into")
    p.add_argument("--data-dir", help="where the run's data lives (its test inputs check the export)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("doctor", help="this machine, its libraries and speed choices")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_doctor)
    return parser


def kind_for_help(argv: list[str]) -> str | None:
    """For `vaekit CMD RUN --help` (or `vaekit train --kind K|--data D --help`): the kind whose
    flags to list; None lists every kind's."""
    if not argv or not {"-h", "--help"} & set(argv):
        return None
    try:
        if argv[0] in ("train", "holdout"):
            value = lambda flag: argv[argv.index(flag) + 1] if flag in argv[:-1] else None  # noqa: E731
            return kind_of(DataConfig(name=value("--data") or "digits", kind=value("--kind") or "auto")).name
        run = next((a for a in argv[1:] if not a.startswith("-")), None)
        if run and (Path(run) / "config.json").is_file():
            return kind_of(ckpt.load_config_of(Path(run)).data).name
    except VaekitError:
        pass
    return None


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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(kind_for_help(argv)).parse_args(argv)
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

"""Dataclass configs for data, model and training, saved as JSON beside every run."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import VaekitError
from .options import option

MAX_WIDTH = 65536  # no layer or latent space wider than this: a config cannot ask for terabytes
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class DataConfig:
    """Which data set and how it is split; the kind's own options are in `options`."""

    name: str = option("digits", "digits | mnist | fashion-mnist | a file (.npy/.npz, .csv/.tsv/.parquet, .smi, "
                                  ".txt, .inter, ...) or an image folder", flag="--data")
    # The data kind (kinds/); auto: the kind whose data `name` looks like.
    kind: str = option("auto", "the data kind: image, table, items, smiles, text, series, audio (default: from "
                               "--data, e.g. a .csv is a table)", flag="--kind")
    data_dir: str | None = option(None, "folder of the named data sets' files (default: $VAEKIT_DATA_DIR)")
    test_data: str | None = option(None, "a file of test examples (default: a held-out share of --data)")
    # None: the kind's usual share (images: 1/60 for sets that ship a test split, 1,000 of MNIST's
    # 60,000; 0.1 for the rest).
    val_fraction: float | None = option(None, "share of the training data held out for validation")
    test_fraction: float = option(0.2, "share held out for test when there is no test split")
    split_seed: int = option(0, "seed of the train / validation / test split (default 0)")
    max_train: int | None = option(None, "use at most this many training examples")
    options: dict = field(default_factory=dict)  # the kind's own options (its Options dataclass)

    def __post_init__(self):
        for name in ("val_fraction", "test_fraction"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) < 1.0:
                raise VaekitError(f"{name} must be in [0, 1), got {getattr(self, name)}")


# Keys of `data` that belong to one kind's options now; JSON written before (presets, runs) still loads.
MOVED_DATA_KEYS = {"binarize": "none", "exclude_classes": []}


def moved_into_options(data: dict) -> dict:
    """A `data` section with the keys that became image options moved into `options` (left out
    where they hold their old default, which every kind took)."""
    if not isinstance(data, dict) or not MOVED_DATA_KEYS.keys() & data.keys():
        return data
    data = dict(data)
    options = dict(data.get("options") or {})
    for key, default in MOVED_DATA_KEYS.items():
        if key in data:
            value = data.pop(key)
            if value != default:
                options.setdefault(key, value)
    return data | {"options": options}


@dataclass
class ModelConfig:
    """Networks, likelihood p(x|z) and prior p(z)."""

    net: str = option("mlp", "the network", flag="--model", choices=("mlp", "conv"))
    latent_dim: int = option(20, "latent dimensions")
    hidden: list[int] = option(help="layer sizes, e.g. 400 or 512,256; none: a linear encoder and decoder",
                               default_factory=lambda: [400])  # MLP layers ([]: linear); conv: the dense layer
    conv_channels: list[int] = option(help="conv net: channels of its two stride-2 convolutions (default 32,64)",
                                      default_factory=lambda: [32, 64])
    activation: str = option("relu", "activation between layers", choices=("relu", "tanh", "elu", "gelu"))
    likelihood: str = option("bernoulli", "p(x|z) of image data",
                             choices=("bernoulli", "gaussian", "gaussian-learned", "discretized-logistic"))
    sigma: float = option(0.1, "std of the fixed Gaussian likelihood")
    prior: str = option("normal", "p(z): normal, a mixture of Gaussians, a VampPrior or a second stochastic layer",
                        choices=("normal", "mog", "vamp", "hierarchical"))
    prior_components: int = option(10, "mixture components / VampPrior pseudo-inputs")
    # > 0: q(z|x) starts with this standard deviation (the encoder's log-variance bias) instead of
    # ~1. Small values let z carry signal from the first step: tanh nets with a VampPrior otherwise
    # stay on a plateau where the decoder ignores z (docs/evaluation.md).
    posterior_init_std: float = option(0.0, "q(z|x) starts with this std instead of ~1 (e.g. 0.05: tanh nets with "
                                            "a VampPrior or two layers)")
    top_latent_dim: int = option(50, "hierarchical: size of the second stochastic layer")
    top_hidden: list[int] = option(help="hierarchical: hidden sizes between the two layers",
                                   default_factory=lambda: [50, 50])
    num_classes: int = option(0, "> 0: a conditional VAE on labels 0..N-1")
    # Item sets: dropout on the input bag (Liang et al., 2018); sequences: word dropout.
    input_dropout: float = option(0.5, "item sets: dropout on the encoder's input (default 0.5); sequences: word "
                                       "dropout (default 0)")

    def __post_init__(self):
        if not 1 <= self.latent_dim <= MAX_WIDTH:
            raise VaekitError(f"latent_dim must be in [1, {MAX_WIDTH}], got {self.latent_dim}")
        if any(not 1 <= h <= MAX_WIDTH for h in self.hidden):
            raise VaekitError(f"hidden sizes must be integers in [1, {MAX_WIDTH}], got {self.hidden}")
        if len(self.conv_channels) != 2 or any(not 1 <= c <= 4096 for c in self.conv_channels):
            raise VaekitError(f"conv_channels must be two integers in [1, 4096], got {self.conv_channels}")
        if not 1 <= self.top_latent_dim <= MAX_WIDTH or any(not 1 <= h <= MAX_WIDTH for h in self.top_hidden):
            raise VaekitError(f"top_latent_dim and top_hidden must be integers in [1, {MAX_WIDTH}]")
        if not 0 <= self.num_classes <= MAX_WIDTH:
            raise VaekitError(f"num_classes must be in [0, {MAX_WIDTH}], got {self.num_classes}")
        if not 1 <= self.prior_components <= 10_000:
            raise VaekitError(f"prior_components must be in [1, 10000], got {self.prior_components}")
        if not 0 <= self.posterior_init_std <= 100:
            raise VaekitError(f"posterior_init_std must be in [0, 100], got {self.posterior_init_std}")
        if not 0 <= self.input_dropout < 1:
            raise VaekitError(f"input_dropout must be in [0, 1), got {self.input_dropout}")
        if self.sigma <= 0:
            raise VaekitError(f"sigma must be > 0, got {self.sigma}")


@dataclass
class TrainConfig:
    """The optimisation: Adam, schedules, stopping, precision."""

    epochs: int = option(10, "epochs (with --max-minutes, an upper bound)")
    max_minutes: float = option(0.0, "stop cleanly after this many minutes of training (the cosine schedule spans "
                                     "them); --epochs, when given, still caps the run")
    # > 0: a run of few examples takes at least this many optimizer steps (epochs are raised to
    # reach it) in batches of at most a SMALL_DATA_BATCHES-th of the training examples: counted in
    # epochs, an 800-row table at batch 512 got 60 updates (train.scaled_to_data)
    min_steps: int = option(0, "a small data set trains for at least this many steps, in batches of at most an "
                               "eighth of it (tables: 1,500; 0: off)")
    batch_size: int | None = option(None, "examples per step (default: the network's fast default)")
    lr: float | None = option(None, "learning rate (default: the network's, scaled for a batch size given)")
    lr_schedule: str = option("cosine", "constant, or cosine to 0 at the last step", choices=("constant", "cosine"))
    warmup_steps: int = option(500, "linear learning-rate warm-up (at most a quarter of the run)")
    objective: str = option("elbo", "the ELBO, or the importance-weighted bound (Burda et al., 2015)",
                            choices=("elbo", "iwae"))
    iw_samples: int = option(5, "importance samples of the IWAE objective")
    free_bits: float = option(0.0, "nats per latent dimension free of KL pressure (Kingma et al., 2016)")
    beta: float = option(1.0, "KL weight (beta-VAE)")
    weight_decay: float = option(0.0, "decoupled weight decay (AdamW; default 0, plain Adam)")
    kl_warmup_epochs: float = option(0.0, "epochs of linear KL warm-up", flag="--kl-warmup")
    grad_clip: float = option(0.0, "max gradient norm (0: off)")
    # > 0: validate, keep and save an exponential moving average of the weights (Polyak averaging),
    # updated every step with this decay
    ema: float = option(0.0, "decay of a moving average of the weights, the model kept (0: off)")
    # > 0: when the smoothed training loss climbs this share above its best (after the warm-ups),
    # go back to the weights of that best with half the learning rate (train.py LossGuard)
    loss_guard: float = option(0.0, "go back to the best weights with half the rate when the smoothed training "
                                    "loss climbs this share above its best (0: off)", metavar="SHARE")
    patience: int = option(0, "early-stopping patience in epochs (0: off)")
    seed: int = option(0, "random seed of the weights and the data order")
    precision: str = option("auto", "auto (the default): on a CPU the faster of bf16 and fp32, measured; fp32 on "
                                    "CUDA", choices=PRECISIONS)
    threads: int = option(0, "torch intra-op threads (0: torch's default)")
    device: str = option("cpu", "cpu | cuda | cuda:N")
    compile: bool | None = option(None, "torch.compile the training step (default: on for CPU runs of 20,000+ "
                                        "steps, where it pays)")
    channels_last: bool = option(True, "NHWC memory format for models with convolutions (default on)")
    tf32: bool = option(True, "TF32 matrix products for fp32 on CUDA (default on)")
    # fp32 dense layers on x86 CPUs through oneDNN instead of torch.mm; None: whichever measures faster
    onednn: bool | None = option(None, "fp32 dense layers on x86 CPUs through oneDNN instead of torch.mm "
                                       "(default: whichever measures faster)")
    # Time the open precision / oneDNN choices on this machine before a new CPU run (calibrate.py)
    calibrate: bool = option(True, "time bf16 / fp32 (oneDNN or torch.mm) steps on this machine and train with "
                                   "the fastest (default on; cached per machine and model; explicit --precision / "
                                   "--onednn win)")
    num_samples: int = field(default=64)  # prior samples pictured each epoch (not a flag)
    checkpoint_every: int = option(0, "also checkpoint every N steps")
    checkpoint_minutes: float = option(0.0, "also checkpoint every M minutes")
    # A run directory whose trained weights this run starts from (fine-tuning, e.g. with the IWAE
    # objective after an ELBO run); the optimizer and schedules start afresh.
    init_from: str | None = option(None, "start from RUN's trained weights, model and data (fine-tuning); the "
                                         "training flags and --config set the new recipe", metavar="RUN")

    def __post_init__(self):
        if self.epochs < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise VaekitError("epochs and batch_size must be >= 1")
        if self.lr is not None and self.lr <= 0:
            raise VaekitError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise VaekitError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_minutes < 0:
            raise VaekitError(f"max_minutes must be >= 0, got {self.max_minutes}")
        if self.loss_guard < 0:
            raise VaekitError(f"loss_guard must be >= 0, got {self.loss_guard}")
        if self.min_steps < 0:
            raise VaekitError(f"min_steps must be >= 0, got {self.min_steps}")
        if self.warmup_steps < 0:
            raise VaekitError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.precision not in PRECISIONS:
            raise VaekitError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 1 <= self.iw_samples <= 5000 or self.free_bits < 0:
            raise VaekitError("iw_samples must be in [1, 5000] and free_bits >= 0")
        if not 0 <= self.ema < 1:
            raise VaekitError(f"ema must be in [0, 1), got {self.ema}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise VaekitError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")


# Each config field's section, by name (field names are unique across the three): what
# vaekit.fit(epochs=20, latent_dim=8, ...) sets.
SECTION_FIELDS = {f.name: section for section, cls in (("data", DataConfig), ("model", ModelConfig),
                                                       ("train", TrainConfig))
                  for f in dataclasses.fields(cls) if f.name != "options"}


# Batch size and learning rate where a config leaves them unset: the fast path, per network,
# chosen by measurement (bench/batch_size.py, MNIST, 10 epochs, with the default warm-up and cosine
# decay). The MLP at batch 512 and 8e-3 reaches 104.9 nats where batch 128 at 1e-3 (the PyTorch
# example's recipe) reaches 105.8, in under half the time; the conv net collapses at that rate in
# short runs, and keeps batch 256 at 5e-3.
FAST_DEFAULTS = {"mlp": (512, 8e-3), "conv": (256, 5e-3)}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "Config":
        if not isinstance(d, dict):
            raise VaekitError(f"{source}: expected a JSON object")
        unknown = set(d) - {"data", "model", "train"}
        if unknown:
            raise VaekitError(f"{source}: unknown section(s) {sorted(unknown)}")
        d = d | ({"data": moved_into_options(d["data"])} if "data" in d else {})
        parts = {name: build(kind, d.get(name, {}), f"{source}: '{name}'")
                 for name, kind in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))}
        return cls(**parts)

    def resolved(self) -> "Config":
        """A copy with batch size and learning rate filled in where unset: the network's fast
        defaults, the rate scaled by sqrt(batch / default batch) when only the batch is given."""
        batch, lr = FAST_DEFAULTS.get(self.model.net, (256, 5e-3))
        t = self.train
        lr = t.lr if t.lr is not None else lr * math.sqrt((t.batch_size or batch) / batch)
        return dataclasses.replace(self, train=dataclasses.replace(t, batch_size=t.batch_size or batch, lr=lr))

    def merged(self, d: dict, source: str = "config") -> "Config":
        """A copy with the sections of a config object `d` laid over this one, key by key."""
        base = self.to_dict()
        if not isinstance(d, dict):
            raise VaekitError(f"{source}: expected a JSON object")
        for section, values in d.items():
            if section in base and isinstance(values, dict):
                base[section] = base[section] | values
            else:
                base[section] = values  # from_dict names what is wrong
        return Config.from_dict(base, source)

    def override(self, dotted: dict) -> "Config":
        """Return a copy with `{"train.lr": 0.01, ...}` applied; None values are skipped."""
        d = self.to_dict()
        for key, value in dotted.items():
            if value is None:
                continue
            section, _, name = key.partition(".")
            name, _, sub = name.partition(".")
            if section not in d or name not in d[section] or (sub and not isinstance(d[section][name], dict)):
                raise VaekitError(f"unknown config key {key!r}")
            if sub:
                d[section][name][sub] = value
            else:
                d[section][name] = value
        return Config.from_dict(d)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise VaekitError(f"{path}: config file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VaekitError(f"{path}: not valid JSON ({e})") from None
    return Config.from_dict(d, source=str(path))


def type_ok(value, annotation: str) -> bool:
    """Does a JSON value fit a field annotated `annotation` (int, float, str, bool, list[int],
    list[str], dict, X | None)?"""
    for typ in (a.strip() for a in annotation.split("|")):
        if typ == "None" and value is None:
            return True
        if typ == "bool" and isinstance(value, bool):
            return True
        if isinstance(value, bool):
            continue
        if typ == "int" and isinstance(value, int):
            return True
        if typ == "float" and isinstance(value, (int, float)) and math.isfinite(value):
            return True
        if typ == "str" and isinstance(value, str):
            return True
        if typ == "list[int]" and isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            return True
        if typ == "list[str]" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return True
        if typ == "dict" and isinstance(value, dict):
            return True
    return False


def build(kind, values, source: str):
    """Construct dataclass `kind` from untrusted JSON values, checking names and types first."""
    if not isinstance(values, dict):
        raise VaekitError(f"{source}: expected a JSON object")
    fields = {f.name: f.type for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise VaekitError(f"{source}: unknown key(s) {unknown}")
    for key, value in values.items():
        if not type_ok(value, fields[key]):
            raise VaekitError(f"{source}: {key} must be {fields[key]}, got {json.dumps(value)[:40]}")
    return kind(**values)

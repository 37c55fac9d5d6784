"""Dataclass configs for data, model and training, saved as JSON beside every run."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import VaekitError

BINARIZE = ("none", "static", "dynamic")
MAX_WIDTH = 65536  # no layer or latent space wider than this: a config cannot ask for terabytes
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class DataConfig:
    """Which data set and how it is prepared."""

    name: str = "digits"  # digits | mnist | fashion-mnist | path to a file or folder of the data
    # The data kind (kinds/): image | table | ...; auto: from the name (a .csv/.tsv/.parquet file
    # is a table, the named sets, arrays and image folders are images).
    kind: str = "auto"
    data_dir: str | None = None  # folder of IDX files; falls back to $VAEKIT_DATA_DIR
    test_data: str | None = None  # a file of test examples (default: a held-out share of `name`)
    binarize: str = "none"  # none | static (once, fixed seed) | dynamic (re-sampled each epoch)
    # Share of the training split held out for validation; None: 1/60 for sets that ship a test
    # split (1,000 of MNIST's 60,000), 0.1 for the rest.
    val_fraction: float | None = None
    test_fraction: float = 0.2  # share held out for test where the set has no test split
    split_seed: int = 0  # seed of the train/val/test split and of static binarization
    # Labels left out of training and validation (the test split keeps them): the held-out-class
    # anomaly experiment trains on the rest and scores these as anomalies.
    exclude_classes: list[int] = field(default_factory=list)
    max_train: int | None = None  # use at most this many training examples (quick experiments)
    options: dict = field(default_factory=dict)  # the kind's own options (its Options dataclass)

    def __post_init__(self):
        if self.binarize not in BINARIZE:
            raise VaekitError(f"binarize must be one of {', '.join(BINARIZE)}, got {self.binarize!r}")
        for name in ("val_fraction", "test_fraction"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) < 1.0:
                raise VaekitError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class ModelConfig:
    """Networks, likelihood p(x|z) and prior p(z)."""

    net: str = "mlp"  # mlp | conv
    latent_dim: int = 20
    hidden: list[int] = field(default_factory=lambda: [400])  # MLP layers ([]: linear); conv: the dense layer
    conv_channels: list[int] = field(default_factory=lambda: [32, 64])  # conv: its two stride-2 convolutions
    activation: str = "relu"  # relu | tanh | elu | gelu
    likelihood: str = "bernoulli"  # bernoulli | gaussian | gaussian-learned
    sigma: float = 0.1  # std of the fixed-variance Gaussian likelihood
    prior: str = "normal"  # normal | mog (mixture of Gaussians) | vamp (VampPrior) | hierarchical
    prior_components: int = 10  # mixture components or VampPrior pseudo-inputs
    # > 0: q(z|x) starts with this standard deviation (the encoder's log-variance bias) instead of
    # ~1. Small values let z carry signal from the first step: tanh nets with a VampPrior otherwise
    # stay on a plateau where the decoder ignores z (docs/evaluation.md).
    posterior_init_std: float = 0.0
    top_latent_dim: int = 50  # hierarchical: the second stochastic layer z2
    top_hidden: list[int] = field(default_factory=lambda: [50, 50])  # hierarchical: z1 <-> z2 layers
    num_classes: int = 0  # > 0: a conditional VAE on labels 0..num_classes-1
    input_dropout: float = 0.5  # item sets: dropout on the input bag (Liang et al., 2018); sequences: word dropout

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

    epochs: int = 10  # with max_minutes, an upper bound
    max_minutes: float = 0.0  # > 0: stop cleanly after this many minutes of training; cosine spans them
    batch_size: int | None = None  # None: the network's fast default (FAST_DEFAULTS)
    lr: float | None = None  # None: the network's fast default, scaled for a batch size given
    lr_schedule: str = "cosine"  # constant | cosine (to 0 at the last step)
    warmup_steps: int = 500  # linear learning-rate warm-up, at most a quarter of the run's steps
    objective: str = "elbo"  # elbo | iwae (Burda et al., 2015)
    iw_samples: int = 5  # importance samples per example of the IWAE objective
    free_bits: float = 0.0  # nats per latent dimension below which KL is not penalised (Kingma et al., 2016)
    beta: float = 1.0  # weight of the KL term (beta-VAE)
    weight_decay: float = 0.0  # decoupled weight decay (AdamW); 0: plain Adam
    kl_warmup_epochs: float = 0.0  # KL weight rises linearly from 0 to beta over these epochs
    grad_clip: float = 0.0  # max global gradient norm; 0 turns clipping off
    # > 0: validate, keep and save an exponential moving average of the weights (Polyak averaging),
    # updated every step with this decay
    ema: float = 0.0
    # > 0: when the smoothed training loss climbs this share above its best (after the warm-ups),
    # go back to the weights of that best with half the learning rate (train.py LossGuard)
    loss_guard: float = 0.0
    patience: int = 0  # early stopping after this many epochs without validation gain; 0 = off
    seed: int = 0
    precision: str = "auto"  # auto (measured: bf16 or fp32 on a CPU; fp32 on CUDA) | fp32 | bf16 | fp16 (CUDA)
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    device: str = "cpu"  # cpu | cuda | cuda:N
    compile: bool | None = None  # torch.compile the training step (eager if it fails); None: long CPU runs only
    channels_last: bool = True  # NHWC memory format for the conv net
    tf32: bool = True  # TensorFloat-32 matrix products for fp32 on CUDA
    # fp32 dense layers on x86 CPUs through oneDNN instead of torch.mm; None: whichever measures faster
    onednn: bool | None = None
    # Time the open precision / oneDNN choices on this machine before a new CPU run (calibrate.py)
    calibrate: bool = True
    num_samples: int = 64  # prior samples pictured each epoch
    checkpoint_every: int = 0  # also checkpoint every N steps mid-epoch (0: at epoch ends only)
    checkpoint_minutes: float = 0.0  # also checkpoint when this many minutes have passed (0: off)
    # A run directory whose trained weights this run starts from (fine-tuning, e.g. with the IWAE
    # objective after an ELBO run); the optimizer and schedules start afresh.
    init_from: str | None = None

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
    for option in (a.strip() for a in annotation.split("|")):
        if option == "None" and value is None:
            return True
        if option == "bool" and isinstance(value, bool):
            return True
        if isinstance(value, bool):
            continue
        if option == "int" and isinstance(value, int):
            return True
        if option == "float" and isinstance(value, (int, float)) and math.isfinite(value):
            return True
        if option == "str" and isinstance(value, str):
            return True
        if option == "list[int]" and isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            return True
        if option == "list[str]" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return True
        if option == "dict" and isinstance(value, dict):
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

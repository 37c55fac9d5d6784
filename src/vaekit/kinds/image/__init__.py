"""The image kind: pictures as (C, H, W) tensors in [0, 1] (read.py), with the options only images
have (binarisation, classes left out of training), the dense or convolutional networks and every
likelihood and prior of the core, and pictures out: sample grids, inputs over their
reconstructions, interpolation paths, the decoded latent manifold (commands.py) and a
classifier-feature Fréchet distance (quality.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...config import DataConfig
from ...errors import VaekitError
from ...options import option, positive
from .. import Kind, KindCommand, Supports, lazy
from .read import ARRAY_SUFFIXES, IMAGE_SUFFIXES, binarize, is_named, load_image_inputs, load_images

BINARIZE = ("none", "static", "dynamic")


@dataclass
class Options:
    """Options of image data (vaekit train --binarize dynamic --exclude-classes 7 ...)."""

    binarize: str = field(default="none", metadata={
        "help": "image: none | static (once, fixed seed) | dynamic (re-sampled each epoch)", "choices": BINARIZE})
    exclude_classes: list[int] = field(default_factory=list, metadata={
        "help": "image: labels left out of training and validation (the test split keeps them), e.g. 7 or 0,1"})

    def __post_init__(self):
        if self.binarize not in BINARIZE:
            raise VaekitError(f"binarize must be one of {', '.join(BINARIZE)}, got {self.binarize!r}")


@dataclass
class SampleOptions:
    sampler: str = option("prior", "prior: z ~ p(z); posterior: a Gaussian mixture fitted to training codes",
                          choices=("prior", "posterior"))
    components: int = option(10, "mixture components of the posterior sampler")
    label: int | None = option(None, "the class to draw (conditional VAE; default: every class in turn)")
    data_dir: str | None = option(None, "where the run's data lives (posterior sampler)")


@dataclass
class EvaluateOptions:
    quality: bool = option(False, "also the Fréchet distance of samples to the test data in a vaekit-trained "
                                  "classifier's features")


@dataclass
class AnomalyOptions:
    anomaly_classes: list[int] | None = option(None, "labels that are anomalies (default: the run's excluded classes)")


@dataclass
class ManifoldOptions:
    grid: int = option(15, "points along each axis")
    span: float = option(4.0, "the grid covers [-span, span] on both axes", parse=positive)
    dims: list[int] = option(help="the two latent axes", default_factory=lambda: [0, 1], nargs=2, metavar=("I", "J"))
    label: int | None = option(None, "the class to decode (conditional VAE)")


class ImageKind(Kind):
    name = "image"
    Options = Options
    command_options = {"sample": SampleOptions, "evaluate": EvaluateOptions, "anomaly": AnomalyOptions}
    commands = {"manifold": KindCommand("decoded grid over two latent axes", ManifoldOptions, "manifold",
                                        reads_data=False)}
    supports = Supports(nets=("mlp", "conv"), priors=("normal", "mog", "vamp", "hierarchical"),
                        likelihoods=("bernoulli", "gaussian", "gaussian-learned", "discretized-logistic"),
                        conditioning=True)
    final_outputs = ("samples.png", "reconstructions.png")
    sample = lazy("commands", "sample")
    reconstruct = lazy("commands", "reconstruct")
    interpolate = lazy("commands", "interpolate")
    write = lazy("commands", "write")
    to_records = lazy("commands", "to_records")
    decoded = lazy("commands", "decoded")
    records_batch = False  # binarising draws noise across the whole batch

    def from_records(self, run, records: list, allow_unknown: bool = False):
        from .commands import from_records

        return from_records(run, records)

    def export_notes(self, run) -> dict:
        return {"shape": list(run.vae.x_shape), "binarize": self.options(run.cfg.data).binarize,
                "x": "images (B, C, H, W), 8-bit pixels divided by 255",
                "params": {"bernoulli": "logits; sigmoid gives each pixel's mean",
                           "gaussian": "means", "gaussian-learned": "means, then log-scales along the channels",
                           "discretized-logistic": "means, then log-scales along the channels"}
                .get(run.cfg.model.likelihood, run.cfg.model.likelihood)}

    def schema_summary(self, run) -> dict:
        return {"shape": list(run.vae.x_shape), "classes": run.vae.cfg.num_classes,
                "binarize": self.options(run.cfg.data).binarize}

    def detect(self, name: str) -> bool:
        path = Path(name)
        return is_named(name) or path.suffix.lower() in ARRAY_SUFFIXES | IMAGE_SUFFIXES or path.is_dir()

    def load(self, cfg: DataConfig, schema: dict | None = None):
        splits = load_images(cfg, self.options(cfg))
        return splits, {"x_shape": list(splits.shape)}

    def inputs(self, cfg: DataConfig, schema: dict, name: str | None):
        return (*load_image_inputs(cfg, self.options(cfg), name), None)

    def tensors(self, run, data):
        from .commands import tensors

        return tensors(run, data)

    def nets(self, model_cfg, schema: dict):
        """The conv networks for `--model conv` (the dense MLP of the core otherwise)."""
        if model_cfg.net != "conv":
            return None
        from .nets import conv_nets

        return conv_nets(model_cfg, tuple(schema["x_shape"]))

    def prepare_batch(self, cfg: DataConfig):
        return binarize if self.options(cfg).binarize == "dynamic" else None

    def save_epoch(self, run_dir, vae, z, epoch: int) -> None:
        from .commands import save_epoch

        save_epoch(run_dir, vae, z, epoch)

    def save_final(self, run_dir, vae, splits, schema: dict, num_samples: int) -> None:
        from .commands import save_final

        save_final(run_dir, vae, splits, num_samples)

    def manifold(self, run, opts) -> None:
        from .commands import manifold

        manifold(run, opts)

    def evaluate(self, run, opts, x, y, figures: dict) -> dict:
        if not opts.quality:
            return {}
        from .commands import frechet

        return frechet(run, opts, x, y)

    def anomalies(self, run, y, opts):
        import numpy as np

        classes = opts.anomaly_classes if opts.anomaly_classes is not None else self.options(run.cfg.data).exclude_classes
        return classes, (np.isin(y.numpy(), classes) if (y is not None and classes) else None)

    def report(self, run, splits) -> list[str]:
        from .commands import report_sections

        return report_sections(run, splits)

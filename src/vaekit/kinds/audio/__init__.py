"""The audio kind: recordings (a folder of .wav files or a CSV manifest) as log-mel spectrograms, a
VAE conditioned on their labels (word, speaker, ...; from file names or the manifest) whose
encoder never sees the labels, and sound out through Griffin-Lim: new utterances for chosen
labels, voice conversion (an utterance re-decoded with another speaker's label), reconstructions,
morphs (signal.py, data.py, model.py, commands.py; docs/audio.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ...config import DataConfig
from ...errors import VaekitError
from ...options import option
from .. import Kind, KindCommand, Nets, Supports, lazy


@dataclass
class Options:
    """Options of recordings (vaekit train --kind audio --labels-from-name '{digit}_{speaker}_{index}' ...)."""

    labels_from_name: str | None = field(default=None, metadata={
        "help": "audio: labels from file names, e.g. '{digit}_{speaker}_{index}' (default: that pattern where it "
                "matches every name); an {index} field numbers takes and is never a condition"})
    conditions: list[str] = field(default_factory=list, metadata={
        "help": "audio: the labels the model is conditioned on, e.g. digit,speaker (default: every label but index; "
                "none: unconditional)"})
    sample_rate: int | None = field(default=None, metadata={
        "help": "audio: resample every recording to this rate (default: the recordings' most common rate)"})

    def __post_init__(self):
        if self.sample_rate is not None and not 1000 <= self.sample_rate <= 192000:
            raise VaekitError(f"--sample-rate must be in [1000, 192000], got {self.sample_rate}")


def griffin_lim_iters(default: int = 32):
    return option(default, "Griffin-Lim iterations of the vocoder (default 32)")


@dataclass
class SampleOptions:
    condition: list[str] = option(help="the label of every utterance drawn, LABEL=VALUE, e.g. digit=7 (repeatable; a "
                                       "label not given is drawn from the training labels' frequencies)",
                                  metavar="LABEL=VALUE", repeat=True, default_factory=list)
    sampler: str = option("posterior", "posterior (default): codes from a Gaussian mixture fitted to the training "
                                       "utterances' codes; prior: z ~ p(z)", choices=("posterior", "prior"))
    iters: int = griffin_lim_iters()


@dataclass
class ConvertOptions:
    condition: list[str] = option(help="the label to convert to, e.g. speaker=theo (repeatable)",
                                  metavar="LABEL=VALUE", repeat=True, default_factory=list)
    iters: int = griffin_lim_iters()

    def __post_init__(self):
        if not self.condition:
            raise VaekitError("convert needs --condition LABEL=VALUE (e.g. speaker=theo)")


@dataclass
class WavOptions:
    iters: int = griffin_lim_iters()


class AudioKind(Kind):
    name = "audio"
    Options = Options
    command_options = {"sample": SampleOptions, "reconstruct": WavOptions, "interpolate": WavOptions}
    commands = {"convert": KindCommand("audio: every input utterance in another voice (--condition speaker=NAME)",
                                       ConvertOptions, "convert_command", python="convert")}
    supports = Supports(nets=("conv1d",), likelihoods=("band-gaussian",), conditioning=False)
    # Measured on FSDD (bench/audio_quality.py, docs/audio.md).
    defaults = {"model.net": "conv1d", "model.likelihood": "band-gaussian", "model.hidden": [512],
                "model.latent_dim": 16, "model.conv_channels": [256, 256], "train.batch_size": 64, "train.lr": 1e-3,
                "train.epochs": 40, "train.warmup_steps": 200, "train.min_steps": 1500, "train.grad_clip": 5.0,
                "train.kl_warmup_epochs": 10.0}
    final_outputs = ("sampler.json", "samples.png")
    sample = lazy("commands", "sample")
    reconstruct = lazy("commands", "reconstruct")
    interpolate = lazy("commands", "interpolate")
    write = lazy("commands", "write")
    convert = lazy("commands", "convert")
    convert_command = lazy("commands", "convert_command")
    tensors = lazy("commands", "tensors")
    from_records = lazy("commands", "from_records")
    to_records = lazy("commands", "to_records")
    decoded = lazy("commands", "decoded")
    evaluate = lazy("commands", "evaluate")
    report = lazy("commands", "report_sections")

    def detect(self, name: str) -> bool:
        path = Path(name)
        if path.is_dir():  # wav files at the top or one folder down (a folder per speaker)
            return any(path.glob("*.wav")) or any(path.glob("*/*.wav"))
        return path.suffix.lower() == ".wav"

    def load(self, cfg: DataConfig, schema: dict | None = None):
        from .data import load_audio

        return load_audio(cfg, self.options(cfg), schema)

    def inputs(self, cfg: DataConfig, schema: dict, name: str | None):
        from .commands import inputs

        return inputs(cfg, schema, name)

    def model_config(self, model_cfg, schema: dict):
        from .data import num_classes

        return dataclasses.replace(model_cfg, num_classes=num_classes(schema["conditions"]))

    def nets(self, model_cfg, schema: dict) -> Nets:
        from .model import AudioDecoder, AudioEncoder, BandGaussian

        fe = schema["frontend"]
        shape = (fe["num_mels"], fe["frames"])
        sizes = [len(v) for v in schema["conditions"].values()]
        hidden, channels = model_cfg.hidden[0] if model_cfg.hidden else 512, model_cfg.conv_channels[-1]
        return Nets(shape, AudioEncoder(shape, 2 * model_cfg.latent_dim, hidden, channels, model_cfg.activation),
                    AudioDecoder(model_cfg.latent_dim, shape, hidden, channels, model_cfg.activation, sizes),
                    BandGaussian(shape[0]))

    def save_final(self, run_dir, vae, splits, schema: dict, num_samples: int) -> None:
        from .commands import save_final

        save_final(run_dir, vae, splits, schema)

    def label_names(self, run) -> list[str] | None:
        from .commands import class_names

        return class_names(run.schema) or None

    def schema_summary(self, run) -> dict:
        return {"sample_rate": run.schema["frontend"]["sample_rate"], "conditions": run.schema["conditions"],
                "records": "wav files as base64 strings, or lists of samples in [-1, 1] at the run's rate"}

    def onnx_graphs(self, run, x, y) -> list:
        """The generic graphs, the encoder without a condition input: it takes no labels."""
        from ...export import dense_graphs

        encoder, decoder = dense_graphs(run, x, y)
        return [dataclasses.replace(encoder, inputs=encoder.inputs[:1], input_names=["x"]), decoder]

    def export_notes(self, run) -> dict:
        return {"frontend": run.schema["frontend"], "centre": run.schema["centre"], "spread": run.schema["spread"],
                "conditions": run.schema["conditions"],
                "x": "log-mel (B, num_mels, frames) of the clip scaled to peak 0.9, natural log of the mel magnitude "
                     "+ 1e-4, minus centre and divided by spread per band",
                "params": "decoder: scaled log-mel means; its condition is the one-hot of the mixed-radix class index "
                          "(the encoder takes no condition)"}

"""The sequence kinds: SMILES strings (molecules) and text (sentences), as token sequences with an
autoregressive GRU decoder (model.py). `--kind smiles` reads a CSV column (or one SMILES a line);
`--kind text` reads one example a line, or sentences split from running text.

Model config: `hidden` is [encoder GRU units, decoder GRU units per layer, ...]: [256, 512, 512,
512] is the MOSES VAE's shape (one 256-unit encoder layer, three 512-unit decoder layers). The
classes here are light; the modules load when sequences are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import DataConfig
from ...errors import VaekitError
from ...options import option, positive
from .. import Kind, KindCommand, Nets, Supports, lazy

EMBED_DIM = {"smiles": 64, "text": 256}


@dataclass
class Options:
    """Options of sequence data (vaekit train --kind smiles --column SMILES ...)."""

    column: str | None = field(default=None, metadata={"help": "smiles: the CSV column (default: SMILES)"})
    split: str = field(default="lines", metadata={"help": "text: lines (one example a line) or sentences"})
    max_length: int | None = field(default=None, metadata={
        "help": "smiles/text: longest sequence in tokens (default 100 / 50); longer ones are counted and left out"})
    vocab_size: int = field(default=10_000, metadata={"help": "text: vocabulary cap (rarer words become <unk>)"})
    strict: bool = field(default=False, metadata={"help": "smiles: refuse invalid training SMILES instead of "
                                                          "leaving them out"})

    def __post_init__(self):
        if self.split not in ("lines", "sentences"):
            raise VaekitError(f"--split must be lines or sentences, got {self.split!r}")


UNCONSTRAINED = ("sample from the model as it is, without the grammar that keeps samples well-formed and within "
                 "valence")


@dataclass
class SmilesSampleOptions:
    unconstrained: bool = option(False, UNCONSTRAINED)


@dataclass
class SmilesEvaluateOptions:
    reference: str | None = option(None, "a folder laid out like MOSES's data (test.csv.gz): adds the MOSES "
                                         "metrics of a fresh sample")
    num_samples: int = option(30_000, "samples for the MOSES metrics (default 30,000)")
    temperature: float = option(1.0, "with --reference: the sampling temperature of that sample (default 1)",
                                parse=positive)
    unconstrained: bool = option(False, UNCONSTRAINED)


@dataclass
class OptimizeOptions:
    property: str = option(None, "the property to raise (SA: to lower)", choices=("qed", "logp", "penalized_logp", "sa"))
    budget: int = option(5000, "decoder calls at most (default 5,000)")
    top: int = option(10, "molecules written (default 10)")
    method: str = option("es", "an evolution strategy the property predictor screens (default; found higher "
                               "penalized logP than gradient ascent and as high a QED, docs/sequences.md), or "
                               "gradient ascent on it", choices=("es", "gradient"))

    def __post_init__(self):
        if self.property is None:
            raise VaekitError("optimize needs --property (qed, logp, penalized_logp or sa)")
        if self.budget < 1 or self.top < 1:
            raise VaekitError("--budget and --top must be at least 1")


class SequenceKind(Kind):
    """What the SMILES and text kinds share; `name` says which."""

    Options = Options
    supports = Supports(input_dropout=True)
    final_outputs = ("samples.csv",)
    sample = lazy("commands", "sample")
    reconstruct = lazy("commands", "reconstruct")
    interpolate = lazy("commands", "interpolate")
    write = lazy("commands", "write")
    evaluate_examples = 2000  # an importance-weighted NLL decodes K sequences per input
    compiles = False  # each batch has its own length

    def options(self, cfg: DataConfig):
        opts = super().options(cfg)
        if opts.max_length is None:
            opts.max_length = 100 if self.name == "smiles" else 50
        return opts

    def load(self, cfg: DataConfig, schema: dict | None = None):
        from .data import load

        return load(cfg, self.name, self.options(cfg), schema)

    def inputs(self, cfg: DataConfig, schema: dict, name: str | None):
        rows, strings = self.examples(cfg, schema, name)
        return rows, None, strings

    def tensors(self, run, data):
        from .data import rows_of_strings

        return rows_of_strings(list(data), self.name, run.schema, self.options(run.cfg.data), "the strings")[0], None

    def from_records(self, run, records: list, allow_unknown: bool = False):
        bad = next((i for i, r in enumerate(records) if not isinstance(r, str)), None)
        if bad is not None:
            raise VaekitError(f"input {bad} is a {type(records[bad]).__name__}, not a string")
        return records

    def decoded(self, run, z, labels=None):
        from .commands import greedy
        from .tokens import decode

        return decode(greedy(run.vae, z, run.schema["max_length"]), run.schema["vocab"], self.name)

    def onnx_graphs(self, run, x, y) -> list:
        """The encoder over padded rows, and the decoder teacher-forced: logits at every position
        of given rows (generation calls it again with each token chosen; ONNX has no sampling loop)."""
        from ...export import Graph
        from .model import PaddedEncoder, TeacherForced

        if run.vae.conditional:
            raise self.not_applicable("ONNX export of a conditional model")
        x = x[:256].long()
        z = run.vae.encode(x).mean
        try:
            encoder = PaddedEncoder(run.vae.encoder)
        except ValueError as e:
            raise VaekitError(f"ONNX export: {e}") from None
        rows = {0: "batch", 1: "length"}
        return [Graph("encoder", encoder, (x,), ["x"], ["mu", "logvar"],
                      {"x": rows, "mu": {0: "batch"}, "logvar": {0: "batch"}},
                      "q(z|x) of token rows (B, T), PAD (0) after each row's <eos>"),
                Graph("decoder", TeacherForced(run.vae.likelihood), (z, x), ["z", "x"], ["logits"],
                      {"z": {0: "batch"}, "x": rows, "logits": rows},
                      "next-token logits (B, T, V) at each position of the rows x given z")]

    def export_notes(self, run) -> dict:
        return {"vocab": run.schema["vocab"], "max_length": run.schema["max_length"],
                "special_tokens": {"pad": 0, "bos": 1, "eos": 2, "unk": 3},
                "x": "token ids of the vocabulary, <eos> after the last, PAD to the batch's width",
                "generation": "greedy: rows of one placeholder token (not read); run the decoder, put the argmax "
                              "at the last position in the placeholder's place, append a new placeholder, repeat "
                              "until <eos> (the SMILES grammar mask of `vaekit sample` is not in the graph)"}

    def schema_summary(self, run) -> dict:
        return {"max_length": run.schema["max_length"], "vocabulary": len(run.schema["vocab"])}

    def examples(self, cfg, schema, name):
        """(token rows, strings) of a file, or of the run's test split."""
        from .tokens import decode

        if name is None:
            splits, _ = self.load(cfg, schema)
            return splits.test_x, decode(splits.test_x, schema["vocab"], self.name)
        from .data import rows_of

        return rows_of(name, self.name, schema, self.options(cfg), name)

    def nets(self, model_cfg, schema: dict) -> Nets:
        from .model import AutoregressiveLikelihood, SeqDecoder, SeqEncoder
        from .grammar import SmilesGrammar

        if len(model_cfg.hidden) < 2 or len(set(model_cfg.hidden[1:])) != 1:
            raise VaekitError("sequence runs take --hidden ENC,DEC[,DEC...]: encoder GRU units, then equal "
                              f"decoder GRU units per layer, got {model_cfg.hidden}")
        vocab, emb = len(schema["vocab"]), EMBED_DIM[self.name]
        enc, dec, layers = model_cfg.hidden[0], model_cfg.hidden[1], len(model_cfg.hidden) - 1
        return Nets((schema["max_length"] + 1,),
                    SeqEncoder(vocab, emb, enc, 2 * model_cfg.latent_dim),
                    SeqDecoder(),
                    AutoregressiveLikelihood(vocab, model_cfg.latent_dim, emb, dec, layers, model_cfg.input_dropout,
                                             emits_unk=self.name == "text",
                                             grammar=SmilesGrammar(schema["vocab"]) if self.name == "smiles" else None))

    def batches(self, n: int, batch_size: int, generator, device, data):
        from .commands import length_buckets

        return length_buckets(data.train_x, batch_size, generator, device)

    def save_final(self, run_dir, vae, splits, schema: dict, num_samples: int) -> None:
        from .commands import save_final

        save_final(run_dir, vae, schema, self.name)

    def evaluation_order(self, x):
        # Batches of similar length: the decoder runs to the longest row of each batch, and the
        # importance-weighted NLL decodes every row K times.
        import torch

        from .tokens import lengths

        return torch.argsort(lengths(x), stable=True)

    def evaluate(self, run, opts, x, y, figures: dict) -> dict:
        from .commands import evaluate, perplexity

        out = evaluate(run, opts, x)
        return perplexity(figures | out) | out

    def report(self, run, splits) -> list[str]:
        from .commands import report

        return report(run, splits)


class SmilesKind(SequenceKind):
    name = "smiles"
    command_options = {"sample": SmilesSampleOptions, "evaluate": SmilesEvaluateOptions}
    commands = {"optimize": KindCommand("SMILES runs: search the latent space for molecules with a property",
                                        OptimizeOptions, "optimize", python="optimized")}
    # For a CPU budget (docs/sequences.md): in 3-minute runs batch 128 at 3e-3 gave 0.60 valid
    # samples against 0.11 for batch 512 at 2e-3, and word dropout 0.1 cost 0.12; in 10 minutes
    # 4e-3 with the KL weight at full within 0.1 epochs gave 0.843 (3e-3 and 0.3 epochs: 0.796).
    # That rate diverged (finite, climbing loss) in a 2-hour run; the loss guard halved it once and
    # the run reached 0.905 valid, FCD/Test 0.250.
    defaults = {"model.hidden": [256, 512], "model.latent_dim": 64, "model.input_dropout": 0.0,
                "data.test_fraction": 0.01, "data.val_fraction": 0.005, "train.batch_size": 128, "train.lr": 4e-3,
                "train.epochs": 20, "train.kl_warmup_epochs": 0.1, "train.free_bits": 0.1,
                "train.warmup_steps": 200, "train.grad_clip": 5.0, "train.loss_guard": 0.05}

    # Two hours (docs/sequences.md), 30,000 samples: a second 512-unit decoder layer at 2e-3 gave
    # 0.943 valid on one thread and 0.929 on two (free sampling; 0.905 at 4e-3, which the loss
    # guard had to halve); at 1e-3, two threads, 0.955 free and 0.968 within the grammar, FCD/Test
    # 0.190, validation -ELBO 21.94 in 16,716 steps against 22.64 in 29,160 at 2e-3. Measured at
    # 10 and 120 minutes; the switch at an hour is a judgement between them.
    budget_defaults = {60: {"train.lr": 1e-3, "model.hidden": [256, 512, 512]}}

    def detect(self, name: str) -> bool:
        return name.lower().removesuffix(".gz").endswith(".smi")

    def optimized(self, run, property: str, budget: int = 5000, top: int = 10, method: str = "es", seed: int = 0):
        """Molecules found for `property` (a DataFrame SMILES, property, rank), as `vaekit optimize`."""
        import dataclasses
        from types import SimpleNamespace

        from .optimize import search

        opts = OptimizeOptions(property=property, budget=budget, top=top, method=method)
        return search(run, SimpleNamespace(**dataclasses.asdict(opts), seed=seed, data_dir=None))[0]

    def optimize(self, run, opts) -> None:
        from .optimize import optimize

        optimize(run, opts)


class TextKind(SequenceKind):
    name = "text"
    # Word dropout 0: in 1.5-minute Austen runs (bench/text_lm.py) 0.3 gave held-out NLL 113.5 nats
    # and 0 gave 110.2, free bits keeping KL above 1 nat and every unit active either way. A 64-unit
    # encoder and free bits 0.05: in 5-minute one-thread runs 20% more steps than a 256-unit one
    # and 102.35 nats (K=10) against 103.92 (docs/sequences.md).
    defaults = {"model.hidden": [64, 512], "model.latent_dim": 32, "model.input_dropout": 0.0,
                "data.test_fraction": 0.05, "data.val_fraction": 0.05, "train.batch_size": 128, "train.lr": 1e-3,
                "train.epochs": 30, "train.kl_warmup_epochs": 10, "train.free_bits": 0.05,
                "train.warmup_steps": 200, "train.grad_clip": 5.0, "train.loss_guard": 0.05}

    def detect(self, name: str) -> bool:
        return name.lower().removesuffix(".gz").endswith(".txt")

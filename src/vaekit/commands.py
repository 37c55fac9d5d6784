"""The commands on a trained run and their core options, shared by every data kind.

Each command is a name, a help line, the dataclass of the options every kind takes, and a function
of (run, options). A kind adds options to a command (`Kind.command_options`) and commands of its
own (`Kind.commands`); the CLI (cli.py) and the Python API (api.py) read both from here and from
the registry, so neither names a kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import anomaly, explore, files
from .errors import VaekitError
from .options import option, positive


@dataclass
class RunOptions:
    """What every command on a run takes."""

    out: str | None = option(None, "output file (default: inside the run directory)")
    seed: int = option(0, "random seed (default 0)")


@dataclass
class DataOptions(RunOptions):
    """A command that reads inputs: a file of the run's kind, or its test split."""

    data: str | None = option(None, "inputs: a file of the run's kind of data (default: the run's test split)")
    data_dir: str | None = option(None, "where the run's data lives (default: as trained, or $VAEKIT_DATA_DIR)")


def at_least_one(name: str, value: int) -> None:
    if value < 1:
        raise VaekitError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


@dataclass
class SampleOptions(RunOptions):
    num: int = option(64, "how many examples to draw (default 64)")
    temperature: float = option(1.0, "scales the prior's spread (and a sequence's next-token logits)", parse=positive)

    def __post_init__(self):
        at_least_one("num", self.num)


@dataclass
class ReconstructOptions(DataOptions):
    num: int = option(32, "how many inputs (default 32)")

    def __post_init__(self):
        at_least_one("num", self.num)


@dataclass
class InterpolateOptions(DataOptions):
    steps: int = option(10, "points on each path (default 10)")
    pairs: int = option(8, "input pairs (default 8)")
    spherical: bool = option(False, "slerp instead of a straight line")

    def __post_init__(self):
        at_least_one("steps", self.steps)
        at_least_one("pairs", self.pairs)


@dataclass
class EvaluateOptions(DataOptions):
    iw_samples: int = option(100, "importance samples per example for the NLL (up to 5000; 0 skips it)")
    precision: str = option("fp32", "arithmetic of the figures", choices=("fp32", "bf16"))
    max_examples: int | None = option(None, "score at most this many inputs (default: all; sequences and item "
                                            "sets 2,000)")
    json: bool = option(False, "print one JSON object")
    quiet: bool = option(False, "no progress bar (it goes to stderr)")

    def __post_init__(self):
        if not 0 <= self.iw_samples <= 5000:
            raise VaekitError(f"--iw-samples must be in [0, 5000], got {self.iw_samples}")
        if self.max_examples is not None:
            at_least_one("max_examples", self.max_examples)


@dataclass
class LatentsOptions(DataOptions):
    projection: str = option("pca", "how more than two latents are drawn in 2-D", choices=("pca", "tsne"))
    num: int = option(5000, "at most this many points")


@dataclass
class EncodeOptions(DataOptions):
    logvar: bool = option(False, "also export log-variances")


@dataclass
class AnomalyOptions(DataOptions):
    score: str = option("neg_elbo", "the anomaly score (series runs: auto, their default, neg_elbo, recon_error "
                                    "or worst_channel)", choices=anomaly.SCORES)
    fpr: float | None = option(None, "false-positive rate on normal data for the threshold (default 0.05; series "
                                     "runs: 0.01 of the training rows)")
    num_samples: int | None = option(None, "posterior draws per -ELBO score (default 10; table runs 1)")
    normal_data: str | None = option(None, "normal inputs for the threshold (default: the run's validation split)")


@dataclass
class ReportOptions(RunOptions):
    data_dir: str | None = option(None, "where the run's data lives")


@dataclass(frozen=True)
class Command:
    """A command on a run: `function(run, options)` with `options` the core's `options` merged
    with the run's kind's. `method` names a Kind method instead, for the commands each kind does
    its own way."""

    help: str
    options: type
    function: Callable | None = None
    method: str | None = None


# ---- the commands every kind shares


def encode(run, opts) -> None:
    x, y, ids = run.inputs_with_ids(opts.data, opts.data_dir)
    mu, logvar = explore.embed(run.vae, x, y=run.vae.labels_for(y))
    out = run.out_path(opts.out, "embeddings.npy")
    if out.suffix == ".csv":
        import csv
        import io

        d = run.vae.latent_dim
        cols = [f"mu_{i}" for i in range(d)] + ([f"logvar_{i}" for i in range(d)] if opts.logvar else [])
        table = torch.cat([mu, logvar], 1) if opts.logvar else mu
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow((["id"] if ids else []) + cols + (["label"] if y is not None else []))
        for i, row in enumerate(table.tolist()):
            w.writerow(([ids[i]] if ids else []) + [f"{v:.6g}" for v in row] + ([int(y[i])] if y is not None else []))
        files.atomic_write(out, buf.getvalue().encode())
    else:
        files.write_npy(out, mu.numpy())
        if opts.logvar:
            files.write_npy(out.with_name(out.stem + "_logvar.npy"), logvar.numpy())
    print(f"wrote {out} ({len(mu)} x {run.vae.latent_dim})")


def latents(run, opts) -> None:
    from .plotting import save_scatter

    x, y = run.inputs(opts.data, opts.data_dir)
    vae = run.vae
    mu, _ = explore.embed(vae, x[: opts.num], y=vae.labels_for(None if y is None else y[: opts.num]))
    points = explore.project_2d(mu.numpy(), opts.projection)
    how = "latent space" if vae.latent_dim <= 2 else f"{opts.projection.upper()} of {vae.latent_dim}-D posterior means"
    out = run.out_path(opts.out, "latents.png")
    save_scatter(out, points, None if y is None else y[: opts.num].numpy(), how)
    print(f"wrote {out}")


def anomaly_scores(run, opts) -> dict:
    """Scores of the inputs, a threshold at --fpr on normal inputs, and the summary (AUROC where
    the kind knows which inputs are anomalies); writes the CSV, histogram and JSON."""
    from .plotting import save_histogram

    vae = run.vae
    opts.num_samples = run.kind.score_samples(opts.num_samples)  # explain() takes the same number
    if opts.num_samples < 1:
        raise VaekitError(f"--num-samples must be at least 1, got {opts.num_samples}")
    x, y, ids = run.inputs_with_ids(opts.data, opts.data_dir)
    scores = anomaly.score(vae, x, opts.score, num_samples=opts.num_samples, y=vae.labels_for(y))
    if opts.normal_data:
        normal_x, normal_y = run.inputs(opts.normal_data, opts.data_dir)
    else:  # the run's validation split: held out from training, never an excluded class
        splits = run.splits(opts.data_dir)
        normal_x, normal_y = splits.val_x, splits.val_y
    normal_scores = anomaly.score(vae, normal_x, opts.score, num_samples=opts.num_samples, y=vae.labels_for(normal_y))
    fpr = opts.fpr if opts.fpr is not None else 0.05
    threshold = anomaly.threshold_at(normal_scores, fpr)
    classes, is_anomaly = run.kind.anomalies(run, y, opts)
    summary = {"score": opts.score, "target_fpr": fpr, "anomaly_classes": classes,
               **anomaly.summarize(scores, threshold, is_anomaly)}
    out = run.out_path(opts.out, "anomaly.csv")
    columns = {"index": list(range(len(scores)))} | ({"id": ids} if ids else {})
    columns |= {"score": [f"{s:.6g}" for s in scores], "flagged": [int(s > threshold) for s in scores]}
    if is_anomaly is not None:
        columns.update(label=[int(v) for v in y], is_anomaly=[int(v) for v in is_anomaly])
    columns.update(run.kind.explain(run, x, y, normal_x, normal_y, opts))
    anomaly.write_csv(out, columns)
    picture = save_histogram(out.with_suffix(".png"), scores, is_anomaly, threshold, opts.score)
    summary.update(scores_csv=str(out), histogram=str(picture))
    files.write_json(out.with_suffix(".json"), summary)
    files.write_json(Path(run.run_dir) / "anomaly.json", summary)  # the report shows the latest
    print(json.dumps(summary))
    return summary


def evaluate(run, opts) -> None:
    from .evaluation import evaluate_run

    result = evaluate_run(run, opts)
    text = json.dumps(result) if opts.json else "\n".join(
        f"{k:>28}: {format_value(v)}" for k, v in result.items())
    if opts.out:
        files.atomic_write(run.out_path(opts.out, "evaluation.json"), (json.dumps(result, indent=1) + "\n").encode())
    print(text)


def format_value(v) -> str:
    if isinstance(v, list):
        return " ".join(f"{e:.2f}" for e in v)
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def report(run, opts) -> None:
    from .report import write_report

    out = run.out_path(opts.out, "report.html")
    write_report(run, out, data_dir=opts.data_dir)
    print(f"wrote {out}")


def write_result(method: str):
    """A command whose result the run's kind computes (`Kind.<method>`) and writes (`Kind.write`)."""

    def command(run, opts) -> None:
        result = getattr(run.kind, method)(run, opts)
        run.kind.write(run, method, result, opts)

    return command


def own_options(kind, command: str) -> list[type]:
    """The options dataclass `kind` adds to `command`, as a list of none or one."""
    cls = kind.command_options.get(command) or (kind.commands[command].options if command in kind.commands else None)
    return [cls] if cls else []


def core_options(kind, command: str) -> type:
    """The core's options of `command`: a shared command's own, or those of a kind's command."""
    if command in COMMANDS:
        return COMMANDS[command].options
    return DataOptions if kind.commands[command].reads_data else RunOptions


COMMANDS = {
    "sample": Command("draw new examples from the model", SampleOptions, write_result("sample")),
    "reconstruct": Command("inputs beside their reconstructions", ReconstructOptions, write_result("reconstruct")),
    "interpolate": Command("walks between posterior means of input pairs", InterpolateOptions,
                           write_result("interpolate")),
    "evaluate": Command("test-set figures of a trained run", EvaluateOptions, evaluate),
    "latents": Command("scatter of encoded data coloured by label", LatentsOptions, latents),
    "encode": Command("export posterior means (.npy or .csv)", EncodeOptions, encode),
    "anomaly": Command("anomaly scores, threshold, AUROC", AnomalyOptions, anomaly_scores),
    "report": Command("one HTML page with everything", ReportOptions, report),
}


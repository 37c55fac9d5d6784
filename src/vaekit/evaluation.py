"""One evaluation path for `vaekit evaluate`, the report and the Python API: the inputs capped as
the run's kind says (an importance-weighted NLL over a million users does not finish), put in the
kind's cheapest order, then the core's figures (metrics.py) and the kind's own."""

from __future__ import annotations

import torch

from .errors import VaekitError
from .metrics import evaluate


def capped(run, x: torch.Tensor, y: torch.Tensor | None, max_examples: int | None = None):
    """The inputs the figures are computed on: the first `max_examples` (default: the kind's cap),
    in the kind's evaluation order."""
    cap = max_examples if max_examples is not None else run.kind.evaluate_examples
    if cap is not None:
        x, y = x[:cap], None if y is None else y[:cap]
    order = run.kind.evaluation_order(x)
    if order is not None:
        x, y = x[order], None if y is None else y[order]
    return x, y


def test_figures(run, x: torch.Tensor, y: torch.Tensor | None, iw_samples: int = 100, precision: str = "fp32",
                 seed: int = 0, max_examples: int | None = None, progress: bool = False) -> dict:
    """-ELBO and its terms, the importance-weighted NLL (iw_samples > 0), bits/dim, KL per latent
    dimension and active units of the capped inputs."""
    return figures_of(run, *capped(run, x, y, max_examples), iw_samples, precision, seed, progress)


def figures_of(run, x, y, iw_samples: int, precision: str, seed: int, progress: bool) -> dict:
    """The core's figures of inputs already capped."""
    if len(x) == 0:
        raise VaekitError("no examples to evaluate (the run's test split is empty: give --data FILE)")
    return evaluate(run.vae, x, iw_samples=iw_samples, precision=precision, seed=seed, y=run.vae.labels_for(y),
                    progress=progress)


def evaluate_run(run, opts) -> dict:
    """What `vaekit evaluate` prints: the core's figures of the inputs (opts.data, default the
    test split), then the kind's (ranking, table quality, MOSES metrics, ...)."""
    x, y = run.inputs(opts.data, opts.data_dir)
    x, y = capped(run, x, y, opts.max_examples)
    result = figures_of(run, x, y, opts.iw_samples, opts.precision, opts.seed, progress=not opts.quiet)
    result.update(run.kind.evaluate(run, opts, x, y, result))
    return result

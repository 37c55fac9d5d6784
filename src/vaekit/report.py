"""One self-contained HTML page about a run: config, curves, test figures, the pages of its data
kind (for images: samples from the prior and the posterior sampler, reconstructions,
interpolations, manifold, latent scatter) and, when it was run, the anomaly experiment. Images
are embedded as data URIs."""

from __future__ import annotations

import html
import json
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import files
from .pages import STYLE, figure, file_uri, table


@torch.no_grad()
def write_report(run, out: Path, data_dir: str | None = None) -> None:
    """The report page of an open run (checkpoint.open_run), written atomically to `out`."""
    from .evaluation import test_figures

    run_dir, cfg, vae = Path(run.run_dir), run.cfg, run.vae
    splits = run.splits(data_dir)
    records = ckpt.read_metrics(run_dir)
    sections = []

    # The evaluation every command shares, with the kind's cap on the inputs of the NLL.
    figures = test_figures(run, splits.test_x, splits.test_y, iw_samples=100)
    kl_dims = figures.pop("kl_per_dim")
    shown = {k: v for k, v in figures.items() if not isinstance(v, (list, dict))}
    sections.append("<h2>Test figures</h2>" + table(shown) +
                    "<p>Per example, in nats: -ELBO with one posterior sample, NLL importance-weighted with "
                    "100 samples; bits/dim divides the NLL by the number of dimensions and ln 2; active units have "
                    "Cov_x(E_q[z]) &gt; 0.01.</p>"
                    + ("" if kl_dims is None else "<p>KL per latent dimension: "
                       + " ".join(f"{k:.2f}" for k in kl_dims) + "</p>"))
    if (run_dir / "curves.png").exists():
        sections.append("<h2>Training</h2>" + figure(file_uri(run_dir / "curves.png"),
                                                     f"Loss per epoch over {len(records)} epochs"))
    sections += run.kind.report(run, splits)

    anomaly_json = run_dir / "anomaly.json"
    if anomaly_json.exists():
        summary = json.loads(anomaly_json.read_text())
        body = table({k: v for k, v in summary.items() if k not in ("scores_csv", "histogram")})
        if summary.get("histogram") and Path(summary["histogram"]).exists():
            body += figure(file_uri(Path(summary["histogram"])), "Anomaly scores and the threshold")
        sections.append("<h2>Anomaly detection</h2>" + body)

    sections.append("<h2>Config</h2><pre>" + html.escape(json.dumps(cfg.to_dict(), indent=2)) + "</pre>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>vaekit report: {html.escape(run_dir.name)}</title>"
            f"<style>{STYLE}</style></head><body><h1>vaekit report: {html.escape(run_dir.name)}</h1>"
            f"<p>{html.escape(run.kind.name)} data, {html.escape(cfg.model.net)} VAE, {vae.latent_dim} latents, "
            f"trained on {html.escape(cfg.data.name)} for {len(records)} epochs.</p>"
            + "".join(f"<section>{s}</section>" for s in sections) + "</body></html>")
    files.atomic_write(out, page.encode())

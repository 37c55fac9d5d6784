"""One self-contained HTML page about a run: config, curves, test figures, the pages of its data
kind (for images: samples from the prior and the posterior sampler, reconstructions,
interpolations, manifold, latent scatter) and, when it was run, the anomaly experiment. Images
are embedded as data URIs."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import explore
from .metrics import evaluate
from .plotting import auto_scale, figure_png, image_grid, png_bytes, scatter_figure

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em}section{margin:2em 0}figure{display:inline-block;margin:0 1.5em 1em 0;vertical-align:top}
figcaption{font-size:.9em;color:#555;max-width:420px}img{image-rendering:pixelated;border:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #eee;text-align:left}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.85em}"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def grid_uri(x: torch.Tensor, nrow: int | None = None) -> str:
    return data_uri(png_bytes(image_grid(x, nrow, scale=auto_scale(x.shape[-2]))))


def file_uri(path: Path) -> str:
    return data_uri(Path(path).read_bytes())


def figure(uri: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def table(rows: dict) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{v:.4f}</td></tr>" if isinstance(v, float)
        else f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{cells}</table>"


def latent_scatter(run, x: torch.Tensor, y: torch.Tensor | None, caption: str) -> str:
    """A figure of up to 5,000 encoded inputs, coloured by label when there are labels."""
    x, y = x[:5000], None if y is None else y[:5000]
    points = explore.project_2d(explore.embed(run.vae, x, y=run.vae.labels_for(y))[0].numpy())
    how = "latent space" if run.vae.latent_dim <= 2 else f"PCA of {run.vae.latent_dim}-D posterior means"
    return figure(data_uri(figure_png(scatter_figure(points, None if y is None else y.numpy(), how))), caption)


@torch.no_grad()
def write_report(run_dir: Path, out: Path, data_dir: str | None = None) -> None:
    run = ckpt.open_run(run_dir)
    cfg, vae = run.cfg, run.vae
    splits = run.splits(data_dir)
    records = ckpt.read_metrics(run_dir)
    sections = []

    figures = evaluate(vae, splits.test_x, iw_samples=100, y=vae.labels_for(splits.test_y))
    kl_dims = figures.pop("kl_per_dim")
    sections.append("<h2>Test figures</h2>" + table(figures) +
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
        if Path(summary.get("histogram", "")).exists():
            body += figure(file_uri(Path(summary["histogram"])), "Anomaly scores and the threshold")
        sections.append("<h2>Anomaly detection</h2>" + body)

    sections.append("<h2>Config</h2><pre>" + html.escape(json.dumps(cfg.to_dict(), indent=2)) + "</pre>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>vaekit report: {html.escape(run_dir.name)}</title>"
            f"<style>{STYLE}</style></head><body><h1>vaekit report: {html.escape(run_dir.name)}</h1>"
            f"<p>{html.escape(run.kind.name)} data, {html.escape(cfg.model.net)} VAE, {vae.latent_dim} latents, "
            f"trained on {html.escape(cfg.data.name)} for {len(records)} epochs.</p>"
            + "".join(f"<section>{s}</section>" for s in sections) + "</body></html>")
    ckpt.atomic_write(out, page.encode())


def image_sections(run, splits) -> list[str]:
    """Samples from the prior and the posterior sampler, reconstructions, interpolations, the
    decoded manifold and the latent scatter of an image run."""
    vae, test_x, test_y = run.vae, splits.test_x, splits.test_y
    g = torch.Generator().manual_seed(0)
    mu, _ = explore.embed(vae, splits.train_x[:10_000], y=vae.labels_for(None if splits.train_y is None else splits.train_y[:10_000]))
    sampler = explore.PosteriorSampler(10).fit(mu)
    labels = torch.arange(64) % vae.cfg.num_classes if vae.conditional else None
    sections = ["<h2>Samples</h2>" + figure(grid_uri(vae.sample(64, generator=g)), f"64 draws z ~ p(z) ({run.cfg.model.prior} prior)")
                + figure(grid_uri(vae.decode(sampler.sample(64), labels).mean),
                         "64 draws from a 10-component Gaussian mixture fitted to training posterior means")]

    x = test_x[:16]
    ty = vae.labels_for(test_y)
    pairs = torch.stack([x, vae.reconstruct(x, None if ty is None else ty[:16])], 1).flatten(0, 1)
    a, b = test_x[16:22], test_x[22:28]
    ya, yb = (None, None) if ty is None else (ty[16:22], ty[22:28])
    sections.append(
        "<h2>Reconstructions and interpolations</h2>"
        + figure(grid_uri(pairs, nrow=8), "Test inputs, each followed by its reconstruction (decoder mean at the posterior mean)")
        + figure(grid_uri(explore.interpolate(vae, a, b, 10, False, ya, yb).flatten(0, 1), nrow=10), "Linear paths between posterior means of test pairs")
        + figure(grid_uri(explore.interpolate(vae, a, b, 10, True, ya, yb).flatten(0, 1), nrow=10), "Spherical paths (slerp)"))
    sections.append("<h2>Latent space</h2>"
                    + figure(grid_uri(explore.manifold(vae, 15, 3.0), nrow=15),
                             "Decoded grid over latent axes 0 and 1 in [-3, 3]^2, other axes at 0")
                    + latent_scatter(run, test_x, test_y, "Encoded test data coloured by label"))
    return sections

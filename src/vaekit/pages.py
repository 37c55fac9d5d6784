"""HTML pieces every page of vaekit is made of: pictures as data URIs, figures, tables, the latent
scatter of a run. Nothing here writes a file."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import torch

from . import explore
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

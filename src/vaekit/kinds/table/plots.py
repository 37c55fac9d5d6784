"""Pictures of a table run: each column's real and synthetic distributions side by side, the
column-association matrices of both tables, and the report pages built from them."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from ...plotting import figure_png, pyplot, save_figure
from .quality import canonical

MAX_BARS = 12


def column_figure(real: pd.DataFrame, synth: pd.DataFrame, schema: dict):
    """One panel per column: overlaid histograms (numeric) or paired bars of the most common
    categories; each title gives both tables' missing share."""
    plt = pyplot()
    cols = schema["columns"]
    ncol = min(4, len(cols))
    nrow = math.ceil(len(cols) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 2.8 * nrow), squeeze=False)
    for ax, col in zip(axes.flat, cols):
        r, s = real[col["name"]], synth[col["name"]]
        if col["type"] == "numeric":
            present = pd.concat([r.dropna(), s.dropna()]).to_numpy(float)
            bins = np.histogram_bin_edges(present, bins=30) if len(present) else 10
            ax.hist(r.dropna().to_numpy(float), bins=bins, alpha=0.55, density=True, label="real")
            ax.hist(s.dropna().to_numpy(float), bins=bins, alpha=0.55, density=True, label="synthetic")
        else:
            p, q = r.value_counts(normalize=True), s.value_counts(normalize=True)
            top = p.index[:MAX_BARS]
            pos = np.arange(len(top))
            ax.bar(pos - 0.2, p.reindex(top).fillna(0), width=0.4, label="real")
            ax.bar(pos + 0.2, q.reindex(top).fillna(0), width=0.4, label="synthetic")
            ax.set_xticks(pos, [str(t)[:12] for t in top], rotation=60, fontsize=7, ha="right")
        ax.set_title(f"{col['name']}  (missing {r.isna().mean():.1%} / {s.isna().mean():.1%})", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(cols):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_columns(path, real: pd.DataFrame, synth: pd.DataFrame, schema: dict):
    return save_figure(path, column_figure(canonical(real, schema, "real"), canonical(synth, schema, "synthetic"), schema))


def associations(frame: pd.DataFrame, schema: dict) -> np.ndarray:
    """|Pearson r| between numeric columns, Cramér's V otherwise (numeric columns in 10 bins)."""
    from scipy.stats.contingency import association

    names = [c["name"] for c in schema["columns"]]
    numeric = {c["name"] for c in schema["columns"] if c["type"] == "numeric"}
    codes = {}
    for n in names:
        v = frame[n]
        codes[n] = (pd.cut(v, 10, labels=False).fillna(-1) if n in numeric and v.notna().any()
                    else pd.Series(pd.Categorical(v.astype(str)).codes))
    m = np.eye(len(names))
    for (i, a), (j, b) in itertools.combinations(enumerate(names), 2):
        if a in numeric and b in numeric:
            r = frame[[a, b]].dropna().astype(float)
            value = abs(r[a].corr(r[b])) if len(r) > 1 else np.nan
        else:
            table = pd.crosstab(codes[a], codes[b]).to_numpy()
            value = association(table, method="cramer") if min(table.shape) > 1 else 0.0
        m[i, j] = m[j, i] = value
    return m


def association_figure(real: pd.DataFrame, synth: pd.DataFrame, schema: dict):
    plt = pyplot()
    names = [c["name"] for c in schema["columns"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    for ax, frame, title in zip(axes, (real, synth), ("real", "synthetic")):
        im = ax.imshow(associations(frame, schema), vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(names)), [n[:12] for n in names], rotation=70, fontsize=7, ha="right")
        ax.set_yticks(range(len(names)), [n[:12] for n in names], fontsize=7)
        ax.set_title(f"column associations: {title}")
    fig.colorbar(im, ax=axes, shrink=0.8, label="|r| (numeric pairs) or Cramér's V")
    return fig


def report_sections(run, frames, splits) -> list[str]:
    from ...pages import data_uri, figure, latent_scatter, table
    from .sampling import sample_frame
    from .quality import table_quality

    schema = run.schema
    synth = sample_frame(run.vae, schema, len(frames.train), seed=0)
    real, fake = canonical(frames.train, schema, "the training rows"), canonical(synth, schema, "synthetic")
    scores = table_quality(frames.train, frames.test, synth, schema)
    by_column = scores.pop("column_shapes_by_column")
    return [
        "<h2>Columns</h2>" + figure(data_uri(figure_png(column_figure(real, fake, schema))),
                                    f"Each column in the {len(real):,} training rows and in as many synthetic rows"),
        "<h2>Column pairs</h2>" + figure(data_uri(figure_png(association_figure(real, fake, schema))),
                                         "How strongly each pair of columns goes together, in both tables"),
        "<h2>Synthetic data quality</h2>" + table(scores)
        + "<p>Column shapes per column: " + ", ".join(f"{k} {v:.3f}" for k, v in by_column.items()) + "</p>",
        "<h2>Latent space</h2>" + latent_scatter(run, splits.test_x, splits.test_y,
                                                 "Encoded test rows" + (f", coloured by {schema['target']}" if splits.test_y is not None else "")),
    ]

"""Why a row is odd: its per-column score against what normal rows score in that column."""

from __future__ import annotations

import numpy as np

from ...anomaly import column_scores, ranked


def top_columns(vae, x, y, normal_x, normal_y, schema: dict, num_samples: int = 10,
                k: int = 3) -> list[str]:
    """For each row, up to `k` columns whose score most exceeds their median on normal rows
    (largest first, ';'-separated; empty where no column is above its median)."""
    medians = np.median(column_scores(vae, normal_x, normal_y, num_samples), axis=0)
    return ranked(column_scores(vae, x, y, num_samples) - medians, [c["name"] for c in schema["columns"]], k)

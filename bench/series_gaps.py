"""Streams with gaps: missing cells left out of the likelihood (Donut's modified ELBO, what vaekit
does) against the same gaps carried forward before training (what a user would do otherwise).

    python bench/series_gaps.py --data-dir ../shared/data [--seeds 0,1,2]

On NAB's `art_daily_small_noise` (a daily pattern at 5-minute steps, no anomaly), 10% of the rows
are cut out in stretches of 6 to 60 rows, and 20 rows of the second half are moved by 2 to 4 of
the pattern's spreads (spikes). Each variant trains on the first half (`--train-rows`) and scores
every row (`vaekit anomaly`). Printed per variant, median over the seeds: the AUROC of the spikes
against the observed ordinary rows of the second half, and the share of those ordinary rows
flagged at the run's threshold (1% of its training rows), overall and in the 32 rows after a gap,
and the share of the second half's missing rows flagged.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

VAEKIT = [sys.executable, "-m", "vaekit"]
FILE = "nab/artificialNoAnomaly/art_daily_small_noise.csv"


def gappy_stream(data: Path, seed: int):
    """(the frame with gaps as empty cells, the spike rows, a mask of rows within 32 after a gap)."""
    rng = np.random.default_rng(seed)
    frame = pd.read_csv(data / FILE)
    n = len(frame)
    v = frame["value"].to_numpy(dtype=float).copy()
    half = n // 2
    spikes = np.sort(rng.choice(np.arange(half + 64, n), 20, replace=False))
    v[spikes] += rng.choice([-1, 1], 20) * rng.uniform(2, 4, 20) * v[:half].std()
    missing = np.zeros(n, bool)
    while missing.mean() < 0.1:
        start = int(rng.integers(64, n - 60))
        missing[start : start + int(rng.integers(6, 61))] = True
    missing[spikes] = False
    after = np.zeros(n, bool)
    for end in np.flatnonzero(missing[:-1] & ~missing[1:]) + 1:
        after[end : end + 32] = True
    frame["value"] = np.where(missing, np.nan, v)
    return frame, spikes, missing, after & ~missing


def measure(frame: pd.DataFrame, spikes, missing, after, work: Path, seed: int) -> tuple[float, ...]:
    path = work / "stream.csv"
    frame.to_csv(path, index=False)
    run_dir, out = work / "run", work / "scores.csv"
    subprocess.run(VAEKIT + ["train", "--data", str(path), "--kind", "series", "--out", str(run_dir), "--train-rows",
                             str(len(frame) // 2), "--seed", str(seed), "--quiet"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(VAEKIT + ["anomaly", str(run_dir), "--data", str(path), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    scores = pd.read_csv(out)
    test = np.arange(len(frame)) >= len(frame) // 2
    y = np.zeros(len(frame), bool)
    y[spikes] = True
    ordinary = test & ~missing & ~y
    keep = ordinary | y
    auroc = roc_auc_score(y[keep], scores["anomaly_score"].to_numpy()[keep])
    flagged = scores["flagged"].to_numpy().astype(bool)
    return (auroc, 100 * flagged[ordinary].mean(), 100 * flagged[ordinary & after].mean(),
            100 * flagged[test & missing].mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    results = {"gaps left out (vaekit)": [], "gaps carried forward first": []}
    for seed in [int(s) for s in args.seeds.split(",")]:
        frame, spikes, missing, after = gappy_stream(args.data_dir, seed)
        filled = frame.assign(value=frame["value"].ffill())
        for name, f in zip(results, (frame, filled)):
            with tempfile.TemporaryDirectory() as work:
                results[name].append(measure(f, spikes, missing, after, Path(work), seed))
                a, f, g, m = results[name][-1]
                print(f"seed {seed} {name}: AUROC {a:.3f}, flagged {f:.2f}% (after a gap {g:.2f}%, in a gap {m:.2f}%)",
                      flush=True)
    for name, rows in results.items():
        a, f, g, m = np.median(np.array(rows), axis=0)
        print(f"{name:28s} median AUROC {a:.3f}  ordinary rows flagged {f:.2f}%  in the 32 rows after a gap "
              f"{g:.2f}%  rows in a gap {m:.2f}%")


if __name__ == "__main__":
    main()

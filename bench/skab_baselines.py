"""Where SKAB's false alarms come from: per-file z-scores (no model) scored by `skab_eval.py`.

    python bench/skab_baselines.py --data-dir ../shared/data --tools ../shared/tools/series

Each experiment's score is the largest |z| over a set of channels, z against the mean and standard
deviation of the file's first 400 rows (the tools' rolling_zscore example, channel by channel);
`skab_eval.py --threshold-rule train-quantile:0.99` pools TP/FP/FN over the 34 files, as the
series bench scores vaekit. Variants: every channel, each channel alone, every channel but one,
every channel but the two temperatures, and a rule that needs no channel names (a channel whose
400 training rows trend, R^2 of a straight line above 0.05, scored by its changes instead of its
level), unsmoothed and as a 5-row mean.
Prints each variant's F1 / FAR / MAR and the training rows' median trend R^2 per channel.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

TRAIN_ROWS = 400
GROUPS = ("valve1", "valve2", "other")


def experiments(data: Path) -> list[tuple[str, pd.DataFrame, pd.Series]]:
    out = []
    for group in GROUPS:
        for path in sorted((data / "skab" / group).glob("*.csv"), key=lambda p: int(p.stem)):
            df = pd.read_csv(path, sep=";")
            out.append((f"{group}/{path.name}", df.drop(columns=["datetime", "anomaly", "changepoint"]).astype(float),
                        df["datetime"]))
    return out


def trend_r2(train: np.ndarray) -> np.ndarray:
    """Per channel, the share of the training rows' variance a straight line in time explains."""
    t = np.arange(len(train), dtype=float)
    return np.array([np.corrcoef(t, v)[0, 1] ** 2 if v.std() > 0 else 0.0 for v in train.T])


def zmax(x: pd.DataFrame, channels: list[str], trend_rule: bool = False, smooth: int = 1) -> np.ndarray:
    v = x[channels].to_numpy().copy()
    if trend_rule:
        for j in np.flatnonzero(trend_r2(v[:TRAIN_ROWS]) > 0.05):
            v[:, j] = np.diff(v[:, j], prepend=v[0, j])
    v = pd.DataFrame(v).rolling(smooth, min_periods=1).mean().to_numpy()  # trailing: causal
    train = v[:TRAIN_ROWS]
    sd = train.std(0, ddof=1)
    sd[sd == 0] = 1.0
    return np.abs((v - train.mean(0)) / sd).max(1)


def evaluate(name: str, scores: dict, times: dict, tools: Path, data: Path, work: Path) -> dict:
    pred = work / name.replace(" ", "_").replace("/", "_")
    for rel, s in scores.items():
        (pred / rel).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"datetime": times[rel], "anomaly_score": s}).to_csv(pred / rel, index=False)
    out = work / f"{pred.name}.json"
    subprocess.run([sys.executable, str(tools / "skab_eval.py"), str(pred), "--threshold-rule", "train-quantile:0.99",
                    "--data-dir", str(data / "skab"), "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["pooled"]["all"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--tools", type=Path, required=True, help="the folder of skab_eval.py")
    args = p.parse_args()
    files = experiments(args.data_dir)
    channels = list(files[0][1].columns)
    times = {rel: t for rel, _, t in files}
    r2 = np.median([trend_r2(x.to_numpy()[:TRAIN_ROWS]) for _, x, _ in files], axis=0)
    print("median trend R^2 of the 400 training rows:", ", ".join(f"{c} {v:.2f}" for c, v in zip(channels, r2)))
    variants = {"every channel": dict(channels=channels)}
    variants |= {f"only {c}": dict(channels=[c]) for c in channels}
    variants |= {f"all but {c}": dict(channels=[k for k in channels if k != c]) for c in channels}
    warm = ("Temperature", "Thermocouple")  # the rig's slow warming: named here to measure it, never in vaekit
    variants["all but the two temperatures"] = dict(channels=[k for k in channels if k not in warm])
    variants |= {"trending channels by their changes": dict(channels=channels, trend_rule=True),
                 "the same, 5-row mean": dict(channels=channels, trend_rule=True, smooth=5)}
    with tempfile.TemporaryDirectory() as work:
        for name, how in variants.items():
            m = evaluate(name, {rel: zmax(x, **how) for rel, x, _ in files}, times, args.tools, args.data_dir, Path(work))
            print(f"{name:45s} F1 {m['F1']:.3f}  FAR {m['FAR']:6.2f} %  MAR {m['MAR']:6.2f} %", flush=True)


if __name__ == "__main__":
    main()

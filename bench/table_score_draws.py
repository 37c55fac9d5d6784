"""How many posterior draws a table's anomaly score needs: AUROC of odd rows against normal ones.

    python bench/table_score_draws.py --data-dir ../shared/data [--run RUN] [--draws 1,2,4,10]

Trains the default Adult model (`vaekit train --data train.csv --target income`) unless --run gives
one. Odd rows: 2,000 of Adult's official test rows with one column (or a pair) replaced by the
value of another random test row, a plausible value in an implausible place; normal rows: 2,000
other test rows. Each is scored with `vaekit.anomaly.score` (-ELBO averaged over D draws) for three
seeds; prints each corruption's median AUROC per number of draws. The table kind's default (one
draw, `TableKind.score_draws`) rests on this (docs/serve.md).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table_speed import adult_csv  # noqa: E402

CORRUPTIONS = (["education-num"], ["relationship"], ["marital-status"], ["age"], ["occupation", "workclass"],
               ["hours-per-week"])


def corrupted(rows: pd.DataFrame, columns: list[str], rng) -> pd.DataFrame:
    out = rows.copy()
    for c in columns:
        out[c] = rows[c].to_numpy()[rng.integers(len(rows), size=len(rows))]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--run", type=Path, help="a trained Adult run (default: train one with the defaults)")
    p.add_argument("--draws", default="1,2,4,10")
    args = p.parse_args()
    import vaekit
    from vaekit import anomaly

    tmp = Path(tempfile.mkdtemp(prefix="score-draws-"))
    train_csv, test_csv = adult_csv(args.data_dir, tmp)
    run = args.run or tmp / "adult"
    if not args.run:
        subprocess.run([sys.executable, "-m", "vaekit", "train", "--data", str(train_csv), "--target", "income",
                        "--out", str(run), "--quiet"], check=True, stdout=subprocess.DEVNULL)
    model = vaekit.open(run)
    vae = model.run.vae
    test = pd.read_csv(test_csv, dtype=str, keep_default_na=False).sample(frac=1, random_state=0)
    odd_base, normal = test.iloc[:2000], test.iloc[2000:4000]
    draws = [int(d) for d in args.draws.split(",")]
    fields = lambda frame: model.run.kind.tensor(frame.reset_index(drop=True), model.run.schema, "the test rows")
    normal_x, normal_y = fields(normal)
    print("corrupted columns", *[f"{d} draw{'s' * (d > 1)}" for d in draws], sep=" | ")
    for columns in CORRUPTIONS:
        odd_x, odd_y = fields(corrupted(odd_base, columns, np.random.default_rng(0)))
        truth = np.r_[np.ones(len(odd_x)), np.zeros(len(normal_x))]
        cells = []
        for d in draws:
            aurocs = [roc_auc_score(truth, np.r_[anomaly.score(vae, odd_x, num_samples=d, seed=s, y=vae.labels_for(odd_y)),
                                                 anomaly.score(vae, normal_x, num_samples=d, seed=s + 100,
                                                               y=vae.labels_for(normal_y))])
                      for s in range(3)]
            cells.append(f"{statistics.median(aurocs):.4f}")
        print(" + ".join(columns), *cells, sep=" | ", flush=True)


if __name__ == "__main__":
    main()

"""Small tables: does the default command give 1,000 rows as good a model as the full table?

    python bench/table_small.py --data-dir ../shared/data [--rows 1000] [--seeds 3] [-- TRAIN FLAGS]

UCI Adult's training file subsampled to --rows rows (seeded), written as CSV as a user holds it;
then, per seed, the default command `vaekit train --data small.csv --test-data test.csv --target
income --out RUN` and `vaekit evaluate RUN --json` (a fresh sample as large as the training rows,
scored on Adult's official test rows). Prints each run's steps, seconds and figures, and the
medians of the two ratios the table kind must keep at or above 0.85: the synthetic rows' ML
efficacy against the real rows' (`ml_efficacy_f1 / ml_efficacy_f1_real`) and `column_shapes`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table_speed import adult_csv  # noqa: E402

VAEKIT = [sys.executable, "-m", "vaekit"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads of each command (0: torch's default)")
    p.add_argument("train_flags", nargs="*", help="after --: more flags of the train command (e.g. --min-steps 0, "
                                                  "the defaults before training scaled with the data)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train, test = adult_csv(args.data_dir, tmp)
        ratios, shapes = [], []
        for seed in range(args.seeds):
            small = tmp / f"adult_{args.rows}_{seed}.csv"
            frame = pd.read_csv(train, dtype=str, keep_default_na=False)
            frame.sample(n=args.rows, random_state=seed).to_csv(small, index=False)
            run = tmp / f"run{seed}"
            threads = ["--threads", str(args.threads)] if args.threads else []
            start = time.perf_counter()
            subprocess.run(VAEKIT + ["train", "--data", str(small), "--test-data", str(test), "--target", "income",
                                     "--out", str(run), "--quiet", *threads, *args.train_flags], check=True)
            seconds = time.perf_counter() - start
            out = subprocess.run(VAEKIT + ["evaluate", str(run), "--json", "--quiet", "--seed", str(seed)],
                                 check=True, capture_output=True, text=True).stdout
            figures = json.loads(out)
            steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]["step"]
            ratio = figures["ml_efficacy_f1"] / figures["ml_efficacy_f1_real"]
            ratios.append(ratio)
            shapes.append(figures["column_shapes"])
            print(f"seed {seed}: {steps} steps in {seconds:.1f} s (whole command); ML efficacy F1 "
                  f"{figures['ml_efficacy_f1']:.4f} against real {figures['ml_efficacy_f1_real']:.4f} "
                  f"(ratio {ratio:.3f}); column shapes {figures['column_shapes']:.4f}; pair trends "
                  f"{figures['column_pair_trends']:.4f}", flush=True)
        print(f"median over {args.seeds} seeds, {args.rows} rows: ML efficacy ratio {statistics.median(ratios):.3f}, "
              f"column shapes {statistics.median(shapes):.4f} (each must be >= 0.85)")


if __name__ == "__main__":
    main()

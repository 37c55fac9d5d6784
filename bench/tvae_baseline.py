"""TVAE (Xu et al., 2019) as its users run it: PyPI `ctgan` 0.12.1, default settings (300 epochs),
on a CSV table. Runs in an environment that has ctgan (it is not a vaekit dependency):

    python -m venv .venv-tvae && .venv-tvae/bin/pip install torch==2.13.0 ctgan==0.12.1
    .venv-tvae/bin/python bench/tvae_baseline.py --train train.csv --out synth.csv

Prints one JSON line: seconds to fit (transforms and epochs), rows per second of sampling, and
writes `--num` synthetic rows (default: as many as the training rows) to --out.
"""

import argparse
import json
import time

import pandas as pd


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--num", type=int)
    p.add_argument("--sample-rows", type=int, default=200_000, help="rows for the sampling-speed figure")
    args = p.parse_args()
    from ctgan import TVAE

    frame = pd.read_csv(args.train, dtype=str, keep_default_na=False)
    for name in frame.columns:  # numbers as numbers, as a user's DataFrame would hold them
        as_number = pd.to_numeric(frame[name], errors="coerce")
        if as_number.notna().all():
            frame[name] = as_number
    discrete = [c for c in frame.columns if frame[c].dtype == object]
    start = time.perf_counter()
    model = TVAE(epochs=args.epochs, enable_gpu=False)
    model.fit(frame, discrete_columns=discrete)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    model.sample(args.sample_rows)
    sample_rows_s = args.sample_rows / (time.perf_counter() - start)
    model.sample(args.num or len(frame)).to_csv(args.out, index=False)
    print(json.dumps({"fit_s": fit_s, "sample_rows_per_s": sample_rows_s, "epochs": args.epochs}))


if __name__ == "__main__":
    main()

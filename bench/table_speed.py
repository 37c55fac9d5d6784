"""Tables: vaekit against TVAE on UCI Adult, and how vaekit's time grows to a 1,000,000-row table.

    python bench/table_speed.py --data-dir ../shared/data [--tvae-python .venv-tvae/bin/python]

1. Adult (the official split) as CSV files with a header, as a user holds it.
2. vaekit: the whole `vaekit train --data train.csv --test-data test.csv --target income` command,
   timed once per seed (default 3 seeds); then the quality of 32,561 sampled rows per run.
3. TVAE: the whole bench/tvae_baseline.py command (ctgan 0.12.1, default 300 epochs) in the
   Python given by --tvae-python (or $VAEKIT_TVAE_PYTHON; skipped without one), and the quality
   of its 32,561 sampled rows, scored by the same code as vaekit's.
4. Sampling speed: rows per second drawing 200,000 rows into a DataFrame (median of 3).
5. Scale: a 1,000,000-row table drawn from the trained Adult model, written as CSV; the whole
   `vaekit train --epochs 1` command on it, with its read, epoch and peak memory figures.

Quality figures are those of `vaekit evaluate` (src/vaekit/kinds/table/quality.py): SDMetrics'
column shapes and pair trends, SDGym's ML efficacy (mean F1 of four classifiers), distance to
closest record, exact copies. Run it alone on the machine; every ratio comes from this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import vaekit  # noqa: E402
from vaekit.kinds.table.quality import table_quality  # noqa: E402
from vaekit.tabular import read_table  # noqa: E402
from vaekit.kinds.table.sampling import sample_frame  # noqa: E402

COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
           "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income"]
QUALITY = ("column_shapes", "column_pair_trends", "column_pair_trends_all", "ml_efficacy_f1", "ml_efficacy_f1_real", "dcr_p5", "dcr_test_p5",
           "exact_copy_share", "exact_copy_share_test")


def adult_csv(data_dir: Path, out: Path) -> tuple[Path, Path]:
    raw = data_dir / "adult"
    read = lambda name, skip: pd.read_csv(raw / name, header=None, names=COLUMNS, skipinitialspace=True, dtype=str,
                                          keep_default_na=False, skiprows=skip)
    train, test = read("adult.data", 0), read("adult.test", 1)
    test["income"] = test["income"].str.rstrip(".")
    paths = out / "train.csv", out / "test.csv"
    for frame, path in zip((train, test), paths):
        frame[frame["age"] != ""].to_csv(path, index=False)
    return paths


def timed(cmd: list[str]) -> tuple[float, str, float]:
    """Wall seconds, stdout and peak resident memory (MB) of one command."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode:
            sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err.read()[-2000:]}")
        return seconds, out.read(), usage.ru_maxrss / 1024


def quality_of(synth: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, schema: dict) -> dict:
    r = table_quality(train, test, synth, schema)
    return {k: r[k] for k in QUALITY}


def adult_checks(synth: pd.DataFrame, real: pd.DataFrame) -> dict:
    """Where TVAE fails on Adult: capital-gain's zeros and support, native-country's categories and
    missing cells ('?')."""
    gain, real_gain = (pd.to_numeric(f["capital-gain"], errors="coerce") for f in (synth, real))
    smallest = real_gain[real_gain > 0].min()
    impossible = (gain < 0) | ((gain > 0) & (gain < smallest)) | (gain > real_gain.max())
    country = synth["native-country"].astype(str)
    return {"gain_zero": (gain == 0).mean(), "gain_negative": (gain < 0).mean(), "gain_impossible": impossible.mean(),
            "countries": country[country != "?"].nunique(), "country_missing": (country == "?").mean()}


def checks_line(c: dict) -> str:
    return (f"capital-gain zeros {c['gain_zero']:.1%}, negative {c['gain_negative']:.1%}, outside the real support "
            f"{c['gain_impossible']:.1%}; {c['countries']} native countries, {c['country_missing']:.1%} missing")


def fmt(r: dict) -> str:
    return "  ".join(f"{k} {r[k]:.4f}" for k in QUALITY)


def bench_vaekit(train_csv: Path, test_csv: Path, work: Path, seeds: int, real, test) -> tuple[list, list, Path]:
    times, qualities = [], []
    for seed in range(seeds):
        run = work / f"vaekit-{seed}"
        s, _, _ = timed([sys.executable, "-m", "vaekit", "train", "--data", str(train_csv), "--test-data", str(test_csv),
                         "--target", "income", "--seed", str(seed), "--quiet", "--out", str(run)])
        times.append(s)
        model = vaekit.TableVAE.load(run)
        synth = vaekit.kinds.table.columns.to_file_frame(model.sample(len(real), seed=seed), model.run.schema)
        qualities.append(quality_of(synth, real, test, model.run.schema))
        print(f"vaekit seed {seed}: whole train command {s:.1f} s;  {fmt(qualities[-1])}", flush=True)
        print(f"  {checks_line(adult_checks(synth, real))}", flush=True)
    return times, qualities, work / "vaekit-0"


def sampling_rate(run: Path, rows: int = 200_000) -> float:
    model = vaekit.TableVAE.load(run)
    sample_frame(model.run.vae, model.run.schema, 1000)
    rates = []
    for seed in range(3):
        start = time.perf_counter()
        sample_frame(model.run.vae, model.run.schema, rows, seed=seed)
        rates.append(rows / (time.perf_counter() - start))
    return statistics.median(rates)


def bench_tvae(python: str, train_csv: Path, work: Path, epochs: int, real, test, schema) -> dict:
    out = work / "tvae.csv"
    s, stdout, _ = timed([python, str(Path(__file__).with_name("tvae_baseline.py")), "--train", str(train_csv),
                          "--out", str(out), "--epochs", str(epochs), "--num", str(len(real))])
    figures = json.loads(stdout.strip().splitlines()[-1])
    synth = read_table(out)
    q = quality_of(synth, real, test, schema)
    print(f"TVAE ({epochs} epochs): whole command {s:.1f} s (fit {figures['fit_s']:.1f} s);  {fmt(q)}", flush=True)
    print(f"  {checks_line(adult_checks(synth, real))}", flush=True)
    return {"seconds": s, **figures, **q}


def bench_scale(run: Path, rows: int, work: Path) -> dict:
    model = vaekit.TableVAE.load(run)
    big = work / "big.csv"
    start = time.perf_counter()
    model.sample(rows, seed=7).pipe(lambda f: vaekit.kinds.table.columns.to_file_frame(f, model.run.schema)).to_csv(
        big, index=False)
    print(f"wrote {rows:,} rows ({big.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s", flush=True)
    out = work / "big-run"
    s, _, rss = timed([sys.executable, "-m", "vaekit", "train", "--data", str(big), "--target", "income", "--epochs", "1",
                       "--quiet", "--out", str(out)])
    record = vaekit.checkpoint.read_metrics(out)[0]
    return {"rows": rows, "seconds": s, "epoch_seconds": record["seconds"], "rows_per_s": record["samples_per_s"],
            "peak_rss_mb": rss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR", "../shared/data"))
    p.add_argument("--tvae-python", default=os.environ.get("VAEKIT_TVAE_PYTHON"))
    p.add_argument("--tvae-epochs", type=int, default=300)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the scale test (0 skips it)")
    args = p.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="vaekit-table-bench-") as tmp:
        work = Path(tmp)
        train_csv, test_csv = adult_csv(Path(args.data_dir), work)
        real, test = read_table(train_csv), read_table(test_csv)
        times, qualities, run = bench_vaekit(train_csv, test_csv, work, args.seeds, real, test)
        rate = sampling_rate(run)
        schema = vaekit.TableVAE.load(run).run.schema
        adult_rows_s = statistics.median(r["samples_per_s"] for r in vaekit.checkpoint.read_metrics(run))
        tvae = bench_tvae(args.tvae_python, train_csv, work, args.tvae_epochs, real, test, schema) if args.tvae_python else None
        scale = bench_scale(run, args.rows, work) if args.rows else None

    print("\n| Adult (official split), 2 threads | whole train command | " + " | ".join(QUALITY) + " |")
    print("| --- " * (2 + len(QUALITY)) + "|")
    mean = {k: statistics.mean(q[k] for q in qualities) for k in QUALITY}
    spread = {k: (min(q[k] for q in qualities), max(q[k] for q in qualities)) for k in QUALITY}
    print(f"| vaekit defaults, {args.seeds} seeds (mean; range) | {statistics.median(times):.1f} s (median) | "
          + " | ".join(f"{mean[k]:.3f} ({spread[k][0]:.3f}-{spread[k][1]:.3f})" for k in QUALITY) + " |")
    if tvae:
        print(f"| TVAE, ctgan 0.12.1, {args.tvae_epochs} epochs | {tvae['seconds']:.1f} s | "
              + " | ".join(f"{tvae[k]:.3f}" for k in QUALITY) + " |")
        print(f"\nspeed-up, whole train command: {tvae['seconds'] / statistics.median(times):.1f}x")
    print(f"sampling: vaekit {rate:,.0f} rows/s" + (f", TVAE {tvae['sample_rows_per_s']:,.0f} rows/s "
                                                      f"({rate / tvae['sample_rows_per_s']:.2f}x)" if tvae else ""))
    if scale:
        print(f"scale: {scale['rows']:,} rows, 1 epoch: whole command {scale['seconds']:.1f} s, epoch {scale['epoch_seconds']:.1f} s "
              f"({scale['rows_per_s']:,.0f} training rows/s; Adult's epochs: {adult_rows_s:,.0f}), "
              f"peak RSS {scale['peak_rss_mb']:,.0f} MB")


if __name__ == "__main__":
    main()

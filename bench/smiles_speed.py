"""Training throughput of the SMILES VAE at the MOSES benchmark's VAE size (GRU-256 encoder, 3x512
GRU decoder, latent 128, batch 512) against MOSES's own VAE code, both timed in this one run.

    python bench/smiles_speed.py --data-dir ../shared/data --moses-python .venv-moses/bin/python [vaekit train flags]

`--moses-python` is an interpreter with molsets 0.3.1 (see bench/moses_baseline.py); without it
only vaekit is timed. vaekit: `vaekit train --kind smiles` on the first --molecules of the training
set for one epoch, its defaults otherwise (the precision calibrated on this machine); the figure is
the epoch's molecules per second that the run records (training steps only, as for MOSES: its
per-batch median after a warm-up step). Each is run --repeats times, alone, medians reported.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MOSES_SIZE = ["--hidden", "256,512,512,512", "--latent-dim", "128", "--batch-size", "512"]


def vaekit_rate(molecules: Path, out: Path, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "vaekit", "train", "--data", str(molecules), "--kind", "smiles", *MOSES_SIZE,
           "--epochs", "1", "--quiet", "--out", str(out), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return records[-1]["samples_per_s"]


def moses_rate(python: str, train: Path, steps: int) -> float:
    script = Path(__file__).with_name("moses_baseline.py")
    done = subprocess.run([python, str(script), "--data", str(train), "--steps", str(steps)],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"MOSES baseline failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["molecules_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR", "../shared/data"))
    p.add_argument("--moses-python", help="an interpreter with molsets 0.3.1 installed")
    p.add_argument("--molecules", type=int, default=20_480, help="training molecules for vaekit's timed epoch")
    p.add_argument("--moses-steps", type=int, default=5, help="timed MOSES batches (8 s each here)")
    p.add_argument("--repeats", type=int, default=3)
    args, extra = p.parse_known_args()
    train = Path(args.data_dir) / "moses" / "train.csv.gz"
    if not train.is_file():
        sys.exit(f"{train}: not found (--data-dir)")
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "molecules.csv"
        with gzip.open(train, "rt") as f:
            subset.write_text("".join(line for _, line in zip(range(args.molecules + 1), f)))
        rates = [vaekit_rate(subset, Path(tmp) / f"run{i}", extra) for i in range(args.repeats)]
        print(f"vaekit: {statistics.median(rates):.0f} molecules/s (runs: {', '.join(f'{r:.0f}' for r in rates)})")
        if not args.moses_python:
            return
        baseline = [moses_rate(args.moses_python, train, args.moses_steps) for _ in range(args.repeats)]
        print(f"MOSES's VAE: {statistics.median(baseline):.1f} molecules/s (runs: {', '.join(f'{r:.1f}' for r in baseline)})")
        print(f"speed-up: {statistics.median(rates) / statistics.median(baseline):.2f}x")


if __name__ == "__main__":
    main()

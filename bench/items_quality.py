"""Mult-VAE against EASE and popularity on MovieLens-100K, over several seeds of the user split.

    python bench/items_quality.py --data-dir ../shared/data [--seeds 5] [-- extra vaekit train flags]

Each seed draws its own validation and test users (10% each, strong generalisation: 80% of a
held-out user's items shown, 20% to predict). Per seed, `vaekit train` (the defaults, plus any
flags after `--`) and `vaekit evaluate`, which ranks the test users' held-out items with the
model, with popularity and with EASE (its lambda chosen on the validation users). Prints each
seed's figures and their mean and standard deviation; whole-command training times are medians.
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

KEYS = ("recall@20", "recall@50", "ndcg@100")
FLAGS = ["--kind", "items", "--user-col", "user_id", "--item-col", "item_id", "--rating-col", "rating",
         "--min-rating", "4", "--quiet"]


def vaekit(*args) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vaekit", *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"vaekit {' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR", "../shared/data"))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("extra", nargs="*", help="more `vaekit train` flags (after --)")
    args = p.parse_args()
    data = Path(args.data_dir) / "movielens-100k" / "ml-100k.inter"
    rows = {"vaekit": [], "popularity": [], "ease": []}
    seconds, val_best, best_epochs = [], [], []
    with tempfile.TemporaryDirectory(prefix="vaekit-items-") as tmp:
        for seed in range(args.seeds):
            run = Path(tmp) / f"seed{seed}"
            s, _ = vaekit("train", "--data", data, *FLAGS, "--split-seed", seed, "--seed", seed, *args.extra, "--out", run)
            _, out = vaekit("evaluate", run, "--json", "--iw-samples", "0", "--quiet")
            r = json.loads(out)
            records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            best = max(records, key=lambda rec: rec["val_ndcg@100"])
            seconds.append(s)
            val_best.append(best["val_ndcg@100"])
            best_epochs.append(best["epoch"])
            rows["vaekit"].append(r)
            rows["popularity"].append(r["popularity"])
            rows["ease"].append(r["ease"])
            print(f"seed {seed}: {s:.1f} s, best validation NDCG@100 {best['val_ndcg@100']:.4f} at epoch {best['epoch']}; "
                  + "  ".join(f"{name} " + " ".join(f"{k} {rows[name][-1][k]:.4f}" for k in KEYS) for name in rows)
                  + f"  (EASE lambda {r['ease']['lambda']:g})", flush=True)
    print(f"\nMovieLens-100K, {args.seeds} seeds of the user split ({rows['vaekit'][0]['num_test_users']} test users "
          f"in seed 0), mean (standard deviation):\n")
    print("| model | " + " | ".join(KEYS) + " |")
    print("| --- " * (1 + len(KEYS)) + "|")
    for name, label in (("vaekit", "vaekit (Mult-VAE) defaults" + (f" {' '.join(args.extra)}" if args.extra else "")),
                        ("ease", "EASE"), ("popularity", "popularity")):
        cells = [f"{statistics.mean(r[k] for r in rows[name]):.4f} ({statistics.pstdev(r[k] for r in rows[name]):.4f})"
                 for k in KEYS]
        print(f"| {label} | " + " | ".join(cells) + " |")
    wins = {k: sum(v[k] >= e[k] for v, e in zip(rows["vaekit"], rows["ease"])) for k in KEYS}
    print(f"\nseeds where vaekit >= EASE: " + ", ".join(f"{k} {w}/{args.seeds}" for k, w in wins.items()))
    print(f"whole train command: median {statistics.median(seconds):.1f} s; best epochs {best_epochs}; "
          f"mean best validation NDCG@100 {statistics.mean(val_best):.4f}")


if __name__ == "__main__":
    main()

"""Mult-VAE at scale: a generated 1,000,000-user x 50,000-item implicit-feedback set, trained with
bounded memory; users per second in one process and under torchrun with two.

    python bench/items_scale.py [--users 1000000] [--items 50000] [--minutes 3]

The set has a realistic long tail: item popularity is Zipf-like (exponent 1.0), user activity
log-normal (median 12 items, at least 5), and each user's items come 70% from one of 100 taste
clusters, 30% from the whole catalogue. It is written as Parquet (user, item), then read by the
same `vaekit train --kind items` a user runs, for `--minutes` of training each time (the run ends
cleanly, as after its last epoch). Figures: the whole command's wall time and peak resident memory
(its own, from wait4), the users per second of training, and the time before training starts
(reading, the split, the item vocabulary: the whole time minus the training epochs' time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def generate(users: int, items: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) index pairs of the set described above."""
    rng = np.random.default_rng(seed)
    activity = np.maximum(5, rng.lognormal(np.log(12), 0.9, users).astype(np.int64))
    owner = np.repeat(np.arange(users), activity)
    popularity = 1.0 / np.arange(1, items + 1)  # Zipf, exponent 1
    clusters = 100
    item_cluster = rng.integers(0, clusters, items)
    user_cluster = rng.integers(0, clusters, users)[owner]
    globally = rng.choice(items, size=len(owner), p=popularity / popularity.sum())
    # Within a cluster: an item drawn by the same long tail, among the cluster's own items.
    members = np.argsort(item_cluster, kind="stable")
    first = np.searchsorted(item_cluster[members], np.arange(clusters))
    size = np.diff(np.append(first, items))
    local_rank = np.minimum((rng.pareto(1.0, len(owner))).astype(np.int64), size[user_cluster] - 1)
    locally = members[first[user_cluster] + local_rank]
    item = np.where(rng.random(len(owner)) < 0.7, locally, globally)
    return owner, item


def timed(cmd: list[str], env=None) -> tuple[float, float, str]:
    """Wall seconds, peak resident MB (the whole process tree's largest child) and stderr."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        err.seek(0)
        text = err.read()
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"failed: {' '.join(cmd)}\n{text[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--minutes", type=float, default=3.0, help="training minutes of each run")
    p.add_argument("--skip-torchrun", action="store_true")
    p.add_argument("--write", metavar="PATH", help="only write the set to PATH (Parquet)")
    args = p.parse_args()
    if args.write:
        import pandas as pd

        owner, item = generate(args.users, args.items)
        pd.DataFrame({"user": owner.astype(str), "item": item.astype(str)}).to_parquet(args.write, index=False)
        print(len(owner))
        return
    with tempfile.TemporaryDirectory(prefix="vaekit-items-scale-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        path = tmp / "interactions.parquet"
        # In a child process: a command's peak RSS (from wait4) counts the memory of the process it
        # was forked from, so this one must not hold the generated set when it starts them.
        done = subprocess.run([sys.executable, __file__, "--write", str(path), "--users", str(args.users),
                               "--items", str(args.items)], capture_output=True, text=True, check=True)
        print(f"generated {int(done.stdout):,} interactions of {args.users:,} users and {args.items:,} items "
              f"({path.stat().st_size / 1e6:.0f} MB Parquet) in {time.perf_counter() - start:.0f} s", flush=True)
        flags = ["--data", str(path), "--kind", "items", "--user-col", "user", "--item-col", "item",
                 "--max-minutes", str(args.minutes), "--quiet"]
        runs = {"1 process, 2 threads": [sys.executable, "-m", "vaekit", "train", *flags, "--threads", "2"]}
        if not args.skip_torchrun:
            runs["torchrun, 2 processes x 1 thread"] = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                         "--nproc-per-node", "2", "-m", "vaekit", "train", *flags,
                                                         "--threads", "1"]
        for name, cmd in runs.items():
            out = tmp / name.split(",")[0].replace(" ", "-")
            seconds, rss, _ = timed([*cmd, "--out", str(out)], env=dict(os.environ, OMP_NUM_THREADS="1"))
            records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            trained = sum(r["seconds"] for r in records)
            users_s = sum(r["samples_per_s"] * r["seconds"] for r in records) / trained
            print(f"{name}: whole command {seconds:.0f} s, training {trained:.0f} s at {users_s:,.0f} users/s, "
                  f"before training {seconds - trained:.0f} s, peak RSS {rss:,.0f} MB (largest process), "
                  f"last validation NDCG@100 {records[-1]['val_ndcg@100']:.4f}", flush=True)


if __name__ == "__main__":
    main()

"""The literature's MNIST table: test NLL (importance-weighted, K = 5000) on dynamically
binarized MNIST, for vaekit's variants, each trained under a stated CPU-time budget.

Burda et al. (2015), 3,280 epochs on a GPU: VAE 1-layer 86.76, IWAE (k=50) 84.78; 2-layer VAE
85.33, IWAE 82.90. Tomczak & Welling (2018): VampPrior 1-layer 85.57.

    python bench/mnist_nll.py --data-dir ../shared/data --minutes 60 [--variants vae,iwae,vamp]
        [--epochs N] [--finetune-epochs N] [--iw-samples 5000] [--out runs/nll] [--threads 1] [--jobs 2]

`vae-2layer-iwae-finetune` has two phases: the 2-layer VAE, then `vaekit train --init-from` that run
with configs/mnist-nll-iwae-finetune.json (IWAE, k=50) for --finetune-epochs (or 45% of --minutes);
the table gives both epoch counts and their summed time.

`--jobs N` trains and scores N variants side by side, each on cores / N intra-op threads
(OMP_NUM_THREADS; `--threads` overrides), so two 1-thread budgets share the 2 cores.

Each variant trains with `vaekit train ... --epochs N`, N as many epochs as a 2-epoch probe says fit
the time budget (or `--epochs N` as given: a probe on a busy machine runs slow), then `vaekit evaluate --iw-samples K` scores the test set. Results are
printed as a Markdown table with the command, the time and the machine beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Burda et al.'s 1-layer architecture: 2 tanh hidden layers of 200, 50 latents, Bernoulli.
COMMON = ["--data", "mnist", "--binarize", "dynamic", "--model", "mlp", "--hidden", "200,200",
          "--activation", "tanh", "--latent-dim", "50", "--batch-size", "100", "--lr", "1e-3",
          "--lr-schedule", "cosine", "--warmup-steps", "0",
          "--compile"]  # 17% shorter epochs for the 2-layer IWAE on one thread, after ~15 s of compiling
# Burda et al.'s 2-layer model: z1 of 100 (after 2 x 200 tanh), z2 of 50 (after 2 x 100 tanh).
TWO_LAYER = ["--latent-dim", "100", "--prior", "hierarchical", "--top-latent-dim", "50", "--top-hidden", "100,100"]
VARIANTS = {
    "vae": [],
    "iwae": ["--objective", "iwae", "--iw-samples", "50"],
    # Without a small initial posterior std the tanh VampPrior model never leaves the plateau (docs/evaluation.md).
    "vamp": ["--prior", "vamp", "--prior-components", "500", "--posterior-init-std", "0.05"],
    "mog": ["--prior", "mog", "--prior-components", "20"],
    "vae-freebits": ["--free-bits", "0.1"],
    # KL warm-up keeps more latent units active (Sonderby et al. 2016).
    "vae-kl-warmup": ["--kl-warmup", "50"],
    "vae-2layer": TWO_LAYER,
    "iwae-2layer": [*TWO_LAYER, "--objective", "iwae", "--iw-samples", "50"],
    # k=5 costs ~3x the 2-layer VAE's epoch (k=50: ~25x), so many more epochs fit a CPU budget.
    "iwae5-2layer": [*TWO_LAYER, "--objective", "iwae", "--iw-samples", "5"],
    # Without the narrow starting posterior this run sat on the tanh plateau (204 nats, KL 0.35) for 96 epochs.
    "vae-2layer-kl-warmup": [*TWO_LAYER, "--kl-warmup", "50", "--posterior-init-std", "0.05"],
}
# Two-phase variants: train the first variant, then fine-tune its weights (`vaekit train --init-from`)
# with a preset's training recipe; the fine-tuning's epochs come from --finetune-epochs (or its share
# of --minutes).
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FINE_TUNES = {
    # The importance-weighted bound (k=50, lr 3e-4) moves the ELBO-trained model toward a higher
    # likelihood at a fraction of an IWAE run's cost (docs/evaluation.md).
    "vae-2layer-iwae-finetune": ("vae-2layer-kl-warmup", CONFIGS / "mnist-nll-iwae-finetune.json"),
}
FINETUNE_SHARE = 0.45  # of --minutes, when the fine-tuning's epochs are sized by a probe
ENV = dict(os.environ)
LITERATURE = {"vae": 86.76, "iwae": 84.78, "vamp": 85.57, "vae-2layer": 85.33, "iwae-2layer": 82.90}


def epochs_for(minutes: float, flags: list[str], probe: Path, data_dir: str) -> int:
    """Time one epoch (after a warm-up epoch) and fit as many as the budget allows."""
    subprocess.run([sys.executable, "-m", "vaekit", "train", *flags, "--epochs", "2",
                    "--data-dir", data_dir, "--quiet", "--out", str(probe)], check=True, env=ENV)
    seconds = json.loads((probe / "metrics.jsonl").read_text().splitlines()[-1])["seconds"]
    return max(1, int(minutes * 60 / (seconds * 1.1)))  # ~10% for validation, checkpoints, noise


def torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def train(flags: list[str], epochs: int, run: Path, data_dir: str) -> float:
    """`vaekit train` into `run`; its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vaekit", "train", *flags, "--epochs", str(epochs), "--data-dir", data_dir,
                    "--quiet", "--out", str(run)], check=True, env=ENV)
    return time.perf_counter() - start


def run_variant(variant: str, args, out: Path) -> tuple:
    """Train (for --epochs, else as many as the probe says fit the budget), fine-tune where the
    variant has a second phase, score with K importance samples: one row of the table."""
    first, preset = FINE_TUNES.get(variant, (variant, None))
    flags = [*COMMON, *VARIANTS[first]]
    minutes = args.minutes * (1 - FINETUNE_SHARE if preset else 1)
    counts = [args.epochs or epochs_for(minutes, flags, out / f"{variant}-probe", args.data_dir)]
    run = out / (variant if preset is None else f"{variant}-phase1")
    train_s = train(flags, counts[0], run, args.data_dir)
    if preset is not None:
        tune_flags = ["--init-from", str(run), "--config", str(preset), "--compile"]
        counts.append(args.finetune_epochs or epochs_for(args.minutes * FINETUNE_SHARE, tune_flags,
                                                         out / f"{variant}-probe2", args.data_dir))
        run = out / variant
        train_s += train(tune_flags, counts[1], run, args.data_dir)
    start = time.perf_counter()
    result = json.loads(subprocess.run([sys.executable, "-m", "vaekit", "evaluate", str(run), "--json",
                                        "--iw-samples", str(args.iw_samples), "--data-dir", args.data_dir],
                                       check=True, capture_output=True, text=True, env=ENV).stdout)
    eval_s = time.perf_counter() - start
    epochs = "+".join(map(str, counts))
    print(json.dumps({"variant": variant, "epochs": epochs, "train_s": train_s, "eval_s": eval_s, **result}),
          flush=True)
    return variant, epochs, train_s, eval_s, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR"))
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget per variant")
    parser.add_argument("--variants", default="vae,iwae,vamp")
    parser.add_argument("--epochs", type=int, default=0,
                        help="train this many epochs instead of what a 2-epoch probe says fits --minutes "
                             "(the probe's epoch can run slow on a busy machine)")
    parser.add_argument("--finetune-epochs", type=int, default=0,
                        help="epochs of a two-phase variant's fine-tuning (default: its share of --minutes)")
    parser.add_argument("--iw-samples", type=int, default=5000)
    parser.add_argument("--out", default="runs/nll")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads per command (0: torch's default, or the cores shared among --jobs)")
    parser.add_argument("--jobs", type=int, default=1, help="variants run side by side")
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("--data-dir (or VAEKIT_DATA_DIR) must name the folder holding mnist/")
    if args.jobs > 1 and not args.threads:
        args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    if args.threads:
        ENV["OMP_NUM_THREADS"] = str(args.threads)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS and v not in FINE_TUNES]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join([*VARIANTS, *FINE_TUNES])}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each job waits on its own subprocesses
        rows = list(pool.map(lambda v: run_variant(v, args, out), variants))
    budget = f"{args.epochs} epochs" if args.epochs else f"budget {args.minutes:g} min of training"
    if args.finetune_epochs and any(v in FINE_TUNES for v in variants):
        budget += f" (+{args.finetune_epochs} of fine-tuning)"
    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{budget} per variant, {args.jobs} at a time; "
          f"{args.threads or torch_threads()} threads each; K = {args.iw_samples}\n")
    print("| variant | epochs | training | test NLL (nats) | -ELBO | active units | literature |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for variant, epochs, train_s, eval_s, r in rows:
        print(f"| {variant} | {epochs} | {train_s / 60:.1f} min | {r['nll']:.2f} | {r['neg_elbo']:.2f} | "
              f"{r['active_units']} | {LITERATURE.get(variant, '')} |")


if __name__ == "__main__":
    main()

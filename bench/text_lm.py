"""The sentence VAE against a language model of the same decoder trained as long (He et al., 2019,
"Lagging Inference Networks": a VAE whose held-out NLL is no better than an LM's has learned
nothing its decoder could not), on Jane Austen: five novels to train on, Persuasion held out.

    python bench/text_lm.py --data-dir ../shared/data [--minutes 5] [-- extra vaekit train flags]

1. The five novels' sentences in one file, Persuasion's in another (`--split sentences`).
2. `vaekit train --kind text --max-minutes M` (the defaults), then `vaekit evaluate --data
   persuasion --iw-samples 100 --json`: importance-weighted NLL, KL, active units, perplexity on
   2,000 held-out sentences.
3. The language model: the VAE's decoder (same vocabulary, embedding, GRU, output layer) with z
   held at 0 and no encoder, trained for the same minutes on the same sentences with the VAE's
   optimiser settings (Adam, rate, warm-up, cosine decay over the budget, gradient clipping); its
   NLL on the same held-out sentences is exact (no latent variable).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from vaekit.checkpoint import open_run, read_metrics  # noqa: E402
from vaekit.kinds.sequence.commands import length_buckets  # noqa: E402
from vaekit.kinds.sequence.data import sentences  # noqa: E402
from vaekit.kinds.sequence.model import AutoregressiveLikelihood  # noqa: E402
from vaekit.kinds.sequence.tokens import lengths, word_tokens  # noqa: E402
from vaekit.schedules import learning_rate  # noqa: E402

NOVELS = ["emma", "mansfieldpark", "northangerabbey", "prideprejudice", "sensesensibility"]


def vaekit(*args) -> str:
    done = subprocess.run([sys.executable, "-m", "vaekit", *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"vaekit {' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def train_lm(run_dir: Path, minutes: float, held_out: torch.Tensor) -> dict:
    """The run's decoder as a language model (z = 0), trained for `minutes`; its held-out NLL."""
    run = open_run(run_dir)
    cfg, schema = run.cfg, run.schema
    splits = run.splits()
    src = run.vae.likelihood
    lm = AutoregressiveLikelihood(len(schema["vocab"]), cfg.model.latent_dim, src.embed.embedding_dim, src.hidden,
                                  src.layers, 0.0)
    opt = torch.optim.Adam(lm.parameters(), lr=cfg.train.lr)
    g = torch.Generator().manual_seed(0)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < 60 * minutes:
        for idx in length_buckets(splits.train_x, cfg.train.batch_size, g, "cpu"):
            progress = (time.perf_counter() - start) / (60 * minutes)
            for group in opt.param_groups:
                group["lr"] = learning_rate(steps, 0, cfg.train.lr, cfg.train.lr_schedule, cfg.train.warmup_steps,
                                            progress)
            x = splits.train_x[idx]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16"):
                loss = -lm(torch.zeros(len(x), cfg.model.latent_dim)).log_prob(x).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lm.parameters(), cfg.train.grad_clip or 5.0)
            opt.step()
            steps += 1
            if time.perf_counter() - start >= 60 * minutes:
                break
    lm.eval()
    with torch.no_grad():
        nll = sum(-lm(torch.zeros(len(x), cfg.model.latent_dim)).log_prob(x).sum().item() for x in held_out.split(500))
    tokens = lengths(held_out).sum().item()
    return {"nll": nll / len(held_out), "perplexity": math.exp(nll / tokens), "steps": steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR", "../shared/data"))
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--iw-samples", type=int, default=100, help="importance samples of the VAE's NLL")
    p.add_argument("--threads", type=int, default=0, help="threads for both models (0: torch's default)")
    p.add_argument("extra", nargs="*", help="more `vaekit train` flags (after --)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    root = Path(args.data_dir) / "austen"
    with tempfile.TemporaryDirectory(prefix="vaekit-text-") as tmp:
        tmp = Path(tmp)
        train_txt, held_txt = tmp / "five_novels.txt", tmp / "persuasion.txt"
        train_txt.write_text("\n\n".join(gzip.open(root / f"{n}.txt.gz", "rt").read() for n in NOVELS))
        # Persuasion's sentences of at most 50 words and marks (the model's maximum length; evaluate
        # refuses longer ones), each a paragraph of its own so that the run's sentence split keeps it
        held = [x for x in sentences(gzip.open(root / "persuasion.txt.gz", "rt").read()) if len(word_tokens(x)) <= 50]
        held_txt.write_text("\n\n".join(held) + "\n")
        run = tmp / "run"
        vaekit("train", "--data", train_txt, "--kind", "text", "--split", "sentences", "--max-minutes", args.minutes,
               "--quiet", *args.extra, "--out", run)
        vae = json.loads(vaekit("evaluate", run, "--data", held_txt, "--iw-samples", args.iw_samples,
                                "--json", "--quiet"))
        opened = open_run(run)
        vae_steps = read_metrics(run)[-1]["step"]
        held_out, _ = opened.kind.examples(opened.data_config(), opened.schema, str(held_txt))
        lm = train_lm(run, args.minutes, held_out[:2000])
    print(f"\nJane Austen, five novels' sentences to train on ({args.minutes:g} minutes each), 2,000 of Persuasion's "
          "to test, nats per sentence:\n")
    print("| model | held-out NLL | perplexity | KL | active units |")
    print("| --- | --- | --- | --- | --- |")
    flags = " ".join(args.extra) or "defaults"
    print(f"| sentence VAE (vaekit {flags}, {vae_steps} steps, IW NLL, K={args.iw_samples}) | {vae['nll']:.2f} | {vae['perplexity']:.1f} | "
          f"{vae['kl']:.2f} | {vae['active_units']} |")
    print(f"| GRU language model, the same decoder ({lm['steps']} steps) | {lm['nll']:.2f} | {lm['perplexity']:.1f} | | |")


if __name__ == "__main__":
    main()

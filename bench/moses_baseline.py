"""MOSES's own VAE (molsets 0.3.1, `moses.vae`), its default config (GRU-256 encoder, 3x512 GRU
decoder, latent 128, batch 512), timed per training step on the MOSES training set. Runs in an
environment that has molsets (it is not a vaekit dependency):

    python -m venv .venv-moses && .venv-moses/bin/pip install torch==2.13.0 molsets==0.3.1
    .venv-moses/bin/python bench/moses_baseline.py --data ../shared/data/moses/train.csv.gz

molsets 0.3.1 predates current RDKit and pandas; two shims let it import (rdkit.six is gone,
DataFrame.append became concat). The step is the body of its trainer's `_train_epoch`: forward,
kl_weight * KL + reconstruction, backward, gradient clipping at 50, Adam. Prints one JSON line:
seconds per batch (the median of --steps, after one warm-up step) and molecules per second.

With `--minutes M --out samples.csv` it instead trains for M minutes of steps on the shuffled
training set and writes `--samples` prior samples (column SMILES, invalid ones included) for
bench/moses_quality.py to score. Its trainer anneals the KL weight and the learning rate once per
epoch, so inside the first epoch (7 hours on a 2-core CPU) the weight stays at kl_w_start (0) and
the rate at lr_start (3e-4), as here.
"""

import argparse
import gzip
import itertools
import json
import os
import random
import statistics
import sys
import time
import types


def shims() -> None:
    import pandas as pd

    six = types.ModuleType("rdkit.six")
    six.iteritems = lambda d: iter(d.items())
    six.PY3 = True
    sys.modules["rdkit.six"] = six
    if not hasattr(pd.DataFrame, "append"):
        pd.DataFrame.append = lambda self, other, ignore_index=False, **_: pd.concat(
            [self, pd.DataFrame(other) if not isinstance(other, pd.DataFrame) else other], ignore_index=ignore_index)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="MOSES train.csv.gz (a SMILES column first)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--minutes", type=float, help="train this long, then sample (with --out)")
    p.add_argument("--samples", type=int, default=30_000)
    p.add_argument("--out", help="CSV of the samples (with --minutes)")
    args = p.parse_args()
    if (args.minutes is None) != (args.out is None):
        sys.exit("--minutes and --out go together")
    shims()
    import torch
    from moses.vae.config import get_parser
    from moses.vae.model import VAE
    from moses.vae.trainer import VAETrainer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = get_parser().parse_args([])
    wanted = None if args.minutes else config.n_batch * (args.steps + 1)
    with gzip.open(args.data, "rt") as f:
        next(f)
        smiles = [line.split(",")[0].strip() for line in itertools.islice(f, wanted)]
    if args.minutes:
        random.Random(0).shuffle(smiles)
    trainer = VAETrainer(config)
    model = VAE(trainer.get_vocabulary(smiles), config)
    collate = trainer.get_collate_fn(model)
    optimizer = torch.optim.Adam(trainer.get_optim_params(model), lr=config.lr_start)
    model.train()
    if args.minutes:
        return train_and_sample(model, optimizer, trainer, config, collate, smiles, args)
    times = []
    for i in range(args.steps + 1):
        batch = collate(smiles[i * config.n_batch:(i + 1) * config.n_batch])
        start = time.perf_counter()
        step(model, optimizer, trainer, config, batch)
        if i:  # the first step warms up the allocator and oneDNN
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    print(json.dumps({"seconds_per_batch": round(seconds, 3), "molecules_per_s": round(config.n_batch / seconds, 1),
                      "steps": len(times), "torch": torch.__version__}))


def bool_masks() -> None:
    """Its sampler builds its end-of-string mask as uint8, which current torch refuses as an index:
    the model module sees a torch whose uint8 is bool."""
    import moses.vae.model
    import torch

    view = types.SimpleNamespace(**{k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
    view.uint8 = torch.bool
    moses.vae.model.torch = view


def step(model, optimizer, trainer, config, batch) -> tuple[float, float]:
    import torch

    kl_loss, recon_loss = model(batch)
    loss = config.kl_w_start * kl_loss + recon_loss
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainer.get_optim_params(model), config.clip_grad)
    optimizer.step()
    return kl_loss.item(), recon_loss.item()


def train_and_sample(model, optimizer, trainer, config, collate, smiles, args) -> None:
    start, steps, seen = time.perf_counter(), 0, 0
    while time.perf_counter() - start < 60 * args.minutes:
        at = seen % len(smiles)
        batch = smiles[at:at + config.n_batch]
        kl, recon = step(model, optimizer, trainer, config, collate(batch))
        steps, seen = steps + 1, seen + len(batch)
        if steps % 50 == 0:
            print(f"step {steps} molecules {seen} kl {kl:.2f} recon {recon:.2f}", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    bool_masks()
    model.eval()
    out = []
    while len(out) < args.samples:
        out += model.sample(min(config.n_batch, args.samples - len(out)), max_len=100)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("SMILES\n" + "".join(s.replace("\n", " ") + "\n" for s in out))
    os.replace(tmp, args.out)
    print(json.dumps({"steps": steps, "molecules": seen, "seconds": round(seconds, 1), "samples": len(out)}))


if __name__ == "__main__":
    main()

"""MOSES's own VAE (molsets 0.3.1, `moses.vae`), its default config (GRU-256 encoder, 3x512 GRU
decoder, latent 128, batch 512), timed per training step on the MOSES training set. Runs in an
environment that has molsets (it is not a vaekit dependency):

    python -m venv .venv-moses && .venv-moses/bin/pip install torch==2.13.0 molsets==0.3.1
    .venv-moses/bin/python bench/moses_baseline.py --data ../shared/data/moses/train.csv.gz

molsets 0.3.1 predates current RDKit and pandas; two shims let it import (rdkit.six is gone,
DataFrame.append became concat). The step is the body of its trainer's `_train_epoch`: forward,
kl_weight * KL + reconstruction, backward, gradient clipping at 50, Adam. Prints one JSON line:
seconds per batch (the median of --steps, after one warm-up step) and molecules per second.
"""

import argparse
import gzip
import json
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
    args = p.parse_args()
    shims()
    import torch
    from moses.vae.config import get_parser
    from moses.vae.model import VAE
    from moses.vae.trainer import VAETrainer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = get_parser().parse_args([])
    with gzip.open(args.data, "rt") as f:
        next(f)
        smiles = [line.split(",")[0].strip() for _, line in zip(range(config.n_batch * (args.steps + 1)), f)]
    trainer = VAETrainer(config)
    model = VAE(trainer.get_vocabulary(smiles), config)
    collate = trainer.get_collate_fn(model)
    optimizer = torch.optim.Adam(trainer.get_optim_params(model), lr=config.lr_start)
    model.train()
    times = []
    for i in range(args.steps + 1):
        batch = collate(smiles[i * config.n_batch:(i + 1) * config.n_batch])
        start = time.perf_counter()
        kl_loss, recon_loss = model(batch)
        loss = config.kl_w_start * kl_loss + recon_loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainer.get_optim_params(model), config.clip_grad)
        optimizer.step()
        if i:  # the first step warms up the allocator and oneDNN
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    print(json.dumps({"seconds_per_batch": round(seconds, 3), "molecules_per_s": round(config.n_batch / seconds, 1),
                      "steps": len(times), "torch": torch.__version__}))


if __name__ == "__main__":
    main()

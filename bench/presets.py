"""The models vaekit's documents show, as presets (configs/), trained on MNIST beside vaekit's
defaults: test -ELBO and importance-weighted NLL, per example in nats, and the decoded manifold
of the 2-D model.

    python bench/presets.py --data-dir ../shared/data [--iw-samples 1000] [--out-dir docs]

Each preset trains for the epochs it states (the document's recipe where it gives one); the
defaults row is `vaekit train --data mnist` with no other flag. Whole commands, run one at a time.
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

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {  # preset file: what it is
    "keras-mlp-vae.json": "Keras MLP VAE (784-512-2, seed 001)",
    "pytorch-example-vae.json": "PyTorch module with reparameterisation (784-400-20, seed 003)",
    "keras-conv-vae.json": "convolutional model as a true VAE (64/128 channels, seed 002)",
    "linear-vae.json": "linear VAE (784-20, sigmoid decoder, seed 000)",
    None: "vaekit defaults (MLP 784-400-20, batch 512, bf16, 10 epochs)",
}


def vaekit(*args) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vaekit", *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"vaekit {' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR", "../shared/data"))
    p.add_argument("--iw-samples", type=int, default=1000)
    p.add_argument("--out-dir", default=str(ROOT / "docs"), help="where the manifold picture goes")
    p.add_argument("--only", help="comma-separated preset files (default: all, and the defaults row)")
    args = p.parse_args()
    chosen = list(PRESETS) if not args.only else [None if n == "defaults" else n for n in args.only.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="vaekit-presets-") as tmp:
        for preset in chosen:
            run = Path(tmp) / (preset or "defaults").removesuffix(".json")
            config = ["--config", ROOT / "configs" / preset] if preset else []
            seconds, _ = vaekit("train", "--data", "mnist", "--data-dir", args.data_dir, *config, "--quiet", "--out", run)
            cfg = json.loads((run / "config.json").read_text())
            _, out = vaekit("evaluate", run, "--data-dir", args.data_dir, "--json", "--quiet",
                            "--iw-samples", args.iw_samples)
            r = json.loads(out)
            rows.append((PRESETS[preset], preset or "(none)", cfg["train"]["epochs"], seconds, r["neg_elbo"], r["nll"],
                         r["active_units"]))
            print(f"{rows[-1][1]}: {cfg['train']['epochs']} epochs, {seconds:.0f} s, -ELBO {r['neg_elbo']:.2f}, "
                  f"NLL {r['nll']:.2f} (K={args.iw_samples}), {r['active_units']} active units", flush=True)
            if cfg["model"]["latent_dim"] == 2:
                picture = Path(args.out_dir) / f"{run.name}-manifold.png"
                vaekit("manifold", run, "--grid", 15, "--span", 4, "--out", picture)
                print(f"wrote {picture}")
    print(f"\n| model | preset | epochs | whole train command | test -ELBO | test NLL (K={args.iw_samples}) | active units |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, preset, epochs, seconds, elbo, nll, active in rows:
        print(f"| {name} | `{preset}` | {epochs} | {seconds:.0f} s | {elbo:.2f} | {nll:.2f} | {active} |")


if __name__ == "__main__":
    main()

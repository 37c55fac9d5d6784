"""The SMILES VAE's MOSES metrics after a fixed training time, against MOSES's own VAE code trained
for the same time on the same machine (the issue's 2-hour test; both run one after the other).

    python bench/moses_quality.py --data-dir ../shared/data [--minutes 120] [--threads 2]
        [--moses-python .venv-moses/bin/python] [--keep DIR] [-- extra vaekit train flags]
    python bench/moses_quality.py --run RUN [--moses-samples CSV]   # score what was trained already
    [--temperature T]   # vaekit's samples drawn at temperature T (default 1)
    [--unconstrained]   # vaekit's samples drawn without the SMILES grammar (the model as it is)

1. `vaekit train --kind smiles --max-minutes M` on MOSES's training set (the defaults), then
   `vaekit evaluate RUN --reference moses --json`: the MOSES metrics of 30,000 prior samples.
2. With `--moses-python` (an interpreter with molsets 0.3.1, see bench/moses_baseline.py): its VAE,
   default config, trained for the same M minutes of steps, 30,000 prior samples scored by the same
   metric code, novelty against the same canonicalised training set.
Prints a markdown table, one column per model; a whole 2-hour comparison takes about 5 hours on a
2-core CPU (each model's training, sampling and the metrics of two 30,000-molecule samples).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from vaekit.checkpoint import load_config_of, read_metrics  # noqa: E402

METRICS = ["valid", "unique@1000", "unique@10000", "novelty", "FCD/Test", "SNN/Test", "Frag/Test", "Scaf/Test",
           "IntDiv", "IntDiv2", "Filters"]
# MOSES's published VAE row (GPU, 100 epochs), from its README
PUBLISHED = {"valid": 0.977, "unique@1000": 1.0, "unique@10000": 0.998, "novelty": 0.695, "FCD/Test": 0.099,
             "SNN/Test": 0.626, "Frag/Test": 0.999, "Scaf/Test": 0.939, "IntDiv": 0.856, "IntDiv2": 0.850,
             "Filters": 0.997}


def run(*args, threads: int) -> str:
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(map(str, args[:4]))} ... failed:\n{done.stderr[-2000:]}")
    return done.stdout


def vaekit_metrics(data: Path, out: Path, args) -> dict:
    vaekit = [sys.executable, "-m", "vaekit"]
    if args.run:  # trained already: score it
        out = Path(args.run)
    else:
        run(*vaekit, "train", "--data", data / "train.csv.gz", "--kind", "smiles", "--max-minutes", args.minutes,
            "--threads", args.threads, "--quiet", *args.extra, "--out", out, threads=args.threads)
    result = json.loads(run(*vaekit, "evaluate", out, "--reference", data, "--num-samples", args.num_samples,
                            "--temperature", args.temperature, *(["--unconstrained"] if args.unconstrained else []),
                            "--json", "--quiet", threads=args.threads))
    return result | {"steps": read_metrics(out)[-1]["step"]}


def moses_metrics_of(data: Path, tmp: Path, args) -> dict:
    import pandas as pd
    import torch

    from vaekit.calibrate import cache_path
    from vaekit.kinds.sequence.chem import canonical_set, moses_metrics

    if args.moses_samples:  # sampled already (moses_baseline.py --minutes M --out CSV)
        samples, trained = Path(args.moses_samples), {}
    else:
        samples = tmp / "moses_samples.csv"
        trained = json.loads(run(args.moses_python, Path(__file__).with_name("moses_baseline.py"), "--data",
                                 data / "train.csv.gz", "--threads", args.threads, "--minutes", args.minutes,
                                 "--samples", args.num_samples, "--out", samples, threads=args.threads).splitlines()[-1])
    torch.set_num_threads(args.threads)
    smiles = pd.read_csv(samples, keep_default_na=False)["SMILES"].astype(str).tolist()
    train = canonical_set(pd.read_csv(data / "train.csv.gz")["SMILES"].astype(str))
    return moses_metrics(smiles, train, data, cache_path().parent) | trained


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR", "../shared/data"))
    p.add_argument("--minutes", type=float, default=120.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--num-samples", type=int, default=30_000)
    p.add_argument("--temperature", type=float, default=1.0, help="vaekit's sampling temperature (default 1)")
    p.add_argument("--unconstrained", action="store_true", help="vaekit's samples without the SMILES grammar")
    p.add_argument("--moses-python", help="an interpreter with molsets 0.3.1 installed")
    p.add_argument("--keep", help="keep vaekit's run in this folder")
    p.add_argument("--run", help="score this trained vaekit run instead of training one")
    p.add_argument("--moses-samples", help="score these samples of MOSES's code (moses_baseline.py --out) "
                                           "instead of training it")
    p.add_argument("extra", nargs="*", help="more `vaekit train` flags (after --)")
    args = p.parse_args()
    data = Path(args.data_dir) / "moses"
    if not (data / "train.csv.gz").is_file():
        sys.exit(f"{data}: no train.csv.gz (MOSES's data folder)")
    with tempfile.TemporaryDirectory(prefix="vaekit-moses-") as tmp:
        tmp = Path(tmp)
        ours = vaekit_metrics(data, Path(args.keep) if args.keep else tmp / "run", args)
        theirs = moses_metrics_of(data, tmp, args) if args.moses_python or args.moses_samples else None
    minutes = load_config_of(args.run).train.max_minutes if args.run else args.minutes  # what was trained
    how = "free" if args.unconstrained else "kept to the SMILES grammar"
    print(f"\nMOSES metrics of {args.num_samples:,} prior samples (vaekit's at temperature {args.temperature:g}, {how}) "
          f"after {minutes:g} minutes of training:\n")
    head = "| metric | vaekit | " + ("MOSES's VAE code, same time | " if theirs else "") + "MOSES's VAE, published |"
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for k in METRICS:
        cells = [ours.get(k), *([theirs.get(k)] if theirs else []), PUBLISHED[k]]
        print(f"| {k} | " + " | ".join("n/a" if v is None else f"{v:.3f}" for v in cells) + " |")
    print(f"| training steps | {ours['steps']} | " + (f"{theirs.get('steps', 'n/a')} | " if theirs else "") + "|")
    print(json.dumps({"vaekit": ours, "moses": theirs}))


if __name__ == "__main__":
    main()

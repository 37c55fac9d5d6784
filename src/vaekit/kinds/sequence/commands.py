"""The commands on a sequence run: samples, reconstructions and interpolations as strings (CSV,
printed, and molecule grids for SMILES), the sequence figures of evaluate, and the report."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from ... import files
from ... import explore
from ...data import batches
from .tokens import PAD, decode, lengths

HEADER = {"smiles": "SMILES", "text": "text"}
CHUNK = 4096  # sequences generated at a time


def length_buckets(x: torch.Tensor, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """An epoch's batches of similar lengths: a random permutation cut into pools of 50 batches,
    each pool sorted by length and cut into batches, the batches then shuffled. Padding falls to
    a few tokens a batch, with no per-example Python."""
    perm = torch.randperm(len(x), generator=generator, device=device)
    lens = lengths(x).to(device)
    out = []
    for pool in perm.split(50 * batch_size):
        pool = pool[torch.sort(lens[pool], stable=True).indices]
        out += list(pool.split(batch_size))
    order = torch.randperm(len(out), generator=generator, device=device).tolist()
    return [out[i] for i in order]


@torch.no_grad()
def generate(vae, num: int, max_length: int, temperature: float = 1.0, seed: int = 0,
             constrained: bool = True) -> torch.Tensor:
    """Token rows of `num` samples: z ~ p(z), then tokens from p(x|z) one step at a time (for
    SMILES, kept to the grammar unless not `constrained`)."""
    g = torch.Generator().manual_seed(seed)
    was = vae.training
    vae.eval()
    out = []
    for start in range(0, num, CHUNK):
        n = min(CHUNK, num - start)
        px_z = vae.decode(vae.prior.sample(n, 1.0, g, vae.encode))
        px_z.temperature = temperature
        out.append(px_z.generate(max_length, greedy=False, generator=g, constrained=constrained))
    vae.train(was)
    return torch.cat(out)


@torch.no_grad()
def greedy(vae, z: torch.Tensor, max_length: int, constrained: bool = True) -> torch.Tensor:
    return torch.cat([vae.decode(part).generate(max_length, greedy=True, constrained=constrained)
                      for part in z.split(CHUNK)])


def write_strings(path: Path, column: str, values: list[str], extra: dict | None = None) -> None:
    frame = pd.DataFrame({**(extra or {}), column: values})
    files.atomic_write(path, frame.to_csv(index=False, lineterminator="\n").encode())


def save_grid(path: Path, smiles: list[str], legends=None, per_row: int = 6) -> bool:
    """A molecule grid PNG, when RDKit is installed; says whether it was written."""
    try:
        from .chem import grid_png
        png = grid_png(smiles, legends, per_row)
    except Exception:  # noqa: BLE001 - no RDKit, or nothing drawable: the strings are the output
        return False
    files.atomic_write(path, png)
    return True


def save_final(run_dir, vae, schema: dict, kind: str) -> None:
    """samples.csv (100 samples) and, for molecules, samples.png."""
    strings = decode(generate(vae, 100, schema["max_length"]), schema["vocab"], kind)
    write_strings(Path(run_dir) / "samples.csv", HEADER[kind], strings)
    if kind == "smiles":
        save_grid(Path(run_dir) / "samples.png", strings[:24])


def inputs(run, opts) -> tuple[torch.Tensor, list[str]]:
    """Token rows of the inputs and their strings (decoded when given as rows alone)."""
    x, _, strings = run.inputs_with_ids(opts.data, opts.data_dir)
    return x, strings if strings is not None else decode(x, run.schema["vocab"], run.kind.name)


def sample(run, opts) -> list[str]:
    """`num` strings drawn from the model (SMILES kept to the grammar unless --unconstrained)."""
    rows = generate(run.vae, opts.num, run.schema["max_length"], opts.temperature, opts.seed,
                    not getattr(opts, "unconstrained", False))
    return decode(rows, run.schema["vocab"], run.kind.name)


def reconstruct(run, opts) -> pd.DataFrame:
    """Inputs and the greedy decoding of their posterior means: columns input, reconstruction."""
    x, strings = inputs(run, opts)
    x, strings = x[: opts.num], strings[: opts.num]
    rec = decode(greedy(run.vae, run.vae.encode(x).mean, run.schema["max_length"]), run.schema["vocab"], run.kind.name)
    return pd.DataFrame({"input": strings, "reconstruction": rec})


def interpolate(run, opts) -> pd.DataFrame:
    """Greedy decodings along paths between the posterior means of random input pairs: columns
    pair, step and the strings; `attrs["ends"]` holds each pair's two inputs."""
    x, strings = inputs(run, opts)
    idx = explore.pair_indices(len(x), opts.pairs, opts.seed)
    za, zb = run.vae.encode(x[idx[::2]]).mean, run.vae.encode(x[idx[1::2]]).mean
    t = torch.linspace(0, 1, opts.steps)
    z = explore.slerp(za, zb, t) if opts.spherical else (1 - t)[None, :, None] * za[:, None] + t[None, :, None] * zb[:, None]
    path = decode(greedy(run.vae, z.reshape(-1, z.shape[-1]), run.schema["max_length"]), run.schema["vocab"],
                  run.kind.name)
    frame = pd.DataFrame({"pair": torch.arange(opts.pairs).repeat_interleave(opts.steps).tolist(),
                          "step": list(range(opts.steps)) * opts.pairs, HEADER[run.kind.name]: path})
    frame.attrs["ends"] = [(strings[int(idx[2 * p])], strings[int(idx[2 * p + 1])]) for p in range(opts.pairs)]
    return frame


def write(run, command: str, result, opts) -> None:
    kind = run.kind.name
    if command == "sample":
        out = run.out_path(opts.out, "samples.csv")
        write_strings(out, HEADER[kind], result)
        print(f"wrote {out} ({len(result)} samples)")
        if kind == "smiles" and save_grid(out.with_suffix(".png"), result[:36]):
            print(f"wrote {out.with_suffix('.png')}")
        if kind == "text":
            for s in result[:10]:
                print(s)
    elif command == "reconstruct":
        out = run.out_path(opts.out, "reconstructions.csv")
        write_strings(out, "reconstruction", list(result["reconstruction"]), {"input": list(result["input"])})
        for a, b in list(zip(result["input"], result["reconstruction"]))[:10]:
            print(f"{a}\n  -> {b}")
        print(f"wrote {out}")
    else:
        out = run.out_path(opts.out, "interpolations.csv")
        path = list(result[HEADER[kind]])
        write_strings(out, HEADER[kind], path, {"pair": list(result["pair"]), "step": list(result["step"])})
        for p, (a, b) in enumerate(result.attrs["ends"][:3]):
            print(f"{a}  =>  {b}")
            for s in path[p * opts.steps : (p + 1) * opts.steps]:
                print(f"  {s}")
        print(f"wrote {out}")
        if kind == "smiles" and save_grid(out.with_suffix(".png"), path, per_row=opts.steps):
            print(f"wrote {out.with_suffix('.png')}")


@torch.no_grad()
def evaluate(run, args, x: torch.Tensor) -> dict:
    """Perplexity (of the importance-weighted NLL, or the -ELBO, per token including <eos>) and
    reconstruction accuracy (greedy decoding of the posterior mean: tokens, whole strings); for
    SMILES with --reference, the MOSES metrics of a fresh sample."""
    tokens = lengths(x).sum().item()
    out = {"tokens_per_example": tokens / len(x)}
    constrained = not getattr(args, "unconstrained", False)
    hits = whole = 0
    for xb, _ in batches(x, None, 1000):
        rec = greedy(run.vae, run.vae.encode(xb).mean, xb.shape[1] - 1, constrained)[:, : xb.shape[1]]
        rec = torch.nn.functional.pad(rec, (0, xb.shape[1] - rec.shape[1]), value=PAD)
        mask = xb != PAD
        hits += ((rec == xb) & mask).sum().item()
        whole += ((rec == xb) | ~mask).all(1).sum().item()
    out["reconstruction_token_accuracy"] = hits / tokens
    out["reconstruction_accuracy"] = whole / len(x)
    reference = getattr(args, "reference", None)  # SMILES runs only
    if reference:
        from ...calibrate import cache_path
        from .chem import moses_metrics

        temperature = getattr(args, "temperature", 1.0)
        samples = decode(generate(run.vae, args.num_samples, run.schema["max_length"], temperature, args.seed,
                                  constrained), run.schema["vocab"], "smiles")
        frames = run.kind.load(run.data_config(args.data_dir), run.schema)[0]
        train = set(decode(frames.train_x, run.schema["vocab"], "smiles"))
        from .chem import canonical_set

        train = canonical_set(train)
        out |= moses_metrics(samples, train, Path(reference), cache_path().parent)
        out["num_samples"], out["temperature"], out["constrained"] = len(samples), temperature, constrained
    return out


def perplexity(result: dict) -> dict:
    """exp(nats per token) of the NLL (or -ELBO) evaluate measured."""
    nats = result.get("nll", result["neg_elbo"])
    return {"perplexity": math.exp(nats / result["tokens_per_example"])}


def report(run, splits) -> list[str]:
    from html import escape

    from ...pages import data_uri, figure

    strings = decode(generate(run.vae, 24, run.schema["max_length"]), run.schema["vocab"], run.kind.name)
    body = "<ol>" + "".join(f"<li><code>{escape(s)}</code></li>" for s in strings) + "</ol>"
    if run.kind.name == "smiles":
        try:
            from .chem import grid_png

            body = figure(data_uri(grid_png(strings)), "24 samples z ~ p(z)") + body
        except Exception:  # noqa: BLE001 - without RDKit the strings stand alone
            pass
    x = splits.test_x[:8]
    rec = decode(greedy(run.vae, run.vae.encode(x).mean, run.schema["max_length"]), run.schema["vocab"], run.kind.name)
    inputs = decode(x, run.schema["vocab"], run.kind.name)
    table = "".join(f"<tr><td><code>{escape(a)}</code></td><td><code>{escape(b)}</code></td></tr>"
                    for a, b in zip(inputs, rec))
    return ["<h2>Samples</h2>" + body,
            "<h2>Reconstructions</h2><table><tr><th>input</th><th>greedy decoding of its posterior mean</th></tr>"
            + table + "</table>"]

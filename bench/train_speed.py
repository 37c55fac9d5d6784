"""Training speed on full MNIST: vaekit against the textbook loop, in one run, as ratios.

1. Epochs of the 784-400-20 MLP VAE at batch 128, Adam 1e-3, on all 60,000 images: the textbook
   loop (bench/textbook_vae.py: a DataLoader feeding one example at a time, as the PyTorch
   example does) against vaekit's loop in fp32 and in bf16 (its default where the CPU has it),
   each eager and compiled (torch.compile: the first epoch holds the compile time, the table's
   seconds per epoch are medians, its seconds to the target include it).
2. The same for the conv VAE (fewer epochs: a conv epoch is slow on a CPU).
3. Whole commands timed from start to finish (median of --repeats runs), to the PyTorch
   example's 10-epoch test loss: the textbook script, `vaekit train` with its defaults (only
   data, model and epochs given), and `vaekit train --precision fp32 --batch-size 128`, each at
   10 epochs and at the fewest epochs that reach the textbook's loss (found by bisection).
4. The hardware bound: FLOPs per example (forward + backward, counted by torch's FlopCounterMode)
   against this machine's measured matrix-multiply rate; for the MLP also the time of its GEMMs
   alone at their real shapes. Both by the fastest library on hand (torch.mm or oneDNN: on AMD
   CPUs torch.mm's fp32 runs MKL's AVX2 code at half oneDNN's rate), so the bound is the machine's.
   With the step's other big kernels timed alone (fused Adam, gradient norm, log-density), the
   floor below which no training loop can go, as a multiple of that bound.

    python bench/train_speed.py --data-dir ../shared/data [--epochs 10] [--conv-epochs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
import textbook_vae  # noqa: E402

import vaekit  # noqa: E402
from vaekit.checkpoint import read_metrics  # noqa: E402
from vaekit import load_data  # noqa: E402
from vaekit.likelihoods import BernoulliImage  # noqa: E402
from vaekit.nets import ONEDNN_X86, onednn_mm, set_onednn  # noqa: E402
from vaekit.objectives import elbo  # noqa: E402
from vaekit.optim import Adam  # noqa: E402
from vaekit.train import resolve_precision  # noqa: E402

BATCH, LR = 128, 1e-3
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MLP_LAYERS = [(784, 400), (400, 40), (20, 400), (400, 784)]


def vaekit_epochs(splits, net, epochs, precision, batch_size=BATCH, lr=LR, lr_schedule="constant", warmup_steps=0,
                  compile_step=False, **train):
    """Train in-process on all training images, the test set standing in as the validation split
    (validation runs outside the timed loop); by default with the textbook's recipe (batch 128,
    constant Adam 1e-3). Per-epoch loop seconds and test -ELBO."""
    cfg = vaekit.Config()
    cfg.model.net, cfg.model.hidden, cfg.model.latent_dim = net, [400] if net == "mlp" else [256], 20
    cfg.train = dataclasses.replace(cfg.train, epochs=epochs, batch_size=batch_size, lr=lr, precision=precision,
                                    lr_schedule=lr_schedule, warmup_steps=warmup_steps, compile=compile_step, **train)
    splits = dataclasses.replace(splits, val_x=splits.test_x, val_y=splits.test_y)
    with tempfile.TemporaryDirectory() as tmp:
        vae = vaekit.train(cfg, os.path.join(tmp, "run"), data=splits, progress=False)
        records = read_metrics(os.path.join(tmp, "run"))
    return [r["seconds"] for r in records], [r["val_neg_elbo"] for r in records], vae


def seconds_to(target, seconds, tests):
    """Training seconds until the first epoch whose test loss is at or below `target`."""
    for i, test in enumerate(tests):
        if test <= target:
            return sum(seconds[: i + 1])
    return None


def flops_per_example(vae) -> float:
    x = torch.rand(BATCH, *vae.x_shape)
    previous = set_onednn(False)  # the counter knows aten's products, not oneDNN's
    try:
        with FlopCounterMode(display=False) as counter:
            elbo(vae, x).loss.mean().backward()
    finally:
        set_onednn(previous)
    return counter.get_total_flops() / BATCH


def gemm_libraries(dtype):
    """The ways this build multiplies a (m, k) by b (k, n): torch.mm (MKL for fp32 on x86) and,
    where vaekit uses it, oneDNN (AVX-512 on AMD, where MKL's fp32 runs AVX2)."""
    libs = {"torch.mm": torch.mm}
    if ONEDNN_X86:
        libs["oneDNN"] = lambda a, b: onednn_mm(a, b.t())
    return libs


def median_seconds(fn, repeats, rounds=7) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats)
    return statistics.median(times)


def peak_gemm_rate(dtype, n=2048) -> dict[str, float]:
    """FLOP/s of a 2048^3 product, per library."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return {name: 2 * n**3 / median_seconds(functools.partial(mm, a, b), 10, 5)
            for name, mm in gemm_libraries(dtype).items()}


def mlp_gemm_seconds_per_step(dtype, repeats=200) -> dict[str, float]:
    """One training step's matrix products at their real shapes (forward, weight and input grads),
    per library, and "fastest": each product by whichever library does it faster."""
    shapes = []
    for i, (n_in, n_out) in enumerate(MLP_LAYERS):
        shapes += [(BATCH, n_in, n_out), (n_in, BATCH, n_out)] + ([(BATCH, n_out, n_in)] if i else [])
    mats = [(torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)) for m, k, n in shapes]
    each = {name: [median_seconds(functools.partial(mm, a, b), repeats) for a, b in mats]
            for name, mm in gemm_libraries(dtype).items()}
    return {name: sum(t) for name, t in each.items()} | {"fastest": sum(map(min, zip(*each.values())))}


def mlp_other_kernels_seconds_per_step(vae, repeats=200) -> dict[str, float]:
    """The step's largest kernels besides the products, each alone at its real shapes (all fp32,
    as in every precision): fused Adam over the model's parameters, the gradient norm that
    guards the step, the Bernoulli log-density forward and backward. With the products they
    are a floor that no training loop on this machine goes under."""
    params = [p.detach().clone().requires_grad_() for p in vae.parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    logits = torch.randn(BATCH, *vae.x_shape, requires_grad=True)
    x = torch.rand(BATCH, *vae.x_shape)

    def log_density():
        logits.grad = None
        BernoulliImage(logits).log_prob(x).sum().backward()

    return {"Adam": median_seconds(Adam(params).step, repeats),
            "grad norm": median_seconds(functools.partial(torch.nn.utils.get_total_norm, [p.grad for p in params]),
                                        repeats),
            "log-density": median_seconds(log_density, repeats)}


def table(title, rows, base, n, target):
    """rows: (name, seconds per epoch, test loss per epoch, bound seconds per epoch)."""
    print(f"\n{title}")
    print(f"  {'configuration':34} {'s/epoch':>8} {'samples/s':>10} {'speed-up':>9} {'x bound':>8} "
          f"{'test -ELBO':>11} {f's to {target:.2f}':>10}")
    for name, seconds, tests, bound in rows:
        med, reach = statistics.median(seconds), seconds_to(target, seconds, tests)
        print(f"  {name:34} {med:8.2f} {n / med:10,.0f} {base / med:8.2f}x {med / bound:7.2f}x {tests[-1]:11.2f} "
              f"{'not reached' if reach is None else f'{reach:.1f}':>10}")


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, out.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--conv-epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: mlp,conv,commands")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each whole command (the median is shown)")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    torch.set_num_threads(args.threads)
    os.environ["VAEKIT_DATA_DIR"] = args.data_dir or ""

    splits = load_data(vaekit.DataConfig(name="mnist", data_dir=args.data_dir, val_fraction=0.0))
    images, labels, test_images = textbook_vae.load_mnist(args.data_dir)
    n, native = len(images), resolve_precision("auto", torch.device("cpu"))
    precisions = list(dict.fromkeys(["fp32", native]))
    rates = {p: peak_gemm_rate(DTYPES[p]) for p in precisions}
    peak = {p: max(r.values()) for p, r in rates.items()}  # the machine's rate: the fastest library's
    print(f"MNIST {n} train / {len(test_images)} test, batch {BATCH}, Adam {LR}, {args.threads} threads, "
          f"torch {torch.__version__}; 2048^3 GEMM " + "; ".join(
              f"{p} " + ", ".join(f"{lib} {r / 1e9:.0f}" for lib, r in libs.items()) for p, libs in rates.items())
          + " GFLOP/s")

    if "mlp" not in skip:
        tb_seconds, tb_tests = textbook_vae.run(images, labels, test_images, args.epochs)
        rows = [("textbook DataLoader (fp32)", tb_seconds, tb_tests, None)]
        if ONEDNN_X86:  # what routing fp32 products through oneDNN gains, in this run
            seconds, tests, _ = vaekit_epochs(splits, "mlp", args.epochs, "fp32", onednn=False)
            rows.append((f"vaekit fp32, --no-onednn, batch {BATCH}", seconds, tests, "fp32"))
        for p in precisions:
            for compile_step in (False, True):
                torch._dynamo.reset()  # each compiled row compiles afresh (the on-disk kernel cache may help)
                seconds, tests, vae = vaekit_epochs(splits, "mlp", args.epochs, p, compile_step=compile_step)
                rows.append((f"vaekit {p}{', compiled' if compile_step else ''}, batch {BATCH}, lr {LR:g}",
                             seconds, tests, p))
        defaults = vaekit.Config().resolved().train  # the MLP's
        seconds, tests, _ = vaekit_epochs(splits, "mlp", args.epochs, native, defaults.batch_size, defaults.lr,
                                          defaults.lr_schedule, defaults.warmup_steps)
        rows.append((f"vaekit defaults ({native}, batch {defaults.batch_size})", seconds, tests, native))
        flops = flops_per_example(vae)
        steps = -(-n // BATCH)
        alone = {p: mlp_gemm_seconds_per_step(DTYPES[p]) for p in precisions}
        gemm = {p: t["fastest"] * steps for p, t in alone.items()}
        other = mlp_other_kernels_seconds_per_step(vae)
        rest = sum(other.values()) * steps  # s/epoch
        by_library = "; ".join(f"{p} " + ", ".join(f"{lib} {t * steps:.2f}" for lib, t in libs.items())
                               for p, libs in alone.items())
        print(f"\nMLP: {flops / 1e6:.2f} MFLOP per example (forward + backward); matrix products alone at their "
              f"shapes, batch {BATCH}, s/epoch: {by_library}")
        kernels = ", ".join(f"{name} {t * steps:.3f}" for name, t in other.items())
        floor = "; ".join(f"{p} {gemm[p] + rest:.2f} ({1 + rest / gemm[p]:.2f}x the bound)" for p in precisions)
        print(f"  the step's other big kernels alone, s/epoch: {kernels}; floor (fastest products + these): {floor}")
        table(f"MLP VAE, {args.epochs} epochs (x bound: against the fastest GEMMs-alone time at batch {BATCH}; "
              f"target: the textbook's {args.epochs}-epoch test loss)",
              [(name, s, t, gemm[p or "fp32"]) for name, s, t, p in rows], statistics.median(tb_seconds), n,
              tb_tests[-1])

    if "conv" not in skip:
        tb_seconds, tb_tests = textbook_vae.run(images, labels, test_images, args.conv_epochs, conv=True)
        rows = [("textbook DataLoader (fp32)", tb_seconds, tb_tests, "fp32")]
        for p in precisions:
            seconds, tests, vae = vaekit_epochs(splits, "conv", args.conv_epochs, p)
            rows.append((f"vaekit {p}", seconds, tests, p))
        flops = flops_per_example(vae)
        print(f"\nconv: {flops / 1e6:.1f} MFLOP per example (forward + backward)")
        table(f"conv VAE, {args.conv_epochs} epochs (x bound: against FLOPs at the peak GEMM rate)",
              [(name, s, t, flops * n / peak[p]) for name, s, t, p in rows], statistics.median(tb_seconds), n,
              tb_tests[-1])

    if "commands" not in skip:
        whole_commands(args.epochs, args.repeats)


def whole_commands(max_epochs: int, repeats: int) -> None:
    """Part 3: each command timed start to finish (median of `repeats` runs), at `max_epochs` and
    at the fewest epochs whose test loss reaches the textbook's `max_epochs`-epoch loss."""
    py = sys.executable
    print(f"\nWhole commands, start to finish, median of {repeats} runs each:")
    tb = [timed([py, str(Path(__file__).parent / "textbook_vae.py"), "--epochs", str(max_epochs)])
          for _ in range(repeats)]
    tb_wall = statistics.median(wall for wall, _ in tb)
    target = statistics.median(float(out.strip().splitlines()[-1].split("test loss")[-1]) for _, out in tb)
    label = f"textbook_vae.py --epochs {max_epochs}"
    print(f"  {label:72} {tb_wall:7.1f} s  test loss {target:.2f} (the target)")
    commands = (("vaekit train (defaults)", []),
                ("vaekit train --precision fp32 --batch-size 128", ["--precision", "fp32", "--batch-size", "128"]))
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in commands:
            fewest, tried = fewest_epochs(functools.partial(vaekit_command, extra, tmp=tmp), target, max_epochs)
            for epochs in dict.fromkeys([max_epochs] + ([fewest] if fewest else [])):
                results = [tried[epochs]] + [vaekit_command(extra, epochs, tmp) for _ in range(repeats - 1)]
                wall = statistics.median(w for w, _ in results)
                test = statistics.median(t for _, t in results)
                label = f"{name} --epochs {epochs}" + (" (fewest to the target)" if epochs == fewest else "")
                print(f"  {label:72} {wall:7.1f} s  test -ELBO {test:.2f}  {tb_wall / wall:.2f}x faster"
                      f"{'' if test <= target else '  (did not reach the target)'}")


def vaekit_command(extra: list[str], epochs: int, tmp: str) -> tuple[float, float]:
    """`vaekit train` on MNIST for `epochs`, timed start to finish; its test -ELBO."""
    run = os.path.join(tmp, str(len(os.listdir(tmp))))
    wall, _ = timed([sys.executable, "-m", "vaekit", "train", "--data", "mnist", "--model", "mlp", "--epochs",
                     str(epochs), "--quiet", "--out", run, *extra])
    _, out = timed([sys.executable, "-m", "vaekit", "evaluate", run, "--json", "--iw-samples", "0"])
    return wall, json.loads(out)["neg_elbo"]


def fewest_epochs(run, target: float, max_epochs: int) -> tuple[int | None, dict]:
    """Bisect for the fewest epochs whose run reaches `target`, the test loss falling as the epoch
    budget grows. Returns it (None if `max_epochs` does not reach it) and every run made."""
    tried = {max_epochs: run(max_epochs)}
    if tried[max_epochs][1] > target:
        return None, tried
    lo, hi = 0, max_epochs  # lo does not reach the target, hi does
    while hi - lo > 1:
        mid = (lo + hi) // 2
        tried[mid] = run(mid)
        lo, hi = (lo, mid) if tried[mid][1] <= target else (mid, hi)
    return hi, tried


if __name__ == "__main__":
    main()

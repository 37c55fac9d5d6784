"""Choosing the training step's speed options by measuring them on the machine that runs.

The fastest precision (fp32 or bf16 autocast) and dense-layer path (oneDNN or torch.mm) depend on
the CPU: on one 2-core AMD machine oneDNN's fp32 products ran 2x torch.mm's, on another the eager
fp32 epoch was 15% slower through oneDNN, and bf16 won or lost by 20% (docs/speed.md). So a run
whose config leaves them open times each candidate for a fraction of a second on its own model,
batch size and data, and keeps the fastest. The timing of each candidate alternates with the
others (drift on a shared machine hits all of them alike) and happens on a copy of the model under
a forked RNG: the run itself is untouched, and the choice is written to its config.json, so a
resumed run repeats it. Results are cached in $VAEKIT_CACHE_DIR (default ~/.cache/vaekit), keyed
by the CPU, torch's version, the thread count and the model's shapes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .nets import ONEDNN_X86, set_onednn

ROUNDS = 5  # alternations of the candidates, at most
STEPS_PER_ROUND = 4  # for steps under SLOW_STEP seconds; slower ones are timed one at a time
SLOW_STEP = 0.05
BUDGET_SECONDS = 2.0  # timed steps stop after the round that passes this
CLEARLY_SLOWER = 1.5  # a candidate this many times the best so far is timed no more


@dataclass
class Choice:
    precision: str
    onednn: bool
    ms_per_step: dict[str, float] = field(default_factory=dict)  # candidate -> median milliseconds
    cached: bool = False

    def describe(self) -> str:
        what = "bf16 autocast" if self.precision == "bf16" else f"fp32 through {'oneDNN' if self.onednn else 'torch.mm'}"
        times = ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(self.ms_per_step.items(), key=lambda kv: kv[1]))
        source = "cached for this machine" if self.cached else "measured now"
        return f"vaekit: {what}, the fastest step here (ms per step: {times}; {source}; --no-calibrate skips this)"


def candidates(precision: str, onednn: bool | None) -> dict[str, tuple[str, bool]]:
    """The (precision, oneDNN) pairs a config leaves open; explicit settings narrow them."""
    out = {}
    bf16_ok = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if precision in ("auto", "fp32"):
        for use in ((True, False) if ONEDNN_X86 else (False,)):
            if onednn is None or onednn == use:
                out["fp32-onednn" if use else "fp32-mm"] = ("fp32", use)
    if precision == "bf16" or (precision == "auto" and bf16_ok):
        out["bf16"] = ("bf16", bool(onednn) if onednn is not None else ONEDNN_X86)
    return out


def usable_cores() -> int:
    """The cores this process may run on (a container's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
                return [f for f in line.split(":", 1)[1].split() if f in wanted]
    except OSError:
        pass
    return []


def cache_path() -> Path:
    root = os.environ.get("VAEKIT_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaekit"
    return Path(root) / "calibration.json"


def cache_key(signature: dict) -> str:
    machine = {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
               "torch": torch.__version__}
    blob = json.dumps({"machine": machine, "model": signature}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def read_cache(key: str) -> dict | None:
    try:
        entry = json.loads(cache_path().read_text()).get(key)
        return entry if isinstance(entry, dict) else None
    except (OSError, ValueError):
        return None


def write_cache(key: str, entry: dict) -> None:
    """Best effort: an unwritable cache only means measuring again next time."""
    from .files import atomic_write

    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            table = {}
        table[key] = entry
        atomic_write(path, (json.dumps(table, indent=1) + "\n").encode())
    except Exception:  # noqa: BLE001 - a read-only home, a full disk: the run goes on
        pass


def time_steps(step, batches: list, precision: str, onednn: bool) -> float:
    """Seconds per step of `step(batch, precision)` over the (non-empty) `batches`."""
    if not batches:
        raise ValueError("time_steps needs at least one batch")
    previous = set_onednn(onednn)
    try:
        start = time.perf_counter()
        for batch in batches:
            step(batch, precision)
        return (time.perf_counter() - start) / len(batches)
    finally:
        set_onednn(previous)


def measure(make_step, batches: list, options: dict[str, tuple[str, bool]]) -> dict[str, float]:
    """Median milliseconds per step of each option, the options alternating round by round.
    `make_step()` returns a fresh step function (its own model copy and optimizer). One warm step
    each, then rounds until BUDGET_SECONDS of timing is spent; an option CLEARLY_SLOWER than the
    best is dropped after a round (a GRU's fp32 step took 4.6x its bf16 step: timing it further
    taught nothing)."""
    steps = {name: make_step() for name in options}
    warm = {name: time_steps(steps[name], batches[:1], *options[name]) for name in options}
    # Slow steps are timed one at a time, on a batch other than the warm one where there is one
    # (data of a single batch has only that one: a 300-row table, 600 users).
    per_round = batches[:STEPS_PER_ROUND] if max(warm.values()) < SLOW_STEP else (batches[1:2] or batches[:1])
    rounds = {name: [] for name in options}
    live = list(options)
    start = time.perf_counter()
    for _ in range(ROUNDS):
        for name in live:
            rounds[name].append(time_steps(steps[name], per_round, *options[name]))
        best = min(statistics.median(rounds[n]) for n in live)
        live = [n for n in live if statistics.median(rounds[n]) < CLEARLY_SLOWER * best]
        if time.perf_counter() - start > BUDGET_SECONDS:
            break
    return {name: 1000 * statistics.median(times) for name, times in rounds.items()}


def choose(signature: dict, make_step, batches: list, precision: str, onednn: bool | None) -> Choice | None:
    """The fastest open option (from the cache when this machine measured this model before);
    None when the config leaves nothing to choose."""
    options = candidates(precision, onednn)
    if len(options) < 2:
        return None
    key = cache_key(signature | {"options": sorted(options)})
    entry = read_cache(key)
    if entry is None or entry.get("best") not in options:
        with torch.random.fork_rng():
            times = measure(make_step, batches, options)
        entry = {"best": min(times, key=times.get), "ms_per_step": times}
        write_cache(key, entry)
        cached = False
    else:
        cached = True
    best_precision, best_onednn = options[entry["best"]]
    return Choice(best_precision, best_onednn, entry["ms_per_step"], cached)


def step_factory(model: torch.nn.Module, objective, make_optimizer, device: torch.device):
    """make_step() for `measure`: each call copies the model and gives a step function that runs
    forward, backward and an optimizer update on a batch at a precision."""
    from .metrics import autocast

    def make_step():
        copy_ = copy.deepcopy(model)
        optimizer = make_optimizer(copy_)

        def step(batch, precision):
            x, y = batch
            with autocast(device, precision):
                terms = objective(copy_, x, 1.0, y=y)
            optimizer.zero_grad()
            terms.loss.mean().backward()
            optimizer.step()

        return step

    return make_step


def gemm_rates(size: int = 1024, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of a size^3 product: fp32 by torch.mm and by oneDNN, bf16 (best of `repeats`)."""
    from .nets import linear_pointwise

    a, b = torch.randn(size, size), torch.randn(size, size)
    runs = {"fp32 torch.mm": lambda: torch.mm(a, b)}
    if ONEDNN_X86:
        runs["fp32 oneDNN"] = lambda: linear_pointwise(a, b, None)
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        a16, b16 = a.bfloat16(), b.bfloat16()
        runs["bf16"] = lambda: torch.mm(a16, b16)
    rates = {}
    for name, run in runs.items():
        run()
        best = min(timed_once(run) for _ in range(repeats))
        rates[name] = 2 * size**3 / best / 1e9
    return rates


def timed_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict:
    """What the speed choices depend on."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "flags": cpu_flags(), "torch": torch.__version__,
            "torch_path": str(Path(torch.__file__).parent), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "onednn": torch.backends.mkldnn.is_available(), "mkl": torch.backends.mkl.is_available(),
            "bf16_native": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), "cache": str(cache_path())}

"""The training loop: build from config, forward, backward, clip, step, log, validate, checkpoint.

One explicit loop, no framework. Data lives as tensors on the device and batches are drawn by
index permutation; the RNG streams (model noise, data order) are explicit and checkpointed, so a
resumed run ends bit-identical to an uninterrupted one on the same machine, whether it stopped at
an epoch boundary, on SIGINT/SIGTERM mid-epoch, or was killed after a step checkpoint.

Faults: a step with a non-finite gradient is skipped and counted; after MAX_BAD_STEPS in a row the
run rolls back to its last checkpoint with half the learning rate, at most MAX_ROLLBACKS times.
With --loss-guard, a training loss that climbs while staying finite (a rate too high for a long
run) sends the run back, in memory, to the weights of its best smoothed loss with half the rate.
Under torchrun every rank draws its share of each global batch (see distributed.py).
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from . import checkpoint as ckpt
from .config import Config
from .data import Splits
from .errors import VaekitError
from .kinds import Kind, check_model, kind_of
from .guards import LossGuard, Rollback, TrainingStopped, stop_signals  # noqa: F401 - importable from here
from .metrics import autocast, evaluate_elbo
# The speed policy lives in speed.py; these names stay importable from here.
from .speed import (COMPILE_MIN_STEPS, compiled, resolve_device, resolve_precision, speed_options,  # noqa: F401
                    uses_channels_last, wants_compile)
from .nets import set_onednn
from .objectives import OBJECTIVES
from .optim import Adam, WeightAverage, averaged, make_optimizer
from .plotting import pyplot, save_curves
from .schedules import kl_weight, learning_rate
from .vae import VAE, pick

LOG_EVERY = 25  # steps between progress-bar updates (each one syncs with the device)
MAX_BAD_STEPS = 10  # consecutive non-finite steps before rolling back
MAX_ROLLBACKS = 3
# Epoch ends write the checkpoint and the model at most this often (and always at the last epoch or
# on a signal): a run of 2-step epochs spent most of its time writing 32 MB checkpoints. A crash
# repeats at most this much work; the resumed run still ends bit-identical.
EPOCH_CHECKPOINT_SECONDS = 10.0


def guarded_tensors(run: Run) -> list[torch.Tensor]:
    """What a loss-guard rollback puts back: weights and buffers, Adam's moments and step count,
    the weight average."""
    tensors = list(run.vae.state_dict().values()) + run.optimizer.exp_avg + run.optimizer.exp_avg_sq
    return tensors + [run.optimizer.steps] + (run.average.average if run.average else [])


class Objective(nn.Module):
    """The objective as a module, so DistributedDataParallel sees one forward per step."""

    def __init__(self, vae: VAE, objective):
        super().__init__()
        self.vae, self.objective = vae, objective

    def forward(self, x, beta: float, y=None):
        return self.objective(self.vae, x, beta, y=y)


@dataclass
class Run:
    """Everything the loop touches, built once by `train`."""

    cfg: Config
    run_dir: Path
    kind: Kind
    schema: dict  # what the kind fitted on the training split (RUN/schema.json)
    vae: VAE
    model: object  # Objective (nn.Module), wrapped in DDP under torchrun, maybe compiled
    optimizer: Adam
    generator: torch.Generator  # data order and dynamic binarization
    data: Splits
    device: torch.device
    precision: str
    dist: distributed.Dist
    fixed_z: torch.Tensor  # prior draws pictured after every epoch
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    saved_at: float = float("-inf")  # time.monotonic() of the last epoch-end checkpoint
    best: tuple[int, dict] | None = None  # (epoch, weights) of the best epoch not yet on disk
    average: WeightAverage | None = None  # --ema: the weights validated, kept and saved
    guard: LossGuard | None = None  # --loss-guard
    prepare: object = None  # the kind's (x, generator) -> x for every training batch, or None
    nhwc: bool = False  # batches in channels-last memory (a model with convolutions)


SMALL_DATA_BATCHES = 8  # with min_steps, an epoch has at least this many batches (of 16 rows or more)


def scaled_to_data(tc, num_examples: int):
    """The training config for `num_examples` training examples: with `min_steps`, a batch no
    larger than an eighth of the data (16 at least) and enough epochs for min_steps updates; a
    run that a time budget ends keeps its epochs."""
    if not tc.min_steps or not num_examples:
        return tc
    batch = min(tc.batch_size, max(16, num_examples // SMALL_DATA_BATCHES))
    lr = tc.lr * math.sqrt(batch / tc.batch_size)  # the rate follows the batch, as in Config.resolved
    epochs = tc.epochs if tc.max_minutes else max(tc.epochs, math.ceil(tc.min_steps / math.ceil(num_examples / batch)))
    return dataclasses.replace(tc, batch_size=batch, lr=lr, epochs=epochs)


def epoch_steps(num_examples: int, tc) -> int:
    """Optimizer steps in one epoch (the last batch may be short)."""
    return math.ceil(num_examples / tc.batch_size)


def check_data(data: Splits, vae: VAE) -> None:
    if len(data.train_x) == 0:
        raise VaekitError("the training split is empty")
    if vae.conditional and (data.train_y is None or data.val_y is None):
        raise VaekitError("a conditional VAE (num_classes > 0) needs labelled data")
    if vae.conditional and data.train_y.max() >= vae.cfg.num_classes:
        raise VaekitError(f"labels reach {int(data.train_y.max())}, beyond num_classes {vae.cfg.num_classes}")
    if vae.likelihood.needs_unit_range and (data.train_x.min() < 0 or data.train_x.max() > 1):
        raise VaekitError(f"likelihood {vae.cfg.likelihood!r} needs data in [0, 1]; use --likelihood gaussian")


def train(cfg: Config, run_dir: str | Path, resume: bool = False, data: Splits | None = None,
          progress: bool = True, schema: dict | None = None) -> VAE:
    """Train a VAE as `cfg` says, writing the run directory; returns the trained model.
    `data` (with its kind's `schema`) replaces loading the configured data set."""
    run_dir = Path(run_dir)
    cfg = cfg.resolved()  # the batch size and rate used are the ones config.json records
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = resolve_device(tc.device)
    resolve_precision(tc.precision, device)  # refuses fp16 on a CPU before any data is read
    dist = distributed.init(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tc.tf32
    kind = kind_of(cfg.data)
    kind.options(cfg.data)  # the kind's own options are checked before any data is read
    if resume and (run_dir / "schema.json").exists():  # the data are encoded as the run's schema says
        schema = ckpt.read_schema(run_dir)
    if data is None:
        data, schema = kind.load(cfg.data, schema)
    schema = schema if schema is not None else {"x_shape": list(data.shape)}
    check_model(kind, cfg.model, schema)
    # The run records its kind (not "auto"), the model its kind trains for this data, and the
    # batch and length its size asks for.
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, kind=kind.name),
                              model=kind.model_config(cfg.model, schema),
                              train=scaled_to_data(cfg.train, len(data.train_x)))
    tc = cfg.train
    data = data.to(device)

    torch.manual_seed(tc.seed)
    vae = ckpt.build_vae(cfg, kind, schema, data.shape).to(device)
    if tc.init_from and not resume:  # on resume the checkpoint holds the weights
        ckpt.load_trained_weights(tc.init_from, vae)
    if uses_channels_last(vae, tc):
        vae = vae.to(memory_format=torch.channels_last)
    check_data(data, vae)
    objective = pick(OBJECTIVES, tc.objective, "objective")(tc)
    if resume:  # a resumed run repeats the choices its config.json records
        recorded = ckpt.load_config_of(run_dir).train
        tc = dataclasses.replace(tc, precision=recorded.precision, onednn=recorded.onednn)
    else:
        tc = speed_options(cfg, kind, data, vae, objective, device, dist, progress).train
    cfg = dataclasses.replace(cfg, train=tc)
    set_onednn(tc.onednn is not False)
    precision = resolve_precision(tc.precision, device)
    model = Objective(vae, objective)
    if dist.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if wants_compile(tc, device, dist, tc.epochs * epoch_steps(len(data.train_x), tc), kind):
        if progress and dist.is_main:
            tqdm.write("vaekit: compiling the training step (torch.compile, 10-30 s; --no-compile skips it)", file=sys.stderr)
        model = compiled(model, device)
    torch.manual_seed(tc.seed + dist.rank)  # each rank draws its own posterior noise
    fixed_z = torch.randn(tc.num_samples, cfg.model.latent_dim, generator=torch.Generator().manual_seed(tc.seed))
    run = Run(cfg, run_dir, kind, schema, vae, model, make_optimizer(vae, tc), torch.Generator(device).manual_seed(tc.seed),
              data, device, precision, dist, fixed_z.to(device),
              torch.amp.GradScaler("cuda", init_scale=2.0**10) if precision == "fp16" else None,
              average=WeightAverage(vae, tc.ema) if tc.ema else None, prepare=kind.prepare_batch(cfg.data), nhwc=uses_channels_last(vae, tc))
    if tc.loss_guard:
        run.guard = LossGuard(tc.loss_guard, guarded_tensors(run))

    with ckpt.lock_run(run_dir, create=not resume, active=dist.is_main):
        if resume:
            state, extra = ckpt.load_checkpoint(run_dir, vae, run.optimizer, run.generator)
            if run.average:
                run.average.load(extra)
            if dist.rank:
                torch.manual_seed(tc.seed + dist.rank + 7919 * state.step)
            records = [r for r in ckpt.read_metrics(run_dir) if r["epoch"] <= state.epoch]
        else:
            if dist.is_main:
                ckpt.create_run(run_dir, cfg, schema)
            state, extra, records = ckpt.TrainState(), {}, []
            if dist.is_main:  # a step-0 checkpoint: something to roll back to, and to resume from
                ckpt.save_checkpoint(run_dir, vae, run.optimizer, run.generator, state)
        distributed.barrier(dist)
        fit(run, state, extra, records, progress and dist.is_main)
    return vae


def fit(run: Run, state: ckpt.TrainState, extra: dict, records: list[dict], progress: bool) -> None:
    """Train to the configured number of epochs, rolling back when steps keep failing."""
    tc = run.cfg.train
    if run.dist.is_main:
        # matplotlib takes ~0.5 s to import; the curves at the end need it, the epochs do not.
        threading.Thread(target=pyplot, daemon=True).start()
    bar = tqdm(total=None if tc.max_minutes else tc.epochs * epoch_steps(len(run.data.train_x), tc),
               initial=state.step, unit="step",
               disable=not progress, dynamic_ncols=True, desc=f"training {run.run_dir.name}")
    with stop_signals() as stop:
        while True:
            try:
                run_epochs(run, state, extra, records, stop, bar)
                break
            except Rollback:
                rollbacks, skipped, scale = state.rollbacks + 1, state.skipped_steps, state.lr_scale / 2
                if rollbacks > MAX_ROLLBACKS:
                    raise VaekitError(f"training diverged: {MAX_BAD_STEPS} non-finite steps in a row even after "
                                      f"{MAX_ROLLBACKS} rollbacks (lr x{scale * 2:g}); lower --lr or check the data") from None
                distributed.barrier(run.dist)
                state, extra = ckpt.load_checkpoint(run.run_dir, run.vae, run.optimizer, run.generator)
                if run.average:
                    run.average.load(extra)
                run.best = None  # a best epoch after the checkpoint is being undone
                state.rollbacks, state.skipped_steps, state.lr_scale = rollbacks, skipped, scale
                records[:] = [r for r in records if r["epoch"] <= state.epoch]
                bar.n = state.step
                bar.write(f"vaekit: {MAX_BAD_STEPS} non-finite steps in a row; rolled back to step {state.step} "
                          f"with learning rate x{scale:g} (rollback {rollbacks} of {MAX_ROLLBACKS})")
        bar.close()
        finish(run, state, records)
        if stop["signum"] is not None:  # it came during the final pictures: the run is complete
            raise TrainingStopped(stop["signum"], run.run_dir, state)


def run_epochs(run: Run, state: ckpt.TrainState, extra: dict, records: list[dict], stop: dict, bar) -> None:
    tc, device, dist = run.cfg.train, run.device, run.dist
    n = len(run.data.train_x)
    steps_per_epoch = epoch_steps(n, tc)
    total_steps = tc.epochs * steps_per_epoch
    kl_warmup_steps = round(tc.kl_warmup_epochs * steps_per_epoch)
    warmup_steps = min(tc.warmup_steps, total_steps // 4)  # short runs still spend most steps at full rate
    params = list(run.vae.parameters())
    last_save = time.monotonic()
    budget = 60 * tc.max_minutes  # seconds of training; 0: none

    run.vae.train()
    for epoch in range(state.epoch, tc.epochs):
        if state.stopped_early or state.time_up:
            break
        # The epoch's order comes from the generator state at its start, kept for mid-epoch resumes.
        if state.epoch_step:
            epoch_rng, sums = extra["rng.epoch_start"], extra["partial.sums"].to(device)
        else:
            epoch_rng, sums = run.generator.get_state(), torch.zeros(4, dtype=torch.float64, device=device)
        now_rng = run.generator.get_state()
        run.generator.set_state(epoch_rng)
        batches = run.kind.batches(n, tc.batch_size, run.generator, device, run.data)
        if state.epoch_step:
            run.generator.set_state(now_rng)
        start = time.perf_counter()
        spent = lambda: state.train_seconds + time.perf_counter() - start  # noqa: E731
        time_up = False
        mark = sums.clone()  # the sums at the last log point: the window the loss guard reads
        failing = torch.zeros((), device=device)  # consecutive non-finite steps, kept on the device
        worst = torch.zeros((), device=device)  # longest such run since the last check
        skipped = torch.zeros((), device=device)  # skipped steps not yet added to state
        for idx in batches[state.epoch_step:]:
            idx = distributed.shard(idx, dist)
            # index_select copies whole rows: 3x faster than x[idx] on a 60,000-image set (measured).
            x = run.data.train_x.index_select(0, idx)  # (B, C, H, W)
            y = run.data.train_y.index_select(0, idx) if run.vae.conditional else None
            if run.prepare is not None:  # the kind's own step, e.g. dynamic binarisation
                x = run.prepare(x, run.generator)
            if run.nhwc:
                x = x.contiguous(memory_format=torch.channels_last)
            progress = spent() / budget if budget else None
            lr = learning_rate(state.step, total_steps, tc.lr, tc.lr_schedule, warmup_steps, progress) * state.lr_scale
            beta = kl_weight(state.step, tc.beta, kl_warmup_steps, progress)
            bad, stats = train_step(run, x, y, lr, beta, params)
            if run.average:
                run.average.update()
            sums += stats
            skipped += bad
            failing = (failing + 1) * bad
            worst = torch.maximum(worst, failing)
            state.step, state.epoch_step = state.step + 1, state.epoch_step + 1
            at_log = state.epoch_step % LOG_EVERY == 0 or state.epoch_step == len(batches)
            if at_log:  # the only host syncs of the loop
                state.skipped_steps += int(skipped.item())
                skipped.zero_()
                if worst.item() >= MAX_BAD_STEPS:
                    raise Rollback()
                worst.zero_()
                if run.guard and beta >= tc.beta and state.step > warmup_steps:
                    check_guard(run, state, distributed.all_sum(sums - mark, dist), bar)
                mark.copy_(sums)
                bar.set_postfix(epoch=epoch + 1, loss=f"{(sums[0] / sums[3].clamp(min=1)).item():.2f}",
                                samples_s=f"{sums[3].item() * dist.world_size / (time.perf_counter() - start):,.0f}")
                bar.update(state.step - bar.n)
            # A signal is a local flag; under torchrun the ranks agree on it at log points.
            stopping = stop["signum"] is not None
            time_up = bool(budget) and spent() >= budget
            if dist.enabled:
                stopping = at_log and distributed.any_rank(stopping, dist, device)
                time_up = at_log and distributed.any_rank(time_up, dist, device)
            due = (tc.checkpoint_every and state.step % tc.checkpoint_every == 0) or (
                tc.checkpoint_minutes and time.monotonic() - last_save > 60 * tc.checkpoint_minutes)
            if due or stopping:
                state.skipped_steps += int(skipped.item())
                skipped.zero_()
            if (due or stopping) and state.epoch_step < len(batches) and dist.is_main:
                save_progress(run, state, {"rng.epoch_start": epoch_rng, "partial.sums": sums})
                last_save = time.monotonic()
            if stopping and state.epoch_step < len(batches):
                bar.close()
                raise TrainingStopped(stop["signum"] or signal.SIGTERM, run.run_dir, state)
            if time_up:  # the budget is spent: this epoch ends here, as the last
                break
        bar.update(state.step - bar.n)
        state.train_seconds, state.time_up = spent(), time_up
        end_epoch(run, state, records, distributed.all_sum(sums, dist), time.perf_counter() - start,
                  final=stop["signum"] is not None)
        last_save = time.monotonic()
        if stop["signum"] is not None and state.epoch < tc.epochs:
            raise TrainingStopped(stop["signum"], run.run_dir, state)


def check_guard(run: Run, state: ckpt.TrainState, window: torch.Tensor, bar) -> None:
    """Feed the loss guard one window (loss sum, ..., count); go back and halve the rate when it
    trips, at most MAX_ROLLBACKS times in all."""
    g = run.guard
    if window[3] == 0 or not g.tripped((window[0] / window[3]).item(), state.step):
        return
    if state.rollbacks >= MAX_ROLLBACKS:
        bar.write(f"vaekit: training loss {g.smooth:.4g} against a best of {g.best:.4g}, but the rate was "
                  f"halved {state.rollbacks} times already; the loss guard stops here")
        run.guard = None
        return
    bar.write(f"vaekit: training loss rose to {g.smooth:.4g} from {g.best:.4g} at step {g.best_step}; back to "
              f"those weights with learning rate x{state.lr_scale / 2:g}")
    g.restore()
    state.rollbacks, state.lr_scale = state.rollbacks + 1, state.lr_scale / 2


def train_step(run: Run, x: torch.Tensor, y, lr: float, beta: float, params: list) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step. Returns (bad, stats): bad is 1.0 where the loss or gradient was not
    finite and the update was skipped; stats is (loss sum, recon sum, kl sum, count), zero when bad.
    Both stay on the device: no host sync here."""
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with autocast(run.device, run.precision):
        terms = run.model(x, beta, y)
    run.optimizer.zero_grad(set_to_none=True)
    loss = terms.loss.mean()
    if run.scaler:  # fp16: scaled loss; overflowing steps are the scaler's to skip, not failures
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
        bad = (~torch.isfinite(loss)).float()
    else:
        loss.backward()
    norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    if not run.scaler:
        bad = (~torch.isfinite(norm)).float()
    if run.cfg.train.grad_clip > 0:
        torch.nn.utils.clip_grads_with_norm_(params, run.cfg.train.grad_clip, norm)
    if run.scaler:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        # Fused Adam skips the whole update (and its step count) where found_inf is set: the
        # mechanism GradScaler uses, here without reading the flag back to the host.
        run.optimizer.step(found_inf=bad)
    # new_full fills on the device; new_tensor would copy from the host and wait for the GPU.
    stats = torch.stack([terms.loss.sum(), terms.recon.sum(), terms.kl.sum(), terms.loss.new_full((), len(x))])
    return bad, torch.where(bad.bool(), 0.0, stats.detach().double())


def end_epoch(run: Run, state: ckpt.TrainState, records: list[dict], sums: torch.Tensor, seconds: float,
              final: bool = False) -> None:
    """Validate, log, decide on early stopping, and checkpoint a completed epoch (when the last
    checkpoint is EPOCH_CHECKPOINT_SECONDS old, or the run ends here: `final`)."""
    tc = run.cfg.train
    count = max(sums[3].item(), 1.0)
    train_loss, train_recon, train_kl = (sums[:3] / count).tolist()
    val_y = run.data.val_y if run.vae.conditional else None
    with averaged(run.average):  # the model validated, kept and saved is the averaged one
        val = evaluate_elbo(run.vae, run.data.val_x, precision=run.precision, y=val_y) if len(run.data.val_x) else None
        val_loss = val["neg_elbo"] if val else train_loss
        kind_metrics = run.kind.epoch_metrics(run.vae, run.data) if len(run.data.val_x) else {}
        selection = kind_metrics.pop("selection", val_loss)  # lower is better
        state.epoch, state.epoch_step = state.epoch + 1, 0
        if state.best_val is None or selection < state.best_val:
            state.best_val, state.best_epoch = selection, state.epoch
            if (tc.patience or run.kind.keeps_best) and run.dist.is_main:
                run.best = (state.epoch, {k: v.detach().clone() for k, v in run.vae.state_dict().items()})
        elif tc.patience and state.epoch - state.best_epoch >= tc.patience:
            state.stopped_early = True
    records.append({
        "epoch": state.epoch, "step": state.step, "train_loss": train_loss, "train_recon": train_recon,
        "train_kl": train_kl, "val_neg_elbo": val_loss, "val_recon": val["recon"] if val else None,
        "val_kl": val["kl"] if val else None, "lr": run.optimizer.param_groups[0]["lr"],
        "skipped_steps": state.skipped_steps, "rollbacks": state.rollbacks,
        "seconds": seconds, "samples_per_s": count / seconds, **kind_metrics,
    })
    if not run.dist.is_main:
        return
    # Metrics first, then the checkpoint: a crash in between only repeats epochs on resume.
    ckpt.write_metrics(run.run_dir, records)
    final = final or state.epoch >= tc.epochs or state.stopped_early or state.time_up
    save = final or time.monotonic() - run.saved_at >= EPOCH_CHECKPOINT_SECONDS
    if save:
        save_progress(run, state)  # the trained weights, for --resume
        run.saved_at = time.monotonic()
    run.vae.eval()
    with torch.no_grad(), averaged(run.average):  # the model saved and pictured
        if save:
            ckpt.save_model(run.run_dir, run.vae, state.epoch)
        run.kind.save_epoch(run.run_dir, run.vae, run.fixed_z, state.epoch)
    run.vae.train()


def save_progress(run: Run, state: ckpt.TrainState, extra: dict | None = None) -> None:
    """The checkpoint, after the best epoch's weights when they are not on disk yet (the
    checkpoint's best_epoch must always be the one best.safetensors holds)."""
    if run.best is not None:
        ckpt.save_weights(run.run_dir / "best.safetensors", run.best[1], run.vae.x_shape, run.best[0])
        run.best = None
    if run.average:
        extra = (extra or {}) | run.average.tensors()
    ckpt.save_checkpoint(run.run_dir, run.vae, run.optimizer, run.generator, state, extra)


def finish(run: Run, state: ckpt.TrainState, records: list[dict]) -> None:
    """Keep the best epoch's weights after early stopping (or always, where the kind selects
    epochs by its own metric); draw the final pictures."""
    best = run.run_dir / "best.safetensors"
    if run.average:  # the model kept is the averaged one
        run.average.copy_into_model()
    if (state.stopped_early or run.kind.keeps_best) and best.exists():
        ckpt.load_weights(run.vae, ckpt.read_safetensors(best)[0], best)
        if run.dist.is_main:
            ckpt.save_model(run.run_dir, run.vae, state.best_epoch)
    run.vae.eval()
    if run.dist.is_main:
        save_curves(run.run_dir / "curves.png", records)
        with torch.no_grad():  # what a person looks at first (prior samples, reconstructions, ...)
            run.kind.save_final(run.run_dir, run.vae, run.data, run.schema, run.cfg.train.num_samples)

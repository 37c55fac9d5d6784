"""`vaekit serve`: trained runs answering other programs over HTTP (FastAPI on uvicorn, OpenAPI
docs at /docs), every kind through the Python API (api.py) and the kind's JSON records
(`Kind.from_records` / `Kind.to_records`).

    POST /v1/R/sample       {"num": 10, "seed": 0, ...the kind's sample options}
    POST /v1/R/score        {"inputs": [...records]} -> score (-ELBO, nats), flagged, threshold[, top_columns]
    POST /v1/R/encode       {"inputs": [...]}        -> mu[, logvar]
    POST /v1/R/decode       {"z": [[...], ...]}      -> the decoded records
    POST /v1/R/reconstruct, /interpolate, and the kind's own commands (/recommend, /optimize)

Requests for score and encode that arrive together are run as one batch (up to --max-batch
inputs) on the model's one worker thread, each with its own noise: a request's answer does not
depend on what it was batched with, and equals the CLI's for the same inputs and seed. Any bad
request gets a 4xx and `{"error": "one line"}`; the run directory is only read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import os
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import torch
from fastapi import FastAPI, Request  # the `serve` extra; this module loads only to serve
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException

from . import anomaly, api, calibrate, explore
from .errors import VaekitError
from .kinds import Kind
from .nets import ONEDNN_X86, set_onednn

MAX_BODY = 64 << 20  # bytes of one request body
MAX_INPUTS = 100_000  # records in one request
MAX_NUM = 10_000  # examples one sample request may ask for
MAX_Z = 10_000  # latent codes one decode request may give
MAX_WORKERS = 4  # the default's cap: each worker holds its own copy of torch and the runs (~360 MB)
LARGE = 32 << 10  # bytes of a score or encode body that a worker process answers, where there are workers
SHARED = ("sample", "encode", "decode", "reconstruct", "interpolate", "score")


class RequestError(Exception):
    """A bad request: its status and one line naming the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    """One request's share of a batch: its records, options and the future its answer goes to."""

    inputs: list
    options: dict
    future: asyncio.Future | None = None


@dataclass(eq=False)  # hashed by identity: its thresholds are cached
class Served:
    """A run being served: its model, and what scoring needs from its normal (validation) data,
    computed once at start (none when the run's data cannot be reached: scores come unflagged)."""

    name: str
    model: api.Model
    normal: tuple | None = None  # the validation split's (x, y): what thresholds are set on
    note: str = ""
    explorer: dict | None = None
    batchers: dict = field(default_factory=dict)
    by_workers: int = 0  # requests a worker process answered

    @property
    def kind(self):
        return self.model.run.kind

    @property
    def scores_own_way(self) -> bool:
        """Does the kind score its own way (a stream's rows), unbatched and in this process?"""
        return "anomaly" in self.kind.replaces

    def commands(self) -> list[str]:
        kind = self.kind
        shared = [c for c in SHARED if self.supports(c)]
        return shared + [n for n, c in kind.commands.items() if c.python]

    def supports(self, command: str) -> bool:
        """Does the run's kind do `command` (a shared one: its own method, not Kind's refusal)?"""
        kind = type(self.kind)
        if command == "encode":
            return True
        if command == "score":
            return "anomaly" not in kind.replaces or kind.score_objects is not Kind.score_objects
        method = "decoded" if command == "decode" else command
        return getattr(kind, method) is not getattr(Kind, method)

    @functools.lru_cache(maxsize=8)
    def normal_scores(self, draws: int) -> np.ndarray:
        """The validation rows' scores at `draws` posterior draws, as `vaekit anomaly` sets its threshold."""
        x, y = self.normal
        return anomaly.score(self.model.vae, x, num_samples=draws, y=y)

    @functools.lru_cache(maxsize=8)
    def column_medians(self, draws: int) -> np.ndarray | None:
        """Each column's median score on the validation rows (tables), which top_columns ranks against."""
        if self.normal is None or self.kind.column_names(self.model.run) is None:
            return None
        x, y = self.normal
        return np.median(anomaly.column_scores(self.model.vae, x, y, num_samples=draws), axis=0)

    @functools.lru_cache(maxsize=64)
    def threshold(self, fpr: float, draws: int) -> float:
        return anomaly.threshold_at(self.normal_scores(draws), fpr)

    def prepare(self, data_dir: str | None) -> None:
        """The normal scores that set `flagged`'s threshold (the validation split, as `vaekit
        anomaly` takes them) and, for tables, each column's median score."""
        run = self.model.run
        try:
            splits = run.splits(data_dir)
        except VaekitError as e:
            self.note = f"the run's data cannot be read ({e}): scores come without flagged, and no explorer map"
            print(f"vaekit serve: {self.name}: {self.note}", file=sys.stderr)
            return
        if self.supports("score"):
            self.normal = splits.val_x, run.vae.labels_for(splits.val_y)
            self.threshold(0.05, self.kind.score_draws)  # the default's, ready before the first request
            self.column_medians(self.kind.score_draws)
        if self.supports("decode"):
            self.explorer_points(splits)

    def explorer_points(self, splits, limit: int = 2000) -> None:
        """The validation data's posterior means and their 2-D map, for the explorer page."""
        run = self.model.run
        x, y = splits.val_x[:limit], None if splits.val_y is None else splits.val_y[:limit]
        mu, _ = explore.embed(run.vae, x, y=run.vae.labels_for(y))
        points = explore.project_2d(mu.numpy(), "pca")
        self.explorer = {"points": np.round(points, 4).tolist(), "z": np.round(mu.numpy(), 5).tolist(),
                         "labels": None if y is None else [int(v) for v in y],
                         "projection": "latent" if run.vae.latent_dim <= 2 else "PCA of the posterior means",
                         "conditional": bool(run.vae.conditional)}


# ---------------------------------------------------------------- what each endpoint computes


def tensors(served: Served, jobs: list[Job]):
    """(x, y) of the jobs' records taken together, in order."""
    kind, run = served.kind, served.model.run
    allow = jobs[0].options.get("unknown") == "allow"
    if kind.records_batch:
        x, y = kind.records_tensors(run, [r for j in jobs for r in j.inputs], allow)
    else:
        parts = [kind.records_tensors(run, j.inputs, allow) for j in jobs]
        x = torch.cat([p[0] for p in parts])
        y = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
    if len(x) != sum(len(j.inputs) for j in jobs):
        raise VaekitError(f"{sum(len(j.inputs) for j in jobs) - len(x)} input(s) could not be read")
    return x, y


def split(values, jobs: list[Job]) -> list:
    out, start = [], 0
    for j in jobs:
        out.append(values[start : start + len(j.inputs)])
        start += len(j.inputs)
    return out


def score_jobs(served: Served, jobs: list[Job]) -> list[dict]:
    vae = served.model.vae
    x, y = tensors(served, jobs)
    y = vae.labels_for(y)
    num_samples = jobs[0].options["num_samples"]
    medians = served.column_medians(num_samples)
    columns = medians is not None
    eps = torch.cat([anomaly.draws(j.options["seed"], len(j.inputs), vae.latent_dim, num_samples) for j in jobs], 1)
    per_column = None
    if anomaly.batchable(vae):
        scores = anomaly.score_with(vae, x, eps, y, columns=columns)
        scores, per_column = scores if columns else (scores, None)
    else:  # the KL term draws noise of its own: each request alone, as the CLI scores it
        ys = split(y, jobs) if y is not None else [None] * len(jobs)
        scores = np.concatenate([anomaly.score(vae, xs, num_samples=num_samples, seed=j.options["seed"], y=yj)
                                 for j, xs, yj in zip(jobs, split(x, jobs), ys)])
    tops = [None] * len(jobs)
    if columns:
        per_column = anomaly.column_scores(vae, x, y, eps=eps) if per_column is None else per_column
        names = served.kind.column_names(served.model.run)
        tops = split(anomaly.ranked(per_column - medians, names), jobs)
    out = []
    for j, s, t in zip(jobs, split(scores, jobs), tops):
        answer = {"score": np.round(s.astype(np.float64), 6).tolist()}
        if served.normal is not None:
            threshold = served.threshold(j.options["fpr"], num_samples)
            answer.update(flagged=(s > threshold).tolist(), threshold=threshold)
        if t is not None:
            answer["top_columns"] = t
        out.append(answer)
    return out


def encode_jobs(served: Served, jobs: list[Job]) -> list[dict]:
    vae = served.model.vae
    x, y = tensors(served, jobs)
    mu, logvar = explore.embed(vae, x, y=vae.labels_for(y))
    return [{"mu": m.tolist()} | ({"logvar": lv.tolist()} if j.options.get("logvar") else {})
            for j, m, lv in zip(jobs, split(mu, jobs), split(logvar, jobs))]


BATCHED = {"score": score_jobs, "encode": encode_jobs}
# Each batched command's options and defaults; a score's num_samples defaults to its run's kind's score_draws.
BATCH_OPTIONS = {"score": {"num_samples": 10, "seed": 0, "fpr": 0.05, "unknown": "refuse"},
                 "encode": {"logvar": False, "unknown": "refuse"}}


def checked_options(command: str, body: dict, served: Served) -> dict:
    """The options of a batched command from a request body, with their defaults (the run's
    kind's number of posterior draws), checked."""
    defaults = BATCH_OPTIONS[command] | ({"num_samples": served.kind.score_draws} if command == "score" else {})
    unknown = sorted(set(body) - set(defaults) - {"inputs"})
    if unknown:
        raise RequestError(422, f"{unknown[0]!r} is not an option of {command} (it takes inputs, "
                                f"{', '.join(defaults)})")
    options = defaults | {k: v for k, v in body.items() if k != "inputs"}
    for name, default in defaults.items():
        value = options[name]
        if type(value) is not type(default) and not (isinstance(default, float) and type(value) is int):
            raise RequestError(422, f"{name} must be a {type(default).__name__}, got {value!r}")
    if command == "score":
        if not 1 <= options["num_samples"] <= 1000:
            raise RequestError(422, f"num_samples must be in [1, 1000], got {options['num_samples']}")
        if not 0 < options["fpr"] < 1:
            raise RequestError(422, f"fpr must be in (0, 1), got {options['fpr']}")
    if options["unknown"] not in ("refuse", "allow"):
        raise RequestError(422, f"unknown must be 'refuse' or 'allow', got {options['unknown']!r}")
    return options


def inputs_of(body: dict) -> list:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(422, "the body needs \"inputs\": a non-empty list of records")
    if len(inputs) > MAX_INPUTS:
        raise RequestError(413, f"{len(inputs)} inputs in one request; at most {MAX_INPUTS}")
    return inputs


def sample(served: Served, body: dict) -> dict:
    options = dict(body)
    form = options.pop("format", "list")
    num = options.pop("num", 64)
    if type(num) is not int or num < 1:
        raise RequestError(422, f"num must be a positive integer, got {num!r}")
    if num > MAX_NUM:
        raise RequestError(413, f"num {num} is over this server's {MAX_NUM} per request")
    conditions = options.pop("conditions", None)
    if conditions is not None:
        if not isinstance(conditions, dict):
            raise RequestError(422, "conditions must be an object {column: value}")
        options["condition"] = [f"{k}={v}" for k, v in conditions.items()]
    result = served.model.sample(num, **options)
    return {"samples": served.kind.to_records(served.model.run, result, form)}


def decode(served: Served, body: dict) -> dict:
    z = body.get("z")
    d = served.model.vae.latent_dim
    try:
        z = torch.tensor(z, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise RequestError(422, f"z must be a list of latent codes, each {d} numbers") from None
    if z.ndim != 2 or z.shape[1] != d or not len(z):
        raise RequestError(422, f"z must be a non-empty list of latent codes of {d} numbers, got shape {tuple(z.shape)}")
    if len(z) > MAX_Z:
        raise RequestError(413, f"{len(z)} codes in one request; at most {MAX_Z}")
    labels = body.get("labels")
    run = served.model.run
    result = run.kind.decoded(run, z, labels)
    return {"outputs": run.kind.to_records(run, result, body.get("format", "list"))}


def with_inputs(command: str):
    def handler(served: Served, body: dict) -> dict:
        options = {k: v for k, v in body.items() if k not in ("inputs", "format")}
        run = served.model.run
        objects = run.kind.from_records(run, inputs_of(body), options.pop("unknown", "refuse") == "allow")
        result = getattr(served.model, command)(objects, **options)
        return {"outputs": run.kind.to_records(run, result, body.get("format", "list"))}

    return handler


def kind_command(name: str):
    def handler(served: Served, body: dict) -> dict:
        options = {k: v for k, v in body.items() if k not in ("inputs", "format")}
        run = served.model.run
        method = getattr(served.model, name)
        result = method(run.kind.from_records(run, inputs_of(body), True), **options) if "inputs" in body \
            else method(**options)
        return {"outputs": run.kind.to_records(run, result, body.get("format", "list"))}

    return handler


def own_score(served: Served, body: dict) -> dict:
    """Scores of a kind that scores its own way: one request, one stream."""
    fpr = body.get("fpr", 0.01)
    unknown = sorted(set(body) - {"inputs", "fpr"})
    if unknown:
        raise RequestError(422, f"{unknown[0]!r} is not an option of a {served.kind.name} run's score (it takes "
                                "inputs, fpr)")
    if type(fpr) not in (int, float) or not 0 < fpr < 1:
        raise RequestError(422, f"fpr must be in (0, 1), got {fpr!r}")
    run = served.model.run
    return run.kind.score_objects(run, run.kind.from_records(run, inputs_of(body)), fpr)


SINGLE = {"sample": sample, "decode": decode, "reconstruct": with_inputs("reconstruct"),
          "interpolate": with_inputs("interpolate")}


# ---------------------------------------------------------------- batching


class Batcher:
    """Requests of one command queue here; one task takes all that are waiting (up to `max_batch`
    inputs, one request at least) and runs them together on the model's thread. With max_batch 1
    each request runs alone: the plain per-request server."""

    def __init__(self, served: Served, command: str, max_batch: int, executor: ThreadPoolExecutor):
        self.served, self.function, self.max_batch, self.executor = served, BATCHED[command], max_batch, executor
        self.queue: asyncio.Queue | None = None
        self.loop = self.task = None
        self.batches = self.requests = self.largest = 0  # what batching did, for /v1/runs and tests

    async def submit(self, job: Job):
        loop = asyncio.get_running_loop()
        if self.max_batch <= 1:
            return (await loop.run_in_executor(self.executor, self.run, [job]))[0]
        if self.loop is not loop:  # the first request (or a new event loop, as a test client starts)
            self.loop, self.queue = loop, asyncio.Queue()
            self.task = loop.create_task(self.work())
        job.future = loop.create_future()
        self.queue.put_nowait(job)
        return await job.future

    async def work(self):
        loop = asyncio.get_running_loop()
        pending = None
        while True:
            jobs = [pending or await self.queue.get()]
            pending = None
            count = len(jobs[0].inputs)
            while not self.queue.empty():
                job = self.queue.get_nowait()
                if count + len(job.inputs) > self.max_batch:
                    pending = job
                    break
                jobs.append(job)
                count += len(job.inputs)
            groups = {}
            for job in jobs:  # requests with the same options run together
                groups.setdefault(tuple(sorted((k, v) for k, v in job.options.items() if k != "seed")), []).append(job)
            for group in groups.values():
                results = await loop.run_in_executor(self.executor, self.run, group)
                for job, result in zip(group, results):
                    if not job.future.done():
                        (job.future.set_exception if isinstance(result, BaseException) else job.future.set_result)(result)

    def run(self, jobs: list[Job]) -> list:
        """Each job's answer, or the exception its own inputs raise (a bad request spoils only itself)."""
        self.batches += 1
        self.requests += len(jobs)
        self.largest = max(self.largest, len(jobs))
        try:
            return self.function(self.served, jobs)
        except Exception as e:  # noqa: BLE001 - sorted out per job below
            if len(jobs) == 1:
                return [e]
        out = []
        for job in jobs:
            try:
                out.append(self.function(self.served, [job])[0])
            except Exception as e:  # noqa: BLE001 - the job's own error, answered to it
                out.append(e)
        return out


# ---------------------------------------------------------------- worker processes


class Workers:
    """Processes that answer large score and encode requests, each with its own copy of the runs,
    so that reading records, ranking columns and the model use every core (threads of one process
    queue for its one interpreter lock). Started by the first large request; until they are up (a
    few seconds) large requests are answered in this process. An answer is the same either way:
    the same code, the request's own posterior noise."""

    def __init__(self, runs: dict[str, Served], count: int, onednn: bool | None = None):
        self.runs, self.count, self.onednn = runs, count, onednn
        self.pool = None
        self.up = False

    def takes(self, served: Served, command: str) -> bool:
        if self.count < 2 or not served.supports(command) or (command == "score" and served.scores_own_way):
            return False
        if self.pool is None:
            self.start()
        return self.up

    def start(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        state = {name: (str(s.model.run.run_dir), None if s.normal is None else
                        tuple(None if t is None else t.numpy() for t in s.normal)) for name, s in self.runs.items()}
        self.pool = ProcessPoolExecutor(self.count, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=worker_start, initargs=(state, self.onednn))
        started = [self.pool.submit(os.getpid) for _ in range(self.count)]

        def ready(_):
            if all(f.done() for f in started):
                self.up = all(f.exception() is None for f in started)

        for f in started:
            f.add_done_callback(ready)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    async def answer(self, name: str, command: str, raw: bytes) -> tuple[int, bytes] | None:
        """(status, JSON body) from a worker; None if the workers are gone (this process answers)."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, worker_answer, name, command, raw)
        except BrokenProcessPool:
            print("vaekit serve: a worker process died; answering in this process from now on", file=sys.stderr)
            self.count, self.up = 1, False
            return None


WORKER_RUNS: dict[str, Served] = {}  # a worker process's runs


def worker_start(state: dict, onednn: bool | None) -> None:
    """A worker's runs, one torch thread, and the products the server timed for one thread (a
    worker timing its own beside its busy siblings could pick the slower: 7-10% apart here)."""
    torch.set_num_threads(1)  # one core per worker
    threading.Thread(target=leave_with, args=(os.getppid(),), daemon=True).start()
    if onednn is not None:
        set_onednn(onednn)
    for name, (path, normal) in state.items():
        served = Served(name, api.open(path))
        if normal is not None:
            served.normal = tuple(None if a is None else torch.from_numpy(a) for a in normal)
        WORKER_RUNS[name] = served


def fastest_products(runs: dict[str, Served], threads: int | None = None) -> bool | None:
    """oneDNN (True) or torch.mm (False) for dense products, whichever scores faster on this
    machine at `threads` torch threads (default: as set); which wins depends on the CPU
    (calibrate.py; torch.mm was 7-10% faster here, oneDNN 2x on an AVX-512 one). Timed on up to
    1,000 validation inputs of the first run scored in batches; None where there is nothing to
    time or no oneDNN."""
    served = next((s for s in runs.values() if s.normal is not None and not s.scores_own_way
                   and anomaly.batchable(s.model.vae)), None)
    if not ONEDNN_X86 or served is None:
        return None
    vae, (x, y) = served.model.vae, served.normal
    x, y = x[:1000], None if y is None else y[:1000]
    eps = anomaly.draws(0, len(x), vae.latent_dim, served.kind.score_draws)
    step = lambda batch, precision: anomaly.score_with(vae, x, eps, y)  # noqa: E731
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:  # (each option's timing sets oneDNN on or off and restores it)
        ms = calibrate.measure(lambda: step, [None] * calibrate.STEPS_PER_ROUND,
                               {"oneDNN": ("fp32", True), "torch.mm": ("fp32", False)})
    finally:
        torch.set_num_threads(before)
    return ms["oneDNN"] <= ms["torch.mm"]


def leave_with(parent: int) -> None:
    """End this worker when the server is gone, even by kill -9 (its task queue never closes: the
    other workers hold it too)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def worker_answer(name: str, command: str, raw: bytes) -> tuple[int, bytes]:
    """A large request's answer in a worker process: as the batcher answers a batch of one."""
    served = WORKER_RUNS[name]
    try:
        body = parse_body(raw)
        job = Job(inputs_of(body), checked_options(command, body, served))
        return 200, orjson.dumps(BATCHED[command](served, [job])[0], option=orjson.OPT_SERIALIZE_NUMPY)
    except REFUSED as e:
        status, message = refusal(e)
        return status, orjson.dumps(error_body(message))


# ---------------------------------------------------------------- the app


@dataclass
class ServeOptions:
    """How the app answers: batch size, the token every request but /health bears, body limit."""

    max_batch: int = 4096
    token: str | None = None
    max_body: int = MAX_BODY
    workers: int = 1  # processes answering large score / encode requests (1: all in this process)
    worker_onednn: bool | None = None  # the workers' products (fastest_products at one thread; None: as set)


def open_runs(paths: list[str], data_dir: str | None = None, prepare: bool = True) -> dict[str, Served]:
    served = {}
    for path in paths:
        name = Path(path).resolve().name
        if name in served:
            raise VaekitError(f"two runs named {name!r}: serve runs whose directory names differ")
        s = Served(name, api.open(path))
        if prepare:
            s.prepare(data_dir)
        served[name] = s
    return served


def make_app(runs: dict[str, Served], options: ServeOptions):
    """The ASGI app serving `runs` (name -> Served): FastAPI behind `Front`."""
    from .explorer import page

    executor = ThreadPoolExecutor(1, thread_name_prefix="vaekit-model")  # one model thread: torch in order
    pool = Workers(runs, options.workers, options.worker_onednn)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        pool.close()

    app = FastAPI(title="vaekit", version=__import__("vaekit").__version__, lifespan=lifespan,
                  description="Trained VAEs: sample, score, encode, decode, reconstruct, and each kind's commands.")
    body_doc = {"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}}

    def error(status: int, message: str) -> Response:
        return json_response(error_body(message), status)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        if exc.status_code == 404:
            return error(404, f"no endpoint {request.method} {request.url.path}")
        if exc.status_code == 405:
            return error(405, f"{request.method} is not allowed on {request.url.path}")
        return error(exc.status_code, exc.detail)

    @app.exception_handler(Exception)
    async def bug(request, exc):  # a 500 is a bug: one line all the same, and the server goes on
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > options.max_body:
            raise RequestError(413, f"the body is {int(length)} bytes; at most {options.max_body}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > options.max_body:
                raise RequestError(413, f"the body is over {options.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def served_run(name: str) -> Served:
        if name not in runs:
            raise RequestError(404, f"no run named {name!r} (serving: {', '.join(runs)})")
        return runs[name]

    async def answer(request: Request, name: str, command: str):
        try:
            served = served_run(name)
            raw = await read_body(request)
            if command in BATCHED and len(raw) >= LARGE and pool.takes(served, command):
                answered = await pool.answer(name, command, raw)
                if answered is not None:
                    served.by_workers += 1
                    return Response(answered[1], status_code=answered[0], media_type="application/json")
            body = parse_body(raw)
            if command == "score" and served.scores_own_way and served.supports("score"):
                handler = own_score  # a kind that scores its own way (a stream's rows): unbatched
            elif command in BATCHED:
                if not served.supports(command):
                    raise RequestError(404, f"{command} does not apply to {served.kind.name} runs")
                job = Job(inputs_of(body), checked_options(command, body, served))
                batcher = served.batchers.get(command) or served.batchers.setdefault(
                    command, Batcher(served, command, options.max_batch, executor))
                result = await batcher.submit(job)
                if isinstance(result, BaseException):
                    raise result
                return json_response(result)
            elif command in SINGLE and served.supports(command):
                handler = SINGLE[command]
            elif command in served.kind.commands and served.kind.commands[command].python:
                handler = kind_command(command)
            else:
                raise RequestError(404, f"{command} does not apply to {served.kind.name} runs "
                                        f"(they take {', '.join(served.commands())})")
            result = await asyncio.get_running_loop().run_in_executor(executor, handler, served, body)
            return json_response(result)
        except REFUSED as e:
            return error(*refusal(e))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/runs")
    async def list_runs():
        return json_response({name: describe(s) for name, s in runs.items()})

    @app.get("/v1/{name}/explorer")
    async def explorer(name: str):
        try:
            served = served_run(name)
        except RequestError as e:
            return error(e.status, str(e))
        if served.explorer is None:
            return error(409, f"{name}: no explorer map: {served.note or 'the kind decodes no latent codes'}")
        return json_response(served.explorer | {"kind": served.kind.name, "label_names": served.kind.label_names(served.model.run)})

    @app.post("/v1/{name}/{command}", openapi_extra=body_doc)
    async def run_command(name: str, command: str, request: Request):
        """Run `command` of the run `name` on the JSON body (see the module's docstring)."""
        return await answer(request, name, command)

    @app.get("/", response_class=HTMLResponse)
    async def home():
        return HTMLResponse(page(list(runs)))

    async def command_or_bug(request: Request, name: str, command: str) -> Response:
        try:
            return await answer(request, name, command)
        except Exception as exc:  # noqa: BLE001 (as the app's handler of a 500)
            return await bug(request, exc)

    return Front(app, command_or_bug, options.token)


class Front:
    """The app as served: the token checked on every request but /health (Authorization: Bearer
    T, or ?token=T for a browser's page; compared in constant time), then POST /v1/R/C straight
    to its handler, past FastAPI's middleware, routing and parameter checks (a quarter of the
    server process's time per request), every other request (and the OpenAPI docs of that one)
    through FastAPI."""

    def __init__(self, app: FastAPI, command, token: str | None):
        self.app, self.command = app, command
        self.token = token.encode() if token else None

    def __getattr__(self, name):  # the FastAPI app's own attributes (routes, openapi) for callers
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            if self.token is not None and scope["path"] != "/health" and not self.bears_token(scope):
                response = json_response({"error": "this server needs Authorization: Bearer <token>"}, 401)
                return await response(scope, receive, send)
            parts = scope["path"].split("/")
            if scope["method"] == "POST" and len(parts) == 4 and parts[:2] == ["", "v1"] and parts[2] and parts[3]:
                response = await self.command(Request(scope, receive), parts[2], parts[3])
                return await response(scope, receive, send)
        await self.app(scope, receive, send)

    def bears_token(self, scope) -> bool:
        given = dict(scope["headers"]).get(b"authorization", b"")
        if given.startswith(b"Bearer "):
            given = given[7:]
        else:
            from urllib.parse import parse_qs

            given = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0].encode()
        return hmac.compare_digest(given, self.token)


def describe(served: Served) -> dict:
    run = served.model.run
    batching = {name: {"requests": b.requests, "batches": b.batches, "largest_batch": b.largest}
                for name, b in served.batchers.items()}
    return {"kind": served.kind.name, "latent_dim": run.vae.latent_dim, "schema": run.kind.schema_summary(run),
            "commands": served.commands(), "flags_scores": served.normal is not None, "batching": batching,
            "answered_by_workers": served.by_workers,
            **({"note": served.note} if served.note else {})}


def parse_body(raw: bytes) -> dict:
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object")
    return body


REFUSED = (RequestError, VaekitError, TypeError, ValueError, KeyError)  # a bad request's, answered 4xx


def refusal(e: Exception) -> tuple[int, str]:
    """The status and one line a bad request (an exception in REFUSED) is answered with."""
    if isinstance(e, RequestError):
        return e.status, str(e)
    return 422, str(e) if isinstance(e, VaekitError) else f"bad request: {type(e).__name__}: {e}"


def parse_json(raw: bytes):
    """The body as JSON; NaN and Infinity are refused (they are not JSON)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise RequestError(400, f"the body is not valid JSON: {e}") from None


def error_body(message: str) -> dict:
    return {"error": " ".join(str(message).split()) or "error"}


def json_response(content, status: int = 200) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


def serve(paths: list[str], host: str = "127.0.0.1", port: int = 8000, token_file: str | None = None,
          max_batch: int = 4096, threads: int | None = None, data_dir: str | None = None,
          workers: int | None = None) -> None:
    """Serve the runs until interrupted; large score and encode requests go to `workers` processes
    (default: one per core where there are several, at most MAX_WORKERS)."""
    import uvicorn

    token = None
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as e:
            raise VaekitError(f"{token_file}: cannot read the token file ({e.strerror})") from None
        if not token:
            raise VaekitError(f"{token_file}: the token file is empty")
    if max_batch < 1:
        raise VaekitError(f"--max-batch must be at least 1, got {max_batch}")
    if workers is not None and workers < 1:
        raise VaekitError(f"--workers must be at least 1, got {workers}")
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        print(f"vaekit serve: warning: listening on {host} without --token-file: anyone who can reach this "
              "machine can use the model", file=sys.stderr)
    if threads:
        torch.set_num_threads(threads)
    runs = open_runs(paths, data_dir)
    onednn = fastest_products(runs)
    if onednn is not None:
        set_onednn(onednn)
    workers = min(calibrate.usable_cores(), MAX_WORKERS) if workers is None else workers
    worker_onednn = fastest_products(runs, threads=1) if workers > 1 else None
    app = make_app(runs, ServeOptions(max_batch=max_batch, token=token, workers=workers, worker_onednn=worker_onednn))
    print(f"vaekit serve: {', '.join(runs)} on http://{host}:{port} (docs at /docs)", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)

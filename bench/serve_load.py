"""Load on `vaekit serve`, client and server on loopback (docs/serve.md).

Scores single Adult rows from 32 concurrent clients against the plain per-request server (the
same app with --max-batch 1: the model called once per request) and the batching server (both on
one torch thread), timed in the same run; the server's RSS at the start and end of 100,000
requests; 1,000-row requests (the server as `vaekit serve RUN` starts it, whose worker processes
answer large bodies, and one process with --workers 1); and a `kill -9` under load, after which
the run directory must be byte-identical and the workers gone.

    python bench/serve_load.py --data-dir ../shared/data [--seconds 60] [--run RUN]

The client is a small asyncio HTTP/1.1 client on kept-alive connections (one process, one
thread), so that the client's own cost stays well under the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from table_speed import adult_csv  # noqa: E402

VAEKIT = str(Path(sys.executable).parent / "vaekit")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`vaekit serve RUN` in a child process, one torch thread, until stopped."""

    def __init__(self, run: Path, max_batch: int, data_dir: str, threads: int | None = 1, workers: int | None = 1):
        self.port = free_port()
        extra = (["--threads", str(threads)] if threads else []) + (["--workers", str(workers)] if workers else [])
        self.proc = subprocess.Popen([VAEKIT, "serve", str(run), "--port", str(self.port), "--max-batch", str(max_batch),
                                      *extra, "--data-dir", data_dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    if b"200 OK" in s.recv(1000):
                        return
            except OSError:
                if self.proc.poll() is not None:
                    sys.exit(f"the server exited: {self.proc.stderr.read()[-2000:]}")
                time.sleep(0.2)
        sys.exit("the server did not answer /health in 120 s")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self, sig=signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(30)


def request_bytes(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


async def client(port: int, request: bytes, stop_at: float, budget: list, latencies: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(body[:200])
    except (ConnectionError, asyncio.IncompleteReadError) as e:
        errors.append(repr(e))
    finally:
        writer.close()


def load(port: int, request: bytes, clients: int, seconds: float, max_requests: int = 10**9) -> dict:
    latencies, errors, budget = [], [], [max_requests]

    async def main():
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*[client(port, request, stop_at, budget, latencies, errors) for _ in range(clients)])

    start = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - start
    lat = sorted(latencies)
    return {"requests": len(lat), "errors": len(errors), "first_error": str(errors[0])[:200] if errors else None,
            "requests_per_s": len(lat) / wall, "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
            "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None, "seconds": wall}


def running(pid: str) -> bool:
    """Is the process alive (not gone, not a zombie)?"""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tree_hash(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        h.update(str(f.relative_to(path)).encode())
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR", "../shared/data"))
    ap.add_argument("--run", help="an Adult table run (default: train one, 5 epochs, in a temporary folder)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each single-row load (default 60)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--rss-requests", type=int, default=100_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    train_csv, test_csv = adult_csv(Path(args.data_dir), tmp)
    run = Path(args.run) if args.run else tmp / "adult"
    if not args.run:
        subprocess.run([VAEKIT, "train", "--data", str(train_csv), "--target", "income", "--epochs", "5", "--out",
                        str(run), "--quiet"], check=True, stdout=subprocess.DEVNULL)
    import pandas as pd

    rows = pd.read_csv(test_csv, dtype=str, keep_default_na=False).head(1000)
    numeric = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    records = [{k: (int(v) if k in numeric else v) for k, v in r.items()} for r in rows.to_dict("records")]
    one = request_bytes(f"/v1/{run.name}/score", {"inputs": records[:1]})
    before = tree_hash(run)
    out = {"cpu": os.cpu_count()}

    for name, max_batch in (("plain", 1), ("batched", 4096)):
        server = Server(run, max_batch, args.data_dir)
        load(server.port, one, args.clients, 3)  # warm-up
        out[f"single_rows_{name}"] = load(server.port, one, args.clients, args.seconds)
        print(name, json.dumps(out[f"single_rows_{name}"]), flush=True)
        if name == "batched":
            rss_start = server.rss_mb()
            long = load(server.port, one, args.clients, 3600, max_requests=args.rss_requests)
            out["rss"] = {"requests": long["requests"], "errors": long["errors"], "start_mb": rss_start,
                          "end_mb": server.rss_mb()}
            print("RSS", json.dumps(out["rss"]), flush=True)
        server.stop()

    # 1,000-row requests from 4 clients: the server as started with no options (worker processes,
    # one per core, answer large bodies), at a table's default one posterior draw and at 10; then
    # one process (--workers 1) with the model on both cores
    for how, threads, workers in (("", None, None), ("_one_process", None, 1)):
        server = Server(run, 4096, args.data_dir, threads=threads, workers=workers)
        for samples in (None, 10):
            body = request_bytes(f"/v1/{run.name}/score", {"inputs": records} | ({"num_samples": samples} if samples else {}))
            load(server.port, body, 4, 10)  # warm-up: the workers start on the first large request
            big = load(server.port, body, 4, min(args.seconds, 30))
            big["rows_per_s"] = big["requests_per_s"] * len(records)
            name = f"thousand_row_requests_{'default_draws' if samples is None else f'{samples}_draws'}{how}"
            out[name] = big
            print(name, json.dumps(big), flush=True)
        server.stop()

    server = Server(run, 4096, args.data_dir, workers=None)  # kill -9 under load, workers up
    load(server.port, body, 4, 10)
    workers = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout.split()
    killer = subprocess.Popen([sys.executable, "-c", f"import time, os; time.sleep(3); os.kill({server.proc.pid}, 9)"])
    under = load(server.port, body, 4, 6)
    killer.wait()
    server.proc.wait(30)
    time.sleep(3)  # a worker checks every 0.5 s that its server is still there
    left = [pid for pid in workers if running(pid)]
    out["kill_9"] = {"requests_before_kill": under["requests"], "run_dir_identical": tree_hash(run) == before,
                     "worker_processes": len(workers), "left_running": len(left)}
    print("kill -9", json.dumps(out["kill_9"]), flush=True)

    plain, batched = out["single_rows_plain"], out["single_rows_batched"]
    out["throughput_ratio"] = batched["requests_per_s"] / plain["requests_per_s"]
    out["p99_ratio"] = batched["p99_ms"] / plain["p99_ms"]
    print(json.dumps(out))
    print(f"\nsingle rows, {args.clients} clients: {batched['requests_per_s']:.0f} req/s batched vs "
          f"{plain['requests_per_s']:.0f} plain ({out['throughput_ratio']:.1f}x), p99 {batched['p99_ms']:.1f} ms vs "
          f"{plain['p99_ms']:.1f} ms; 1,000-row requests: "
          f"{out['thousand_row_requests_default_draws']['rows_per_s']:.0f} rows/s (default server, one draw), "
          f"{out['thousand_row_requests_10_draws']['rows_per_s']:.0f} (10 draws); one process "
          f"{out['thousand_row_requests_default_draws_one_process']['rows_per_s']:.0f} and "
          f"{out['thousand_row_requests_10_draws_one_process']['rows_per_s']:.0f}; "
          f"RSS {out['rss']['start_mb']:.0f} -> {out['rss']['end_mb']:.0f} MB over {out['rss']['requests']} requests; "
          f"run directory identical after kill -9: {out['kill_9']['run_dir_identical']}")


if __name__ == "__main__":
    main()

"""Streams: vaekit's series kind on NAB and SKAB, scored by the benchmarks' own scorers.

    python bench/series_quality.py --data-dir ../shared/data --tools ../shared/tools/series [--only nab|skab]
        [--seeds 0,1,2,3,4]

1. NAB: the whole command `vaekit detect --data nab/ --kind series --out W/vaekit` (35 files, each
   a stream: learn from its probation rows, score the rest from the past only, refit as it grows;
   one configuration for every file), timed; then NAB's own scorer (`nab_score.py`: thresholds
   optimised and scores normalised as NAB does) for the standard, reward-low-FP and reward-low-FN
   profiles. `--seeds S,S,...`: a run per training seed, each seed's three figures and their medians.
2. SKAB (its outlier-detection leaderboard protocol): for each of the 34 labelled experiments,
   `vaekit train --train-rows 400` on the file, `vaekit anomaly` of all its rows with the default
   score (several channels: worst_channel over 8 rows), with `--score neg_elbo` (over 1 and 5 rows)
   and with `--score worst_channel --smooth 5`; `skab_eval.py` with the rule
   `train-quantile:0.99` (an alarm above the 99th percentile of the file's 400 training scores),
   TP/FP/FN pooled. Then the same, each model trained on the anomaly-free recording instead.
3. Speed: rows per second of `vaekit anomaly` on NAB's longest file with a trained run, the whole
   command and the scoring in process (median of 3 each).

Prints every figure measured in this one run; `--keep DIR` keeps the score files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VAEKIT = [sys.executable, "-m", "vaekit"]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, **kw)


PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def nab_run(data: Path, tools: Path, work: Path, extra: list[str], seed: int | None, rows: int) -> list[float]:
    """One whole `detect` run (the default seed for None), timed, then NAB's scorer: the standard,
    reward-low-FP and reward-low-FN scores."""
    name, label = ("vaekit", "") if seed is None else (f"vaekit-seed{seed}", f", seed {seed}")
    out = work / "nab" / name
    start = time.perf_counter()
    run(VAEKIT + ["detect", "--data", str(data / "nab"), "--kind", "series", "--out", str(out),
                  *([] if seed is None else ["--seed", str(seed)]), *extra])
    seconds = time.perf_counter() - start
    print(f"NAB: vaekit detect over 35 files ({rows:,} rows){label}: {seconds:.1f} s (whole command)", flush=True)
    report = work / ("nab.json" if seed is None else f"nab-seed{seed}.json")
    run([sys.executable, str(tools / "nab_score.py"), str(out), "--names", "vaekit", "--data-dir", str(data / "nab"),
         "--json", str(report)])
    profiles = json.loads(report.read_text())["profiles"]
    return [profiles[p]["detectors"]["vaekit"]["normalised"] for p in PROFILES]


def nab(data: Path, tools: Path, work: Path, extra: list[str], seeds: list[int] | None = None) -> None:
    """One run with the default seed, or one per seed of --seeds and their medians: the training
    seed moves NAB's score by several points (docs/series.md)."""
    rows = sum(sum(1 for _ in open(p)) - 1 for p in (data / "nab").rglob("*.csv"))
    if not seeds:
        nab_run(data, tools, work, extra, None, rows)
        return
    figures = [nab_run(data, tools, work, extra, seed, rows) for seed in seeds]
    for seed, scores in zip(seeds, figures):
        print(f"NAB seed {seed}: " + " / ".join(f"{v:.2f}" for v in scores))
    medians = [statistics.median(column) for column in zip(*figures)]
    print(f"NAB median over seeds {','.join(map(str, seeds))}: " + " / ".join(f"{v:.2f}" for v in medians)
          + f" ({', '.join(PROFILES)})")


SCORINGS = {"defaults (worst_channel, 8-row mean)": [], "neg_elbo": ["--score", "neg_elbo"],
            "neg_elbo, 5-row mean": ["--score", "neg_elbo", "--smooth", "5"],
            "worst_channel, 5-row mean": ["--score", "worst_channel", "--smooth", "5"]}


def skab(data: Path, tools: Path, work: Path, extra: list[str]) -> None:
    experiments = sorted(p for group in ("valve1", "valve2", "other") for p in (data / "skab" / group).glob("*.csv"))
    for mode in ("first 400 rows", "anomaly-free recording"):
        free_run = work / "free-run"
        if not mode.startswith("first"):
            run(VAEKIT + ["train", "--data", str(data / "skab" / "anomaly-free" / "anomaly-free.csv"), "--kind",
                          "series", "--out", str(free_run), "--quiet", *extra], stdout=subprocess.DEVNULL)
        start = time.perf_counter()
        for path in experiments:
            model = free_run
            if mode.startswith("first"):
                model = work / "runs" / path.parent.name / path.stem
                run(VAEKIT + ["train", "--data", str(path), "--kind", "series", "--train-rows", "400", "--out",
                              str(model), "--quiet", *extra], stdout=subprocess.DEVNULL)
            for k, flags in enumerate(SCORINGS.values()):
                target = work / f"skab-{mode.split()[0]}-{k}" / path.parent.name / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                run(VAEKIT + ["anomaly", str(model), "--data", str(path), "--out", str(target), *flags],
                    stdout=subprocess.DEVNULL)
        print(f"SKAB, trained on each file's {mode}: {time.perf_counter() - start:.1f} s for 34 files", flush=True)
        for k, scoring in enumerate(SCORINGS):
            pred = work / f"skab-{mode.split()[0]}-{k}"
            run([sys.executable, str(tools / "skab_eval.py"), str(pred), "--threshold-rule", "train-quantile:0.99",
                 "--data-dir", str(data / "skab"), "--label", f"vaekit ({mode}, {scoring})",
                 "--json", str(work / f"{pred.name}.json")])


def speed(data: Path, work: Path) -> None:
    path = data / "nab" / "realKnownCause" / "machine_temperature_system_failure.csv"
    model = work / "speed-run"
    run(VAEKIT + ["train", "--data", str(path), "--kind", "series", "--train-rows", "3000", "--out", str(model),
                  "--quiet"], stdout=subprocess.DEVNULL)
    rows = sum(1 for _ in open(path)) - 1
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run(VAEKIT + ["anomaly", str(model), "--data", str(path), "--out", str(work / "speed.csv")],
            stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    print(f"vaekit anomaly, {rows:,} rows: median {statistics.median(times):.2f} s whole command "
          f"({rows / statistics.median(times):,.0f} rows/s including start-up)", flush=True)
    # The scoring itself, in this process: read, window, score and calibrate the file (median of 3).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from vaekit.checkpoint import open_run
    from vaekit.kinds.series.commands import read_streams, scored, scoring
    from vaekit.kinds.series.data import scaled, windows

    trained = open_run(model)
    score, smooth, cal = scoring(trained)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        stream = read_streams(str(path), trained.schema)[0]
        scored(trained.vae, windows(scaled(stream.values, trained.schema), trained.schema["window"]),
               cal, trained.schema["columns"], 0.01, score, smooth)
        times.append(time.perf_counter() - start)
    print(f"scoring in process: {rows / statistics.median(times):,.0f} rows/s (read, window, score, calibrate; "
          "median of 3)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--tools", type=Path, required=True, help="the folder of nab_score.py and skab_eval.py")
    p.add_argument("--only", choices=["nab", "skab", "speed"])
    p.add_argument("--keep", type=Path, help="keep the score files here")
    p.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], metavar="S,S,...",
                   help="NAB: one detect run per training seed, then each seed's figures and their medians")
    p.add_argument("extra", nargs="*", help="after --: more flags for the train / detect commands")
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="vaekit-series-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "nab"):
        nab(args.data_dir, args.tools, work, args.extra, args.seeds)
    if args.only in (None, "skab"):
        skab(args.data_dir, args.tools, work, args.extra)
    if args.only in (None, "speed"):
        speed(args.data_dir, work)
    print(json.dumps({"work": str(work)}))


if __name__ == "__main__":
    main()

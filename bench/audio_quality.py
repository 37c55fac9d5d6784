"""Speech benchmark on FSDD (docs/audio.md): trains the audio kind with its defaults through the
CLI, then judges what it makes with classifiers trained on real recordings only (audio_judges.py):

- generation: 500 samples (`vaekit sample --condition digit=D`, 50 per digit, speakers drawn):
  digit and speaker heard as asked, Inception-style score, variety, speed against real time;
- conversion: the 250 test utterances into each other speaker (`vaekit convert`): digit kept,
  target speaker heard (beside the unconverted inputs and the target's own recordings);
- odd recordings: `vaekit anomaly` AUROC for clipped, noisy and wrong-word copies of the test set;
- held-out speaker: a second run trained without one speaker; that speaker's test utterances
  reconstructed and converted keep their digit.

    python bench/audio_quality.py --data-dir ../shared/data [--work DIR] [--run RUN] [--held-out lucas]
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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from audio_judges import NAME, inception_score, labels_of, train_judges  # noqa: E402

VAEKIT = [sys.executable, "-m", "vaekit"]


def run(args: list[str]) -> float:
    """Run a vaekit command; its wall time in seconds."""
    t = time.perf_counter()
    subprocess.run(VAEKIT + args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def linked(paths: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        (folder / p.name).symlink_to(p.resolve())
    return folder


def audio_seconds(paths: list[Path]) -> float:
    import wave

    total = 0.0
    for p in paths:
        with wave.open(str(p)) as w:
            total += w.getnframes() / w.getframerate()
    return total


def variety(x: torch.Tensor, groups: list[str]) -> float:
    """Mean distance between two clips of the same group (features flattened)."""
    out = []
    for g in sorted(set(groups)):
        idx = [i for i, v in enumerate(groups) if v == g]
        if len(idx) > 1:
            f = x[idx].flatten(1)
            d = torch.cdist(f, f)
            out.append(float(d.sum() / (len(idx) * (len(idx) - 1))))
    return float(np.mean(out))


def judge_files(judges, paths: list[Path]):
    fe, digit, speaker = judges
    x = fe.files(paths)
    return x, digit.probs(x), speaker.predict(x)


def generation(run_dir: Path, work: Path, judges, real_variety: float) -> dict:
    out = work / "samples"
    out.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    for d in range(10):
        seconds += run(["sample", str(run_dir), "--num", "50", "--condition", f"digit={d}", "--seed", str(d),
                        "--out", str(out / str(d))])
    paths = sorted(out.glob("*/*.wav"))
    want = labels_of(paths)
    x, pd_, spk = judge_files(judges, paths)
    digit_classes = judges[1].classes
    heard = [digit_classes[i] for i in pd_.argmax(1)]
    # Speed: one call making 500 utterances, against the seconds of audio it wrote.
    t0 = time.perf_counter()
    fast = work / "speed"
    run(["sample", str(run_dir), "--num", "500", "--out", str(fast)])
    made = time.perf_counter() - t0
    return {"samples": len(paths),
            "digit_heard": float(np.mean([h == w["digit"] for h, w in zip(heard, want)])),
            "speaker_heard": float(np.mean([s == w["speaker"] for s, w in zip(spk, want)])),
            "inception_score": inception_score(pd_),
            "variety_vs_real": variety(x, [f"{w['digit']}_{w['speaker']}" for w in want]) / real_variety,
            "distinct_files": len({p.read_bytes() for p in paths}),
            "times_real_time": audio_seconds(sorted(fast.glob("*.wav"))) / made}


def conversion(run_dir: Path, test_paths: list[Path], work: Path, judges, speakers: list[str]) -> dict:
    """Each source speaker's test utterances (a folder each: converted names carry the source's digit
    and index, which speakers share) into every other speaker."""
    digits, targets, by_target = [], [], {s: [] for s in speakers}
    for source in speakers:
        folder = linked([p for p in test_paths if NAME.match(p.stem)["speaker"] == source], work / "test" / source)
        for s in (t for t in speakers if t != source):
            out = work / "conversions" / f"{source}_to_{s}"
            out.parent.mkdir(parents=True, exist_ok=True)
            run(["convert", str(run_dir), "--data", str(folder), "--condition", f"speaker={s}", "--out", str(out)])
            paths = sorted(out.glob("*.wav"))
            _, pd_, spk = judge_files(judges, paths)
            names = labels_of(paths)
            hits = [h == s for h in spk]
            by_target[s] += hits
            targets += hits
            digits += [judges[1].classes[p.argmax()] == n["digit"] for p, n in zip(pd_, names)]
    return {"conversions": len(targets), "digit_kept": float(np.mean(digits)),
            "target_speaker_heard": float(np.mean(targets)),
            "by_target": {s: float(np.mean(v)) for s, v in by_target.items()}}


def baselines(test_paths: list[Path], judges, speakers: list[str]) -> dict:
    _, _, spk = judge_files(judges, test_paths)
    truth = [l["speaker"] for l in labels_of(test_paths)]
    # unconverted input judged as a given other speaker: how often chance alone "converts"
    other = [float(np.mean([p == s for p, t in zip(spk, truth) if t != s])) for s in speakers]
    own = float(np.mean([p == t for p, t in zip(spk, truth)]))
    return {"unconverted_judged_as_target": float(np.mean(other)), "targets_own_recordings": own}


def odd_recordings(run_dir: Path, test_paths: list[Path], work: Path) -> dict:
    """AUROC of `vaekit anomaly` (-ELBO per utterance) between the real test recordings and odd
    copies of them: clipped (10x gain), noisy (white noise 10 dB below the speech), wrong word (the
    name says the next digit)."""
    from sklearn.metrics import roc_auc_score

    from vaekit.kinds.audio.signal import read_wav, write_wav

    rng = np.random.default_rng(0)
    folder = work / "odd"
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {}
    for p in test_paths:
        x, rate = read_wav(p)
        m = NAME.match(p.stem)
        d, s, k = m["digit"], m["speaker"], int(m["index"])
        copies = {"normal": (p.stem, x), "clipped": (f"{d}_{s}_{100 + k}", np.clip(10 * x, -0.5, 0.5)),
                  "noisy": (f"{d}_{s}_{200 + k}", x + rng.normal(size=len(x)) * np.sqrt(np.mean(x ** 2) / 10)),
                  "wrong_word": (f"{(int(d) + 1) % 10}_{s}_{300 + k}", x)}
        for kind, (name, wave) in copies.items():
            write_wav(folder / f"{name}.wav", wave.astype(np.float32), rate)
            kinds[name] = kind
    out = work / "odd.csv"
    run(["anomaly", str(run_dir), "--data", str(folder), "--out", str(out)])
    import pandas as pd

    scores = pd.read_csv(out)
    scores["kind"] = scores["id"].map(kinds)
    normal = scores[scores["kind"] == "normal"]["score"]
    result = {}
    for kind in ("clipped", "noisy", "wrong_word"):
        odd = scores[scores["kind"] == kind]["score"]
        result[kind] = float(roc_auc_score([0] * len(normal) + [1] * len(odd), list(normal) + list(odd)))
    return result


def held_out(fsdd: Path, work: Path, judges, speaker: str, threads: list[str]) -> dict:
    paths = sorted(fsdd.glob("*.wav"))
    labels = labels_of(paths)
    known = linked([p for p, l in zip(paths, labels) if l["speaker"] != speaker], work / "known")
    unheard = linked([p for p, l in zip(paths, labels) if l["speaker"] == speaker and int(l["index"]) < 5],
                     work / "unheard")
    run_dir = work / "run_without"
    train_s = run(["train", "--data", str(known), "--kind", "audio", "--out", str(run_dir), "--quiet", *threads])
    rec = work / "unheard_reconstructed"
    run(["reconstruct", str(run_dir), "--data", str(unheard), "--num", "1000", "--out", str(rec)])
    rec_paths = sorted(rec.glob("*.wav"))
    _, pd_, _ = judge_files(judges, rec_paths)
    rec_hits = [judges[1].classes[i] == NAME.match(p.stem)["digit"] for i, p in zip(pd_.argmax(1), rec_paths)]
    conv_hits = []
    others = sorted({l["speaker"] for l in labels} - {speaker})
    for s in others:
        out = work / "unheard_converted" / s
        out.parent.mkdir(parents=True, exist_ok=True)
        run(["convert", str(run_dir), "--data", str(unheard), "--condition", f"speaker={s}", "--out", str(out)])
        conv_paths = sorted(out.glob("*.wav"))
        _, pd_, _ = judge_files(judges, conv_paths)
        conv_hits += [judges[1].classes[i] == NAME.match(p.stem)["digit"] for i, p in zip(pd_.argmax(1), conv_paths)]
    return {"speaker": speaker, "train_seconds": train_s, "reconstructed_digit_kept": float(np.mean(rec_hits)),
            "converted_digit_kept": float(np.mean(conv_hits)), "utterances": len(rec_paths)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("VAEKIT_DATA_DIR", "../shared/data"))
    ap.add_argument("--work", default=None, help="folder for runs and outputs (default: a temporary one)")
    ap.add_argument("--run", default=None, help="a trained run to judge (default: train one)")
    ap.add_argument("--held-out", default="lucas", help="the speaker left out of the second run ('' skips it)")
    ap.add_argument("--judge-epochs", type=int, default=30)
    ap.add_argument("train_args", nargs="*", help="extra vaekit train flags, after --")
    args = ap.parse_args()
    torch.set_num_threads(2)
    fsdd = Path(args.data_dir) / "fsdd" / "recordings"
    work = Path(args.work or tempfile.mkdtemp(prefix="vaekit-audio-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    cache = work / "judges.pt"
    if cache.exists():  # judges of an earlier run of this bench on the same work folder
        fe, digit, speaker, real = torch.load(cache, weights_only=False)
    else:
        fe, digit, speaker, real = train_judges(fsdd, args.judge_epochs)
        torch.save((fe, digit, speaker, real), cache)
    judges = (fe, digit, speaker)
    print(f"judges on real test recordings: {json.dumps(real)} ({time.perf_counter() - t:.0f} s)", flush=True)
    paths = sorted(fsdd.glob("*.wav"))
    labels = labels_of(paths)
    test_paths = [p for p, l in zip(paths, labels) if int(l["index"]) < 5]
    train_paths = [p for p, l in zip(paths, labels) if int(l["index"]) >= 5]
    train_x = fe.files(train_paths)
    real_variety = variety(train_x, [f"{l['digit']}_{l['speaker']}" for l in labels_of(train_paths)])
    summary = {"judges_on_real_test": real}
    if args.run:
        run_dir = Path(args.run)
    else:
        run_dir = work / "run"
        summary["train_seconds"] = run(["train", "--data", str(fsdd), "--kind", "audio", "--out", str(run_dir),
                                        "--quiet", *args.train_args])
        print(f"trained in {summary['train_seconds']:.0f} s", flush=True)
    summary["generation"] = generation(run_dir, work, judges, real_variety)
    print(json.dumps(summary["generation"]), flush=True)
    speakers = speaker.classes
    summary["conversion"] = conversion(run_dir, test_paths, work, judges, speakers)
    summary["conversion_baselines"] = baselines(test_paths, judges, speakers)
    print(json.dumps(summary["conversion"]), json.dumps(summary["conversion_baselines"]), flush=True)
    summary["odd_recordings_auroc"] = odd_recordings(run_dir, test_paths, work)
    print(json.dumps(summary["odd_recordings_auroc"]), flush=True)
    if args.held_out:
        summary["held_out"] = held_out(fsdd, work, judges, args.held_out, args.train_args)
        print(json.dumps(summary["held_out"]), flush=True)
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"outputs in {work}")


if __name__ == "__main__":
    main()

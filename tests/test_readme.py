"""Everything the README shows runs as written: its Python snippets and every shell command, on
small cuts of the files they name, with time and sample budgets cut so that the suite stays short
(BUDGETS)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gzip

import pandas as pd

from conftest import SHARED_DATA, free_port, wait_for

README = Path(__file__).resolve().parents[1] / "README.md"
SET_UP = ("make ", "pip ", "python -m venv")  # the README's set-up lines; CI runs them itself
BUDGETS = [(r"--max-minutes \d+", "--max-minutes 0.1"), (r"--num 30000", "--num 300"),
           (r"--budget \d+", "--budget 200"), (r"--reference moses", "--reference moses --num-samples 300")]


def python_block(after: str) -> str:
    return re.search(re.escape(after) + r"\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)


def test_image_quick_start_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_block("## Quick start: images"), "README quick start", "exec"), {})
    out = capsys.readouterr().out
    assert "torch.Size([16, 20])" in out and "neg_elbo" in out
    assert (tmp_path / "runs" / "quickstart" / "model.safetensors").is_file()


def test_python_quick_start_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_block("molecules (`model.optimize`)."), "README Python", "exec"), {})
    shapes = capsys.readouterr().out.strip().splitlines()[-1]
    assert shapes.startswith("(16, 8) (16,) ") and 0 < float(shapes.split()[-1]) < 100


def head_gz(source: Path, target: Path, lines: int) -> None:
    with gzip.open(source, "rt") as f, gzip.open(target, "wt") as out:
        out.writelines(line for _, line in zip(range(lines), f))


def readme_folder(adult, tmp_path) -> Path:
    """A folder holding the files the README's commands name, cut short from the shared data (Adult
    to 5,000 training rows, MovieLens to its first 300 users, molecules, a novel)."""
    train, test = (pd.read_csv(adult / f"{name}.csv", dtype=str, keep_default_na=False) for name in ("train", "test"))
    for frame, target, rows in ((train, "adult", 5000), (test, "adult_test", 2000), (test, "new_rows", 200)):
        frame.head(rows).to_csv(tmp_path / f"{target}.csv", index=False)
    (tmp_path / "moses").mkdir()
    head_gz(SHARED_DATA / "moses" / "train.csv.gz", tmp_path / "moses" / "train.csv.gz", 3001)
    head_gz(SHARED_DATA / "moses" / "test.csv.gz", tmp_path / "moses" / "test.csv.gz", 501)
    head_gz(SHARED_DATA / "austen" / "persuasion.txt.gz", tmp_path / "persuasion.txt.gz", 2000)
    shutil.copy(SHARED_DATA / "skab" / "valve1" / "0.csv", tmp_path / "valve.csv")
    machine = SHARED_DATA / "nab" / "realKnownCause" / "machine_temperature_system_failure.csv"
    pd.read_csv(machine, dtype=str).head(2000).to_csv(tmp_path / "machine.csv", index=False)
    ratings = pd.read_csv(SHARED_DATA / "movielens-100k" / "ml-100k.inter", sep="\t")
    ratings = ratings[ratings["user_id:token"] <= 300]
    ratings.to_csv(tmp_path / "ml-100k.inter", sep="\t", index=False)
    ratings.columns = [c.split(":")[0] for c in ratings.columns]
    ratings[ratings["user_id"] <= 3].to_csv(tmp_path / "new_users.csv", index=False)
    for folder, speakers in (("fsdd/recordings", ("jackson", "theo")), ("my_recordings", ("nicolas",))):
        (tmp_path / folder).mkdir(parents=True)
        for name in (f"{d}_{s}_{k}" for s in speakers for d in (3, 7) for k in range(8 if len(speakers) > 1 else 2)):
            shutil.copy(SHARED_DATA / "fsdd" / "recordings" / f"{name}.wav", tmp_path / folder)
    return tmp_path


def test_tables_python_runs(adult, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(readme_folder(adult, tmp_path))
    exec(compile(python_block("DataFrame in and DataFrame out:"), "README tables", "exec"), {})
    assert 0.9 < float(capsys.readouterr().out.strip().splitlines()[-1]) <= 1.0


def test_every_shell_command_runs(adult, tmp_path):
    folder = readme_folder(adult, tmp_path)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    lines = [line.strip() for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
             for line in block.splitlines()]
    commands = [line for line in lines if line and not line.startswith(("#", *SET_UP))]
    for pattern, cut in BUDGETS:
        commands = [re.sub(pattern, cut, command) for command in commands]
    assert len(commands) >= 10
    port = str(free_port())
    servers = []
    try:
        for command in (c.replace("8000", port) for c in commands):
            if command.endswith("&"):  # a server: started, waited for, stopped at the end
                servers.append(subprocess.Popen(["bash", "-c", f"exec {command[:-1]}"], cwd=folder, env=env,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
                wait_for(f"http://127.0.0.1:{port}/health", servers[-1])
                continue
            done = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"{command}\n{done.stderr[-1000:]}"
    finally:
        for server in servers:
            server.kill()
            server.wait(10)
    assert servers and (folder / "onnx_adult" / "model.json").is_file()
    assert (folder / "synth.csv").is_file() and (folder / "runs" / "digits" / "report.html").is_file()
    assert len(pd.read_csv(folder / "mols.csv")) == 300 and (folder / "best.csv").is_file()
    assert len(pd.read_csv(folder / "stream_scores.csv")) == 2000 and "top_columns" in pd.read_csv(folder / "valve_scores.csv")
    assert sorted(p.name for p in (folder / "seven").glob("*.wav")) == sorted(f"7_theo_{i}.wav" for i in range(10))
    assert sorted(p.name for p in (folder / "as_theo").glob("*.wav")) == [f"{d}_theo_{k}.wav" for d in (3, 7) for k in (0, 1)]
    recs = pd.read_csv(folder / "new_recs.csv")
    assert list(recs.columns) == ["user", "item", "rank", "score"] and set(recs["user"]) == {1, 2, 3}

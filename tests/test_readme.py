"""Everything the README shows runs as written: its Python snippets and every shell command."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

README = Path(__file__).resolve().parents[1] / "README.md"
SET_UP = ("make ", "pip ", "python -m venv")  # the README's set-up lines; CI runs them itself


def python_block(after: str) -> str:
    return re.search(re.escape(after) + r"\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)


def test_image_quick_start_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_block("## Quick start: images"), "README quick start", "exec"), {})
    out = capsys.readouterr().out
    assert "torch.Size([16, 20])" in out and "neg_elbo" in out
    assert (tmp_path / "runs" / "quickstart" / "model.safetensors").is_file()


def readme_folder(adult, tmp_path) -> Path:
    """A folder holding the files the README's commands name."""
    shutil.copy(adult / "train.csv", tmp_path / "adult.csv")
    shutil.copy(adult / "test.csv", tmp_path / "adult_test.csv")
    pd.read_csv(adult / "test.csv", dtype=str, keep_default_na=False).head(200).to_csv(tmp_path / "new_rows.csv",
                                                                                        index=False)
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
    assert len(commands) >= 10
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stderr[-1000:]}"
    assert (folder / "synth.csv").is_file() and (folder / "runs" / "digits" / "report.html").is_file()

"""The README's Python snippets run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs(tmp_path, monkeypatch, capsys):
    block = re.search(r"## Python quick start\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README quick start", "exec"), {})
    out = capsys.readouterr().out
    assert "torch.Size([16, 20])" in out and "neg_elbo" in out
    assert (tmp_path / "runs" / "quickstart" / "model.safetensors").is_file()



def test_tables_python_runs(adult, monkeypatch, capsys):
    block = re.search(r"DataFrame in and DataFrame out:\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(adult)
    exec(compile(block, "README tables", "exec"), {})
    assert 0.9 < float(capsys.readouterr().out.strip().splitlines()[-1]) <= 1.0

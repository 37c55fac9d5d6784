"""The README's Python quick start runs as written."""

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


"""The package as users install it: a wheel that builds, with the right contents and metadata."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_builds_with_every_module_and_a_torch_range(tmp_path):
    pytest.importorskip("setuptools")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("vaekit-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    sources = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "vaekit").rglob("*.py")}
    assert sources <= names, sources - names
    assert not any(n.startswith("tests/") for n in names)
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist: torch")]
    assert requires and all("==" not in line for line in requires), requires
    assert "vaekit = vaekit.cli:main" in entry


def test_version_is_printed():
    done = subprocess.run([sys.executable, "-m", "vaekit", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("vaekit 0.")


def test_run_files_follow_the_umask(tmp_path):
    import os

    from vaekit.checkpoint import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a", b"x")
        os.umask(0o077)
        atomic_write(tmp_path / "b", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o600

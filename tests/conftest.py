import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vaekit.config import Config
from vaekit import load_data

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VAEKIT_DATA_DIR") or ROOT.parent / "shared" / "data")


# torch.compile on CPU builds C++ kernels.
needs_compiler = pytest.mark.skipif(not shutil.which(os.environ.get("CXX", "g++")),
                                    reason="torch.compile needs a C++ compiler on CPU")


# `make test` runs the suite in two processes (pytest-xdist): each then keeps to one torch thread,
# and so do the commands it starts, or the two would fight over the cores.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
if THREADS == 1:
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(THREADS)


def pytest_collection_modifyitems(items):
    """The README's commands (minutes, one file) first: the other process works beside them."""
    items.sort(key=lambda item: item.path.name != "test_readme.py")


@pytest.fixture(scope="session", autouse=True)
def _calibration_cache(tmp_path_factory):
    """Speed calibrations go to a folder of the test session, not the user's cache; runs of one
    model (and the subprocesses, which inherit the variable) then share one measured choice."""
    os.environ["VAEKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def digits():
    return load_data(Config().data)


def shared(relative: str, what: str) -> Path:
    """A path under the shared data folder. Missing, the test skips on a user's machine and fails
    in CI (CI=true), where the data is always laid beside the clone: a green CI means the real-data
    tests ran."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"{what} not found at {path} (set VAEKIT_DATA_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def mnist_dir():
    shared("mnist", "MNIST")
    return SHARED_DATA


def image_vae(model_cfg, shape):
    """A VAE over images of `shape` as the image kind builds it (the conv net is the kind's)."""
    from vaekit.kinds import registry
    from vaekit.vae import VAE

    return VAE(model_cfg, shape, registry()["image"].nets(model_cfg, {"x_shape": list(shape)}))


def small_config(**train) -> Config:
    """A digits model that trains in about a second."""
    cfg = Config()
    cfg.model.hidden = [64]
    cfg.model.latent_dim = 4
    cfg.train.epochs = 3
    cfg.train.batch_size = 64
    cfg.train.precision = "fp32"
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
                 "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
                 "income"]


@pytest.fixture(scope="session")
def adult(tmp_path_factory):
    """UCI Adult as CSV files with a header (train.csv, test.csv), converted from the raw files
    with pandas as a user would: '?' kept as written, the test labels' trailing '.' dropped."""
    import pandas as pd

    raw = shared("adult/adult.data", "UCI Adult").parent
    out = tmp_path_factory.mktemp("adult")
    read = lambda name, skip: pd.read_csv(raw / name, header=None, names=ADULT_COLUMNS, skipinitialspace=True,
                                          dtype=str, keep_default_na=False, skiprows=skip)
    train, test = read("adult.data", 0), read("adult.test", 1)
    test["income"] = test["income"].str.rstrip(".")
    for frame, name in ((train, "train.csv"), (test, "test.csv")):
        frame[frame["age"] != ""].to_csv(out / name, index=False)
    return out


def vaekit_cli(*args):
    """`python -m vaekit ARGS` in a subprocess (its exit code and one-line errors are the point)."""
    return subprocess.run([sys.executable, "-m", "vaekit", *map(str, args)], capture_output=True, text=True)


def one_line_error(result, *needles):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def free_port() -> int:
    """A TCP port nothing listens on now, for a server a test starts."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    """Until `url` answers (a server the test started); fails if the server exits first."""
    import time
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline:
        assert server.poll() is None, server.stderr.read()[-2000:] if server.stderr else server.returncode
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {seconds} s")


def spoken_wavs(folder: Path, digits=("0", "1"), speakers=("ann", "bob"), takes: int = 6, rate: int = 8000,
                seconds: float = 0.3) -> Path:
    """Synthetic recordings named as FSDD's, {digit}_{speaker}_{index}.wav (16-bit mono): each
    speaker a pitch, each digit a rising or falling glide, each take its own jitter and noise."""
    import wave

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    for s, speaker in enumerate(speakers):
        for d, digit in enumerate(digits):
            for k in range(takes):
                f0 = (120 + 80 * s) * (1 + 0.02 * rng.normal())
                glide = 1 + (0.6 if d % 2 else -0.3) * t / seconds + 0.2 * d
                phase = 2 * np.pi * np.cumsum(f0 * glide) / rate
                x = sum(np.sin(h * phase) / h for h in (1, 2, 3)) * np.hanning(len(t)) * 0.3
                x = x + 0.003 * rng.normal(size=len(t))
                with wave.open(str(folder / f"{digit}_{speaker}_{k}.wav"), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(rate)
                    w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return folder

"""vaekit: train variational autoencoders fast and put them to use."""

from .checkpoint import load
from .config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from .data import load_data
from .errors import VaekitError
from .metrics import evaluate_elbo
from .objectives import elbo
from .train import train
from .vae import VAE

__all__ = ["Config", "DataConfig", "ModelConfig", "TrainConfig", "TableVAE", "VAE", "VaekitError", "elbo",
           "evaluate_elbo", "load", "load_config", "load_data", "train"]


def __getattr__(name: str):
    # The table API loads pandas; image users never pay for it.
    if name == "TableVAE":
        from .kinds.table.api import TableVAE

        return TableVAE
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")
try:
    from importlib.metadata import version as _version

    __version__ = _version("vaekit")
except Exception:  # run from a source tree that was never installed
    __version__ = "0.2.0"

"""vaekit: train variational autoencoders fast and put them to use.

    model = vaekit.fit("adult.csv", target="income")   # any kind of data: the Python API (api.py)
    model = vaekit.open("runs/digits")                  # a trained run: sample, encode, score, ...
    vae = vaekit.load("runs/digits")                    # its torch model: encode -> q(z|x), decode -> p(x|z)
"""

from .api import Model, fit, load_data, open
from .checkpoint import load
from .config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from .errors import VaekitError
from .metrics import evaluate_elbo
from .objectives import elbo
from .train import train
from .vae import VAE

__all__ = ["Config", "DataConfig", "Model", "ModelConfig", "TrainConfig", "TableVAE", "VAE", "VaekitError", "elbo",
           "evaluate_elbo", "fit", "load", "load_config", "load_data", "open", "train"]


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

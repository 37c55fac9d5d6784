"""vaekit: train variational autoencoders fast and put them to use."""

from .checkpoint import load
from .config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from .data import load_data
from .errors import VaekitError
from .metrics import evaluate_elbo
from .objectives import elbo
from .train import train
from .vae import VAE

__all__ = ["Config", "DataConfig", "ModelConfig", "TrainConfig", "VAE", "VaekitError", "elbo",
           "evaluate_elbo", "load", "load_config", "load_data", "train"]
__version__ = "0.1.0"

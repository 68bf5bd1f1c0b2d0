"""Training the deep clustering network on fixed-length chunks, with early stopping and exact resume."""

from deepclust.training.config import TrainConfig
from deepclust.training.from_features import train
from deepclust.training.train import fit

__all__ = ["TrainConfig", "fit", "train"]

"""The deep clustering network, its loss, and model files."""

from deepclust.model.blstm import DeepClusteringNet, ModelConfig
from deepclust.model.checkpoint import LoadedModel, load_model, save_model
from deepclust.model.loss import deep_clustering_loss

__all__ = ["DeepClusteringNet", "ModelConfig", "LoadedModel", "load_model", "save_model", "deep_clustering_loss"]

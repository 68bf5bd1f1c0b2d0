"""Separation: k-means on embeddings, the model-based separator, and oracle masks."""

from deepclust.separation.kmeans import kmeans_sklearn, kmeans_torch
from deepclust.separation.oracle import (
    embeddings_from_ibm,
    ideal_binary_mask,
    ideal_binary_mask_estimates,
    ideal_ratio_mask_estimates,
)
from deepclust.separation.separator import Separator

__all__ = [
    "kmeans_sklearn",
    "kmeans_torch",
    "Separator",
    "ideal_binary_mask",
    "ideal_binary_mask_estimates",
    "ideal_ratio_mask_estimates",
    "embeddings_from_ibm",
]

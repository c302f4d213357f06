"""Embedding with a VAE, used like t-SNE or UMAP: :class:`VAEEmbedder`, a scikit-learn estimator.

Unlike t-SNE or UMAP the learned map is a deterministic function that embeds new data,
decodes embeddings back to data space (:meth:`VAEEmbedder.inverse_transform`) and
generates (:meth:`VAEEmbedder.sample`).
"""

from .estimator import VAEEmbedder
from .priors import MixturePrior

__all__ = ["VAEEmbedder", "MixturePrior"]

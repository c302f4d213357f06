"""Analysis of trained models, through the model protocol (any vaekit model).

- reconstructions: per-example NELBO, MSE, SSIM, image grids (:mod:`.reconstruction`, :mod:`.images`)
- generation at several temperatures (:mod:`.generation`)
- KL per latent and per dimension, active units (:mod:`.divergence`)
- linear / MLP probes from posterior means to labels (:mod:`.probes`)
- latent traversals (:mod:`.traversal`), white-noise receptive fields (:mod:`.receptive`),
  most exciting inputs (:mod:`.mei`); these four also on any block's output of a
  hierarchical VAE (``block="name"``; :func:`block_output`)
- relaxed discrete latents: simplex proximity, gradient variance, IGR-SB categories used (:mod:`.discrete`)
- :func:`analyze_model` runs all that apply (:func:`vaekit.runs.analyze_run` on a run directory,
  ``vaekit analyze RUN_DIR``)
"""

from ._common import block_names, block_output, block_outputs, decode_replaced
from .discrete import categories_used, discrete_diagnostics, gradient_variance, simplex_proximity
from .divergence import LatentStats, active_units, kl_statistics
from .generation import check_temperature, samples_at_temperatures
from .images import as_images, image_grid, save_image_grid
from .mei import MEIResult, NoInputDependence, most_exciting_input
from .probes import ProbeResult, probe_latents
from .receptive import spike_triggered_average
from .reconstruction import ReconstructionStats, reconstruction_stats, ssim
from .report import ANALYSES, EXTRA_ANALYSES, analyze_model
from .traversal import latent_traversal, principal_directions

__all__ = [
    "as_images", "image_grid", "save_image_grid", "LatentStats", "active_units", "kl_statistics",
    "samples_at_temperatures", "MEIResult", "NoInputDependence", "most_exciting_input", "ProbeResult", "probe_latents",
    "spike_triggered_average", "ReconstructionStats", "reconstruction_stats", "ssim", "ANALYSES", "EXTRA_ANALYSES",
    "analyze_model", "latent_traversal", "categories_used", "discrete_diagnostics",
    "gradient_variance", "simplex_proximity", "block_names", "block_output", "block_outputs", "decode_replaced",
    "check_temperature", "principal_directions",
]

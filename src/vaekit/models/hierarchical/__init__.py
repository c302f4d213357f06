"""Hierarchical VAEs composed of blocks (ladder and VDVAE-style top-down models, vector or spatial latents).

A model is an ordered list of :mod:`blocks <vaekit.models.hierarchical.blocks>` handed to
:class:`HierarchicalVAE`; presets build common architectures; :func:`draw_graph` renders
the block graph; :class:`Migration` loads weights trained elsewhere.
"""

from .blocks import Block, DualInputBlock, InputBlock, OutputBlock, SimpleBlock, TopSimpleBlock
from .generative import GenBlock, GenerativeBlock, Layer, ResidualGenBlock, SimpleGenBlock, TopGenBlock
from .graph import draw_graph, graph_layout
from .migration import Migration, MigrationReport, concat, migrate, transpose
from .model import HierarchicalVAE, Trace, layer_temperatures, linear_temperatures
from .presets import ladder_blocks, ladder_vae, small_vdvae, vdvae_blocks
from .source import from_python, load_function
from .topdown import LAYOUTS, TopDownBlock, parse_layer_string, vdvae, vdvae_spatial_blocks

__all__ = ["Block", "GenerativeBlock", "InputBlock", "SimpleBlock", "DualInputBlock", "TopSimpleBlock", "SimpleGenBlock",
           "GenBlock", "TopGenBlock", "ResidualGenBlock", "OutputBlock", "HierarchicalVAE", "Trace", "Layer", "ladder_vae",
           "ladder_blocks", "small_vdvae", "vdvae_blocks", "from_python", "load_function",
           "draw_graph", "graph_layout", "Migration", "MigrationReport", "migrate", "transpose", "concat",
           "TopDownBlock", "vdvae", "vdvae_spatial_blocks", "parse_layer_string", "LAYOUTS",
           "layer_temperatures", "linear_temperatures"]

"""Named migrations of other codebases' checkpoints (``vaekit migrate SRC --preset NAME``).

A :class:`MigrationPreset` turns a vaekit model into a :class:`~.migration.Migration` for
one foreign state-dict naming, after checking that the model has the blocks the naming
needs. The presets are registered by name in :data:`PRESETS`:

- ``"hvae-tdvae"``: the predecessor hVAE's TDVAE (``models/TDVAE.py`` of ``lacykaltgr/hvae``:
  an ``hVAE`` with ``input_block``, ``encoder.blocks``, ``generator.blocks`` and
  ``output_block``; keys in :data:`TDVAE_PREFIXES`) onto :func:`~.hvae_compat.tdvae`.

- ``"hvae-efficientvdvae"``: the predecessor hVAE's EfficientVDVAE (``models/EfficientVDVAE_migrate.py``:
  an ``hVAE`` of ``SimpleBlock``\\ s, a ``TopSimpleBlock`` and ``ResidualGenBlock``\\ s over
  ``ConvNet``, ``PoolLayer``, ``UnpooLayer`` and ``Conv2d``) onto
  :func:`~.hvae_compat_evdvae.efficient_vdvae`; keys by :func:`hvae_efficientvdvae_prefixes`.

A preset for another naming is a function ``model -> Migration`` registered with
:func:`register_preset`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..._checks import InvalidArgumentError
from ...nn import BottleneckBlock
from .blocks import InputBlock, OutputBlock, TopSimpleBlock
from .hvae_compat_evdvae import HVAEPool, HVAEResidualGenBlock, HVAEUnpool
from .migration import Migration, Source

__all__ = ["MigrationPreset", "PRESETS", "TDVAE_PREFIXES", "register_preset", "get_preset", "read_foreign_state_dict",
           "hvae_tdvae_migration", "hvae_efficientvdvae_prefixes", "hvae_efficientvdvae_migration"]


@dataclass(frozen=True)
class MigrationPreset:
    """A named foreign naming: how to map it onto a vaekit model.

    Attributes
    ----------
    name : str
        What ``--preset`` takes.
    summary : str
        One line: the foreign model and the vaekit model it maps onto.
    build : callable
        ``build(model) -> Migration``; raises ``ValueError`` naming what the model lacks.
    """

    name: str
    summary: str
    build: Callable[[nn.Module], Migration]

    def migration(self, model: nn.Module) -> Migration:
        """The mapping for ``model`` (an error naming the missing block when the model does not fit the preset)."""
        return self.build(model)


#: The registered presets, by name.
PRESETS: dict[str, MigrationPreset] = {}


def register_preset(preset: MigrationPreset) -> MigrationPreset:
    """Add a preset to :data:`PRESETS` (a name already taken is refused)."""
    if not isinstance(preset, MigrationPreset):
        raise InvalidArgumentError(f"preset must be a MigrationPreset, got {type(preset).__name__}")
    if preset.name in PRESETS:
        raise InvalidArgumentError(f"a migration preset named {preset.name!r} is already registered")
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> MigrationPreset:
    """The preset called ``name``, or an error listing the registered ones.

    >>> get_preset("hvae-tdvae").name
    'hvae-tdvae'
    >>> get_preset("vdvae")
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: preset must be one of ['hvae-efficientvdvae', 'hvae-tdvae'], got 'vdvae'
    """
    if name not in PRESETS:
        raise InvalidArgumentError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]


_NESTED = ("state_dict", "model_state_dict", "model")


def read_foreign_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A foreign checkpoint's tensors: a ``.safetensors`` file, or a ``torch.save``\\ d dict read with ``weights_only=True``.

    A ``torch.save`` file may hold the state dict itself or a dict with it under one of
    ``"state_dict"``, ``"model_state_dict"``, ``"model"`` (other entries, such as an
    optimizer's state, are ignored). Nothing is unpickled beyond tensors and containers.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file holds no mapping of names to tensors (the message says what it holds).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"foreign checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with code in it, or not a torch file
        raise ValueError(f"{path} cannot be read as a torch.save file of tensors (weights_only=True): {e}") from None

    def tensors(d: object) -> bool:
        return isinstance(d, Mapping) and bool(d) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in d.items())

    if tensors(obj):
        return dict(obj)  # type: ignore[arg-type]
    if isinstance(obj, Mapping):
        for key in _NESTED:
            if tensors(obj.get(key)):
                return dict(obj[key])
    what = f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else type(obj).__name__
    raise ValueError(f"{path} holds {what}, not a state dict (a dict of names to tensors, or one under "
                     f"{', '.join(map(repr, _NESTED))})")


def _require(model: nn.Module, preset: str, blocks: Mapping[str, str], hint: str) -> None:
    """Every block the preset maps, as a submodule of ``model.blocks`` with the expected attribute."""
    have = getattr(model, "blocks", None)
    for block, attr in blocks.items():
        if not isinstance(have, nn.ModuleDict) or block not in have or not isinstance(getattr(have[block], attr, None), nn.Module):
            raise ValueError(f"preset {preset!r} maps onto a model with block {block!r} holding {attr!r}, which "
                             f"{type(model).__name__} lacks; {hint}")


#: hVAE's TDVAE: vaekit key prefix -> hVAE key prefix. hVAE (``src/hvae/hvae.py``, ``src/utils.py`` at
#: commit 00583f6) keeps the blocks between its input and output blocks in two ``OrderedModuleDict``\ s
#: whose modules sit in a ``ModuleList`` ``_values`` in block order (encoder: ``hiddens``; generator:
#: ``y``, ``y_concat``, ``z``); every net is a ``SerializableSequential`` around an ``MLPNet``, which puts
#: its ``nn.Linear`` layers at the even indices of ``mlp_layers``, as vaekit's MLP does in its Sequential.
TDVAE_PREFIXES = {
    "blocks.hiddens.net.": "encoder.blocks._values.0.net.0.mlp_layers.",
    "blocks.y.net.": "generator.blocks._values.0.posterior_net.0.mlp_layers.",
    "blocks.y_concat.net.": "generator.blocks._values.1.net.0.mlp_layers.",
    "blocks.z.prior_net.": "generator.blocks._values.2.prior_net.0.mlp_layers.",
    "blocks.z.posterior_net.": "generator.blocks._values.2.posterior_net.0.mlp_layers.",
    "blocks.x_hat.net.": "output_block.prior_net.0.0.mlp_layers.",
}


def hvae_tdvae_migration(model: nn.Module) -> Migration:
    """The mapping of hVAE's TDVAE state dict onto :func:`~.hvae_compat.tdvae` (its sizes must match the checkpoint's)."""
    needs = {"hiddens": "net", "y": "net", "y_concat": "net", "z": "prior_net", "x_hat": "net"}
    _require(model, "hvae-tdvae", needs, "build it with vaekit.models.hierarchical.hvae_compat.tdvae(...)")
    return Migration(TDVAE_PREFIXES)


register_preset(MigrationPreset(
    "hvae-tdvae", "hVAE's TDVAE (lacykaltgr/hvae models/TDVAE.py) onto vaekit.models.hierarchical.hvae_compat.tdvae",
    hvae_tdvae_migration))


#: hVAE's ``ConvNet.convs``: the convolutions sit at the odd indices (each after its activation), vaekit's
#: :class:`~vaekit.nn.BottleneckBlock` names them ``c1 .. c4``.
_CONVNET = {"c1.": "convs.1.", "c2.": "convs.3.", "c3.": "convs.5.", "c4.": "convs.7."}


def _net_prefixes(net: nn.Module, ours: str, theirs: str) -> dict[str, str]:
    """Prefixes of one network of hVAE's EfficientVDVAE: vaekit's module at ``ours`` -> hVAE's at ``theirs``.

    hVAE wraps a lone module (``Conv2d``, ``PoolLayer``, ``UnpooLayer``, ``ConvNet``) in a
    ``SerializableSequential`` (``get_net``), hence its ``0.``; a ``Sequential`` of ``ConvNet``\\ s
    keeps its own indices. vaekit's input and output convolutions may sit beside modules without
    tensors (``ZeroPad2d``, :class:`~.hvae_compat_evdvae.HVAEScalePixels`,
    :class:`~.hvae_compat_evdvae.HVAEMoLLayout`).
    """
    if isinstance(net, BottleneckBlock):
        return {ours + k: theirs + "0." + v for k, v in _CONVNET.items()}
    if isinstance(net, nn.Conv2d):
        return {ours: theirs + "0."}
    if isinstance(net, (HVAEPool, HVAEUnpool)):
        return {ours + "conv.": theirs + "0.ops.0."}
    if isinstance(net, nn.Sequential) and all(isinstance(m, BottleneckBlock) for m in net):
        return {ours + f"{m}." + k: theirs + f"{m}." + v for m in range(len(net)) for k, v in _CONVNET.items()}
    if isinstance(net, nn.Sequential):  # the convolution beside modules without tensors (padding, scaling, MoL layout)
        convs = [i for i, m in enumerate(net) if isinstance(m, nn.Conv2d)]
        if len(convs) == 1 and all(not m.state_dict() for i, m in enumerate(net) if i != convs[0]):
            return {ours + f"{convs[0]}.": theirs + "0."}
    raise ValueError(f"preset 'hvae-efficientvdvae' has no mapping for the {type(net).__name__} at {ours!r}; build the model "
                     "with vaekit.models.hierarchical.hvae_compat_evdvae.efficient_vdvae(...)")


def _squeeze_batch(key: str) -> Source:
    """hVAE's ``trainable_h`` (1, C, H, W) as vaekit's per-example start state (C, H, W); another shape is refused."""
    def squeeze(sd: Mapping[str, Tensor]) -> Tensor:
        t = sd[key]
        if t.dim() != 4 or t.shape[0] != 1:
            raise ValueError(f"{key} has shape {tuple(t.shape)}, but hVAE's TopSimpleBlock stores trainable_h as (1, C, H, W)")
        return t[0]
    return squeeze


def hvae_efficientvdvae_prefixes(model: nn.Module) -> dict[str, Source]:
    """The key mapping of hVAE's EfficientVDVAE state dict onto ``model`` (built by :func:`~.hvae_compat_evdvae.efficient_vdvae`).

    hVAE's ``hVAE`` (``src/hvae/hvae.py`` at commit 00583f6) keeps its first block as
    ``input_block``, its last as ``output_block`` (an ``OutputBlock``, whose network is its
    ``prior_net``), and the blocks between in two ``OrderedModuleDict``\\ s whose modules sit in
    a ``ModuleList`` ``_values``: ``encoder.blocks`` up to the ``TopSimpleBlock`` ``top`` and
    ``generator.blocks`` from it on. The blocks of ``model`` are walked in order and each is
    mapped by kind:

    ========================== =============================================================
    vaekit                     hVAE (under ``encoder.blocks._values.{k}.`` or ``generator...``)
    ========================== =============================================================
    ``net.{m}.c1`` .. ``c4``   ``net.{m}.convs.1``, ``3``, ``5``, ``7`` (``ConvNet``\\ s)
    ``net`` (skip, 1x1)        ``net.0``
    ``net.conv`` (pool/unpool) ``net.0.ops.0``; the unpool's ``net.scale_bias``: ``net.0.scale_bias``
    ``h0`` (top)               ``trainable_h`` (1, C, H, W), its batch axis dropped
    ``prior_net``,             ``prior_net.0``, ``posterior_net.0`` (``ConvNet``\\ s),
    ``posterior_net``,         ``net.{m}`` (the residual ``ConvNet``\\ s), ``z_projection.0``,
    ``residual_net``, ...      ``prior_layer.0``, ``posterior_layer.0``
    ========================== =============================================================
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleDict) or "top" not in blocks or not isinstance(blocks["top"], TopSimpleBlock) or not any(
            isinstance(b, HVAEResidualGenBlock) for b in blocks.values()):
        raise ValueError(f"preset 'hvae-efficientvdvae' maps onto a model with a TopSimpleBlock 'top' and HVAEResidualGenBlocks, "
                         f"which {type(model).__name__} lacks; build it with "
                         "vaekit.models.hierarchical.hvae_compat_evdvae.efficient_vdvae(...)")
    out: dict[str, Source] = {}
    side, k = "encoder", 0
    for name, b in blocks.items():
        ours = f"blocks.{name}."
        if isinstance(b, InputBlock):
            out.update(_net_prefixes(b.net, ours + "net.", "input_block.net."))
            continue
        if isinstance(b, OutputBlock):
            out.update(_net_prefixes(b.net, ours + "net.", "output_block.prior_net."))
            continue
        if name == "top":
            side, k = "generator", 0
        theirs = f"{side}.blocks._values.{k}."
        k += 1
        if isinstance(b, TopSimpleBlock):
            out[ours + "h0"] = _squeeze_batch(theirs + "trainable_h")
        elif isinstance(b, HVAEResidualGenBlock):
            for attr, their in (("prior_net", "prior_net."), ("posterior_net", "posterior_net."),
                                ("residual_net", "net."), ("z_projection", "z_projection."), ("prior_layer", "prior_layer."),
                                ("posterior_layer", "posterior_layer.")):
                out.update(_net_prefixes(getattr(b, attr), ours + attr + ".", theirs + their))
        else:
            out.update(_net_prefixes(b.net, ours + "net.", theirs + "net."))
            if isinstance(b.net, HVAEUnpool):
                out[ours + "net.scale_bias"] = theirs + "net.0.scale_bias"
    return out


def hvae_efficientvdvae_migration(model: nn.Module) -> Migration:
    """The mapping of hVAE's EfficientVDVAE state dict onto :func:`~.hvae_compat_evdvae.efficient_vdvae` (sizes must match)."""
    return Migration(hvae_efficientvdvae_prefixes(model))


register_preset(MigrationPreset(
    "hvae-efficientvdvae", "hVAE's EfficientVDVAE (lacykaltgr/hvae models/EfficientVDVAE_migrate.py) onto "
    "vaekit.models.hierarchical.hvae_compat_evdvae.efficient_vdvae", hvae_efficientvdvae_migration))

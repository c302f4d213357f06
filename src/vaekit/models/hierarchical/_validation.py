"""The rules of a block graph, checked when a :class:`~vaekit.models.hierarchical.HierarchicalVAE` is built."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from ..._checks import InvalidArgumentError
from .blocks import Block, OutputBlock

__all__ = ["validate_graph", "check_shapes"]


def validate_graph(blocks: list[Block]) -> int:
    """Check the block list; return the index where the generator starts."""
    if not blocks:
        raise ValueError("blocks must be a non-empty list: an input block, generative blocks and an output block")
    for i, b in enumerate(blocks):
        if not isinstance(b, Block):
            raise TypeError(f"blocks[{i}] must be a vaekit.models.hierarchical.Block, got {type(b).__name__}")
    seen: dict[str, int] = {}
    for i, b in enumerate(blocks):
        if b.name in seen:
            raise ValueError(f"block name {b.name!r} is used twice (blocks[{seen[b.name]}] and blocks[{i}]); names must be unique")
        seen[b.name] = i
    first = blocks[0]
    if first.references != ("x",):
        raise ValueError(f"the first block {first.name!r} must read the data 'x' (e.g. an InputBlock), but it reads "
                         f"{list(first.references)}")
    if not isinstance(blocks[-1], OutputBlock):
        raise ValueError(f"the last block must be an OutputBlock (the distribution over x), got {blocks[-1].name!r} "
                         f"({type(blocks[-1]).__name__})")
    gens = [i for i, b in enumerate(blocks) if b.generative]
    if not gens:
        raise ValueError("blocks need at least one generative block (GenBlock, TopGenBlock, ResidualGenBlock, SimpleGenBlock)")
    # the generator starts at the first generative block or top block (a block with no inputs, e.g. TopSimpleBlock)
    split = min(gens[0], next((i for i, b in enumerate(blocks) if not b.references), gens[0]))
    for i, b in enumerate(blocks):
        if isinstance(b, OutputBlock) and i != len(blocks) - 1:
            raise ValueError(f"OutputBlock {b.name!r} is at index {i}; only the last block may be an OutputBlock")
        for ref in b.references:
            if ref == "x":
                if i >= split:
                    raise ValueError(f"block {b.name!r} in the generator reads the data 'x'; only encoder blocks "
                                     f"(before the first generative block {blocks[split].name!r}) may")
                continue
            if ref not in seen:
                raise ValueError(f"block {b.name!r} reads {ref!r}, but no block is named {ref!r}; "
                                 f"names: {['x', *seen]}")
            if seen[ref] >= i:
                raise ValueError(f"block {b.name!r} (index {i}) reads {ref!r}, which comes later (index {seen[ref]}); "
                                 "a block may read only earlier blocks")
            is_condition = b.generative and ref == getattr(b, "condition", None)
            if i >= split and seen[ref] < split and not is_condition:
                raise ValueError(f"generator block {b.name!r} reads the encoder output {ref!r} as an input; the generator "
                                 "may read encoder outputs only as a generative block's condition (so it can sample without x)")
    return split


def _shape(t: object) -> object:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def _run(block: Block, computed: dict[str, torch.Tensor], call: Callable[[], Any]) -> Any:
    """``call()``, with an error naming the block and the shapes it read when its networks cannot run on them."""
    try:
        return call()
    except NotImplementedError:
        raise
    except (RuntimeError, ValueError, IndexError) as e:
        read = {r: _shape(computed[r])[1:] for r in block.references if r in computed}
        raise InvalidArgumentError(f"block {block.name!r} ({type(block).__name__}) cannot run on what it reads "
                                   f"(shapes per example: {read}): {e}") from e


def _check_layer(block: Any, layer: Any, n: int) -> None:
    """The latent, prior and posterior of a generative block all have shape (n, *latent_shape)."""
    want = (n, *block.latent_shape)
    parts = {"latent": tuple(layer.z.shape), "prior": tuple(layer.prior.batch_shape + layer.prior.event_shape)}
    if layer.posterior is not None:
        parts["posterior"] = tuple(layer.posterior.batch_shape + layer.posterior.event_shape)
    for what, got in parts.items():
        if got != want:
            raise InvalidArgumentError(f"block {block.name!r} ({type(block).__name__}) declares a latent of shape "
                                       f"{block.latent_shape} (latent_features={list(block.latent_shape) if len(block.latent_shape) > 1 else block.latent_features}) "
                                       f"but its {what} has shape {got[1:]} per example; they must match")


def _copy(model: torch.nn.Module, device: str | None) -> torch.nn.Module:
    """A deep copy of ``model`` whose tensors are fresh: empty ones on ``device`` (``"meta"``), or clones (``None``).

    Every parameter, buffer and tensor attribute of every submodule (e.g. the computed ``weight`` of
    ``torch.nn.utils.weight_norm``) is swapped through ``deepcopy``'s memo, so a meta copy allocates
    no storage and nothing the copy does reaches the original's tensors or attributes.
    """
    def fresh(t: torch.Tensor) -> torch.Tensor:
        new = torch.empty_like(t, device=device) if device is not None else t.detach().clone()
        return torch.nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, torch.nn.Parameter) else new

    memo: dict[int, Any] = {}
    for m in model.modules():
        for t in (*m._parameters.values(), *m._buffers.values(), *vars(m).values()):
            if isinstance(t, torch.Tensor) and id(t) not in memo:
                memo[id(t)] = fresh(t)
    return copy.deepcopy(model, memo)


def check_shapes(model: Any, n: int = 2) -> None:
    """Run the blocks once on ``n`` zero examples and check every shape, naming the block on a mismatch.

    The dry pass runs on a deep copy of the model, so nothing of the model's own modules
    changes: not a parameter, buffer or attribute (a data-initialised block such as an
    ActNorm keeps waiting for its first real batch), nor the random state. The copy is
    first made on PyTorch's ``meta`` device (shapes only, no storage and no arithmetic);
    where a block cannot run there (an operation without a meta kernel, a data-dependent
    branch), the pass runs once more on a copy with real tensors, which also gives the
    genuine error. It runs in eval mode without gradients. The cost is the copy and the
    pass: a fraction of a second for the small models of the tests, about a second for
    the 39M-parameter CIFAR-10 VDVAE (``benchmarks/construction_check.py`` measures it).

    Raises
    ------
    vaekit.InvalidArgumentError
        When a block's network cannot run on the shapes it reads (the message names the
        block and those shapes), when a latent layer's prior, posterior or latent differ
        from its declared ``latent_shape``, or when the output block's size does not fit
        the likelihood and ``data_shape``.
    """
    try:
        _dry_pass(_copy(model, "meta"), n, "meta")
    except Exception:  # noqa: BLE001 - whatever failed on meta is decided by the real pass below
        _dry_pass(_copy(model, None), n, None)


def _dry_pass(model: Any, n: int, device: str | None) -> None:
    """The posterior pass of :func:`check_shapes` on ``n`` zero examples (on a copy of the model)."""
    from ...nn import eval_mode

    ref = next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None)
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    with torch.no_grad(), torch.random.fork_rng(devices=[]), eval_mode(model):
        computed: dict[str, torch.Tensor] = {"x": torch.zeros(n, *model.data_shape, dtype=dtype, device=device)}
        for block in model.encoder_blocks:
            computed[block.name] = _run(block, computed, lambda: block.compute(computed, n))
        for block in model.generator_blocks:
            if block.generative:
                try:
                    layer = _run(block, computed, lambda: block.posterior_step(computed, n))
                except NotImplementedError:  # a block without posterior() still samples: check the prior's shapes
                    layer = _run(block, computed, lambda: block.prior_step(computed, n))
                _check_layer(block, layer, n)
                computed[block.name] = layer.output
            else:
                computed[block.name] = _run(block, computed, lambda: block.compute(computed, n))
        out = model.output_block
        try:
            model.data_distribution(computed[out.name], (n,))
        except (RuntimeError, ValueError) as e:
            raise InvalidArgumentError(f"{e} (it reads {out.inputs[0]!r} of shape {_shape(computed[out.inputs[0]])[1:]} "
                                       f"per example and returns shape {_shape(computed[out.name])[1:]}; data_shape is "
                                       f"{tuple(model.data_shape)})") from e

"""The rules of a block graph, checked when a :class:`~vaekit.models.hierarchical.HierarchicalVAE` is built."""

from __future__ import annotations

from .blocks import Block, OutputBlock

__all__ = ["validate_graph"]


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

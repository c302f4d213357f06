"""Render a hierarchical VAE's block graph with matplotlib (no graphviz needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .model import HierarchicalVAE

__all__ = ["draw_graph", "graph_layout"]

_COLORS = {"data": "#dddddd", "encoder": "#cfe2f3", "generative": "#f9cb9c", "generator": "#d9ead3", "output": "#ead1dc"}


def graph_layout(model: HierarchicalVAE) -> tuple[dict[str, tuple[float, float, str]], list[tuple[str, str, str]]]:
    """Node positions and edges of the block graph.

    Encoder blocks stand in the left column, bottom-up from the data ``x``; generator
    blocks in the right column, top-down to the output block.

    Returns
    -------
    nodes : dict of name to (x, y, kind)
        ``kind`` is one of ``"data"``, ``"encoder"``, ``"generative"``, ``"generator"``, ``"output"``.
    edges : list of (source, target, kind)
        ``kind`` is ``"input"`` or ``"condition"``.

    Examples
    --------
    >>> from vaekit.models.hierarchical.presets import ladder_vae
    >>> nodes, edges = graph_layout(ladder_vae([4], hidden=(3, 2), latent=(2, 1)))
    >>> nodes["z2"], ("h2", "z2", "condition") in edges
    ((2.0, 2.0, 'generative'), True)
    """
    if not isinstance(model, HierarchicalVAE):
        raise TypeError(f"the block graph exists only for a HierarchicalVAE, got {type(model).__name__}; "
                        "models built from blocks are vaekit.models.hierarchical.HierarchicalVAE")
    enc, gen = model.encoder_blocks, model.generator_blocks
    nodes: dict[str, tuple[float, float, str]] = {"x": (0.0, -1.0, "data")}
    for i, b in enumerate(enc):
        nodes[b.name] = (0.0, float(i), "encoder")
    for j, b in enumerate(gen):
        kind = "output" if j == len(gen) - 1 else "generative" if b.generative else "generator"
        nodes[b.name] = (2.0, float(len(gen) - 1 - j), kind)
    edges = []
    for b in [*enc, *gen]:
        edges += [(i, b.name, "input") for i in b.inputs]
        cond = getattr(b, "condition", None) if b.generative else None
        if cond:
            edges.append((cond, b.name, "condition"))
    return nodes, edges


def draw_graph(model: HierarchicalVAE, path: str | os.PathLike[str], *, title: str | None = None, dpi: int = 120) -> Path:
    """Draw the block graph to an image file (PNG, SVG or PDF by extension).

    Boxes are blocks (generative blocks highlighted, with their latent size or C x H x W shape), solid arrows
    are inputs and dashed arrows the posterior conditions.

    Parameters
    ----------
    model : HierarchicalVAE
    path : path
        Output file; its directory is created.
    title : str, optional
    dpi : int

    Returns
    -------
    Path of the written file.

    Raises
    ------
    TypeError
        For a model that is not built from blocks.
    """
    nodes, edges = graph_layout(model)
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch, Patch

    ys = [y for _, y, _ in nodes.values()]
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.9 * (max(ys) - min(ys) + 1)))
    blocks = dict(model.blocks.items())
    for name, (x, y, kind) in nodes.items():
        label = name if name == "x" else f"{name}\n{type(blocks[name]).__name__}"
        if kind == "generative":
            shape = blocks[name].latent_shape
            label += f" ({shape[0]})" if len(shape) == 1 else f" ({'x'.join(map(str, shape))})"
        ax.add_patch(FancyBboxPatch((x - 0.7, y - 0.3), 1.4, 0.6, boxstyle="round,pad=0.02", fc=_COLORS[kind],
                                    ec="#b45f06" if kind == "generative" else "#444444", lw=2.0 if kind == "generative" else 1.0))
        ax.text(x, y, label, ha="center", va="center", fontsize=8)
    for src, dst, kind in edges:
        (x0, y0, _), (x1, y1, _) = nodes[src], nodes[dst]
        style: dict[str, Any] = {"arrowstyle": "-|>", "color": "#b45f06" if kind == "condition" else "#333333",
                                 "linestyle": "--" if kind == "condition" else "-", "shrinkA": 14, "shrinkB": 14,
                                 "connectionstyle": "arc3,rad=0.25" if x0 == x1 and abs(y1 - y0) > 1 else "arc3"}
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=style)
    ax.set_xlim(-1.0, 3.0)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.axis("off")
    ax.text(0, max(ys) + 0.45, "encoder (bottom-up)", ha="center", fontsize=9, style="italic")
    ax.text(2, max(ys) + 0.45, "generator (top-down)", ha="center", fontsize=9, style="italic")
    handles = [Patch(fc=_COLORS[k], ec="#444444", label=k) for k in ("encoder", "generative", "generator", "output")]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, -0.02), ncol=4, fontsize=7, frameon=False)
    if title:
        ax.set_title(title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return out

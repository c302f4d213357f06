"""The neighbour-embedding term of :class:`~vaekit.embedding.VAEEmbedder`: t-SNE on sampled k-NN pairs.

Before training, every training row gets its ``n_neighbors`` nearest neighbours among
the training rows (exact up to 20,000 rows, an inverted-file search above), found in the space of the inputs' first 50 principal components
(:func:`knn_graph`). Each training batch is then half *anchors* (the epoch's random order)
and half *partners*, one neighbour of each anchor drawn from its list, uniformly or, with
``neighbor_graph="fuzzy"``, by UMAP's fuzzy membership (:meth:`NeighborTerm.expand`,
:func:`membership_weights`). The term added to the batch's loss is t-SNE's
``KL(P || Q)`` (van der Maaten & Hinton 2008) where ``P`` is uniform over the batch's
anchor-partner pairs (both orders) and ``Q`` are the Student-t affinities of the
embeddings, normalised over all ordered pairs of the batch (:func:`pair_kl`). Sampling
the pairs of a k-NN graph and normalising over the batch is the parametric, edge-sampled
form of t-SNE studied by Damrich et al. (2023, "From t-SNE to UMAP with contrastive
learning"); unlike affinities computed within a random batch, the attracted pairs are true
neighbours in the whole data set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_choice

__all__ = ["knn_graph", "pair_kl", "fuzzy_cross_entropy", "pca_projection", "NeighborTerm", "N_PCA", "N_PCA_ROWS",
           "Q_SCALE", "EXACT_BELOW", "UMAP_A", "UMAP_B", "N_NEGATIVES", "LOSSES", "draw_negatives",
           "MIN_TERM_FEATURES", "EARLY_ATTRACTION_FEATURES", "EARLY_FRACTION", "early_exaggeration", "term_weight",
           "nearest_reference", "neighbor_median", "refine_embedding", "optimize_layout", "REFINE_LR", "REFINE_NEGATIVES",
           "MAX_TRANSFORM_STEPS", "Layout", "umap_layout", "KNN_MEMORY", "GRAPHS", "LAYOUT_METHODS", "membership_weights",
           "graph_weights", "fuzzy_union", "edge_layout", "similarity_align", "EDGE_CHUNKS"]

#: Inputs are projected on at most this many principal components before neighbours are searched.
N_PCA = 50
#: Rows used to estimate the principal components.
N_PCA_ROWS = 5000
#: Embeddings are multiplied by this before their Student-t affinities are taken: the VAE's prior keeps them
#: near unit scale, where a Student-t kernel is almost Gaussian and cannot separate clusters.
Q_SCALE = 3.0
#: ``a`` of UMAP's similarity curve ``1 / (1 + a d^(2b))`` for its defaults ``min_dist=0.1``, ``spread=1``
#: (the least-squares fit of ``umap.umap_.find_ab_params``).
UMAP_A = 1.577
#: ``b`` of UMAP's similarity curve (see :data:`UMAP_A`).
UMAP_B = 0.8951
#: Negative samples per anchor of :func:`fuzzy_cross_entropy` (UMAP's ``negative_sample_rate``).
N_NEGATIVES = 5
#: Added to the squared distances of :func:`fuzzy_cross_entropy`'s repulsion (UMAP's 0.001 in ``1 / (0.001 + d^2)``),
#: which keeps it finite at distance 0 and its gradient smooth and non-zero near it.
MIN_SQ_DISTANCE = 1e-3
#: The term's weight is ``neighbor_weight`` times the number of input features, but at least this many: the ELBO it
#: balances grows with the features, plus the KL of the latent, which does not; with 3 features (a swiss roll) the
#: plain product left the ELBO to fold the sheet (10-NN accuracy along the suite's roll 0.80 instead of 0.99).
MIN_TERM_FEATURES = 50
#: Early exaggeration: during the first :data:`EARLY_FRACTION` of a fit's epochs the attraction of the term is weighted
#: as if the data had at least this many features (times ``max(1, 600 / max(n_features, 50))``: 12 for up to 50
#: features, none from 600 on), so that the neighbour graph, not the ELBO, lays the map out first.
EARLY_ATTRACTION_FEATURES = 600
#: The share of a fit's epochs with early exaggeration.
EARLY_FRACTION = 0.25
#: The neighbour losses ``neighbor_loss`` accepts.
LOSSES = ("tsne", "umap")
#: The neighbour graphs ``neighbor_graph`` accepts: uniform k-NN lists, or UMAP's fuzzy memberships
#: (:func:`membership_weights`).
GRAPHS = ("knn", "fuzzy")
#: How ``fit`` moves the training layout after training (``layout_method``): "umap" (:func:`umap_layout`),
#: "neighbor_loss" (:func:`optimize_layout`), or "auto" (the first below 10,000 rows, the second from them on).
LAYOUT_METHODS = ("auto", "umap", "neighbor_loss")
#: Bisection steps of :func:`membership_weights`' search for each row's bandwidth.
MEMBERSHIP_ITERS = 64
#: :func:`membership_weights`' floor under ``sigma``, times the row's mean distance (UMAP's ``MIN_K_DIST_SCALE``).
MIN_SIGMA_SCALE = 1e-3
#: Query rows per block of the exact neighbour search (a block's distances take KNN_BLOCK * n floats).
KNN_BLOCK = 1024


#: Adam's initial learning rate (in the units of ``Q_SCALE * z``) of the local optimisation of :func:`refine_embedding`;
#: it decays linearly to ``REFINE_LR / steps`` at the last step.
REFINE_LR = 0.5
#: Training embeddings each step of :func:`refine_embedding` repels every row from (the same ones for every row).
REFINE_NEGATIVES = 64
#: Rows ``VAEEmbedder.transform`` passes to :func:`refine_embedding` at once (each row's optimisation is independent).
REFINE_BLOCK = 4096
#: The most steps ``VAEEmbedder(transform_steps=...)`` accepts (each step is a pass over the rows' neighbours).
MAX_TRANSFORM_STEPS = 100_000
#: Float32 numbers of :func:`nearest_reference`'s distance block (64 MiB): fewer query rows per block as the
#: reference grows.
KNN_MEMORY = 2**24


#: Groups of simultaneous updates per epoch of :func:`edge_layout`.
EDGE_CHUNKS = 8

#: Up to this many rows the neighbour search is exact; above it, an inverted-file search (:func:`knn_graph`).
EXACT_BELOW = 20000
#: Lloyd iterations of the inverted file's k-means.
KMEANS_ITERS = 8


@torch.no_grad()
def knn_graph(y: Tensor, k: int, *, exact_below: int = EXACT_BELOW, seed: int = 0) -> Tensor:
    """The ``k`` nearest neighbours (squared Euclidean, self excluded) of every row of ``y``.

    Up to ``exact_below`` rows the search is exact, O(n^2 d) in blocks of :data:`KNN_BLOCK`
    rows. Above it, an inverted file: k-means (``round(sqrt(n))`` centroids,
    :data:`KMEANS_ITERS` Lloyd steps from rows drawn with ``seed``) partitions the rows, and
    the rows of each cell search exactly among the rows of the ``ceil(cells / 10)`` cells
    whose centroids are nearest to their own (more cells when those hold fewer than ``k + 1``
    rows). That costs about a tenth of the exact search; on 54,000 MNIST images (50 principal
    components) it took 2.5 s on one core against 14 s, and found 97% of the exact 15
    nearest neighbours (the others are the next-nearest ones).

    Parameters
    ----------
    y : Tensor of shape (n, d)
    k : int
        Neighbours per row, ``1 <= k < n``.
    exact_below : int
        Largest ``n`` searched exactly.
    seed : int
        Seeds the k-means initialisation (the result is deterministic in it).

    Returns
    -------
    Tensor of shape (n, k), int64
        Row indices, nearest first.

    Examples
    --------
    >>> knn_graph(torch.tensor([[0.0], [1.0], [3.0], [3.5]]), 1).flatten().tolist()
    [1, 0, 3, 2]
    """
    n = y.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k = {k} neighbours need 1 <= k < n_rows = {n}")
    y = y.float()
    if n <= exact_below:
        return _search(y, torch.arange(n, device=y.device), torch.arange(n, device=y.device), k)
    cells, centroids = _kmeans(y, max(1, round(math.sqrt(n))), seed)
    order = torch.argsort(cells, stable=True)
    counts = torch.bincount(cells, minlength=len(centroids))
    members = torch.split(order, counts.tolist())
    n_probe = math.ceil(len(centroids) / 10)
    near = torch.cdist(centroids, centroids).argsort(1).tolist()
    out = torch.empty(n, k, dtype=torch.long, device=y.device)
    for cell, queries in enumerate(members):
        if len(queries) == 0:
            continue
        probe, size = [], 0
        for other in near[cell]:
            probe.append(other)
            size += len(members[other])
            if len(probe) >= n_probe and size > k:
                break
        out[queries] = _search(y, queries, torch.cat([members[c] for c in probe]), k)
    return out


def _search(y: Tensor, queries: Tensor, candidates: Tensor, k: int) -> Tensor:
    """For each row ``queries[i]`` of ``y``, its ``k`` nearest rows among ``candidates`` (itself excluded)."""
    out = torch.empty(len(queries), k, dtype=torch.long, device=y.device)
    cand, sq = y[candidates], y[candidates].square().sum(1)
    for start in range(0, len(queries), KNN_BLOCK):
        q = queries[start:start + KNN_BLOCK]
        # |y_q|^2 is the same along a row of the block and does not change its order: left out
        dist = torch.addmm(sq[None, :], y[q], cand.T, alpha=-2.0)
        dist.masked_fill_(candidates[None, :] == q[:, None], math.inf)
        out[start:start + len(q)] = candidates[torch.topk(dist, k, dim=1, largest=False).indices]
    return out


def _kmeans(y: Tensor, n_clusters: int, seed: int) -> tuple[Tensor, Tensor]:
    """Cell of every row and the centroids after :data:`KMEANS_ITERS` Lloyd steps (empty cells keep their centroid)."""
    start = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n_clusters].to(y.device)
    centroids = y[start].clone()

    def assign() -> Tensor:
        return torch.addmm(centroids.square().sum(1)[None, :], y, centroids.T, alpha=-2.0).argmin(1)

    for _ in range(KMEANS_ITERS):
        cells = assign()
        counts = torch.bincount(cells, minlength=n_clusters)
        sums = torch.zeros_like(centroids).index_add_(0, cells, y)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return assign(), centroids


def pair_kl(z: Tensor, n_pairs: int, exaggeration: float = 1.0) -> Tensor:
    r"""t-SNE's ``KL(P || Q)`` for a batch whose row ``i < n_pairs`` is paired with row ``i + n_pairs``.

    ``P`` puts mass :math:`1 / (2m)` on each of the ``m = n_pairs`` pairs in both orders;
    :math:`q_{ij} = w_{ij} / Z` with :math:`w_{ij} = (1 + \|z_i - z_j\|^2)^{-1}` and
    :math:`Z = \sum_{k \ne l} w_{kl}` over all ordered pairs of distinct rows of the batch. So
    the value is :math:`\operatorname{mean}_i \log(1 + \|z_i - z_{i+m}\|^2) + \log Z - \log(2m)`,
    which is >= 0. Its gradient is t-SNE's, computed in closed form (a few passes over the
    batch's ``batch^2`` affinities instead of autograd's many):
    :math:`\partial / \partial z_i` of :math:`\log Z` is
    :math:`-(4 / Z) \sum_j w_{ij}^2 (z_i - z_j)`, and each pair adds
    :math:`\pm (2 / m)(z_i - z_{i+m}) / (1 + \|z_i - z_{i+m}\|^2)`.

    Parameters
    ----------
    z : Tensor of shape (batch, n_components)
        ``batch >= 2 * n_pairs``; rows beyond ``2 * n_pairs`` only enter the normalisation.
    n_pairs : int
    exaggeration : float, default=1.0
        Multiplies the attraction, the first term of the value and the pairs' share of the
        gradient (t-SNE's early exaggeration, which multiplies ``P``); above 1 the value is no
        longer a KL divergence and may be negative.

    Returns
    -------
    Tensor of shape ()

    Examples
    --------
    >>> float(pair_kl(torch.tensor([[0.0], [5.0]]), 1))  # one pair: P = Q
    0.0
    """
    return _PairKL.apply(z, int(n_pairs), float(exaggeration))


class _PairKL(torch.autograd.Function):
    """:func:`pair_kl` with its closed-form gradient."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, m: int, exaggeration: float) -> Tensor:
        sq = z.square().sum(1)
        # 1 / (1 + squared distances), from the Gram matrix, zero on the diagonal
        w = torch.addmm(sq[:, None] + sq[None, :], z, z.T, alpha=-2.0).clamp_min_(0.0).add_(1.0).reciprocal_()
        w.fill_diagonal_(0.0)
        total = w.sum()
        pair_sq = (z[:m] - z[m:2 * m]).square().sum(1)
        ctx.save_for_backward(z, w, total, pair_sq)
        ctx.m, ctx.exaggeration = m, exaggeration
        return exaggeration * torch.log1p(pair_sq).mean() + torch.log(total) - math.log(2 * m)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None]:
        z, w, total, pair_sq = ctx.saved_tensors
        m = ctx.m
        w2 = w * w
        grad = (w2 @ z - w2.sum(1, keepdim=True) * z) * (4.0 / total)
        pull = (z[:m] - z[m:2 * m]) * ((2.0 * ctx.exaggeration / m) / (1.0 + pair_sq))[:, None]
        grad[:m] += pull
        grad[m:2 * m] -= pull
        return grad_out * grad, None, None


def fuzzy_cross_entropy(z: Tensor, n_pairs: int, negatives: Tensor, exaggeration: float = 1.0) -> Tensor:
    r"""UMAP's fuzzy-set cross-entropy with negative sampling, for anchors ``z[:n_pairs]`` and partners ``z[n_pairs:2 n_pairs]``.

    With :math:`w(d) = 1 / (1 + a\,d^{2b})` (:data:`UMAP_A`, :data:`UMAP_B`), each anchor
    ``i`` is attracted to its partner by :math:`-\log w(\|z_i - z_{i+m}\|)` and repelled from
    each of its negative samples ``j = negatives[i, s]`` by :math:`-\log(1 - w(\|z_i - z_j\|))
    = \log(1 + 1 / (a\,d^{2b}))`, with :data:`MIN_SQ_DISTANCE` added to the squared distance
    :math:`d^2` as UMAP does in its repulsion; the
    value is the mean over anchors of the attraction plus the sum of the repulsions
    (McInnes et al. 2018; its parametric form: Sainburg et al. 2021). Unlike t-SNE's
    ``KL(P || Q)`` it does not normalise over the batch, so the repulsion of a pair does not
    weaken as the batch grows, and clusters are drawn apart more sharply. The pairs are the
    sampled k-NN edges of :class:`NeighborTerm`, each of weight one: UMAP's fuzzy membership
    weights and the symmetrisation of its graph are not used.

    Parameters
    ----------
    z : Tensor of shape (batch, n_components)
    n_pairs : int
        ``m``, with ``batch >= 2 m``.
    negatives : Tensor of shape (n_pairs, n_negatives), int64
        Rows of ``z`` each anchor is pushed away from.
    exaggeration : float, default=1.0
        Multiplies the attraction (early exaggeration).

    Returns
    -------
    Tensor of shape ()

    Examples
    --------
    >>> z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> value = fuzzy_cross_entropy(z, 1, torch.tensor([[2]]))
    >>> expected = math.log1p(UMAP_A) + math.log1p(1 / (UMAP_A * (4.0 + MIN_SQ_DISTANCE) ** UMAP_B))
    >>> abs(float(value) - expected) < 1e-6
    True
    """
    m = int(n_pairs)
    a, b = UMAP_A, UMAP_B
    pos = (z[:m] - z[m:2 * m]).square().sum(1)
    attract = torch.log1p(a * pos.clamp_min(1e-12).pow(b))
    neg = (z[:m, None, :] - z[negatives]).square().sum(-1) + MIN_SQ_DISTANCE
    repel = torch.log1p(neg.pow(-b) / a).sum(1)
    return (exaggeration * attract + repel).mean()


def term_weight(neighbor_weight: float, n_features: int) -> float:
    """The weight of the term: ``neighbor_weight`` per input feature, counting at least :data:`MIN_TERM_FEATURES` features.

    >>> term_weight(0.4, 3), term_weight(0.4, 784)
    (20.0, 313.6)
    """
    return float(neighbor_weight) * max(int(n_features), MIN_TERM_FEATURES)


def early_exaggeration(n_features: int) -> float:
    """The factor on the term's attraction in the first :data:`EARLY_FRACTION` of a fit's epochs, for ``n_features`` inputs.

    >>> early_exaggeration(3), early_exaggeration(64), early_exaggeration(784)
    (12.0, 9.375, 1.0)
    """
    return max(1.0, EARLY_ATTRACTION_FEATURES / max(int(n_features), MIN_TERM_FEATURES))


def pca_projection(x: Tensor, n_components: int = N_PCA) -> Tensor:
    """The top principal directions of (already normalised) rows ``x``, as a projection matrix.

    Parameters
    ----------
    x : Tensor of shape (n_rows, n_features)
    n_components : int

    Returns
    -------
    Tensor of shape (n_features, min(n_components, n_rows, n_features))

    Examples
    --------
    >>> pca_projection(torch.randn(10, 4), 3).shape
    torch.Size([4, 3])
    """
    x = x.float()
    _, _, vh = torch.linalg.svd(x - x.mean(0), full_matrices=False)
    return vh[:n_components].T.contiguous()


def draw_negatives(batch: int, n_pairs: int, n_negatives: int, *, device: torch.device | str | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """For each anchor ``i < n_pairs``, ``n_negatives`` rows of a batch of ``batch``, never ``i`` nor its partner ``i + n_pairs``.

    Uniform over the ``batch - 2`` other rows: a draw from ``0 .. batch - 3`` is shifted past
    the anchor, then past its partner.

    Examples
    --------
    >>> neg = draw_negatives(6, 3, 1000, generator=torch.Generator().manual_seed(0))
    >>> [sorted(set(neg[i].tolist())) for i in range(3)]
    [[1, 2, 4, 5], [0, 2, 3, 5], [0, 1, 3, 4]]
    """
    if batch < 3:
        raise ValueError(f"batch={batch}: negatives need a row besides the anchor and its partner")
    r = torch.randint(batch - 2, (n_pairs, n_negatives), device=device, generator=generator)
    anchor = torch.arange(n_pairs, device=r.device)[:, None]
    r = r + (r >= anchor)
    return r + (r >= anchor + n_pairs)


@dataclass
class NeighborTerm:
    """``weight`` times a neighbour loss over batches of anchors and their sampled k-NN partners.

    Attributes
    ----------
    weight : float
    neighbors : Tensor of shape (n_train, n_neighbors), int64
        For each training position, the positions of its nearest training rows (:func:`knn_graph`).
    loss : {"tsne", "umap"}
        :func:`pair_kl`, or :func:`fuzzy_cross_entropy` with :data:`N_NEGATIVES` negatives per
        anchor drawn uniformly (torch's global generator) from the batch's rows other than the
        anchor and its partner (:func:`draw_negatives`). Other values are refused.
    exaggeration : float
        The factor on the attraction of the loss now (early exaggeration; set per epoch by
        :meth:`start_epoch`).
    early_exaggeration : float
        The factor :meth:`start_epoch` sets during the first ``early_epochs`` epochs.
    early_epochs : int
        Epochs of a fit (counted from its first) with ``early_exaggeration``.
    probs : Tensor of shape (n_train, n_neighbors), or None
        The probability of drawing each neighbour as a row's partner (rows summing to 1:
        :func:`membership_weights` for ``neighbor_graph="fuzzy"``); None draws uniformly.
    """

    weight: float
    neighbors: Tensor
    loss: str = "tsne"
    exaggeration: float = 1.0
    early_exaggeration: float = 1.0
    early_epochs: int = 0
    probs: Tensor | None = None

    def __post_init__(self) -> None:
        check_choice("loss", self.loss, LOSSES)

    def start_epoch(self, epoch: int) -> None:
        """Set :attr:`exaggeration` for the fit's epoch ``epoch`` (0 is its first).

        >>> term = NeighborTerm(1.0, torch.zeros(4, 1, dtype=torch.long), early_exaggeration=12.0, early_epochs=2)
        >>> [term.start_epoch(e) or term.exaggeration for e in range(3)]
        [12.0, 12.0, 1.0]
        """
        self.exaggeration = self.early_exaggeration if epoch < self.early_epochs else 1.0

    def expand(self, anchors: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """Positions ``anchors`` followed by one neighbour of each, drawn uniformly or by :attr:`probs`
        (shape (2 * len(anchors),))."""
        rows = torch.from_numpy(np.asarray(anchors))
        if self.probs is None:
            pick = torch.randint(self.neighbors.shape[1], (len(anchors),), generator=generator)
        else:
            pick = torch.multinomial(self.probs[rows], 1, generator=generator)[:, 0]
        partners = self.neighbors[rows, pick].numpy()
        return np.concatenate([anchors, partners])

    def __call__(self, z: Tensor) -> Tensor:
        """The weighted term for embeddings ``z`` of an expanded batch (anchors, then their partners)."""
        m = z.shape[0] // 2
        if self.loss == "umap":
            negatives = draw_negatives(z.shape[0], m, N_NEGATIVES, device=z.device)
            return self.weight * fuzzy_cross_entropy(Q_SCALE * z, m, negatives, self.exaggeration)
        return self.weight * pair_kl(Q_SCALE * z, m, self.exaggeration)


@torch.no_grad()
def membership_weights(sq_dist: Tensor, normalize: bool = True) -> Tensor:
    r"""UMAP's fuzzy membership of each row's nearest rows, normalised to sum to 1 per row (or as they are).

    For row ``i`` with distances :math:`d_{i1} \le \dots \le d_{ik}` to its ``k`` nearest
    rows, the membership of neighbour ``j`` is :math:`\exp(-\max(0, d_{ij} - \rho_i) /
    \sigma_i)`: :math:`\rho_i` is the nearest non-zero distance (UMAP's local connectivity of
    one, so every row is fully connected to its nearest distinct neighbour however far it is,
    and duplicates of the row weigh 1 too; 0 when every neighbour is a duplicate) and
    :math:`\sigma_i` is found by bisection (:data:`MEMBERSHIP_ITERS` steps) so that the
    memberships sum to :math:`\log_2(k + 1)`, UMAP's target for ``n_neighbors = k + 1``
    counting the row itself, but is at least :data:`MIN_SIGMA_SCALE` times the row's mean
    distance counting the row's own 0 as UMAP does (so that when all neighbours but the
    nearest lie at almost the same distance the weights do not jump from uniform towards the
    nearest). This is ``umap.umap_.smooth_knn_dist`` with its defaults (McInnes et al. 2018);
    the weights agree with it to 1e-6 (``tests/embedding/test_neighbors.py``). The nearer
    neighbours weigh more, the more so the farther the others lie beyond the nearest. Returned
    divided by their row sum: the probability with which :class:`NeighborTerm` draws each
    neighbour as a partner, and the weight of each neighbour's attraction in
    :func:`refine_embedding`. Rows whose neighbours are all at the same distance (``k = 1``
    included) get uniform weights. Each row's weights depend on its own distances only,
    computed in float64. With ``normalize=False`` the memberships themselves are returned, in
    (0, 1], each row summing to :math:`\log_2(k + 1)` unless the floor under :math:`\sigma` or
    duplicates of the row hold it above, the edge weights of UMAP's graph before it is
    symmetrised.

    Parameters
    ----------
    sq_dist : Tensor of shape (n, k)
        Squared distances to each row's ``k`` nearest rows, nearest first.
    normalize : bool, default=True
        Divide each row by its sum.

    Returns
    -------
    Tensor of shape (n, k), float64, rows summing to 1 (``normalize=True``)

    Examples
    --------
    >>> w = membership_weights(torch.tensor([[1.0, 1.0, 1.0], [1.0, 4.0, 9.0]]))
    >>> [round(v, 3) for v in w[0].tolist()], bool(w[1, 0] > w[1, 1] > w[1, 2]), round(float(w[1].sum()), 6)
    ([0.333, 0.333, 0.333], True, 1.0)
    """
    d = sq_dist.double().clamp_min(0.0).sqrt()
    nearest = d.masked_fill(d <= 0, math.inf).amin(1, keepdim=True)  # the nearest non-zero distance
    rho = nearest.nan_to_num(posinf=0.0)  # 0 when every neighbour is a duplicate
    excess = (d - rho).clamp_min(0.0)  # beyond it
    target = math.log2(d.shape[1] + 1)
    lo, hi = torch.zeros_like(d[:, :1]), torch.full_like(d[:, :1], math.inf)
    sigma = torch.ones_like(lo)
    for _ in range(MEMBERSHIP_ITERS):  # the sum rises with sigma, from 1 plus the duplicates towards k
        above = torch.exp(-excess / sigma).sum(1, keepdim=True) > target
        hi, lo = torch.where(above, sigma, hi), torch.where(above, lo, sigma)
        sigma = torch.where(torch.isinf(hi), 2.0 * sigma, 0.5 * (lo + hi))
    sigma = torch.maximum(sigma, MIN_SIGMA_SCALE * d.sum(1, keepdim=True) / (d.shape[1] + 1))
    w = torch.exp(-excess / sigma)
    return w / w.sum(1, keepdim=True) if normalize else w


def graph_weights(graph: str, points: Tensor, reference: Tensor, neighbors: Tensor, normalize: bool = True) -> Tensor | None:
    """The weights ``neighbor_graph=graph`` gives each row of ``points`` (n, d) for its neighbours, the rows
    ``neighbors`` (n, k) of ``reference``: None (uniform) for "knn", :func:`membership_weights` of their distances
    (float64, in blocks of :data:`KNN_BLOCK` rows; with ``normalize=False`` the raw memberships) for "fuzzy".

    >>> graph_weights("knn", torch.zeros(2, 1), torch.ones(3, 1), torch.zeros(2, 3, dtype=torch.long)) is None
    True
    >>> graph_weights("fuzzy", torch.zeros(1, 1), torch.tensor([[1.0], [2.0]]), torch.tensor([[0, 1]])).shape
    torch.Size([1, 2])
    """
    check_choice("neighbor_graph", graph, GRAPHS)
    if graph == "knn":
        return None
    return torch.cat([membership_weights((points[i:i + KNN_BLOCK].double()[:, None, :]  # only the neighbours' rows in float64
                                          - reference[neighbors[i:i + KNN_BLOCK]].double()).square().sum(-1), normalize)
                      for i in range(0, len(points), KNN_BLOCK)])


@torch.no_grad()
def nearest_reference(queries: Tensor, reference: Tensor, k: int) -> Tensor:
    """The ``k`` nearest rows of ``reference`` (squared Euclidean) to every row of ``queries``.

    Unlike :func:`knn_graph` nothing is excluded: a query equal to a reference row finds it
    at distance 0. In blocks of at most :data:`KNN_BLOCK` queries (fewer for a large
    reference, so that a block's distances take at most :data:`KNN_MEMORY` floats), float32
    distances (one matrix product) pick the ``2k + 8`` nearest candidates, whose float64 distances then give the
    answer and its order (equal distances: lower row first). So each query's answer does not
    depend on the other queries, and it is the exact float64 one unless float32 rounding
    moved a true neighbour behind ``k + 8`` others, which needs distances equal to about
    one part in 10^7.

    Parameters
    ----------
    queries : Tensor of shape (n, d)
    reference : Tensor of shape (n_ref, d)
    k : int
        ``1 <= k <= n_ref``.

    Returns
    -------
    Tensor of shape (n, k), int64
        Rows of ``reference``, nearest first.

    Examples
    --------
    >>> nearest_reference(torch.tensor([[0.9], [3.2]]), torch.tensor([[0.0], [1.0], [3.0]]), 2).tolist()
    [[1, 0], [2, 1]]
    """
    n_ref = reference.shape[0]
    if not 1 <= k <= n_ref:
        raise ValueError(f"k = {k} neighbours need 1 <= k <= n_reference = {n_ref}")
    ref64, ref32 = reference.double(), reference.float()
    sq32 = ref32.square().sum(1)
    n_cand = min(n_ref, 2 * k + 8)
    out = torch.empty(queries.shape[0], k, dtype=torch.long, device=queries.device)
    block = max(1, min(KNN_BLOCK, KNN_MEMORY // n_ref))
    for start in range(0, queries.shape[0], block):
        q = queries[start:start + block]
        rough = torch.addmm(sq32[None, :], q.float(), ref32.T, alpha=-2.0)  # |q|^2 left out: the same along a row
        cand = torch.topk(rough, n_cand, dim=1, largest=False).indices.sort(1).values
        exact = (q.double()[:, None, :] - ref64[cand]).square().sum(-1)
        out[start:start + len(q)] = cand.gather(1, torch.argsort(exact, dim=1, stable=True)[:, :k])
    return out


def _refine_loss(z: Tensor, partners: Tensor, negatives: Tensor, loss: str, weights: Tensor | None = None) -> Tensor:
    """Per-row loss of :func:`refine_embedding`: rows ``z`` (n, d), fixed ``partners`` (n, k, d), shared ``negatives``
    (m, d); the partners' attractions averaged with ``weights`` (n, k; rows summing to 1), or uniformly."""
    d_pos = (z[:, None, :] - partners).square().sum(-1)
    d_neg = (z[:, None, :] - negatives[None, :, :]).square().sum(-1)

    def average(v: Tensor) -> Tensor:
        return v.mean(1) if weights is None else (v * weights).sum(1)

    if loss == "umap":
        attract = average(torch.log1p(UMAP_A * d_pos.clamp_min(1e-12).pow(UMAP_B)))
        repel = torch.log1p((d_neg + MIN_SQ_DISTANCE).pow(-UMAP_B) / UMAP_A).sum(1)
        return attract + (N_NEGATIVES / negatives.shape[0]) * repel
    return average(torch.log1p(d_pos)) + torch.logsumexp(-torch.log1p(d_neg), 1)


def _refine_grad(z: Tensor, partners: Tensor, negatives: Tensor, loss: str, weights: Tensor | None = None) -> Tensor:
    """The gradient of :func:`_refine_loss` with respect to ``z``, in closed form (row ``i`` only moves ``z[i]``).

    The shared negatives are handled one embedding dimension at a time, with elementwise
    operations and sums along each row only (no matrix product, whose rounding may depend
    on how many rows it multiplies), and no (rows, negatives, dims) array is formed.
    """
    diff_pos = z[:, None, :] - partners  # (n, k, d)
    d_pos = diff_pos.square().sum(-1)
    d_neg = sum((z[:, j, None] - negatives[None, :, j]).square() for j in range(z.shape[1]))  # (n, m)
    if loss == "umap":  # d/dd log(1 + a d^b) and d/dd log(1 + (d + eps)^-b / a), times dd/dz = 2 (z - y)
        dp = d_pos.clamp_min(1e-12)  # below it the closed form keeps a tiny pull where autograd's clamp gives 0
        c_pos = UMAP_A * UMAP_B * dp.pow(UMAP_B - 1) / (1 + UMAP_A * dp.pow(UMAP_B)) / d_pos.shape[1]
        dn = d_neg + MIN_SQ_DISTANCE
        u = dn.pow(-UMAP_B) / UMAP_A
        c_neg = -(N_NEGATIVES / negatives.shape[0]) * UMAP_B * u / ((1 + u) * dn)
    else:  # mean_j log(1 + d_ij) + log sum_l w_il, w = 1 / (1 + d)
        c_pos = 1.0 / ((1 + d_pos) * d_pos.shape[1])
        w = (1 + d_neg).reciprocal_()
        c_neg = -w.square() / w.sum(1, keepdim=True)
    if weights is not None:  # the weighted average instead of the mean over the k partners
        c_pos = c_pos * (weights * d_pos.shape[1])
    pull = (c_pos[..., None] * diff_pos).sum(1)
    c_sum = c_neg.sum(1)
    push = torch.stack([z[:, j] * c_sum - (c_neg * negatives[None, :, j]).sum(1) for j in range(z.shape[1])], 1)
    return 2 * (pull + push)


def refine_embedding(z0: Tensor, partners: Tensor, layout: Tensor, steps: int, seed: int, loss: str = "tsne",
                     lr: float = REFINE_LR, weights: Tensor | None = None) -> Tensor:
    r"""Place rows among a fixed embedding by a few steps of the neighbour loss, starting from ``z0``.

    This is the local optimisation with which :meth:`VAEEmbedder.transform` closes the
    encoder's amortisation gap on new rows, as UMAP's ``transform`` optimises new points
    against its training layout. Each row ``i`` minimises, over its own embedding
    :math:`z_i` only (``Q_SCALE`` times the embedding, as in training), the loss the map
    was trained with, between :math:`z_i` and the fixed embeddings of its input-space
    neighbours (``partners[i]``) and the step's shared negatives:

    - ``"tsne"``: :math:`\operatorname{mean}_j \log(1 + d_{ij}^2) + \log \sum_l (1 + d_{il}^2)^{-1}`
      (the log-probability of the neighbours under Student-t affinities normalised over the
      negatives, t-SNE's conditional form);
    - ``"umap"``: UMAP's fuzzy cross-entropy, attraction averaged over the neighbours plus
      :data:`N_NEGATIVES` times the mean repulsion from the negatives.

    With ``weights`` (``neighbor_graph="fuzzy"``: :func:`membership_weights` of the row's
    distances to its neighbours) the attractions are averaged with those weights instead of
    uniformly.

    ``steps`` Adam steps (betas 0.9, 0.999), elementwise, at a rate that decays linearly from
    ``lr`` at the first step to ``lr / steps`` at the last (as UMAP's epochs do), so the
    rows settle although every step draws other negatives; step ``t`` repels
    every row from the same :data:`REFINE_NEGATIVES` rows of ``layout``, drawn from a CPU
    generator seeded with ``seed`` (the same draws for every call; callers bound the
    memory of ``partners`` by passing blocks of rows). So every row's
    result is independent of the other rows and of how they are batched, and deterministic
    in ``seed``. The gradient is computed in closed form (no autograd).

    Parameters
    ----------
    z0 : Tensor of shape (n, d)
        Starting embeddings (the encoder's).
    partners : Tensor of shape (n, k, d)
        Embeddings of each row's nearest training rows.
    layout : Tensor of shape (n_layout, d)
        The training embeddings the negatives are drawn from.
    steps : int
        Steps (0: ``z0`` is returned unchanged).
    seed : int
        Seeds the negatives' draws.
    loss : {"tsne", "umap"}
    lr : float
        The rate of the first step.
    weights : Tensor of shape (n, k), optional
        Each row's weights of its partners (rows summing to 1); None: uniform.

    Returns
    -------
    Tensor of shape (n, d), the dtype of ``z0``

    Examples
    --------
    >>> z0, partners = torch.zeros(1, 2, dtype=torch.float64), torch.full((1, 3, 2), 2.0, dtype=torch.float64)
    >>> far = torch.full((4, 2), -50.0, dtype=torch.float64)  # negatives far away: the row moves to its neighbours
    >>> bool((refine_embedding(z0, partners, far, steps=20, seed=0) > 0.5).all())
    True
    """
    check_choice("loss", loss, LOSSES)
    pos = Q_SCALE * partners
    draws = torch.Generator().manual_seed(int(seed))

    def grad(z: Tensor) -> Tensor:  # against the fixed layout: its partners and negatives stay put
        neg = layout[torch.randint(len(layout), (REFINE_NEGATIVES,), generator=draws).to(layout.device)]
        return _refine_grad(z, pos, Q_SCALE * neg, loss, weights)

    return _decaying_adam(Q_SCALE * z0, grad, int(steps), lr) / Q_SCALE


def _decaying_adam(z: Tensor, grad: Callable[[Tensor], Tensor], steps: int, lr: float) -> Tensor:
    """``steps`` elementwise Adam steps (betas 0.9, 0.999) on ``z`` with gradients ``grad(z)``, the rate decaying
    linearly from ``lr`` (first step) to ``lr / steps`` (last): the loop of :func:`refine_embedding` and
    :func:`optimize_layout`."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    for t in range(1, steps + 1):
        g = grad(z)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        rate = lr * (steps - t + 1) / steps
        z = z - rate * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
    return z


def optimize_layout(z0: Tensor, neighbors: Tensor, steps: int, seed: int, loss: str = "tsne",
                    lr: float = REFINE_LR, weights: Tensor | None = None) -> Tensor:
    """Move all rows of a layout together by :func:`refine_embedding`'s loss, each towards its ``neighbors``' rows.

    Unlike :func:`refine_embedding`, whose rows move against a fixed layout, here every step
    reads each row's partners (``z[neighbors[i]]``) and the step's :data:`REFINE_NEGATIVES`
    shared negatives from the layout as it is at that step, so the rows settle among each
    other, as UMAP's layout optimisation moves its points (here from the encoder's embedding:
    ``VAEEmbedder(layout_steps=...)``). Adam, the rate decaying linearly from ``lr`` to
    ``lr / steps``, the gradient in closed form (:func:`_refine_grad`), the negatives drawn
    from a CPU generator seeded with ``seed``: deterministic for the same rows.

    Parameters
    ----------
    z0 : Tensor of shape (n, d)
        The layout to start from.
    neighbors : Tensor of shape (n, k), int64
        Row ``i``'s partners: rows of the layout other than ``i``.
    steps : int
        0 returns ``z0`` unchanged.
    seed : int
    loss : {"tsne", "umap"}
    lr : float
    weights : Tensor of shape (n, k), optional
        Each row's weights of its neighbours' attractions (rows summing to 1); None: uniform.

    Returns
    -------
    Tensor of shape (n, d), the dtype of ``z0``

    Examples
    --------
    >>> z0 = torch.tensor([[0.0, 0.0], [4.0, 0.0], [30.0, 0.0], [34.0, 0.0]], dtype=torch.float64)
    >>> z = optimize_layout(z0, torch.tensor([[1], [0], [3], [2]]), steps=50, seed=0)
    >>> bool((z[1] - z[0]).norm() < 4.0 and (z[3] - z[2]).norm() < 4.0)  # each pair drawn together
    True
    """
    check_choice("loss", loss, LOSSES)
    if int(steps) == 0:
        return z0
    draws = torch.Generator().manual_seed(int(seed))

    def grad(z: Tensor) -> Tensor:  # partners and negatives read from the layout as it is now
        negatives = z[torch.randint(len(z), (REFINE_NEGATIVES,), generator=draws).to(z.device)]
        return _refine_grad(z, z[neighbors], negatives, loss, weights)

    return _decaying_adam(Q_SCALE * z0, grad, int(steps), lr) / Q_SCALE


def fuzzy_union(points: Tensor, neighbors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""UMAP's symmetrised fuzzy graph of ``points`` over their k-NN lists, as (head, tail, weight) edges.

    With :math:`A_{ij}` the membership of row ``j`` among row ``i``'s ``neighbors``
    (:func:`membership_weights` with ``normalize=False``; 0 off the lists), the graph is the
    fuzzy union :math:`P = A + A^\top - A \circ A^\top` (McInnes et al. 2018), each
    undirected pair listed in both directions, as :func:`edge_layout` takes it.

    Parameters
    ----------
    points : Tensor of shape (n, d)
    neighbors : Tensor of shape (n, k), int64
        Each row's nearest other rows, nearest first (:func:`knn_graph`).

    Returns
    -------
    head, tail : Tensor of shape (n_edges,), int64
    weight : Tensor of shape (n_edges,), float64, in (0, 1]

    Examples
    --------
    >>> head, tail, w = fuzzy_union(torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([[1], [0], [1]]))
    >>> sorted(zip(head.tolist(), tail.tolist(), w.tolist()))
    [(0, 1, 1.0), (1, 0, 1.0), (1, 2, 1.0), (2, 1, 1.0)]
    """
    n, k = neighbors.shape
    memberships = graph_weights("fuzzy", points, points, neighbors, normalize=False)
    rows = torch.arange(n, device=neighbors.device).repeat_interleave(k)
    a = torch.sparse_coo_tensor(torch.stack([rows, neighbors.reshape(-1)]),
                                memberships.reshape(-1), (n, n), check_invariants=True).coalesce()
    at = a.t().coalesce()
    p = (a + at - a * at).coalesce()
    keep = p.values() > 0
    return p.indices()[0][keep], p.indices()[1][keep], p.values()[keep]


def edge_layout(y0: Tensor, head: Tensor, tail: Tensor, weight: Tensor, n_epochs: int, seed: int, *,
                chunks: int = EDGE_CHUNKS, n_negatives: int = N_NEGATIVES) -> Tensor:
    r"""UMAP's layout optimisation over the edges of a fuzzy graph, from ``y0``, with vectorised updates.

    As ``umap.layouts.optimize_layout_euclidean`` of umap-learn 0.5 (McInnes et al. 2018):
    epochs ``e = 1 .. n_epochs - 1`` (UMAP's epoch 0 samples nothing) sample each edge
    ``weight / max(weight)`` times per epoch (an edge of the largest weight every epoch, one of
    weight ``max / n_epochs`` or less never; the first sample after ``max / weight`` epochs),
    pull its two ends together along the gradient of :math:`\log(1 + a\,d^{2b})` and push its
    head away from ``n_negatives`` rows drawn uniformly, along that of
    :math:`\log(1 + 1 / (a\,d^{2b}))` with :data:`MIN_SQ_DISTANCE` added to :math:`d^2`
    (:data:`UMAP_A`, :data:`UMAP_B`); a negative at distance 0 (the head itself or a
    duplicate) pushes nothing. Every coordinate of every edge's update is clipped to [-4, 4]
    (at UMAP's ``a``, ``b`` only the push reaches the clip), and the rate at epoch ``e`` is
    ``1 - e / n_epochs``. Two differences from UMAP: it applies the updates one edge after
    another, here an epoch's sampled edges are split at random into ``chunks`` groups and each
    group's updates are summed and applied together (a few vectorised operations per group);
    and every sample of an edge draws exactly ``n_negatives`` negatives, where UMAP's count
    follows the epochs elapsed (the same number on average, one fewer in all). The
    coordinates are UMAP's: its defaults (``min_dist=0.1``, ``spread=1``) place neighbours
    about 0.1-1 apart and UMAP starts from a layout scaled into [0, 10] (each axis).

    Parameters
    ----------
    y0 : Tensor of shape (n, d)
        The starting layout (float64 is used throughout).
    head, tail, weight : Tensor of shape (n_edges,)
        The graph (:func:`fuzzy_union`): each undirected edge in both directions.
    n_epochs : int
        UMAP's ``n_epochs`` (``n_epochs - 1`` of them move the layout; 1 returns ``y0``).
    seed : int
        Seeds the groups and the negatives (a CPU generator): deterministic for the same inputs.
    chunks : int
        Groups per epoch (1: all of an epoch's updates at once).
    n_negatives : int

    Returns
    -------
    Tensor of shape (n, d), float64

    Examples
    --------
    >>> y0 = torch.tensor([[0.0, 0.0], [4.0, 0.0], [30.0, 0.0], [34.0, 0.0]])
    >>> y = edge_layout(y0, torch.tensor([0, 1, 2, 3]), torch.tensor([1, 0, 3, 2]), torch.ones(4), 50, seed=0)
    >>> bool((y[1] - y[0]).norm() < 2.0 and (y[3] - y[2]).norm() < 2.0 and (y[2] - y[1]).norm() > 10.0)
    True
    """
    a, b = UMAP_A, UMAP_B
    weight = weight.double()
    # edges below max / n_epochs are never due (as umap-learn, which zeroes them before its loop): dropped up front
    keep = weight >= weight.max() / n_epochs
    head, tail, rate = head[keep], tail[keep], (weight[keep] / weight.max()).cpu()
    draws = torch.Generator().manual_seed(int(seed))
    y = y0.double().clone()
    n = y.shape[0]
    for e in range(1, int(n_epochs)):
        alpha = 1.0 - e / n_epochs
        due = (torch.floor(e * rate) > torch.floor((e - 1) * rate)).nonzero()[:, 0]
        due = due[torch.randperm(len(due), generator=draws)].to(y.device)
        for group in due.chunk(chunks):
            h, t = head[group], tail[group]
            diff = y[h] - y[t]
            d2 = diff.square().sum(1)
            pull = -2 * a * b * d2.clamp_min(1e-12).pow(b - 1) / (1 + a * d2.pow(b))
            move = (pull.masked_fill(d2 <= 0, 0.0)[:, None] * diff).clamp(-4.0, 4.0)
            delta = torch.zeros_like(y).index_add_(0, h, move).index_add_(0, t, -move)
            hn = h.repeat_interleave(n_negatives)
            other = torch.randint(n, (len(hn),), generator=draws).to(y.device)
            diff = y[hn] - y[other]
            d2 = diff.square().sum(1)
            # at distance 0 (the head itself, or a duplicate) diff is 0: no push, as in umap-learn 0.5
            push = ((2 * b / ((MIN_SQ_DISTANCE + d2) * (1 + a * d2.pow(b))))[:, None] * diff).clamp(-4.0, 4.0)
            delta.index_add_(0, hn, push)
            y += alpha * delta
    return y


def similarity_align(y: Tensor, target: Tensor) -> Tensor:
    """``y`` rotated (or reflected), scaled and shifted as a whole to lie closest to ``target`` in least squares.

    Orthogonal Procrustes with one scale: every distance ratio of ``y`` is kept, so are its
    neighbourhoods. Used to bring a layout moved by :func:`edge_layout` back into the frame
    of the layout it started from (the frame the decoder was trained on).

    Examples
    --------
    >>> target = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    >>> y = 3 * target @ torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64) + 5
    >>> bool(torch.allclose(similarity_align(y, target), target))
    True
    """
    y, target = y.double(), target.double()
    ya, ta = y - y.mean(0), target - target.mean(0)
    u, sv, vt = torch.linalg.svd(ya.T @ ta)
    return (sv.sum() / ya.square().sum()) * ya @ (u @ vt) + target.mean(0)


def umap_layout(z: Tensor, coords: Tensor, neighbors: Tensor, n_epochs: int, seed: int) -> Tensor:
    """The layout ``z`` moved by UMAP's layout optimisation, in ``z``'s frame.

    ``z`` is scaled into [0, 10] (one scale for every axis, so that the layout keeps its
    shape; UMAP scales each axis of its start), moved by ``n_epochs`` of
    :func:`edge_layout` over UMAP's fuzzy graph of the rows (:func:`fuzzy_union` of their
    ``neighbors`` in ``coords``), and brought back into ``z``'s frame by one rotation, scale
    and shift (:func:`similarity_align`), the frame the decoder was trained on. A layout of
    one point (no extent) is returned as it is.

    Parameters
    ----------
    z : Tensor of shape (n, d)
        The starting layout (the encoder's embedding of the rows).
    coords : Tensor of shape (n, c)
        The rows in the space their neighbours were found in.
    neighbors : Tensor of shape (n, k), int64
        Each row's nearest other rows in ``coords``, nearest first (:func:`knn_graph`).
    n_epochs : int
    seed : int

    Returns
    -------
    Tensor of shape (n, d), float64

    Examples
    --------
    >>> z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [6.0, 0.0]])
    >>> nbr = torch.tensor([[1], [0], [3], [2]])
    >>> y = umap_layout(z, z, nbr, 100, seed=0)
    >>> y.shape, bool((y[1] - y[0]).norm() < (y[2] - y[1]).norm())
    (torch.Size([4, 2]), True)
    """
    z = z.double()
    low = z.amin(0)
    span = float((z.amax(0) - low).max())
    if not span > 0:
        return z.clone()
    scale = 10.0 / span
    head, tail, weight = fuzzy_union(coords, neighbors)
    y = edge_layout((z - low) * scale, head, tail, weight, int(n_epochs), seed) / scale + low
    return similarity_align(y, z)


@dataclass
class Layout:
    """What ``VAEEmbedder.transform``'s local optimisation needs besides ``embedding_`` (kept by ``fit``, saved).

    Attributes
    ----------
    projection : ndarray of shape (n_features, n_coords), float64
        Normalised rows to the neighbour term's principal coordinates.
    coords : ndarray of shape (n_rows, n_coords), float32
        The coordinates of the rows ``fit`` was given (those of ``embedding_``).
    seed : int
        Seeds the negatives (:func:`refine_embedding`), in [0, 2**31 - 1].
    loss : {"tsne", "umap"}
        The ``neighbor_loss`` the map was trained with.
    n_neighbors : int
        Training rows each row is attracted to (``n_neighbors`` at fit, at most ``n_rows``).
    moved : bool
        Whether ``fit`` moved the layout (``layout_steps``) and ``transform`` therefore starts
        each row at :func:`neighbor_median` instead of the encoder's embedding, which lies in
        the frame of the layout before the move. False for embedders saved before the flag was
        written, moved or not: they keep the encoder's start they had.
    graph : {"knn", "fuzzy"}
        The ``neighbor_graph`` of the fit: how ``transform`` weighs each row's neighbours
        (:func:`graph_weights`). "knn" for embedders saved before it was written.
    """

    projection: np.ndarray
    coords: np.ndarray
    seed: int
    loss: str
    n_neighbors: int
    moved: bool = False
    graph: str = "knn"


def neighbor_median(partners: Tensor) -> Tensor:
    """Each row's coordinate-wise median of its partners' embeddings (the lower middle value for an even count).

    Where :meth:`VAEEmbedder.transform` starts a row against a moved layout: unlike the mean,
    the median stays inside the cluster that most of the row's neighbours are in when one or
    two of them lie in another (measured on MNIST: docs/embedding.md).

    >>> neighbor_median(torch.tensor([[[0.0, 0.0], [1.0, 1.0], [50.0, -50.0]]]))
    tensor([[1., 0.]])
    """
    return partners.median(dim=1).values

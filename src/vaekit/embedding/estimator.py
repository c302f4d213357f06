"""``VAEEmbedder``: a variational autoencoder as a scikit-learn transformer (like t-SNE or UMAP, but invertible)."""

from __future__ import annotations

import contextlib
import copy
import os
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

from .._checks import InvalidArgumentError
from .._numeric import logmeanexp
from ..nn import eval_mode
from ..nn.mlp import ACTIVATIONS
from ._model import LIKELIHOODS, POSTERIOR_NAMES, PRIORS, log_weights_given_noise, posterior_mean, row_noise
from ._neighbors import (GRAPHS, LAYOUT_METHODS, LOSSES, MAX_TRANSFORM_STEPS, REFINE_BLOCK, graph_weights,
                         nearest_reference, neighbor_median, refine_embedding)
from .inputs import ArraySource, Source, as_source, check_array_input, validate_source

__all__ = ["VAEEmbedder"]

#: Rows per forward pass of transform / inverse_transform / score_samples. Every pass sees exactly this
#: many rows (the last one padded), so each row's result does not depend on how the input was batched.
CHUNK = 512
#: The default of ``VAEEmbedder(transform_steps=...)`` (also for embedders pickled before the parameter existed).
TRANSFORM_STEPS = 200


class VAEEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    r"""Dimensionality reduction with a variational autoencoder, in the scikit-learn API.

    ``fit`` trains a VAE whose encoder maps each example to a ``n_components``-dimensional
    latent space: an MLP, an inverse autoregressive flow posterior (Kingma et al. 2016) and,
    by default, a learned mixture-of-Gaussians prior (:class:`~vaekit.embedding.MixturePrior`),
    which lets classes sit in separate modes of a 2-D map. ``transform`` is the
    deterministic posterior mean through the flow, refined against the training layout
    (``transform_steps``); ``inverse_transform`` decodes;
    ``sample`` generates; ``score_samples`` is the ELBO (or IWAE bound) per example.

    Parameters
    ----------
    n_components : int, default=2
        Dimension of the embedding.
    hidden_layers : sequence of int or None, default=None
        Encoder hidden sizes (the decoder mirrors them). None: chosen from the input and
        latent sizes and the number of training rows
        (:func:`vaekit.embedding._model.auto_hidden_layers`: (256, 128) for 784 features; no
        wider than half the training rows, so (128, 64) for 288 training rows of 2,679 pixels).
    posterior : {"iaf", "gaussian"}, default="iaf"
        Posterior family: inverse autoregressive flow on a diagonal Gaussian, or the Gaussian alone.
    n_flows : int, default=5
        IAF steps.
    prior : {"mixture", "standard"}, default="mixture"
        Learned mixture of ``n_prior_modes`` Gaussians, or N(0, I).
    n_prior_modes : int, default=16
        Components of the mixture prior.
    likelihood : {"gaussian", "gaussian_predicted", "bernoulli"}, default="gaussian"
        p(x|z): Gaussian with one learned variance (right for standardised features), with a
        variance per feature predicted by the decoder, or Bernoulli cross-entropy for data in
        [0, 1] (then ``feature_normalization`` must be False).
    feature_normalization : bool, default=True
        Standardise every feature with the training mean and standard deviation (scales
        below 0.1 times the mean scale are raised to it); undone by ``inverse_transform``.
    validation_fraction : float in [0, 1), default=0.1
        Rows held out (at random) for the learning-rate schedule and early stopping; 0
        monitors the training loss. With the neighbour term and the "auto" ``lr_schedule``
        and ``early_stopping`` they only measure the validation ELBO of ``history_`` (0 trains
        on every row). Ignored when ``validation_data`` is given.
    validation_data : array-like of shape (n_val, n_features), or any input ``fit`` accepts, default=None
        Examples kept apart for validation (CompressionVAE's ``X_valid``): every row of ``X``
        then trains, and the validation loss of ``history_`` (which drives the learning-rate
        schedule and early stopping) is computed on these rows, normalised with ``X``'s
        statistics. Checked like ``X`` (same feature count and names). Not saved by
        :meth:`save` (it is data, not configuration).
    batch_size : int, default=512
    learning_rate : float, default=2e-3
        Initial Adam learning rate.
    max_epochs : int or None, default=None
        Epochs per ``fit`` call. None: enough for about 2,000 gradient steps (1,500 with the
        neighbour term), within [5, 500].
    lr_schedule : {"auto", "plateau", "constant", "cosine"}, default="auto"
        "plateau": halve the rate when the monitored loss stalls for ``n_iter_no_change // 2``
        epochs. "cosine": from the initial rate at the first step of a ``fit`` call to 0 at
        its last (half a cosine over its ``max_epochs``, updated at every step; a warm start
        runs its own). "auto": "constant" with the neighbour term (``neighbor_weight > 0``, the
        default), "plateau" without it.
    early_stopping : bool or "auto", default="auto"
        True: stop after ``n_iter_no_change`` epochs without improvement, or (plateau
        schedule) when the rate falls below 1e-3 times ``learning_rate``, and keep the best
        weights seen. "auto":
        False with the neighbour term (``neighbor_weight > 0``, the default), True without
        it. Without early stopping and with the term, training runs all its epochs and keeps
        the last weights, as UMAP and t-SNE run a fixed number of epochs: the validation
        ELBO, which the term does not enter, stopped the fit (or halved the rate) before the
        map had formed, most on small data sets. Without the term the best weights seen are
        kept in either case.
    n_iter_no_change : int, default=6
    tol : float, default=1e-4
        Relative improvement of the monitored loss that counts.
    dropout : float, default=0.0
        Dropout after every hidden layer during training.
    activation : str, default="elu"
        Hidden activation (see :data:`vaekit.nn.mlp.ACTIVATIONS`).
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    random_state : int, RandomState instance or None, default=None
        Seeds weights, the validation split, batch order and posterior noise. With an int,
        ``fit`` is deterministic; torch's global random state is left untouched.
    verbose : int, default=0
        1: one line per epoch.
    warm_start : bool, default=False
        Continue training the fitted model (weights, optimiser, normalisation) on the next
        ``fit`` instead of starting anew.
    logdir : str, path-like or None, default=None
        Directory where ``fit`` keeps a checkpoint after every epoch (the :meth:`save` format
        plus optimiser state) and, with ``tensorboard``, TensorBoard curves. A logdir that
        already holds a checkpoint is continued with ``warm_start=True`` and refused
        otherwise; other files are never touched or deleted. The checkpoints written after
        each epoch hold no training layout (``transform`` of one loaded mid-fit is the
        encoder's); the one written when the fit ends does.
    tensorboard : bool, default=True
        With a ``logdir``: write TensorBoard events to ``logdir/tensorboard/`` after every
        epoch (``train/loss``, ``val/loss``, ``train/lr``, ``train/grad_norm``, step = epoch;
        ``tensorboard --logdir LOGDIR`` shows them). A continued fit purges events of later
        epochs, so the curves follow the checkpoint.
    neighbor_weight : float, default=0.4
        Weight, per input feature, of a neighbour-embedding term added to every training
        batch's loss. Before training, each training row gets its ``n_neighbors`` nearest
        training rows in the space of the inputs' first 50 principal components (exact up to
        20,000 rows, an inverted-file search above it: about 3 s for 54,000 rows on one core);
        each batch is then ``batch_size // 2`` rows plus one random neighbour of each, and the
        term is ``neighbor_loss`` on the batch's embeddings times 3 (see
        :mod:`vaekit.embedding._neighbors`). It is multiplied by ``neighbor_weight *
        max(n_features_in_, 50)``: the ELBO it balances grows with the number of features,
        but it also holds the latent's KL, which does not, so data with few features get the
        weight of 50 (on a 3-D swiss roll the plain product let the ELBO fold the sheet:
        10-NN accuracy along the roll 0.80 instead of 0.99). Early exaggeration, as t-SNE and
        UMAP lay out their maps: during the first quarter of a fresh fit's epochs the term's
        attraction is multiplied by ``max(1, 600 / max(n_features_in_, 50))`` (12 up to 50
        features, 9.4 for 64, none from 600 features on, where the term already outweighs the
        ELBO and exaggeration made MNIST's map worse in exploratory runs), so that the
        neighbour graph, not the ELBO, lays out the map first; a warm start does not repeat
        it. The ELBO of such
        a batch is taken over its anchors, so every row enters it once per epoch. With the
        term and the "auto" ``lr_schedule`` and ``early_stopping``, training runs all its
        epochs at a constant rate and keeps the last weights; the validation ELBO is still
        recorded in ``history_``. The term
        makes the map keep neighbourhoods (the
        suite of ``benchmarks/embedding_suite.py`` and docs/embedding.md give the numbers);
        ``neighbor_weight=0`` trains the plain VAE (the best ELBO).
    n_neighbors : int, default=15
        Nearest neighbours of each row in the graph the term samples from (>= 1; capped at
        the number of training rows minus one).
    neighbor_loss : {"tsne", "umap"}, default="tsne"
        ``"tsne"``: t-SNE's ``KL(P || Q)`` between ``P`` uniform over the batch's
        anchor-partner pairs and the Student-t affinities ``Q`` of the batch's embeddings
        (parametric t-SNE, van der Maaten 2009, in the edge-sampled form of Damrich et al.
        2023). ``"umap"``: UMAP's fuzzy-set cross-entropy (McInnes et al. 2018), each anchor
        pulled towards its partner and pushed away from 5 rows of the batch drawn at random
        (negative sampling, as parametric UMAP, Sainburg et al. 2021).
    transform_steps : int in [0, 100000], default=200
        With the neighbour term, ``transform`` starts each row at the encoder's embedding
        (against a layout moved by ``layout_steps``: at the coordinate-wise median of its
        ``n_neighbors`` nearest training rows' embeddings, see there) and then takes this
        many steps of a local optimisation that places it among the training rows'
        embeddings (``embedding_``): the ``neighbor_loss`` the map was trained with, between
        the row and its ``n_neighbors`` nearest training rows (both as they were at fit; in
        the neighbour term's principal components), with 64 training
        embeddings as negatives per step, at a rate that decays linearly from 0.5 to 0.5 / steps
        (:func:`vaekit.embedding._neighbors.refine_embedding`).
        This closes much of the encoder's amortisation gap on new rows, as UMAP's
        ``transform`` optimises new points against its layout: in
        ``benchmarks/results/embedding_suite_cpu.md`` it raised the new rows' 10-NN accuracy
        / trustworthiness on scikit-learn's digits from 0.913 / 0.947 to 0.956 / 0.971 and on
        MNIST subsets of 5,000 to 60,000 images by 0.04-0.07 / 0.03-0.04, and cost a little
        where the encoder was already as good as UMAP (docs/embedding.md). Deterministic, and
        each row's result does not depend on the other rows. It costs a search among the
        training rows (a few seconds for 10,000 new rows against 60,000). 0: the encoder's
        embedding alone (one forward pass). Ignored when ``fit`` kept no training layout:
        without the neighbour term (``neighbor_weight=0`` at fit), for a logdir checkpoint
        written during a fit, and for embedders saved before vaekit kept it.
    layout_steps : int in [0, 100000] or "auto", default="auto"
        With the neighbour term, after training: steps (epochs for ``layout_method="umap"``)
        that move the whole training layout (``embedding_``, the rows ``fit`` was given, the
        validation rows split off ``X`` included), each row towards its ``n_neighbors``
        nearest rows in the term's principal components, as ``layout_method`` says, starting
        from the encoder's embedding. The moved layout shows through ``embedding_`` and
        through ``transform``'s local optimisation, which places rows against it, starting
        each row at the coordinate-wise median of its ``n_neighbors`` nearest training rows'
        moved embeddings (the encoder's embedding lies in the frame of the layout before the
        move; on MNIST the median start gave the new points higher 10-NN accuracy and
        trustworthiness than the encoder's, docs/embedding.md); with ``transform_steps=0``
        the outputs of ``transform`` and ``fit_transform`` are the encoder's either way. Once
        the layout moved, the model trains 300 more steps on its ELBO plus a pull of each
        training row's embedding towards its place in the moved layout, so that the decoder
        decodes the moved map (``inverse_transform``; the held-out ELBO changes by a percent
        or two, docs/embedding.md). "auto": UMAP's ``n_epochs`` for "umap" (500 up to 10,000
        rows, 200 above), 100 steps for "neighbor_loss". Not run when the fit is interrupted,
        nor (with a warning, for "neighbor_loss") with fewer than 4 rows per neighbour. 0: the
        layout is the encoder's embedding and the model is left as trained.
    layout_method : {"auto", "umap", "neighbor_loss"}, default="auto"
        How ``layout_steps`` move the training layout. "umap": UMAP's own layout optimisation
        (edge-sampled, over UMAP's fuzzy graph of the rows; McInnes et al. 2018) from the
        encoder's layout scaled into UMAP's frame, then rotated, scaled and shifted back into
        the encoder's (:func:`vaekit.embedding._neighbors.umap_layout`); ``transform`` then
        weighs each new row's neighbours by their fuzzy memberships, whatever
        ``neighbor_graph``. "neighbor_loss": the fit's neighbour loss, all rows together
        (:func:`vaekit.embedding._neighbors.optimize_layout`). "auto": "umap" below 10,000
        rows, "neighbor_loss" from 10,000 on. Measured over the suite's data sets
        (docs/embedding.md, "The suite", 3 seeds): on the small ones the "umap" layout raised
        the new points' 10-NN accuracy on scikit-learn's digits from 0.956 to 0.973 and on the
        Olivetti faces from 0.64 to 0.79 and the swiss roll's trustworthiness from 0.997 to
        0.998, and lowered the breast-cancer table's trustworthiness from 0.908 to 0.882
        (100 steps of the neighbour loss: to 0.835); it adds 7-31 s to those fits. From
        10,000 rows on the neighbour loss matched UMAP's layout at a ninth of its time.
    neighbor_graph : {"knn", "fuzzy"}, default="knn"
        How the term weighs each row's ``n_neighbors`` nearest rows. "knn": equally (a
        partner is drawn uniformly from the list). "fuzzy": by UMAP's fuzzy membership
        (:func:`vaekit.embedding._neighbors.membership_weights`: 1 for the nearest row, decaying
        with the distance beyond it at a rate set per row so that the memberships sum to
        log2(n_neighbors + 1)): partners are drawn in proportion to it, and ``transform``'s
        local optimisation and ``layout_method="neighbor_loss"`` weigh the neighbours'
        attractions by it. The
        map then keeps the few nearest neighbours of each row tighter and the farther ones
        looser, which helps where a row's true neighbours are fewer than ``n_neighbors``
        (classes of a handful of rows, as the suite's Olivetti faces: 8 training images per
        person) and costs trustworthiness where the whole list is near (docs/embedding.md has
        the suite's numbers).

    Attributes
    ----------
    model_ : vaekit.models.VAE
        The trained model (on ``device``); it sees standardised features.
    mean_, scale_ : ndarray of shape (n_features_in_,)
        Feature normalisation (zeros and ones when ``feature_normalization=False``).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when fitted on a DataFrame with string column names.
    embedding_ : ndarray of shape (n_samples, n_components)
        With the neighbour term: the encoder's embedding of the rows ``fit`` was given (the
        layout ``transform`` places rows against; ``validation_data`` not included), moved by
        ``layout_steps`` steps of ``layout_method`` if those are > 0. ``fit_transform(X)``
        differs from it unless ``transform_steps=0`` and the layout was not moved. Absent without
        the neighbour term.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss`` (the training objective: negative ELBO per example
        plus the neighbour term, over the rows of the epoch's steps that were not skipped),
        ``val_loss`` (negative ELBO in nats per example of the standardised data), ``lr``,
        ``skipped_steps`` (non-finite steps skipped), ``grad_norm`` (the mean over the epoch's
        steps that were not skipped of the gradient norm before clipping to 100).
    n_iter_ : int
        Epochs trained (over all warm-started calls).
    stop_reason_ : str
        Why the last ``fit`` ended ("max_epochs reached", early stopping, or "interrupted").

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 5))
    >>> emb = VAEEmbedder(hidden_layers=(16,), n_flows=1, max_epochs=2, random_state=0)
    >>> Z = emb.fit_transform(X)
    >>> Z.shape, emb.inverse_transform(Z).shape, emb.get_feature_names_out().tolist()
    ((200, 2), (200, 5), ['vae0', 'vae1'])
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layers": ["array-like", None],
        "posterior": [StrOptions(set(POSTERIOR_NAMES))],
        "n_flows": [Interval(Integral, 1, None, closed="left")],
        "prior": [StrOptions(set(PRIORS))],
        "n_prior_modes": [Interval(Integral, 1, None, closed="left")],
        "likelihood": [StrOptions(set(LIKELIHOODS))],
        "feature_normalization": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "lr_schedule": [StrOptions({"auto", "plateau", "constant", "cosine"})],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "logdir": [str, os.PathLike, None],
        "validation_data": "no_validation",  # read and checked like X by fit
        "tensorboard": ["boolean"],
        "neighbor_weight": [Interval(Real, 0, None, closed="left")],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "neighbor_loss": [StrOptions(set(LOSSES))],
        "neighbor_graph": [StrOptions(set(GRAPHS))],
        "transform_steps": [Interval(Integral, 0, MAX_TRANSFORM_STEPS, closed="both")],
        "layout_steps": [Interval(Integral, 0, MAX_TRANSFORM_STEPS, closed="both"), StrOptions({"auto"})],
        "layout_method": [StrOptions(set(LAYOUT_METHODS))],
    }

    def __init__(self, n_components: int = 2, *, hidden_layers: tuple[int, ...] | None = None, posterior: str = "iaf",
                 n_flows: int = 5, prior: str = "mixture", n_prior_modes: int = 16, likelihood: str = "gaussian",
                 feature_normalization: bool = True, validation_fraction: float = 0.1, batch_size: int = 512,
                 learning_rate: float = 2e-3, max_epochs: int | None = None, lr_schedule: str = "auto",
                 early_stopping: bool | str = "auto", n_iter_no_change: int = 6, tol: float = 1e-4, dropout: float = 0.0,
                 activation: str = "elu", device: str = "auto", random_state: int | np.random.RandomState | None = None,
                 verbose: int = 0, warm_start: bool = False, logdir: str | os.PathLike[str] | None = None,
                 neighbor_weight: float = 0.4, n_neighbors: int = 15, validation_data: Any = None,
                 tensorboard: bool = True, neighbor_loss: str = "tsne", transform_steps: int = TRANSFORM_STEPS,
                 layout_steps: int | str = "auto", neighbor_graph: str = "knn", layout_method: str = "auto") -> None:
        self.n_components = n_components
        self.hidden_layers = hidden_layers
        self.posterior = posterior
        self.n_flows = n_flows
        self.prior = prior
        self.n_prior_modes = n_prior_modes
        self.likelihood = likelihood
        self.feature_normalization = feature_normalization
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.lr_schedule = lr_schedule
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.dropout = dropout
        self.activation = activation
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.logdir = logdir
        self.neighbor_weight = neighbor_weight
        self.n_neighbors = n_neighbors
        self.validation_data = validation_data
        self.tensorboard = tensorboard
        self.neighbor_loss = neighbor_loss
        self.transform_steps = transform_steps
        self.layout_steps = layout_steps
        self.neighbor_graph = neighbor_graph
        self.layout_method = layout_method

    # ------------------------------------------------------------------ checks
    def check_params(self) -> VAEEmbedder:
        """Check every parameter now, as :meth:`fit` does before it reads any data.

        Runs the checks of each parameter's type and range (``_parameter_constraints``,
        scikit-learn's parameter validation) and those of combinations, layer sizes and the
        device. :meth:`load` checks a saved file's parameters with it, and ``vaekit embed``
        its flags, before anything is read or written. ``validation_data`` is checked by
        :meth:`fit` when it reads it.

        Returns
        -------
        self

        Raises
        ------
        ValueError or TypeError
            The first bad parameter, with its value and what is accepted (scikit-learn's
            ``InvalidParameterError`` is both).

        Examples
        --------
        >>> VAEEmbedder(n_flows=2).check_params().n_flows
        2
        >>> VAEEmbedder(likelihood="bernoulli").check_params()
        Traceback (most recent call last):
        ...
        ValueError: likelihood='bernoulli' models data in [0, 1] as they are; set feature_normalization=False ...
        """
        self._validate_params()
        self._check_params()
        return self

    def _check_params(self) -> None:
        """Checks beyond ``_parameter_constraints`` (combinations, devices, layer sizes)."""
        for name in ("n_components", "n_flows", "n_prior_modes", "batch_size", "max_epochs", "n_iter_no_change",
                     "n_neighbors", "transform_steps", "layout_steps"):  # sklearn's Interval(Integral) lets bools through
            if isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be an int, got {getattr(self, name)!r} (a bool)")
        h = self.hidden_layers
        if h is not None and (len(h) == 0 or any(isinstance(v, bool) or not isinstance(v, Integral) or v < 1 for v in h)):
            raise ValueError(f"hidden_layers must be None or a non-empty sequence of positive ints, got {h!r}")
        if self.likelihood == "bernoulli" and self.feature_normalization:
            raise ValueError("likelihood='bernoulli' models data in [0, 1] as they are; set feature_normalization=False "
                             "(or use likelihood='gaussian' with normalised features)")
        self._torch_device()

    def _torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available here; use device='cpu' or 'auto'")
        return dev

    def _read_input(self, X: Any, *, reset: bool) -> Source:
        """``X`` as a checked :class:`Source`; records (reset) or checks the feature count and names.

        Every kind of input goes through :func:`~vaekit.embedding.inputs.validate_source`
        (dtype, emptiness, feature count, finite values in chunks). If any check fails, the
        estimator's attributes are left as they were.
        """
        names = ("n_features_in_", "feature_names_in_")
        before = {k: self.__dict__[k] for k in names if k in self.__dict__}
        try:
            source = streamed = as_source(X)
            if source is None:  # in memory: scikit-learn's checks record or compare n_features_in_ and the names
                source = ArraySource(check_array_input(self, X, reset=reset))
            validate_source(source, None if reset else self.n_features_in_)
        except BaseException:
            for k in names:
                self.__dict__.pop(k, None)
            self.__dict__.update(before)
            raise
        if reset and streamed is not None:  # streamed data have no column names
            self.n_features_in_ = source.n_features
            self.__dict__.pop("feature_names_in_", None)
        return source

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> VAEEmbedder:
        """Train the VAE on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), DataFrame, Tensor, numpy.memmap, str / path, or Source
            In-memory data, a memory-mapped array, a ``.npy`` file (memory-mapped), a
            directory tree of ``.npy`` files with one example each (streamed in batches), or a
            :class:`~vaekit.embedding.inputs.Source`. Every kind is checked the same way
            (:func:`~vaekit.embedding.inputs.validate_source`): NaN or infinity anywhere is
            refused with the input's name and the first bad example and feature.
        y : ignored

        Returns
        -------
        self
        """
        from . import _fitting

        self._check_params()
        return _fitting.fit(self, X)

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """``fit(X)`` then ``transform(X)``; an array of shape (n_samples, n_components).

        With a training layout it does not read ``X`` again: ``fit`` has already embedded
        and projected its rows (``embedding_`` and their principal coordinates), and
        ``transform``'s local optimisation starts from there (from ``embedding_``, or when
        ``layout_steps`` moved the layout from each row's neighbours' median), giving exactly
        ``fit(X).transform(X)``. Only with a moved layout and ``transform_steps=0`` does it call
        ``transform(X)``, which reads ``X`` again (the encoder's embedding is not kept).
        """
        self.fit(X, y, **fit_params)
        steps = self._transform_steps()
        if not self._has_layout() or (self._layout.moved and steps == 0):  # the encoder's embedding, as transform's
            return self.transform(X)
        if steps == 0:
            return self.embedding_.copy()
        # a moved layout: rows start at their neighbours' median, found from the coordinates fit kept
        return self._refine(None if self._layout.moved else self.embedding_, self._layout.coords, steps)

    # ------------------------------------------------------------------ use
    def _inference_model(self) -> Any:
        """A float64 copy of ``model_``: rows then agree to float32 precision whatever their position in a batch."""
        return copy.deepcopy(self.model_).double()

    def _chunks(self, source: Source, fn: Any, width: int, with_model: bool = True) -> np.ndarray:
        """``fn(model, normalised rows)`` over ``source`` in float64, in padded chunks of :data:`CHUNK` rows.

        Eval mode, no gradients. Matrix kernels may round a row differently depending on
        its position in a batch (1 ulp); computing in float64 and returning float32 makes
        every row's result independent of the batching. ``with_model=False``: ``fn`` does not
        read the model (it gets None; no float64 copy is made).
        """
        n = len(source)
        out = np.empty((n, width), dtype=np.float32)
        dev, model = self._torch_device(), self._inference_model() if with_model else None
        mean = torch.as_tensor(self.mean_, dtype=torch.float64, device=dev)
        scale = torch.as_tensor(self.scale_, dtype=torch.float64, device=dev)
        with torch.no_grad(), eval_mode(model) if model is not None else contextlib.nullcontext():
            for start in range(0, n, CHUNK):
                idx = np.arange(start, min(start + CHUNK, n))
                x = torch.zeros(CHUNK, source.n_features, dtype=torch.float64, device=dev)
                x[:len(idx)] = (torch.from_numpy(source.rows(idx)).to(dev, torch.float64) - mean) / scale
                out[idx] = fn(model, x)[:len(idx)].reshape(len(idx), -1).cpu().numpy()
        return out

    def transform(self, X: Any) -> np.ndarray:
        r"""Embed ``X``: the posterior mean pushed through the flow, then placed among the training layout.

        Each example's embedding starts at :math:`f_x(\mu(x))`, the IAF evaluated at the mean
        of its base Gaussian with the example's own context (for ``posterior="gaussian"``,
        :math:`\mu(x)`). No noise is drawn and dropout is off. With the neighbour term and
        ``transform_steps > 0`` (when ``layout_steps`` moved the training layout, the start is
        instead the coordinate-wise median of the example's ``n_neighbors`` nearest training
        rows' embeddings) it then takes ``transform_steps`` steps of a local
        optimisation against ``embedding_`` (see ``transform_steps``): the example's
        ``n_neighbors`` nearest rows of the training data attract it, shared training rows
        repel it. The network and the optimisation run in float64 and the result is rounded
        to float32, so each row's embedding is the same however ``X`` is split or ordered.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or any input ``fit`` accepts

        Returns
        -------
        ndarray of shape (n_samples, n_components), float32
        """
        check_is_fitted(self, "model_")
        steps = self._transform_steps()
        source = self._read_input(X, reset=False)
        if steps == 0 or not self._has_layout():
            return self._chunks(source, posterior_mean, self.n_components)
        if self._layout.moved:  # rows start at their neighbours' median: only their coordinates are needed
            return self._refine(None, self._encode_and_project(source, self._layout.projection, encode=False), steps)
        both = self._encode_and_project(source, self._layout.projection)
        return self._refine(both[:, :self.n_components], both[:, self.n_components:], steps)

    def _transform_steps(self) -> int:
        """``transform_steps``, checked now (it may have been set after ``fit``); the default for objects pickled without it."""
        steps = getattr(self, "transform_steps", TRANSFORM_STEPS)
        if isinstance(steps, bool) or not isinstance(steps, Integral) or not 0 <= steps <= MAX_TRANSFORM_STEPS:
            raise InvalidArgumentError(f"transform_steps must be an int in [0, {MAX_TRANSFORM_STEPS}], got {steps!r}")
        return int(steps)

    def _has_layout(self) -> bool:
        """Whether ``fit`` kept a training layout for ``transform`` (with the neighbour term; not in older saves)."""
        return hasattr(self, "embedding_") and hasattr(self, "_layout")

    def _encode_and_project(self, source: Source, projection: np.ndarray, encode: bool = True) -> np.ndarray:
        """Per row: the encoder's embedding (unless ``encode=False``), then the coordinates on the principal
        components ``projection`` (the same float64 values either way)."""
        proj = torch.as_tensor(projection, dtype=torch.float64, device=self._torch_device())
        if not encode:
            return self._chunks(source, lambda _, x: x @ proj, proj.shape[1], with_model=False)
        return self._chunks(source, lambda model, x: torch.cat([posterior_mean(model, x), x @ proj], 1),
                            self.n_components + proj.shape[1])

    def _refine(self, z0: np.ndarray | None, coords: np.ndarray, steps: int) -> np.ndarray:
        """``transform``'s local optimisation of rows at principal coordinates ``coords``, from embeddings ``z0``
        (the encoder's), or with ``z0=None`` from their neighbours' median (:func:`neighbor_median`)."""
        dev, layout = self._torch_device(), self._layout
        embedding = torch.as_tensor(self.embedding_, dtype=torch.float64, device=dev)
        reference = torch.as_tensor(layout.coords, device=dev)
        out = np.empty((len(coords), self.n_components), dtype=np.float32)
        for start in range(0, len(coords), REFINE_BLOCK):  # bounds the (rows, n_neighbors) partners in memory
            rows = slice(start, start + REFINE_BLOCK)
            near = nearest_reference(torch.as_tensor(coords[rows], device=dev), reference, layout.n_neighbors)
            partners = embedding[near]
            first = neighbor_median(partners) if z0 is None else torch.as_tensor(z0[rows], dtype=torch.float64, device=dev)
            weights = graph_weights(getattr(layout, "graph", "knn"), torch.as_tensor(coords[rows], device=dev), reference,
                                    near)
            z = refine_embedding(first, partners, embedding, steps, layout.seed, layout.loss, weights=weights)
            out[rows] = z.cpu().numpy()
        return out

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Decode embeddings: the mean of p(x|z), in the original feature units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_), float32
        """
        check_is_fitted(self, "model_")
        from sklearn.utils.validation import check_array

        Z = check_array(X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X, dtype=np.float64,
                        input_name="X (embeddings given to inverse_transform)")
        if Z.shape[1] != self.n_components:
            raise ValueError(f"X has {Z.shape[1]} columns but the embedding has n_components={self.n_components}")
        return self._decode(torch.from_numpy(Z))

    def _decode(self, z: torch.Tensor) -> np.ndarray:
        dev, model = self._torch_device(), self._inference_model()
        out = np.empty((len(z), self.n_features_in_), dtype=np.float32)
        with torch.no_grad(), eval_mode(model):
            for start in range(0, len(z), CHUNK):
                part = z[start:start + CHUNK]
                block = torch.zeros(CHUNK, self.n_components, dtype=torch.float64, device=dev)
                block[:len(part)] = part.to(dev, torch.float64)
                mean = model.decode(block).mean[:len(part)].reshape(len(part), -1).cpu().numpy()
                out[start:start + CHUNK] = mean * self.scale_ + self.mean_
        return out

    def sample(self, n_samples: int = 1, random_state: int | np.random.RandomState | None = None) -> np.ndarray:
        """Generate examples: decode draws from the prior (mean of p(x|z), original units).

        Parameters
        ----------
        n_samples : int
        random_state : int, RandomState or None
            Seeds the prior draws (torch's global state is left untouched).

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_), float32
        """
        check_is_fitted(self, "model_")
        from .._checks import check_int

        n = check_int("n_samples", n_samples)
        dev = self._torch_device()
        with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
            torch.manual_seed(int(check_random_state(random_state).randint(2**31 - 1)))
            with torch.no_grad():
                z = self.model_.sample_prior(n)[self.model_.latent_name].cpu()
        return self._decode(z)

    def score_samples(self, X: Any, k: int = 1, random_state: int | np.random.RandomState | None = 0) -> np.ndarray:
        r"""Per-example lower bound on :math:`\log p(x)` in nats, in the original feature units.

        ``k=1``: the ELBO; ``k>1``: the importance-weighted bound (IWAE) with ``k``
        posterior samples, tighter as ``k`` grows. Feature normalisation is accounted for
        (its log-Jacobian :math:`-\sum_j \log s_j` is added). Requires a posterior whose
        samples it can score (every family here).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        k : int, default=1
        random_state : int, RandomState or None, default=0
            Seeds the posterior samples. Each example's noise is drawn from a generator
            seeded by this seed and the bytes of the (normalised) example, so scores are reproducible and do
            not depend on the order or batching of ``X``.

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        check_is_fitted(self, "model_")
        from .._checks import check_int

        k = check_int("k", k)
        source = self._read_input(X, reset=False)
        log_jac = -float(np.log(self.scale_).sum())
        seed = int(check_random_state(random_state).randint(2**31 - 1))

        def bound(model: Any, x: torch.Tensor) -> torch.Tensor:
            eps = torch.from_numpy(row_noise(x.cpu().numpy(), seed, k, self.n_components)).to(x.device)
            w = log_weights_given_noise(model, x, eps)
            return logmeanexp(w, 0).unsqueeze(-1)

        return self._chunks(source, bound, 1)[:, 0].astype(np.float64) + log_jac

    def score(self, X: Any, y: Any = None, k: int = 1) -> float:
        """Mean of :meth:`score_samples` (average lower bound on log p(x) per example, in nats)."""
        return float(np.mean(self.score_samples(X, k=k)))

    # ------------------------------------------------------------------ names, tags, files
    @property
    def _n_features_out(self) -> int:
        return self.n_components

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output names ``["vae0", "vae1", ...]`` (``input_features`` is only checked against the fitted names)."""
        check_is_fitted(self, "model_")
        _check_feature_names_in(self, input_features, generate_names=False)
        return np.asarray([f"vae{i}" for i in range(self.n_components)], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # embeddings are float32 whatever the input dtype
        tags.non_deterministic = self.random_state is None
        return tags

    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Write the fitted embedder to directory ``path`` (see :func:`vaekit.embedding.io.save`)."""
        from .io import save

        return save(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | None = None, *, max_parameters: int | None = None,
             max_layers: int | None = None) -> VAEEmbedder:
        """Read an embedder written by :meth:`save` (no pickle; see :func:`vaekit.embedding.io.load`).

        Every file is checked before anything is built: ``embedder.json``'s keys, types and
        ranges, the model's size against ``max_parameters`` (default 2**31 numbers) and
        ``max_layers`` (default 1024 hidden layers or flow steps), the weights' recorded
        SHA-256, tensor names and shapes, and finite values (normalisation scales > 0).
        """
        from .io import MAX_LAYERS, MAX_PARAMETERS, load

        return load(path, device=device, max_parameters=MAX_PARAMETERS if max_parameters is None else max_parameters,
                    max_layers=MAX_LAYERS if max_layers is None else max_layers)

"""Predictors with group-level latent variables: ``p(y | x, z_groups)`` (:class:`GroupPredictor`).

Data come in groups (letters by one writer, lines of one role, students of one school),
possibly at several levels. Each group ``g`` of each level gets a latent vector ``z_g`` with a
mean-field Gaussian posterior (:class:`~vaekit.models.group_latent.GroupLatent`), injected into
any :class:`~vaekit.nn.predictors.Predictor`. The negative ELBO over the training set is

.. math:: -\\sum_i \\mathbb E_q \\log p(y_i | x_i, z_{g(i)}) + \\sum_l \\sum_g \\mathrm{KL}(q(z_g) \\| p(z_g)),

and :meth:`GroupPredictor.elbo_terms` spreads each level's total KL over the ``n_train``
training examples, so the mean loss of any minibatch is an unbiased estimate of the full
negative ELBO / ``n_train``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int
from ..nn.predictors import Predictor, SetEncoder
from ._common import plain_arg, short_arg
from .base import ElboTerms, LatentVariableModel, ValidationReport
from .group_latent import GroupLatent, Prior
from .group_metrics import group_metric_rows, summary_metrics
from .group_stats import VarianceComponents, group_effects, variance_components

__all__ = ["GroupLatent", "GroupModel", "GroupPredictor"]

Injection = Literal["none", "factor", "bias", "double", "lower", "weight"]
_INJECTIONS = ("none", "factor", "bias", "double", "lower", "weight")
_LIKELIHOODS = ("categorical", "gaussian", "gaussian_learned")


@runtime_checkable
class GroupModel(Protocol):
    """What new-group inference and group evaluation (:mod:`vaekit.inference.groups`) use of a
    group-latent model; :class:`GroupPredictor` implements it.

    Attributes
    ----------
    likelihood : str
        ``"categorical"`` or a Gaussian (``"gaussian"``, ``"gaussian_learned"``).
    level_names, group_names : list
        Name of each group level; per level, the raw id of each contiguous group id.
    latent_levels : list of int
        The levels that have a latent vector, in the order of :attr:`latent`'s tables.
    latent : GroupLatent or None
        The posterior (and prior) tables of the latent levels.
    predictor : Predictor
        The network (``trunk``, ``body``, ``mid_extra``, ``mid_features``, ``out_features``).
    group_encoder : SetEncoder or None
        The amortized encoder of new level-0 groups, if the model has one.
    """

    likelihood: str
    level_names: list[str]
    group_names: list[list[str]]
    latent_levels: list[int]
    latent: GroupLatent | None
    predictor: Predictor
    group_encoder: SetEncoder | None

    def split_batch(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        """``(x, y, groups)`` of a batch dict, checked."""
        ...

    def check_targets(self, y: Tensor, name: str = "y") -> None:
        """Raise unless ``y`` fits the likelihood and the outputs."""
        ...

    def latents(self, groups: Tensor, mode: Literal["sample", "mean"] = "sample",
                new_groups: Literal["error", "prior"] = "error", sample_shape: tuple[int, ...] = ()) -> list[Tensor]:
        """The latent-level vectors of ``groups`` (batch, n_levels), each (*sample_shape, batch, d)."""
        ...

    def outputs(self, x: Tensor, zs: Sequence[Tensor], *, start: Literal["input", "trunk", "body"] = "input") -> Tensor:
        """Predictor outputs given the latent-level vectors ``zs``."""
        ...

    def log_likelihood(self, out: Tensor, y: Tensor) -> Tensor:
        """``log p(y | outputs)`` per example, shape (batch,)."""
        ...

    def validation_report(self, val: Any, batch_size: int = 4096) -> ValidationReport | None:
        """Overall and per-group metrics on ``val``."""
        ...


class GroupPredictor(LatentVariableModel):
    """A predictor ``p(y | x, z_groups)`` with per-group latent vectors at each group level.

    Injection per level: ``"factor"`` concatenates the level's vector to the penultimate
    features (before the output layer); ``"bias"`` adds a linear map of it to the outputs;
    ``"double"`` uses two vectors, one concatenated after the predictor's trunk and one before
    the output layer; ``"lower"`` concatenates it after the trunk only (the lower vector of
    ``"double"`` on its own); ``"weight"`` generates the output layer's weights and biases from
    it (a linear hypernetwork, as in HLVNN: ``W_g = W + reshape(A z_g)``, ``b_g = b + B z_g``);
    ``"none"`` gives the level no latent (all ``"none"`` is the baseline).
    With a linear output layer ``factor`` and ``bias`` span the same functions (both add a
    linear map of ``z`` to the logits) and differ only in parametrization.

    The group tables are sized by the constructor's ``group_names`` (and ``group_counts``,
    ``n_train``, ``level_names``, ``data_shape``). Build the model from grouped data with
    :meth:`from_data`, which reads them from the data (:meth:`data_args`) and passes them to
    the constructor, so the recorded config (``config.yaml``) rebuilds the same model
    (``vaekit.load``); ``vaekit fit`` does the same for a config that leaves them out.

    Parameters
    ----------
    predictor : Predictor
        A network with ``trunk``/``body``/``head`` (:mod:`vaekit.nn.predictors`).
    likelihood : {"categorical", "gaussian", "gaussian_learned"}
        ``y`` given the outputs: classes/next tokens, a unit-variance Gaussian, or a Gaussian
        with a learned per-output standard deviation (:attr:`scale`). For a continuous
        outcome use ``"gaussian_learned"``: ``"gaussian"`` fixes the residual standard deviation
        at 1 (in the units of ``y``, standardized or not), which biases the group effects and
        the variance components unless the true residual sd happens to be 1.
    latent_features : int or list of int
        Dimension of each level's latent vector (per vector for ``double``).
    injection : {"none", "factor", "bias", "double", "lower", "weight"} or list of them
        One mode for all levels or one per level. ``"weight"`` needs a predictor whose
        output layer is the linear ``out`` of :meth:`Predictor.head
        <vaekit.nn.predictors.Predictor.head>` (all of :mod:`vaekit.nn.predictors`).
    prior : {"standard", "learned", "variational"}
        Prior of the group vectors (see :class:`GroupLatent`).
    kl_scale : {"dataset"}
        The KL per example is the total group KL / ``n_train``.
    group_names : list of list of str
        Per level, raw id (as a string) of each contiguous group id. Required (None is
        accepted by the signature only so that a config may leave it to :meth:`from_data`).
    group_counts : list of list of int, optional
        Per level, training examples per group (0 = unseen in training): the groups with a
        count are fitted (their KL enters the ELBO, they are predicted from their posterior).
        Not given: every group counts as fitted until ``Trainer.fit`` takes the counts from its
        data (:meth:`check_data_module`).
    n_train : int, optional
        Number of training examples (the KL per example is the total group KL / ``n_train``).
        Not given: ``Trainer.fit`` takes it from its data.
    new_group_encoder : bool
        Add an amortized set encoder of level-0 groups (trained by
        :func:`vaekit.inference.groups.fit_group_encoder`).
    level_names : list of str, optional
    data_shape : list of int, optional
        Shape of one ``x``.
    init_scale : float
        Initial posterior standard deviation of the group vectors.

    Examples
    --------
    >>> from vaekit.nn.predictors import MLPPredictor
    >>> m = GroupPredictor(MLPPredictor(3, 2, hidden=[8]), latent_features=2, group_names=[["a", "b"]],
    ...                    group_counts=[[3, 1]], n_train=4)
    >>> batch = {"x": torch.zeros(4, 3), "y": torch.tensor([0, 1, 0, 1]), "groups": torch.tensor([[0], [0], [0], [1]])}
    >>> t = m.elbo_terms(batch)
    >>> t.rec.shape, list(t.kl), m.predict(batch["x"], batch["groups"]).shape
    (torch.Size([4]), ['group/0'], torch.Size([4]))

    Sized from grouped data:

    >>> import numpy as np
    >>> from vaekit.data.grouped import GroupedArrays
    >>> data = GroupedArrays(np.zeros((6, 3)), ["a", "a", "b", "b", "c", "c"], np.array([0, 1, 0, 1, 0, 1]),
    ...                      val_fraction=0.0, test_fraction=0.0)
    >>> m = GroupPredictor.from_data(data, MLPPredictor(3, 2, hidden=[8]), latent_features=2)
    >>> m.group_names, m.n_train, [c.tolist() for c in m.counts]
    ([['a', 'b', 'c']], 6, [[2, 2, 2]])
    """

    def __init__(self, predictor: Predictor, likelihood: Literal["categorical", "gaussian", "gaussian_learned"] = "categorical",
                 latent_features: int | list[int] = 8, injection: Injection | list[Injection] = "factor",
                 prior: Prior = "standard", kl_scale: Literal["dataset"] = "dataset",
                 group_names: list[list[str]] | None = None, group_counts: list[list[int]] | None = None,
                 n_train: int | None = None, new_group_encoder: bool = False, level_names: list[str] | None = None,
                 data_shape: list[int] | None = None, init_scale: float = 0.1) -> None:
        super().__init__()
        if not isinstance(predictor, Predictor):
            raise TypeError(f"predictor must be a vaekit.nn.predictors.Predictor (trunk/body/head), got {type(predictor).__name__}")
        if likelihood not in _LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {list(_LIKELIHOODS)}, got {likelihood!r}")
        modes = [injection] if isinstance(injection, str) else list(injection)
        if not modes or any(m not in _INJECTIONS for m in modes):
            raise ValueError(f"injection must be one of {list(_INJECTIONS)} or a non-empty list of them, got {injection!r}")
        if prior not in ("standard", "learned", "variational"):
            raise ValueError(f"prior must be 'standard', 'learned' or 'variational', got {prior!r}")
        if kl_scale != "dataset":
            raise ValueError(f"kl_scale must be 'dataset' (total group KL / n_train per example), got {kl_scale!r}")
        self.predictor, self.likelihood, self.prior, self.init_scale = predictor, likelihood, prior, init_scale
        self._injection, self._latent_features = injection, latent_features
        self.new_group_encoder = bool(new_group_encoder)
        self.n_train = None if n_train is None else check_int("n_train", n_train)
        self.data_shape = tuple(data_shape) if data_shape is not None else ()
        if likelihood == "gaussian_learned":
            # The raw (pre-softplus) residual scale: scale = softplus(log_sigma) + 1e-4 (see `scale`). The
            # name is historical and kept as the state-dict key, so existing checkpoints load.
            self.log_sigma = nn.Parameter(torch.zeros(predictor.out_features))
        self.latent: GroupLatent | None = None
        self.group_encoder: SetEncoder | None = None  # built with new_group_encoder=True (level 0 has a latent)
        if group_names is None:
            raise ValueError("group_names is required (the raw id of each group per level): build the model from grouped "
                             "data with GroupPredictor.from_data(data, predictor, ...), which passes group_names, "
                             "group_counts, n_train, level_names and data_shape (vaekit fit does this for a config "
                             "that leaves them out)")
        self._build(group_names, group_counts, level_names)
        # the data-sized arguments the constructor was given (None: not given), which check_data_module compares
        self._given = {"group_names": self.group_names, "n_train": self.n_train,
                       "group_counts": [c.tolist() for c in self.counts] if group_counts is not None else None,
                       "level_names": self.level_names if level_names is not None else None,
                       "data_shape": list(self.data_shape) if data_shape is not None else None}

    # ------------------------------------------------------------------ construction
    def _build(self, group_names: Sequence[Sequence[Any]], group_counts: Sequence[Sequence[int]] | None,
               level_names: Sequence[str] | None) -> None:
        names = [[str(n) for n in level] for level in group_names]
        L = len(names)
        if L == 0 or any(len(n) == 0 for n in names):
            raise ValueError(f"group_names must list at least one group per level, got {[len(n) for n in names]} groups per level")
        modes = [self._injection] * L if isinstance(self._injection, str) else list(self._injection)
        if len(modes) != L:
            raise ValueError(f"injection lists {len(modes)} modes but the data has {L} group level(s); give one per level")
        lf = self._latent_features
        dims = [lf] * L if isinstance(lf, int) else list(lf)
        if len(dims) != L:
            raise ValueError(f"latent_features lists {len(dims)} sizes but the data has {L} group level(s)")
        dims = [check_int(f"latent_features[{l}]", d) for l, d in enumerate(dims)]
        counts = [[int(c) for c in level] for level in group_counts] if group_counts is not None else [[1] * len(n) for n in names]
        if [len(c) for c in counts] != [len(n) for n in names]:
            raise ValueError(f"group_counts has {[len(c) for c in counts]} groups per level but group_names has {[len(n) for n in names]}")
        self.level_names = [str(n) for n in level_names] if level_names is not None else [str(l) for l in range(L)]
        if len(self.level_names) != L:
            raise ValueError(f"level_names has {len(self.level_names)} names for {L} levels")
        self.modes, self.dims, self.group_names = modes, dims, names
        self.name_to_id = [{n: i for i, n in enumerate(level)} for level in names]
        on = [l for l in range(L) if modes[l] != "none"]
        self.latent_levels = on
        self.latent_names = tuple(f"group/{self.level_names[l]}" for l in on)
        self.latent_dims = {f"group/{self.level_names[l]}": dims[l] * (2 if modes[l] == "double" else 1) for l in on}
        if on:
            self.latent = GroupLatent([len(names[l]) for l in on], [self.latent_dims[f"group/{self.level_names[l]}"] for l in on],
                                      self.prior, self.init_scale)
        self._set_counts(counts)
        mid = sum(dims[l] for l in on if modes[l] in ("double", "lower"))
        late = sum(dims[l] for l in on if modes[l] in ("factor", "double"))
        self.predictor.widen(mid, late)
        self.bias_maps = nn.ModuleDict({str(l): nn.Linear(dims[l], self.predictor.out_features, bias=False)
                                        for l in on if modes[l] == "bias"})
        self.weight_maps = nn.ModuleDict({str(l): self._weight_map(dims[l]) for l in on if modes[l] == "weight"})
        if self.new_group_encoder and on and on[0] == 0:
            y_feat = self.predictor.out_features
            self.group_encoder = SetEncoder(self.predictor.mid_features + y_feat, self.latent_dims[self.latent_names[0]])

    def _set_counts(self, counts: Sequence[Sequence[int]]) -> None:
        """Training examples per group (``self.counts``); the groups with a count are the fitted ones."""
        self.counts = [torch.tensor([int(c) for c in level], dtype=torch.long) for level in counts]
        for i, l in enumerate(self.latent_levels):
            self.latent.set_active(i, self.counts[l] > 0)  # type: ignore[union-attr]

    def _weight_map(self, d: int) -> nn.Linear:
        """The hypernetwork of a ``"weight"`` level: ``z`` (d) -> deltas of the output layer's weights and biases."""
        pred = self.predictor
        if type(pred).head is not Predictor.head or not isinstance(getattr(pred, "out", None), nn.Linear):
            raise ValueError(f"injection='weight' generates the weights of the predictor's linear output layer 'out', but "
                             f"{type(pred).__name__} overrides head() or has no nn.Linear 'out'; use 'factor', 'bias', "
                             f"'double' or 'lower' with it")
        fan_in = pred.features + pred.extra + 1
        hyper = nn.Linear(d, pred.out_features * fan_in, bias=False)
        nn.init.normal_(hyper.weight, std=(d * fan_in) ** -0.5)  # at z ~ N(0, I): deltas of the scale of the layer's init
        return hyper

    def _weight_delta(self, h: Tensor, z: Tensor, level: int) -> Tensor:
        """``(W_g - W) h + (b_g - b)`` for the head input ``h`` (batch, ..., f) and ``z`` (batch, d)."""
        f, k = h.shape[-1], self.predictor.out_features
        wb = self.weight_maps[str(level)](z.to(h.dtype)).reshape(z.shape[0], k, f + 1)
        hf = h.reshape(h.shape[0], -1, f)
        return (torch.einsum("bsf,bkf->bsk", hf, wb[..., :f]) + wb[..., f].unsqueeze(1)).reshape(*h.shape[:-1], k)

    @property
    def n_levels(self) -> int:
        """Number of group levels."""
        return len(self.group_names)

    # ------------------------------------------------------------------ sized by the data
    @classmethod
    def data_args(cls, data: Any) -> dict[str, Any]:
        """The constructor arguments that a set-up grouped data module determines.

        ``group_names``, ``group_counts`` (training examples per group), ``n_train``,
        ``level_names`` and ``data_shape``, as plain values; :meth:`from_data` passes them to
        the constructor.

        Raises
        ------
        TypeError
            If ``data`` is not grouped data (``group_names``, ``train_group_counts``, ``train``).
        """
        for attr in ("group_names", "train_group_counts", "train"):
            if getattr(data, attr, None) is None:
                raise TypeError(f"{cls.__name__} needs grouped data (vaekit.data.grouped.GroupedData) with "
                                f"{attr!r}; {type(data).__name__} has none")
        return {"group_names": [[str(n) for n in level] for level in data.group_names],
                "group_counts": [[int(c) for c in level] for level in data.train_group_counts],
                "n_train": int(data.train["y"].shape[0]),
                "level_names": [str(n) for n in getattr(data, "level_names", None) or range(len(data.group_names))],
                "data_shape": [int(s) for s in data.data_shape]}

    def check_data_module(self, data: Any) -> None:
        """Raise unless ``data`` (set up) fits this model; called by ``Trainer.fit`` and :meth:`from_data`.

        Every argument of :meth:`data_args` that the constructor was given (not None) must equal
        the data's, and the data's task must fit the likelihood. A model built without
        ``group_counts`` or ``n_train`` then takes them from ``data``: the groups the training
        split has are the fitted ones (the others leave the KL and are new groups for
        prediction), and the KL per example is the total group KL / the data's ``n_train``. Its
        recorded arguments stay as received (the fitted-group masks are saved with its weights).

        Raises
        ------
        TypeError
            If ``data`` is not grouped data.
        ValueError
            If the model was sized for other grouped data (naming each differing argument with
            the model's and the data's value), or the task does not fit the likelihood.
        """
        task = getattr(data, "task", None)
        if task is not None and (task == "regression") != self.likelihood.startswith("gaussian"):
            raise ValueError(f"likelihood={self.likelihood!r} does not fit the data's task {task!r}: use 'categorical' "
                             f"for classification/sequence data and 'gaussian'/'gaussian_learned' for regression")
        derived = {k: plain_arg(v) for k, v in self.data_args(data).items()}
        given = {k: plain_arg(v) for k, v in self._given.items() if v is not None}
        diff = [f"its {k}={short_arg(v)} but the data give {k}={short_arg(derived[k])}"
                for k, v in given.items() if v != derived[k]]
        if diff:
            raise ValueError(f"this GroupPredictor was built for other grouped data: {'; '.join(diff)}; use the data "
                             f"it was built from, or build a new model with GroupPredictor.from_data(data, ...)")
        if "group_counts" not in given:
            self._set_counts(derived["group_counts"])
        if "n_train" not in given:
            self.n_train = derived["n_train"]

    # ------------------------------------------------------------------ ids
    def encode_groups(self, raw: Sequence[Sequence[Any]]) -> Tensor:
        """Contiguous ids of raw group ids: ``raw[l][i]`` is example i's raw id at level l.

        Returns
        -------
        Tensor of shape (n, n_levels), int64

        Raises
        ------
        ValueError
            For a missing level or a raw id that is not in ``group_names``.
        """
        if len(raw) != self.n_levels:
            raise ValueError(f"raw ids must give {self.n_levels} level(s) ({self.level_names}), got {len(raw)}")
        cols = []
        for l, ids in enumerate(raw):
            try:
                cols.append([self.name_to_id[l][str(r)] for r in ids])
            except KeyError as e:
                raise ValueError(f"unknown group {e.args[0]!r} at level {self.level_names[l]!r}; known: "
                                 f"{self.group_names[l][:5]}{'...' if len(self.group_names[l]) > 5 else ''}") from None
        if len({len(c) for c in cols}) > 1:
            raise ValueError(f"raw ids have different lengths per level: {[len(c) for c in cols]}")
        return torch.tensor(cols, dtype=torch.long).T.reshape(-1, self.n_levels)

    def validate_data(self, x: Any, name: str = "x") -> Any:
        """Check a batch dict ``{"x", "y", "groups"}``: keys, lengths, dtypes, shapes and id ranges."""
        if not isinstance(x, Mapping):
            raise TypeError(f"{name} must be a dict with keys 'x', 'y', 'groups', got {type(x).__name__}")
        missing = [k for k in ("x", "y", "groups") if k not in x]
        if missing:
            raise ValueError(f"{name} lacks key(s) {missing}; a grouped batch has 'x', 'y' and 'groups'")
        xs, y, g = x["x"], x["y"], x["groups"]
        for k, v in (("x", xs), ("y", y), ("groups", g)):
            if not isinstance(v, Tensor):
                raise TypeError(f"{name}['{k}'] must be a torch.Tensor, got {type(v).__name__}")
        n = {k: int(v.shape[0]) if v.dim() else 0 for k, v in (("x", xs), ("y", y), ("groups", g))}
        if len(set(n.values())) != 1 or n["x"] == 0:
            raise ValueError(f"{name}: 'x', 'y' and 'groups' must have the same non-zero number of examples, got {n}")
        if g.dim() != 2 or g.shape[1] != self.n_levels:
            raise ValueError(f"{name}['groups'] must have shape (n, {self.n_levels}) (levels {self.level_names}), got "
                             f"{tuple(g.shape)}: a group level is missing or extra")
        if g.dtype.is_floating_point or g.dtype == torch.bool:
            raise TypeError(f"{name}['groups'] must hold integer ids, got dtype {g.dtype}")
        for l in range(self.n_levels):
            lo, hi, G = int(g[:, l].min()), int(g[:, l].max()), len(self.group_names[l])
            if lo < 0 or hi >= G:
                raise ValueError(f"{name}['groups'][:, {l}] (level {self.level_names[l]!r}) has ids in [{lo}, {hi}], "
                                 f"accepted 0..{G - 1}")
        if self.data_shape and tuple(xs.shape[1:]) != self.data_shape:
            raise ValueError(f"{name}['x'] has shape {tuple(xs.shape)}, expected (n, {', '.join(map(str, self.data_shape))})")
        if xs.is_floating_point() and not bool(torch.isfinite(xs).all()):
            raise ValueError(f"{name}['x'] contains NaN/inf values")
        self.check_targets(y, f"{name}['y']")
        return x

    def check_targets(self, y: Tensor, name: str = "y") -> None:
        """Check outcomes ``y`` against the likelihood and the predictor's ``out_features``.

        Raises
        ------
        TypeError
            For integer/float outcomes that do not fit the likelihood.
        ValueError
            For classes out of range, a wrong number of outputs, or NaN/inf values.
        """
        K = self.predictor.out_features
        if self.likelihood == "categorical":
            if y.dtype.is_floating_point or y.dtype == torch.bool:
                raise TypeError(f"{name} must hold integer class ids for likelihood='categorical', got dtype {y.dtype}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= K):
                raise ValueError(f"{name} has classes in [{int(y.min())}, {int(y.max())}], accepted 0..{K - 1} "
                                 f"(the predictor's out_features={K})")
        else:
            if not y.is_floating_point():
                raise TypeError(f"{name} must be a float tensor for likelihood={self.likelihood!r}, got dtype {y.dtype}")
            if (y.reshape(y.shape[0], -1).shape[1] if y.dim() else 0) != K:
                raise ValueError(f"{name} has shape {tuple(y.shape)}, expected (n,) or (n, {K}) (predictor out_features={K})")
            if not bool(torch.isfinite(y).all()):
                raise ValueError(f"{name} contains NaN/inf values")

    def split_batch(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        """``(x, y, groups)`` of a batch dict ``{"x", "y", "groups"}``, with its lengths and levels checked.

        Raises
        ------
        TypeError
            If ``batch`` is not a dict with those keys.
        ValueError
            For different numbers of examples or a ``groups`` of the wrong shape.
        """
        if not isinstance(batch, Mapping) or any(k not in batch for k in ("x", "y", "groups")):
            raise TypeError("a GroupPredictor batch is a dict with keys 'x', 'y', 'groups' "
                            f"(got {type(batch).__name__}{' with keys ' + str(list(batch)) if isinstance(batch, Mapping) else ''})")
        x, y, g = batch["x"], batch["y"], batch["groups"]
        if not (x.shape[0] == y.shape[0] == g.shape[0]):
            raise ValueError(f"x, y and groups must have the same number of examples, got {x.shape[0]}, {y.shape[0]}, {g.shape[0]}")
        if g.dim() != 2 or g.shape[1] != self.n_levels:
            raise ValueError(f"groups must have shape (batch, {self.n_levels}) (levels {self.level_names}), got {tuple(g.shape)}")
        return x, y, g

    # ------------------------------------------------------------------ forward pieces
    def latents(self, groups: Tensor, mode: Literal["sample", "mean"] = "sample", new_groups: Literal["error", "prior"] = "error",
                sample_shape: tuple[int, ...] = ()) -> list[Tensor]:
        """Latent vectors of the latent levels for ``groups`` (batch, n_levels), each (*sample_shape, batch, d).

        ``new_groups="prior"`` uses the prior mean for groups never fitted (count 0, not
        inferred); ``"error"`` raises for them.
        """
        if self.latent is None:
            return []
        sub = groups[:, self.latent_levels]
        if mode == "sample":
            zs = self.latent.rsample(sub, sample_shape)
        else:
            zs = [z.expand(*sample_shape, *z.shape) for z in self.latent.mean(sub)]
        out = []
        for i, l in enumerate(self.latent_levels):
            unknown = ~self.latent.active(i)[sub[:, i]]
            if bool(unknown.any()):
                if new_groups != "prior":
                    bad = sorted({self.group_names[l][int(j)] for j in sub[:, i][unknown][:5]})
                    raise ValueError(f"group(s) {bad} of level {self.level_names[l]!r} were not seen in training and have no "
                                     f"inferred posterior; pass new_groups='prior' or infer them first "
                                     f"(vaekit.inference.groups.infer_new_group)")
                zs[i] = torch.where(unknown.unsqueeze(-1), self.latent.prior_params(i)[0].expand_as(zs[i]), zs[i])
            out.append(zs[i])
        return out

    def outputs(self, x: Tensor, zs: Sequence[Tensor], *, start: Literal["input", "trunk", "body"] = "input") -> Tensor:
        """Predictor outputs (logits or means) given the latent-level vectors ``zs`` (batch, d) each.

        ``start``: ``x`` is the input (``"input"``) or the predictor's ``trunk``/``body``
        output computed once for many latents (:meth:`Predictor.head_input
        <vaekit.nn.predictors.Predictor.head_input>`).
        """
        mid, late, bias, weight = [], [], 0.0, []
        for z, l in zip(zs, self.latent_levels):
            mode, d = self.modes[l], self.dims[l]
            if mode == "factor":
                late.append(z)
            elif mode == "lower":
                mid.append(z)
            elif mode == "double":
                mid.append(z[..., :d])
                late.append(z[..., d:])
            elif mode == "weight":
                weight.append((z, l))
            else:
                bias = bias + self.bias_maps[str(l)](z)
        h = self.predictor.head_input(x, torch.cat(mid, -1) if mid else None, torch.cat(late, -1) if late else None,
                                      start=start)
        out = self.predictor.head(h)
        for z, l in weight:
            out = out + self._weight_delta(h, z, l)
        if isinstance(bias, Tensor):
            bias = bias.reshape(bias.shape[0], *([1] * (out.dim() - 2)), bias.shape[-1])
        return out + bias

    def log_likelihood(self, out: Tensor, y: Tensor) -> Tensor:
        """``log p(y | outputs)`` per example (summed over sequence steps / output dims), shape (batch,)."""
        if self.likelihood == "categorical":
            ll = -F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1).long(), reduction="none")
            return ll.reshape(y.shape[0], -1).sum(-1)
        mean = out.reshape(y.shape[0], -1)
        return torch.distributions.Normal(mean, self.scale.to(mean)).log_prob(y.reshape(y.shape[0], -1).to(mean)).sum(-1)

    @property
    def scale(self) -> Tensor:
        """Residual standard deviation of a Gaussian likelihood per output, shape (out_features,).

        ``"gaussian_learned"``: ``softplus(log_sigma) + 1e-4``, where the parameter
        ``log_sigma`` is the *raw* (inverse-softplus) scale, not its log (the name is kept so
        saved weights load); ``"gaussian"``: ones (fixed). In the units the model was trained
        on (standardized ``y`` if the data module standardized it).

        Raises
        ------
        ValueError
            For ``likelihood="categorical"`` (no residual scale).
        """
        if self.likelihood == "gaussian_learned":
            return F.softplus(self.log_sigma) + 1e-4
        if self.likelihood == "gaussian":
            return next(self.predictor.parameters()).new_ones(self.predictor.out_features)
        raise ValueError(f"likelihood={self.likelihood!r} has no residual scale; 'gaussian' and 'gaussian_learned' do")

    # ------------------------------------------------------------------ protocol
    def elbo_terms(self, batch: Any) -> ElboTerms:
        """``rec = log p(y_i | x_i, z)`` at one posterior draw; ``kl["group/<level>"]`` = level KL / ``n_train``."""
        x, y, g = self.split_batch(batch)
        if self.latent is not None and self.n_train is None:
            raise RuntimeError("n_train is unknown: pass it to the constructor (GroupPredictor.from_data(data, ...) does; "
                               "Trainer.fit takes it from its data)")
        rec = self.log_likelihood(self.outputs(x, self.latents(g, "sample", new_groups="prior")), y)
        kl = {}
        if self.latent is not None:
            for name, total in zip(self.latent_names, self.latent.kl()):
                kl[name] = (total / self.n_train).expand(rec.shape[0])
        return ElboTerms(rec=rec, kl=kl)

    def log_weights(self, x: Any, k: int = 1) -> Tensor:
        """``log p(y_i | x_i, z_j)`` for ``k`` draws ``z_j ~ q`` of the group latents, shape (k, batch).

        ``x`` is a batch dict. The group latents are global, so this is a posterior-*predictive*
        estimate: ``logmeanexp`` over ``k`` gives ``log p(y_i | x_i, D_train)`` of held-out
        examples of seen groups (unseen groups use the prior).
        """
        k = check_int("k", k)
        xs, y, g = self.split_batch(x)
        zs = self.latents(g, "sample", new_groups="prior", sample_shape=(k,))
        return torch.stack([self.log_likelihood(self.outputs(xs, [z[j] for z in zs]), y) for j in range(k)])

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict_outputs(self, x: Tensor, groups: Tensor, new_groups: Literal["error", "prior"] = "error",
                        batch_size: int = 4096) -> Tensor:
        """Outputs at the posterior means of the group vectors, in chunks; shape (n, ..., out_features)."""
        if new_groups not in ("error", "prior"):
            raise ValueError(f"new_groups must be 'error' or 'prior', got {new_groups!r}")
        if x.shape[0] != groups.shape[0]:
            raise ValueError(f"x and groups must have the same number of examples, got {x.shape[0]} and {groups.shape[0]}")
        if self.latent is None:
            GroupLatent.check_ids(_Ranges(self), groups)  # type: ignore[arg-type]
        chunks = [self.outputs(x[i:i + batch_size], self.latents(groups[i:i + batch_size], "mean", new_groups))
                  for i in range(0, x.shape[0], batch_size)]
        return torch.cat(chunks)

    def predict_proba(self, x: Tensor, groups: Tensor, new_groups: Literal["error", "prior"] = "error") -> Tensor:
        """Class probabilities (categorical likelihood), shape (n, ..., n_classes)."""
        if self.likelihood != "categorical":
            raise ValueError(f"predict_proba needs likelihood='categorical', this model has {self.likelihood!r}; use predict")
        return torch.softmax(self.predict_outputs(x, groups, new_groups), -1)

    def predict(self, x: Tensor, groups: Tensor, new_groups: Literal["error", "prior"] = "error") -> Tensor:
        """Most probable class (categorical) or predicted mean (Gaussian) per example."""
        out = self.predict_outputs(x, groups, new_groups)
        if self.likelihood == "categorical":
            return out.argmax(-1)
        return out.squeeze(-1) if out.shape[-1] == 1 else out

    @torch.no_grad()
    def validation_report(self, val: Any, batch_size: int = 4096) -> ValidationReport:
        """Overall metrics, per-group percentiles and per-group rows (``tables["groups"]``) on ``val``."""
        x, y, g = self.split_batch(val)
        out = self.predict_outputs(x, g, new_groups="prior", batch_size=batch_size)
        task = "classification" if self.likelihood == "categorical" else "regression"
        metrics = summary_metrics(out, y, g, task, self.predictor.out_features)
        metrics["log_lik"] = float(self.log_likelihood(out, y).mean())
        rows = group_metric_rows(out, y, g, task, self.level_names, self.group_names, self.predictor.out_features)
        return ValidationReport(metrics, {"groups": rows})

    # ------------------------------------------------------------------ group statistics
    def variance_components(self, data: Any = None, *, x: Tensor | None = None, target_std: Any = None,
                            n_draws: int = 256, max_x: int = 256, seed: int = 0) -> VarianceComponents:
        """Between-group variance per level and residual variance, on the outcome's scale.

        ``between[level]`` is the variance of the mean prediction over groups drawn from the
        level's prior, averaged over reference inputs (for a random-intercept model, the
        intercepts' variance tau^2); ``between_posterior[level]`` the variance of the fitted groups'
        posterior-mean effects (:meth:`group_effects`); ``residual`` the likelihood's variance
        (``scale**2``; fixed at 1 for ``likelihood="gaussian"``). A target standardization of
        ``data`` is undone. See :func:`vaekit.models.group_stats.variance_components` for the
        definitions and parameters; ``.to_dict()`` of the result is JSON-ready.
        """
        return variance_components(self, data, x=x, target_std=target_std, n_draws=n_draws, max_x=max_x, seed=seed)

    def group_effects(self, data: Any = None, *, x: Tensor | None = None, level: int | str = 0, target_std: Any = None,
                      max_x: int = 256, seed: int = 0) -> Tensor:
        """Each group's effect on the mean prediction (outcome scale), shape (n_groups, out_features).

        NaN for groups with no fitted posterior; see :func:`vaekit.models.group_stats.group_effects`.
        """
        return group_effects(self, data, x=x, level=level, target_std=target_std, max_x=max_x, seed=seed)


class _Ranges:
    """Adapter so GroupLatent.check_ids can check id ranges of a model without latents."""

    def __init__(self, model: GroupPredictor) -> None:
        self.n_groups = [len(n) for n in model.group_names or []]
        self.n_levels = len(self.n_groups)

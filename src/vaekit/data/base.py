"""The data-module contract that the training loop, the CLI and the demo rely on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset

from vaekit._recording import Configurable

__all__ = ["DataModule", "Splits"]


@dataclass
class Splits:
    """Train / validation / test tensors as loaded, before flattening and binarization.

    Attributes
    ----------
    train : Tensor of shape (n_train, *data_shape)
        Float32 examples.
    train_labels : Tensor of shape (n_train,) or None
        Int64 labels.
    val, test : Tensor of shape (n, *data_shape) or None
        ``None`` when the split does not exist.
    val_labels, test_labels : Tensor of shape (n,) or None
    """

    train: Tensor
    train_labels: Tensor | None = None
    val: Tensor | None = None
    val_labels: Tensor | None = None
    test: Tensor | None = None
    test_labels: Tensor | None = None
    feature_mean: Tensor | None = None
    feature_std: Tensor | None = None


class DataModule(Configurable):
    """Base class of every vaekit dataset: three splits held in memory, plus an augmentation.

    Subclasses store and check their (plain, typed) constructor arguments in ``__init__``
    and implement :meth:`_load`; the base class does the rest in :meth:`setup`. Nothing is
    read before :meth:`setup` is called, so a config can name a dataset that is not on this
    machine yet. Constructor arguments are recorded (:class:`vaekit._recording.Configurable`),
    so a data module built in Python can be written back to a config.

    After :meth:`setup`:

    - ``train``: Tensor of shape (n_train, *data_shape), float32, in memory. (Data too
      large for memory may later be a :class:`torch.utils.data.Dataset` of single examples
      instead; the training loop then batches it with a ``DataLoader`` rather than by index
      on the device.)
    - ``val``, ``test``: Tensor of shape (n, *data_shape), float32, or ``None`` when the
      split does not exist.
    - ``train_labels``, ``val_labels``, ``test_labels``: int64 Tensor of shape (n,) or
      ``None``.
    - ``data_shape``: shape of one example.

    Binarization (attribute ``binarize``, set by subclasses that offer it):

    - ``"none"``: values as loaded.
    - ``"threshold"``: every split becomes ``(x > 0.5)`` as float32.
    - ``"dynamic"``: ``train`` keeps its intensities and :meth:`augment` draws a fresh
      ``torch.bernoulli(x)`` for each training batch (global torch RNG, so a checkpoint
      that saves the RNG state resumes the same draws); ``val`` and ``test`` are binarized
      once, with a generator seeded by :attr:`eval_binarize_seed`, so that evaluation is
      repeatable.

    Examples
    --------
    >>> import torch
    >>> from vaekit.data import ArrayData
    >>> data = ArrayData(torch.rand(10, 3), val_fraction=0.2, binarize="dynamic")
    >>> data.setup()
    >>> data.train.shape, data.val.shape, data.data_shape
    (torch.Size([8, 3]), torch.Size([2, 3]), (3,))
    >>> sorted(data.augment(data.train).unique().tolist()) in ([0.0, 1.0], [0.0], [1.0])
    True
    """

    #: Binarization mode: "none", "dynamic" or "threshold".
    binarize: str = "none"
    #: Flatten each example to one dimension.
    flatten: bool = False
    #: Seed of the one-off draw that binarizes ``val`` and ``test`` when ``binarize="dynamic"``.
    eval_binarize_seed: int = 0
    #: Standardize every feature with the training split's mean and standard deviation.
    standardize: bool = False
    #: Per-feature mean and standard deviation used by ``standardize`` (set by setup), shape data_shape.
    feature_mean: Tensor | None = None
    feature_std: Tensor | None = None

    train: Tensor | Dataset | None = None
    val: Tensor | None = None
    test: Tensor | None = None
    train_labels: Tensor | None = None
    val_labels: Tensor | None = None
    test_labels: Tensor | None = None
    _data_shape: tuple[int, ...] | None = None

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 28, 28)`` (available after :meth:`setup`)."""
        if self._data_shape is None:
            raise RuntimeError(f"{type(self).__name__}.data_shape is known only after setup(); call setup() first")
        return self._data_shape

    @property
    def is_setup(self) -> bool:
        """Whether :meth:`setup` has loaded the data."""
        return self._data_shape is not None

    def setup(self) -> None:
        """Load the data and fill the split attributes (a second call does nothing).

        Raises
        ------
        FileNotFoundError
            When a file-backed dataset is not found (the message says where it looked).
        ValueError, TypeError
            When the data is malformed; nothing is assigned in that case.
        """
        if self.is_setup:
            return
        splits = self._load()
        self._assign(self._finalize(splits))

    def augment(self, x: Tensor) -> Tensor:
        """Transform one training batch (already on its device).

        Parameters
        ----------
        x : Tensor of shape (batch, *data_shape)

        Returns
        -------
        Tensor of shape (batch, *data_shape)
            ``torch.bernoulli(x)`` when ``binarize="dynamic"``, otherwise ``x`` itself.
        """
        if self.binarize == "dynamic":
            return torch.bernoulli(x)
        return x

    def _load(self) -> Splits:
        """Read the data (subclasses implement this); called once, by :meth:`setup`."""
        raise NotImplementedError(f"{type(self).__name__} must implement _load()")

    def _finalize(self, splits: Splits) -> Splits:
        """Flatten and binarize the loaded splits (returns new tensors, assigns nothing)."""
        shape = tuple(splits.train.shape[1:])
        for name in ("val", "test"):
            x = getattr(splits, name)
            if x is not None and tuple(x.shape[1:]) != shape:
                raise ValueError(f"{name} examples have shape {tuple(x.shape[1:])}, but train examples have {shape}")
        if self.binarize != "none":
            for name in ("train", "val", "test"):
                x = getattr(splits, name)
                if x is not None and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
                    raise ValueError(
                        f"binarize={self.binarize!r} needs values in [0, 1]; {name} spans "
                        f"[{float(x.min()):g}, {float(x.max()):g}]"
                    )
        out = Splits(**vars(splits))
        if self.flatten:
            for name in ("train", "val", "test"):
                x = getattr(out, name)
                if x is not None:
                    setattr(out, name, x.reshape(x.shape[0], -1))
        if self.standardize:
            if self.binarize != "none":
                raise ValueError(f"standardize=True cannot be combined with binarize={self.binarize!r}")
            mean = out.train.mean(0)
            std = out.train.std(0, unbiased=False) if len(out.train) > 1 else torch.ones_like(mean)
            std = torch.where(std > 1e-8, std, torch.ones_like(std))  # constant features are only centred
            for name in ("train", "val", "test"):
                x = getattr(out, name)
                if x is not None:
                    setattr(out, name, (x - mean) / std)
            out.feature_mean, out.feature_std = mean, std
        if self.binarize == "threshold":
            for name in ("train", "val", "test"):
                x = getattr(out, name)
                if x is not None:
                    setattr(out, name, (x > 0.5).to(torch.float32))
        elif self.binarize == "dynamic":
            generator = torch.Generator().manual_seed(self.eval_binarize_seed)
            for name in ("val", "test"):
                x = getattr(out, name)
                if x is not None:
                    setattr(out, name, torch.bernoulli(x, generator=generator))
        return out

    def unstandardize(self, x: Tensor) -> Tensor:
        """Map standardized values (e.g. model samples) back to the original feature scale.

        >>> import torch
        >>> from vaekit.data import ArrayData
        >>> data = ArrayData(torch.tensor([[1.0, 10.0], [3.0, 30.0]]), val_fraction=0.0, standardize=True)
        >>> data.setup()
        >>> data.train
        tensor([[-1., -1.],
                [ 1.,  1.]])
        >>> data.unstandardize(data.train)
        tensor([[ 1., 10.],
                [ 3., 30.]])
        """
        if self.feature_mean is None or self.feature_std is None:
            return x
        return x * self.feature_std.to(x) + self.feature_mean.to(x)

    def _assign(self, splits: Splits) -> None:
        self.feature_mean, self.feature_std = splits.feature_mean, splits.feature_std
        self.train, self.val, self.test = splits.train, splits.val, splits.test
        self.train_labels, self.val_labels = splits.train_labels, splits.val_labels
        self.test_labels = splits.test_labels
        self._data_shape = tuple(int(s) for s in splits.train.shape[1:])

    def __repr__(self) -> str:
        sizes = {
            name: (None if getattr(self, name) is None else len(getattr(self, name)))
            for name in ("train", "val", "test")
        }
        state = f"data_shape={self._data_shape}, sizes={sizes}" if self.is_setup else "not set up"
        return f"{type(self).__name__}({state})"

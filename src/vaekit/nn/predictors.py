"""Predictor networks with injection points for group latents.

A predictor maps inputs ``x`` to outputs (class logits, regression means, next-token
logits) in three stages, so that a group-latent model (:class:`vaekit.models.group.GroupPredictor`)
can inject latent vectors at two depths of *any* predictor:

``h_mid = trunk(x)`` (``mid_features``) -> ``h = body(h_mid)`` (``features``) -> ``head(h)`` (``out_features``).

:meth:`Predictor.widen` rebuilds the input layers of ``body`` and ``head`` so that they
accept ``mid_extra`` / ``extra`` more features; :meth:`Predictor.forward` then concatenates
the given latent vectors there (broadcast over any sequence dimension). The group model's
constructor widens its predictor once, from its own arguments: the predictor's recorded
config stays what its constructor received, and the group model's config rebuilds the
widened network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from .._checks import check_int
from .._recording import Configurable
from .mlp import activation as _activation

__all__ = ["Predictor", "ImageCNN", "CharLSTM", "MLPPredictor", "LinearPredictor", "SetEncoder", "concat_latent"]


def concat_latent(h: Tensor, z: Tensor | None) -> Tensor:
    """Concatenate ``z`` of shape (batch, d) to ``h`` of shape (batch, ..., f) along the last dim.

    >>> concat_latent(torch.zeros(2, 5, 3), torch.ones(2, 4)).shape
    torch.Size([2, 5, 7])
    """
    if z is None:
        return h
    if z.shape[0] != h.shape[0] or z.dim() != 2:
        raise ValueError(f"latent of shape {tuple(z.shape)} does not match features of shape {tuple(h.shape)}; "
                         "expected (batch, d) with the features' batch size")
    z = z.reshape(z.shape[0], *([1] * (h.dim() - 2)), z.shape[1]).expand(*h.shape[:-1], z.shape[1])
    return torch.cat([h, z.to(h.dtype)], -1)


class Predictor(Configurable, nn.Module):
    """Base class: ``trunk``, ``body``, ``head`` and the sizes between them.

    Attributes
    ----------
    mid_features : int
        Size of ``trunk(x)`` (last dimension).
    features : int
        Size of ``body(h_mid)`` (penultimate features).
    out_features : int
        Size of ``head(h)``.
    mid_extra, extra : int
        Extra input features that ``body`` / ``head`` accept (set by :meth:`widen`).
    """

    mid_features: int
    features: int
    out_features: int
    mid_extra: int = 0
    extra: int = 0

    def trunk(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def body(self, h_mid: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def head(self, h: Tensor) -> Tensor:
        """Output layer: ``h`` of shape (batch, ..., features + extra) -> (batch, ..., out_features)."""
        return self.out(h)

    def _build_body(self, in_features: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def widen(self, mid_extra: int = 0, extra: int = 0) -> None:
        """Rebuild ``body`` / ``head`` input layers to take ``mid_extra`` / ``extra`` more features.

        Called once by the group model before training (fresh weights for those layers). A
        body that passes its input through (:class:`LinearPredictor`) widens ``features`` too.
        """
        mid_extra, extra = check_int("mid_extra", mid_extra, 0), check_int("extra", extra, 0)
        features = self.features
        if mid_extra != self.mid_extra:
            self._build_body(self.mid_features + mid_extra)  # may change ``features`` (an identity body)
            self.mid_extra = mid_extra
        if extra != self.extra or self.features != features:
            self.out = nn.Linear(self.features + extra, self.out_features)
            self.extra = extra

    def head_input(self, x: Tensor, z_mid: Tensor | None = None, z: Tensor | None = None, *,
                   start: Literal["input", "trunk", "body"] = "input") -> Tensor:
        """The output layer's input: ``body(trunk(x) ++ z_mid) ++ z``, shape (batch, ..., features + extra).

        Parameters
        ----------
        x : Tensor
            The input (batch, *x_shape); with ``start="trunk"`` the trunk's output ``trunk(x)``
            instead, with ``start="body"`` the body's output ``body(trunk(x))`` (only without
            ``z_mid``): a caller that evaluates many latents on the same examples computes
            the layers before them once.
        z_mid : Tensor of shape (batch, mid_extra), optional
        z : Tensor of shape (batch, extra), optional
        start : {"input", "trunk", "body"}
            Which stage ``x`` comes from.
        """
        for name, v, size in (("z_mid", z_mid, self.mid_extra), ("z", z, self.extra)):
            got = 0 if v is None else v.shape[-1]
            if got != size:
                raise ValueError(f"{name} must have {size} features (the width set by widen()), got {got}")
        if start == "body":
            if self.mid_extra:
                raise ValueError(f"start='body' skips the body, but this predictor takes z_mid ({self.mid_extra} features) "
                                 f"into it; use start='trunk'")
            return concat_latent(x, z)
        if start not in ("input", "trunk"):
            raise ValueError(f"start must be 'input', 'trunk' or 'body', got {start!r}")
        h_mid = self.trunk(x) if start == "input" else x
        return concat_latent(self.body(concat_latent(h_mid, z_mid)), z)

    def forward(self, x: Tensor, z_mid: Tensor | None = None, z: Tensor | None = None) -> Tensor:
        """Outputs of ``x`` with latents concatenated after the trunk (``z_mid``) and the body (``z``).

        Parameters
        ----------
        x : Tensor of shape (batch, *x_shape)
        z_mid : Tensor of shape (batch, mid_extra), optional
        z : Tensor of shape (batch, extra), optional

        Returns
        -------
        Tensor of shape (batch, ..., out_features)
        """
        return self.head(self.head_input(x, z_mid, z))


class ImageCNN(Predictor):
    """The CNN of LEAF's FEMNIST baseline for single-channel character images.

    ``small``: 16 and 32 filters of 3x3 and a dense layer of 256; ``large``: 32 and 64 filters
    of 5x5 and a dense layer of 2048. Each convolution is followed by ReLU and 2x2 max-pooling.
    The trunk ends at the flattened convolution features, the body is the dense layer.

    Parameters
    ----------
    n_classes : int
        Number of output classes (62 for FEMNIST).
    size : {"small", "large"}
    in_channels : int
    image_size : int
        Height = width of the input images (divisible by 4).

    Examples
    --------
    >>> net = ImageCNN(n_classes=10)
    >>> net(torch.zeros(2, 1, 28, 28)).shape, net.mid_features, net.features
    (torch.Size([2, 10]), 1568, 256)
    """

    def __init__(self, n_classes: int = 62, size: Literal["small", "large"] = "small", in_channels: int = 1,
                 image_size: int = 28) -> None:
        super().__init__()
        if size not in ("small", "large"):
            raise ValueError(f"size must be 'small' or 'large', got {size!r}")
        n_classes, in_channels = check_int("n_classes", n_classes), check_int("in_channels", in_channels)
        image_size = check_int("image_size", image_size, 4)
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2x2 poolings), got {image_size}")
        (c1, c2), kernel, dense = ((16, 32), 3, 256) if size == "small" else ((32, 64), 5, 2048)
        self.in_channels, self.image_size = in_channels, image_size
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.mid_features, self.features, self.out_features = c2 * (image_size // 4) ** 2, dense, n_classes
        self._build_body(self.mid_features)
        self.out = nn.Linear(dense, n_classes)

    def _build_body(self, in_features: int) -> None:
        self.dense = nn.Sequential(nn.Linear(in_features, self.features), nn.ReLU())

    def trunk(self, x: Tensor) -> Tensor:
        """``x`` of shape (batch, [in_channels,] image_size, image_size) -> (batch, mid_features)."""
        if x.dim() == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        want = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"ImageCNN expects images of shape (batch, {', '.join(map(str, want))}), got {tuple(x.shape)}")
        return self.convs(x)

    def body(self, h_mid: Tensor) -> Tensor:
        """(batch, mid_features + mid_extra) -> (batch, features)."""
        return self.dense(h_mid)


class CharLSTM(Predictor):
    """Character LSTM: embedding, ``n_layers`` LSTM layers, a dense output layer.

    The trunk is the embedding and the first ``n_layers - 1`` LSTM layers (one feature vector
    per step), the body the last LSTM layer, the head the dense layer. With
    ``predict="last"`` the body keeps the last step (next-character prediction of the
    character after the sequence, outputs (batch, vocab_size)); with ``predict="all"`` every
    step (outputs (batch, seq_len, vocab_size), targets are the next token of each step).

    Parameters
    ----------
    vocab_size : int
    embed_dim : int
    hidden : int
    n_layers : int
    seq_len : int
        Length of the input sequences (checked).
    predict : {"last", "all"}

    Examples
    --------
    >>> net = CharLSTM(vocab_size=20, hidden=16, seq_len=5)
    >>> net(torch.zeros(3, 5, dtype=torch.long)).shape
    torch.Size([3, 20])
    """

    def __init__(self, vocab_size: int = 80, embed_dim: int = 8, hidden: int = 256, n_layers: int = 2,
                 seq_len: int = 80, predict: Literal["last", "all"] = "last") -> None:
        super().__init__()
        if predict not in ("last", "all"):
            raise ValueError(f"predict must be 'last' or 'all', got {predict!r}")
        self.vocab_size, self.seq_len = check_int("vocab_size", vocab_size, 2), check_int("seq_len", seq_len)
        embed_dim, hidden, n_layers = check_int("embed_dim", embed_dim), check_int("hidden", hidden), check_int("n_layers", n_layers)
        self.predict = predict
        self.embed = nn.Embedding(self.vocab_size, embed_dim)
        self.lower = nn.LSTM(embed_dim, hidden, n_layers - 1, batch_first=True) if n_layers > 1 else None
        self.mid_features = hidden if n_layers > 1 else embed_dim
        self.features, self.out_features = hidden, self.vocab_size
        self._build_body(self.mid_features)
        self.out = nn.Linear(hidden, self.vocab_size)

    def _build_body(self, in_features: int) -> None:
        self.upper = nn.LSTM(in_features, self.features, 1, batch_first=True)

    def trunk(self, x: Tensor) -> Tensor:
        """Token ids of shape (batch, seq_len) -> (batch, seq_len, mid_features)."""
        if x.dim() != 2 or x.shape[1] != self.seq_len or x.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"CharLSTM expects integer token ids of shape (batch, {self.seq_len}), got "
                             f"{tuple(x.shape)} of dtype {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size - 1}] (vocab_size={self.vocab_size}), "
                             f"got range [{int(x.min())}, {int(x.max())}]")
        h = self.embed(x.long())
        return self.lower(h)[0] if self.lower is not None else h

    def body(self, h_mid: Tensor) -> Tensor:
        """(batch, seq_len, mid_features + mid_extra) -> (batch, features) or (batch, seq_len, features)."""
        h = self.upper(h_mid)[0]
        return h[:, -1] if self.predict == "last" else h


class MLPPredictor(Predictor):
    """Fully connected predictor for tabular data.

    The trunk is every hidden layer but the last, the body the last hidden layer, the head a
    linear output layer. With ``hidden=[]`` it is a linear model: trunk and body pass ``x``
    through (``mid_features = features = in_features``) and the head is the only layer, so a
    group latent injected by ``"bias"`` or ``"factor"`` gives a linear mixed model (random
    intercepts; see :class:`LinearPredictor`).

    Parameters
    ----------
    in_features, out_features : int
    hidden : sequence of int
        Hidden layer sizes; empty for a linear model.
    activation : str
        One of :data:`vaekit.nn.mlp.ACTIVATIONS` (``"identity"``: no activation).

    Examples
    --------
    >>> net = MLPPredictor(4, 1, hidden=(8, 8))
    >>> net(torch.zeros(5, 4)).shape, net.mid_features, net.features
    (torch.Size([5, 1]), 8, 8)
    >>> lin = MLPPredictor(4, 1, hidden=[])
    >>> lin(torch.zeros(5, 4)).shape, lin.features, sum(p.numel() for p in lin.parameters())
    (torch.Size([5, 1]), 4, 5)
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (64, 64),
                 activation: str = "relu") -> None:
        super().__init__()
        in_features, out_features = check_int("in_features", in_features), check_int("out_features", out_features)
        if isinstance(hidden, (str, int)):
            raise TypeError(f"hidden must be a list of layer sizes ([] for a linear model), got {hidden!r}")
        hidden = [check_int(f"hidden[{i}]", h) for i, h in enumerate(hidden)]
        _activation(activation)  # validates the name
        self.in_features, self.act, self.hidden = in_features, activation, hidden
        layers: list[nn.Module] = []
        for a, b in zip([in_features, *hidden[:-2]], hidden[:-1]):
            layers += [nn.Linear(a, b), _activation(activation)]
        self.lower = nn.Sequential(*layers)
        self.mid_features = hidden[-2] if len(hidden) > 1 else in_features
        self.features, self.out_features = (hidden[-1] if hidden else in_features), out_features
        self._build_body(self.mid_features)
        self.out = nn.Linear(self.features, out_features)

    def _build_body(self, in_features: int) -> None:
        if not self.hidden:  # linear model: the body passes (x, z_mid) through to the output layer
            self.upper: nn.Module = nn.Identity()
            self.features = in_features
        else:
            self.upper = nn.Sequential(nn.Linear(in_features, self.features), _activation(self.act))

    def trunk(self, x: Tensor) -> Tensor:
        """(batch, in_features) -> (batch, mid_features)."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"MLPPredictor expects inputs of shape (batch, {self.in_features}), got {tuple(x.shape)}")
        return self.lower(x)

    def body(self, h_mid: Tensor) -> Tensor:
        """(batch, mid_features + mid_extra) -> (batch, features)."""
        return self.upper(h_mid)


class LinearPredictor(MLPPredictor):
    """A linear model ``y = W x + b``: :class:`MLPPredictor` with no hidden layer.

    In a :class:`~vaekit.models.group.GroupPredictor` with ``injection="bias"`` (or
    ``"factor"``) and a Gaussian likelihood it is a linear mixed model with random intercepts
    per group (``latent_features=1`` per level: one intercept per group, its variance given by
    the learned prior); see :meth:`~vaekit.models.group.GroupPredictor.variance_components`.

    Parameters
    ----------
    in_features, out_features : int

    Examples
    --------
    >>> lin = LinearPredictor(3, 1)
    >>> lin(torch.ones(2, 3)).shape, [tuple(p.shape) for p in lin.parameters()]
    (torch.Size([2, 1]), [(1, 3), (1,)])
    """

    def __init__(self, in_features: int, out_features: int = 1) -> None:
        super().__init__(in_features, out_features, hidden=[], activation="identity")


class SetEncoder(Configurable, nn.Module):
    """Permutation-invariant encoder of a set of examples into a Gaussian (DeepSets).

    Each example's features go through ``phi`` (an MLP), are mean-pooled over the set, and
    ``rho`` maps the pooled vector to a location and a softplus scale. Used by
    :class:`vaekit.models.group.GroupPredictor` as an amortized encoder of a new group's latent
    from a few labelled examples.

    Parameters
    ----------
    in_features : int
        Features per example.
    latent_features : int
    hidden : int
        Width of ``phi`` and ``rho``.

    Examples
    --------
    >>> enc = SetEncoder(5, 3)
    >>> loc, scale = enc(torch.zeros(4, 7, 5))   # 4 sets of 7 examples
    >>> loc.shape, bool((scale > 0).all())
    (torch.Size([4, 3]), True)
    """

    def __init__(self, in_features: int, latent_features: int, hidden: int = 64) -> None:
        super().__init__()
        from .mlp import MLP

        self.in_features = check_int("in_features", in_features)
        self.latent_features = check_int("latent_features", latent_features)
        hidden = check_int("hidden", hidden)
        self.phi = MLP(self.in_features, hidden, [hidden], activation="elu", output_activation="elu")
        self.rho = MLP(hidden + 1, 2 * self.latent_features, [hidden], activation="elu")

    def forward(self, e: Tensor) -> tuple[Tensor, Tensor]:
        """``e`` of shape (*sets, k, in_features) -> loc, scale of shape (*sets, latent_features).

        The set size enters ``rho`` as ``log k`` so the scale can shrink with more examples.
        """
        if e.dim() < 2 or e.shape[-1] != self.in_features or e.shape[-2] == 0:
            raise ValueError(f"SetEncoder expects a non-empty set of shape (..., k, {self.in_features}), got {tuple(e.shape)}")
        pooled = self.phi(e).mean(-2)
        logk = torch.full_like(pooled[..., :1], float(e.shape[-2])).log()
        loc, raw = self.rho(torch.cat([pooled, logk], -1)).chunk(2, -1)
        return loc, nn.functional.softplus(raw) + 1e-4

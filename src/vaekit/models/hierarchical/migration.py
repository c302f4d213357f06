"""Load weights trained elsewhere into a vaekit model through a mapping of state-dict keys."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["Migration", "MigrationReport", "migrate", "transpose", "concat"]

Source = str | Callable[[Mapping[str, Tensor]], Tensor]


class _Recorder(dict):
    """A state dict that remembers which keys were read (to report unused foreign tensors)."""

    def __init__(self, data: Mapping[str, Tensor]) -> None:
        super().__init__(data)
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> Tensor:
        if key not in self:
            raise KeyError(f"foreign state dict has no key {key!r}")
        self.used.add(key)
        return super().__getitem__(key)


def transpose(key: str) -> Callable[[Mapping[str, Tensor]], Tensor]:
    """A mapping value: the foreign tensor ``key``, transposed (e.g. a ``x @ W`` weight into ``nn.Linear``).

    >>> transpose("w")({"w": torch.zeros(2, 3)}).shape
    torch.Size([3, 2])
    """
    return lambda sd: sd[key].t()


def concat(keys: Sequence[str], dim: int = 0) -> Callable[[Mapping[str, Tensor]], Tensor]:
    """A mapping value: foreign tensors concatenated (e.g. separate mean and scale heads into one layer).

    >>> concat(["mu.bias", "sigma.bias"])({"mu.bias": torch.zeros(2), "sigma.bias": torch.ones(2)})
    tensor([0., 0., 1., 1.])
    """
    keys = list(keys)
    return lambda sd: torch.cat([sd[k] for k in keys], dim)


@dataclass
class MigrationReport:
    """What :meth:`Migration.migrate` did (or would do).

    Attributes
    ----------
    loaded : list of str
        Model keys given a foreign tensor.
    missing : list of str
        Model keys no mapping covers (and not in ``keep``).
    unused : list of str
        Foreign keys no mapping read.
    mismatched : list of str
        ``"key: model (shape) vs foreign (shape)"`` per shape mismatch.
    errors : list of str
        Mappings that failed (a missing foreign key, a transform that raised).
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No missing, unused, mismatched or failed keys."""
        return not (self.missing or self.unused or self.mismatched or self.errors)


class Migration:
    """A mapping from a foreign state dict to a vaekit model's parameters and buffers.

    Parameters
    ----------
    mapping : dict of str to (str or callable)
        Model key -> foreign key, or -> ``fn(foreign_state_dict) -> Tensor`` for a
        transform (:func:`transpose`, :func:`concat` or your own). A model key ending in
        ``"."`` with a foreign key ending in ``"."`` maps a whole prefix
        (``{"blocks.h1.net.": "encoder.fc1."}``).
    keep : sequence of str
        Model keys, or key prefixes, deliberately left as initialised.

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(2, 3))
    >>> foreign = {"fc.w": torch.ones(2, 3), "fc.b": torch.zeros(3)}
    >>> report = Migration({"0.weight": transpose("fc.w"), "0.bias": "fc.b"}).migrate(model, foreign)
    >>> report.loaded, float(model[0].weight.detach().sum())
    (['0.bias', '0.weight'], 6.0)
    """

    def __init__(self, mapping: Mapping[str, Source], keep: Sequence[str] = ()) -> None:
        if not isinstance(mapping, Mapping):
            raise TypeError(f"mapping must be a dict of model key -> foreign key or callable, got {type(mapping).__name__}")
        for k, v in mapping.items():
            if not isinstance(k, str) or not (isinstance(v, str) or callable(v)):
                raise TypeError(f"mapping[{k!r}] must map a model key (str) to a foreign key (str) or a callable, got {v!r}")
            if k.endswith(".") != (isinstance(v, str) and v.endswith(".")):
                raise ValueError(f"mapping[{k!r}] = {v!r}: a prefix (ending in '.') must map to a prefix")
        self.mapping, self.keep = dict(mapping), list(keep)

    def _expand(self, model_keys: Sequence[str], foreign: Mapping[str, Tensor]) -> dict[str, Source]:
        out: dict[str, Source] = {}
        for k, v in self.mapping.items():
            if k.endswith("."):
                assert isinstance(v, str)
                for mk in model_keys:
                    if mk.startswith(k):
                        out[mk] = v + mk[len(k):]
            else:
                out[k] = v
        return out

    def plan(self, model: nn.Module, foreign_state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], MigrationReport]:
        """The tensors to load and the report, without touching the model."""
        target = model.state_dict()
        rec, report, tensors = _Recorder(foreign_state_dict), MigrationReport(), {}
        for mk, src in self._expand(list(target), foreign_state_dict).items():
            if mk not in target:
                report.errors.append(f"{mk}: the model has no such key")
                continue
            try:
                t = rec[src] if isinstance(src, str) else src(rec)
            except Exception as e:  # a missing key or a failing transform: report it with the model key
                report.errors.append(f"{mk}: {e}")
                continue
            if tuple(t.shape) != tuple(target[mk].shape):
                report.mismatched.append(f"{mk}: model {tuple(target[mk].shape)} vs foreign {tuple(t.shape)}")
                continue
            tensors[mk] = t
        kept = [k for k in target if any(k.startswith(p) for p in self.keep)]
        report.loaded = sorted(tensors)
        report.missing = sorted(k for k in target if k not in tensors and k not in kept
                                and not any(m.startswith(k + ":") for m in report.mismatched + report.errors))
        report.unused = sorted(k for k in foreign_state_dict if k not in rec.used)
        return tensors, report

    def migrate(self, model: nn.Module, foreign_state_dict: Mapping[str, Tensor], strict: bool = True) -> MigrationReport:
        """Copy the mapped foreign tensors into ``model``.

        Parameters
        ----------
        model : nn.Module
        foreign_state_dict : mapping of str to Tensor
        strict : bool
            Refuse (before changing anything) when a model key is not mapped, a foreign
            key is not used, a shape differs or a mapping fails; otherwise load what maps.

        Returns
        -------
        MigrationReport

        Raises
        ------
        ValueError
            In strict mode, naming every unmapped, unused, mismatched and failed key.
        """
        tensors, report = self.plan(model, foreign_state_dict)
        if strict and not report.ok:
            parts = [f"{what}: {', '.join(keys)}" for what, keys in (
                ("model keys with no mapping", report.missing), ("foreign keys not used", report.unused),
                ("shape mismatches", report.mismatched), ("failed mappings", report.errors)) if keys]
            raise ValueError("migration refused (strict=True), nothing was loaded; " + "; ".join(parts))
        with torch.no_grad():
            state = model.state_dict()
            for k, t in tensors.items():
                state[k].copy_(t.to(dtype=state[k].dtype, device=state[k].device))
        return report


def migrate(model: nn.Module, foreign_state_dict: Mapping[str, Tensor], mapping: Mapping[str, Source],
            strict: bool = True, keep: Sequence[str] = ()) -> MigrationReport:
    """``Migration(mapping, keep).migrate(model, foreign_state_dict, strict)``."""
    return Migration(mapping, keep).migrate(model, foreign_state_dict, strict)

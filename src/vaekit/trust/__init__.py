"""The trust model of run directories: a received ``config.yaml`` is data, not code.

A config that *you* write and run (``vaekit fit --config my.yaml``,
:func:`vaekit.config.fit_config`) may name any importable class. A config read back from a
run directory (:func:`vaekit.load`, :func:`vaekit.runs.load_data`, ``vaekit evaluate``,
``sample``, ``analyze``, ``graph``, ``fit --resume``) is checked first by
:func:`check_config_trust`: every ``class_path`` in it, at any depth, and every string
given to a parameter that jsonargparse would import (one typed as a class, ``type[...]``
or a callable) must name a *constructible type*, decided from the string alone, before
anything is imported or built. The constructible types are

- the public classes of :data:`REGISTRY_PACKAGES` (models, networks, distributions and
  flows, likelihoods, data modules, objectives) that derive from ``torch.nn.Module`` or
  record their configuration (:class:`vaekit.Configurable`), and the factory functions
  there whose return type is such a class (``mlp_vae``, ``ladder_vae``, ...), under their
  defining path and every public alias (``vaekit.models.VAE`` and ``vaekit.models.vae.VAE``);
- the simple layers of ``torch.nn`` in :data:`TORCH_LAYERS` (``torch.nn.Linear``, ``torch.nn.ELU``, ...),
  whose arguments are sizes, rates and flags (not the containers and composite layers, whose
  arguments take other modules or anything at all);
- classes and functions the user allows: :func:`register_constructible` for the whole
  process, or ``allow=[MyEncoder, "mypkg.MyModel"]`` for one call;

never the code loaders :data:`CODE_LOADERS` (``from_python`` runs the file or function its
``source`` names). Anything else is refused with :class:`UntrustedConfigError`, unless the
caller passes ``trust_code=True`` (CLI ``--trust-code``): then it is built and a
:class:`TrustWarning` names every class path and source from outside the registry.

A bare class name (``class_path: VAE``) is resolved as jsonargparse resolves it, among the
already imported subclasses of the parameter's type; it is accepted only when every class
of that name there is constructible. A string jsonargparse parses as YAML is read, as a list
or mapping, at the type of its parameter; a string it would read as a config file, and a
dotted key it would read as nested keys, are refused.

The build that follows runs inside :func:`building_from_run`, the second line of defence:
jsonargparse is given the checked mapping (no file, so no path is read relative to the run)
and, while it builds, imports nothing outside the registry and reads no file; the code
loaders refuse to run there.
"""

from ._check import SECTION_BASES, building_from_run, check_config_trust, refuse_code_loading, resolve_class_path
from ._registry import (CODE_LOADERS, REGISTRY_PACKAGES, TORCH_LAYERS, TrustWarning, UntrustedConfigError,
                        is_constructible, register_constructible)

__all__ = ["UntrustedConfigError", "TrustWarning", "register_constructible", "is_constructible", "check_config_trust",
           "resolve_class_path", "building_from_run", "refuse_code_loading", "REGISTRY_PACKAGES", "TORCH_LAYERS", "CODE_LOADERS",
           "SECTION_BASES"]

for _obj in (UntrustedConfigError, TrustWarning, register_constructible, is_constructible, check_config_trust,
             resolve_class_path, building_from_run, refuse_code_loading):
    _obj.__module__ = __name__  # documented, and shown in tracebacks, as vaekit.trust.NAME
del _obj

"""``vaekit evaluate RUN_DIR``: evaluate a trained run, writing ``RUN_DIR/eval/``.

Which evaluation runs is decided by the class that the run's ``config.yaml`` names
(:func:`~vaekit.commands.run_model_class`), before any model is built: a group-latent
model (:class:`~vaekit.models.GroupPredictor`) gets metrics per group and the new-group
data-efficiency curve (:func:`vaekit.runs.evaluate_group_run`); every other model the ELBO
and the IWAE log-likelihood, optionally AIS and the inference-gap table
(:func:`vaekit.runs.evaluate_run`). When the config does not tell the class (a factory
whose return annotation is missing, does not resolve, or names a base class of
``GroupPredictor``) the model is built first and its class decides. Either way the model is
built once. AIS runs on every model (hierarchical VAEs included); ``--local-opt`` needs a
model that declares ``amortized`` (a single-latent VAE) and is refused otherwise before
anything is written (before the model is built when the config tells its class).
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import CLIError, add_trust_code, run_model_class, untrusted_as_cli

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vaekit evaluate``."""
    p = argparse.ArgumentParser(prog="vaekit evaluate", description="ELBO and IWAE log-likelihood of a trained run; writes eval/*.json")
    p.add_argument("run_dir")
    p.add_argument("--iwae-k", type=int, default=5000, help="importance samples per example (default 5000)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--n-points", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--batch-size", type=int, default=None, help="examples per batch (default: automatic)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ais-chains", type=int, default=None, help="run AIS with this many chains per example")
    p.add_argument("--ais-steps", type=int, default=None, help="AIS annealing steps T (T+1 distributions; default 1000 with AIS)")
    p.add_argument("--local-opt", nargs="+", default=[], metavar="FAMILY",
                   help="optimise these posterior families per datapoint (e.g. ffg af) and write the gap table")
    p.add_argument("--local-opt-steps", type=int, default=10000, help="maximum local-optimisation steps per batch")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 5, 10, 20], metavar="K",
                   help="group-latent runs: labelled examples per new group for the data-efficiency curve")
    p.add_argument("--max-groups", type=int, default=50,
                   help="group-latent runs: groups (drawn at random) that the data-efficiency curve treats as new")
    p.add_argument("--methods", nargs="+", default=None, choices=["prior", "optimize", "amortized"], metavar="METHOD",
                   help="group-latent runs: new-group inference to score: prior, optimize, amortized "
                        "(default: prior optimize, + amortized when the model has a set encoder)")
    p.add_argument("--steps", type=int, default=100, help="group-latent runs: Adam steps of 'optimize' per new group (default 100)")
    p.add_argument("--shuffles", type=int, default=5,
                   help="group-latent runs: shuffles of each group's examples that the curve averages (default 5)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress report (default: a bar with the time left on a terminal, a few lines otherwise)")
    p.add_argument("--force", action="store_true",
                   help="run estimates beyond the work budget of 1e10 (sample, example) pairs (see docs/estimators.md)")
    add_trust_code(p)
    return p


def main(argv: Sequence[str]) -> None:
    """Run ``vaekit evaluate`` with the arguments ``argv`` (after the subcommand)."""
    from ..models import GroupPredictor

    a = build_parser().parse_args(list(argv))
    cls = run_model_class(a.run_dir, trust_code=a.trust_code)
    model = None
    if cls is None or (cls is not GroupPredictor and issubclass(GroupPredictor, cls)):
        # the config does not tell whether the model is a GroupPredictor: build it (once) and ask the model
        from ..runs import load

        with untrusted_as_cli():
            model = load(a.run_dir, checkpoint=a.checkpoint, trust_code=a.trust_code)
        cls = type(model)
    if issubclass(cls, GroupPredictor):
        _evaluate_groups(a, model)
    else:
        if a.local_opt:
            _check_local_opt(cls)
        _evaluate_likelihood(a, model)


def _check_local_opt(cls: type) -> None:
    """Refuse ``--local-opt`` for a model class that declares no ``amortized`` (before anything is built or written).

    A class that overrides it but refuses at run time is caught by :func:`vaekit.runs.evaluate_run`,
    also before anything is written.
    """
    from ..models import LatentVariableModel

    if issubclass(cls, LatentVariableModel) and cls.amortized is LatentVariableModel.amortized:
        raise CLIError(f"--local-opt needs a model that declares amortized(x) -> (context, family) (a single-latent "
                       f"model with an encoder and a posterior family, like vaekit.models.VAE); the run's model, "
                       f"{cls.__name__}, does not, so its posterior cannot be optimised per datapoint. Leave out "
                       f"--local-opt for the ELBO, IWAE, AIS (--ais-chains/--ais-steps) and the inference gap, without "
                       f"the approximation/amortization split")


def _evaluate_likelihood(a: argparse.Namespace, model: Any = None) -> None:
    """ELBO and IWAE log p(x) (and with ``--ais-chains``/``--local-opt`` the gap table) of a latent-variable model."""
    from ..inference.budget import WorkBudgetError
    from ..runs import evaluate_run

    try:
        with untrusted_as_cli():
            out = evaluate_run(a.run_dir, iwae_k=a.iwae_k, split=a.split, n_points=a.n_points, batch_size=a.batch_size,
                               checkpoint=a.checkpoint, device=a.device, seed=a.seed, ais_chains=a.ais_chains,
                               ais_steps=a.ais_steps, local_opt=a.local_opt, local_opt_steps=a.local_opt_steps,
                               progress=not a.no_progress, force=a.force, trust_code=a.trust_code, model=model)
    except WorkBudgetError as e:  # in the words of the command line
        flags = {"iwae_log_likelihood": {"k": "--iwae-k"}, "ais_log_likelihood": {"n_chains": "--ais-chains",
                 "n_steps": "--ais-steps"}, "optimize_local_posterior": {"max_steps": "--local-opt-steps"}}
        names = {"n": "--n-points", **flags.get(e.work.estimator, {})}
        raise CLIError(e.describe(names, force="--force", adjustable=list(names))) from None
    print(f"{a.split}: n={out['n']}  ELBO {out['elbo']:.3f} ± {out['elbo_stderr']:.3f}  "
          f"IWAE(k={out['k']}) log p(x) {out['iwae']:.3f} ± {out['iwae_stderr']:.3f} nats  ({out['seconds']:.1f} s on {out['device']})")
    print(f"written: {out['path']}")
    if "gaps" in out:
        from ..inference.gaps import GapColumn, gap_table

        g = out["gaps"]
        if g["ais"] is not None:
            ais, se = g["settings"]["ais"], g["stderr"].get("ais", float("nan"))
            print(f"{a.split}: AIS({ais['n_chains']} chains, {ais['n_steps']} steps) log p(x) {g['ais']:.3f} ± {se:.3f} "
                  f"nats; log p̂(x) = per-example max(AIS, IWAE) {g['log_px']:.3f}")
        fields = {k: g[k] for k in GapColumn.__dataclass_fields__}
        print(gap_table([GapColumn(**fields)]))
        print(f"written: {out['gaps_path']} (and .json, .csv)")


def _evaluate_groups(a: argparse.Namespace, model: Any = None) -> None:
    """Per-group metrics, the new-group data-efficiency curve and variance components of a group-latent model."""
    from ..inference.groups import FewGroupsWarning
    from ..runs import evaluate_group_run

    if any(ks < 1 for ks in a.ks):
        raise CLIError(f"--ks must be positive integers, got {a.ks}")
    for flag, v, low in (("--max-groups", a.max_groups, 1), ("--steps", a.steps, 0), ("--shuffles", a.shuffles, 1)):
        if v < low:
            raise CLIError(f"{flag} must be an integer >= {low}, got {v}")
    with untrusted_as_cli(), warnings.catch_warnings():  # the warnings are printed below from the result
        warnings.simplefilter("ignore", FewGroupsWarning)
        out = evaluate_group_run(a.run_dir, split=a.split, ks=a.ks, checkpoint=a.checkpoint, device=a.device or "cpu",
                                 seed=a.seed, max_groups=a.max_groups, methods=a.methods, steps=a.steps,
                                 shuffles=a.shuffles, trust_code=a.trust_code, model=model)
    print(f"{a.split}: " + "  ".join(f"{k} {v:.4f}" for k, v in out["metrics"].items()))
    curve = out["data_efficiency"]
    if curve:
        print(f"new groups ({curve[0]['n_groups']} groups x {curve[0]['shuffles']} shuffles of their examples; "
              f"± standard error over groups; gain = paired improvement over the prior mean):")
    for r in curve:
        gain = f"  gain {r['gain']:+.4f} ± {r['gain_stderr']:.4f}" if "gain" in r and r["method"] != "prior" else ""
        print(f"  new groups, {r['method']:>9}, k={r['k']:>3}: {r['metric']} {r['value']:.4f} ± {r['stderr']:.4f}"
              f"  (n={r['n_groups']} groups){gain}")
    for note in out.get("warnings", []):
        print(f"WARNING: {note}")
    if "variance_components" in out:  # Gaussian likelihoods: on the outcome's scale
        from ..models.group_stats import VarianceComponents

        print(VarianceComponents(**out["variance_components"]))
        print(f"written: {Path(a.run_dir) / 'eval'}/variance_components.json")
    print(f"written: {Path(a.run_dir) / 'eval'}/group_metrics.json, groups_eval.csv, data_efficiency.csv/.png")

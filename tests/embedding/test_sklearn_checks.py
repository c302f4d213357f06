"""VAEEmbedder passes scikit-learn's estimator checks (every one runs; none is expected to fail)."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from vaekit.embedding import VAEEmbedder

TINY = VAEEmbedder(hidden_layers=(8,), n_flows=1, n_prior_modes=2, max_epochs=2, batch_size=64, random_state=0,
                   device="cpu")


#: The same with the stochastic-neighbour term on (another loss term and the PCA of the inputs inside fit).
TINY_NEIGHBORS = VAEEmbedder(hidden_layers=(8,), n_flows=1, n_prior_modes=2, max_epochs=2, batch_size=64,
                             random_state=0, device="cpu", neighbor_weight=1.0)


@parametrize_with_checks([TINY, TINY_NEIGHBORS])
def test_sklearn_compatible(estimator, check):
    check(estimator)

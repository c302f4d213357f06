from __future__ import annotations

import pytest
from analysis_helpers import cluster_data, trained_vae, two_latent


@pytest.fixture(scope="session")
def clusters():
    """300 binary 8x8 images around 3 prototypes, and their prototype labels."""
    return cluster_data()


@pytest.fixture(scope="session")
def vae(clusters):
    """A VAE with 4 latent dimensions trained for 300 steps on the clusters (eval mode)."""
    return trained_vae(clusters[0])


@pytest.fixture(scope="session")
def two(clusters):
    """The two-latent model (latents 'a' and 'b') trained on the clusters."""
    return two_latent(clusters[0])

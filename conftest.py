"""Test-wide settings (at the repository root, so that doctest collection of tests/ does not import it twice)."""

import torch

# The models in the tests are tiny: one thread avoids thread-pool overhead and contention on small CI
# machines (2 cores), where two threads made single steps up to 40x slower under load.
torch.set_num_threads(1)

from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """A small synthetic dataset (12 identities) in Market-1501 layout, made once."""
    from reidlab.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic")
    return generate(root, num_ids=12, seed=0, domain="a", progress=False)


@pytest.fixture(scope="session")
def tiny_synthetic_b(tmp_path_factory) -> Path:
    """The second synthetic domain, as small as :func:`tiny_synthetic`."""
    from reidlab.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic_b")
    return generate(root, num_ids=12, seed=0, domain="b", progress=False)

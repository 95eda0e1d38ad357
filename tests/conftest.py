"""Shared test setup: small thread counts (CI has 2 cores), GPU marker handling."""

import pytest
import torch

torch.set_num_threads(1)  # tiny test models: threading overhead dominates on 2 shared cores


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module, whatever an earlier test left set. Tiny matmuls: a second thread
    only adds synchronisation, which on a loaded machine costs up to ~100x (measured: 36 decoding steps
    of tiny3 take 27 s with 2 threads, 0.4 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
